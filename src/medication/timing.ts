import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Issue, OperationOutcomeError } from '../kernel/outcome';
import { terminologyDir } from '../kernel/paths';
import { parseDateRange } from '../search/date-range';
import { repeatIssues } from './timing-checks';
import { addDays, addMonths, dayOfWeek, daysBetween, instantOf, type LocalDate, localDateOf, offsetAt } from './zone';

/**
 * A MedicationRequest's dosageInstruction timings compiled to dose rules (R4 datatypes.html#Timing),
 * once when the request is written, and the due doses those rules give in a patient's time zone.
 *
 * Two kinds of rule, because clinicians mean two things:
 * - wall-clock rules (a period of a day or more: "twice daily at 08:00 and 20:00", "before
 *   breakfast", "every Monday"): the dose stays at its local time when the clocks change;
 * - interval rules (a period under a day: "every 8 hours"): the doses are that much elapsed time
 *   apart, so on the 23-hour spring day the local times move by the hour, and no dose interval
 *   is shortened or stretched by a clock change.
 * Decision record: docs/decisions/011-medication-schedules.md.
 */

interface EventTimingData {
  events: Record<string, string>;
  meals: Record<string, string[]>;
  dailyTimes: Record<string, string[]>;
  timingCodes: Record<string, fhir4.TimingRepeat>;
}

let data: EventTimingData | undefined;
function eventTiming(): EventTimingData {
  data ??= JSON.parse(readFileSync(join(terminologyDir, 'event-timing.json'), 'utf8')) as EventTimingData;
  return data;
}

/**
 * `Timing.repeat.when` kept as written, so that a patient's own routine (breakfast at 06:30, bed
 * at 21:00) places the doses at use time; `minutes`/`anchorMinute` hold the server defaults.
 */
export interface WhenEvents {
  codes: string[];
  offset?: number;
}

/** `defaultTimes`: the order gave no time of day, the server's daily times placed the doses. */
export type DoseRule =
  | { kind: 'wall'; minutes: number[]; when?: WhenEvents; defaultTimes?: true; everyDays?: number; everyWeeks?: number; everyMonths?: number; daysOfWeek?: number[] }
  | { kind: 'interval'; everyMs: number; anchorMinute?: number; when?: WhenEvents; defaultTimes?: true; daysOfWeek?: number[] }
  /** `dates`: date-only events, each the patient's local day at `minutes` (known only with the zone). */
  | { kind: 'events'; instants: number[]; dates?: string[]; minutes?: number[]; when?: WhenEvents; defaultTimes?: true };

/**
 * Where a patient's doses are placed: the IANA zone, and the patient's own times of the day's
 * events (EventTiming code → local minute of the day) where they differ from the server's.
 */
export interface PatientClock {
  zone: string;
  routine?: ReadonlyMap<string, number>;
}

/** The EventTiming codes a routine may set: those the server has a default time for. */
export const routineEvents = (): string[] => Object.keys(eventTiming().events);

export interface DoseInstruction {
  /** Index in dosageInstruction. */
  index: number;
  text?: string;
  rule: DoseRule;
  /** Timing.repeat.count: the schedule ends after this many doses. */
  count?: number;
  /** Timing.repeat.boundsPeriod (end inclusive); start falls back to the request's start. */
  start?: Moment;
  end?: Moment;
  /** Timing.repeat.boundsDuration (or boundsRange.high): the schedule lasts this long from its start. */
  lastingMs?: number;
  /** The same in whole calendar months (`mo`, `a`): "for 1 month" from 1 February ends on 1 March. */
  lastingMonths?: number;
  /** Timing.repeat.duration: how long each dose lasts (an infusion, a patch), its UCUM unit. */
  duration?: { value: number; unit: string };
}

/**
 * An instant (ms), or a date-only FHIR date (`2027-03-26`): a date is the patient's local day,
 * known only when the zone is, so it is kept as written and placed at use.
 */
export type Moment = number | string;

export interface CompiledRequest {
  patient?: string;
  /** Active order for a Patient: doses are due, reminded and judged. */
  active: boolean;
  /** authoredOn, else when compiled: doses before it are not the request's. */
  start?: Moment;
  medication: string;
  /** The medication's first coding, for the Flag's code. */
  coding?: fhir4.Coding;
  instructions: DoseInstruction[];
  /** Scheduled instructions the server cannot place ("3 times a month"): why, so $due can say so. */
  unplaced?: Array<{ index: number; reason: string }>;
  /** Ranges read by their required end ("1-2 times every 4-6 h": once every 6 h): each said in $due. */
  assumed?: Array<{ index: number; element: string; text: string }>;
  /** Every instruction is as-needed: nothing is ever due. */
  asNeeded: boolean;
  /** From the request's grace-period extension; else the CarePlan's, else the server default. */
  graceMs?: number;
  carePlanIds: string[];
}

export const GRACE_URL = 'http://rpm.example.org/fhir/StructureDefinition/dose-grace-period';
const UCUM = 'http://unitsofmeasure.org';
const UNIT_MS: Record<string, number> = { s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000, wk: 7 * 86_400_000 };
const ACTIVE_INTENTS = new Set(['order', 'original-order', 'reflex-order', 'filler-order', 'instance-order', 'plan']);
/** More doses than this in one instruction's count are not a medication schedule. */
const MAX_COUNT = 10_000;

const minuteOf = (time: string) => {
  const [h, m] = time.split(':').map(Number);
  return h! * 60 + m!;
};

/** A Duration's non-negative value and its UCUM unit code; undefined when it is not one. */
function ucumDuration(d: fhir4.Duration | undefined): { value: number; unit: string } | undefined {
  const unit = d?.code ?? d?.unit;
  if (d?.value === undefined || d.value < 0 || !unit || (d.system && d.system !== UCUM)) return undefined;
  return { value: d.value, unit };
}

/** A Duration as ms: a UCUM time unit, or undefined. */
export function durationMs(d: fhir4.Duration | undefined): number | undefined {
  const u = ucumDuration(d);
  const ms = u && UNIT_MS[u.unit];
  return ms === undefined || !u ? undefined : u.value * ms;
}

/** UCUM's mean month and year, for a fraction of one (whole ones are calendar months). */
const MEAN_MONTH_MS = 30.4375 * 86_400_000;

/**
 * How long Timing.repeat.boundsDuration, or boundsRange, lets the schedule last; an issue when it
 * cannot be read, since ignoring it would schedule doses for ever. A range lasts its low, the
 * shortest the order asks for (decision 011: the schedule holds the doses the order requires);
 * a range with only a high lasts that.
 */
function lastingOf(repeat: fhir4.TimingRepeat, at: string, issues: Issue[]): Lasting | undefined {
  if (repeat.boundsDuration) return lastingFrom(repeat.boundsDuration, `${at}.boundsDuration`, issues);
  const range = repeat.boundsRange;
  const low = range?.low && lastingFrom(range.low, `${at}.boundsRange.low`, issues);
  const high = range?.high && lastingFrom(range.high, `${at}.boundsRange.high`, issues);
  if (low && high && approximateMs(high) < approximateMs(low)) {
    issues.push({ code: 'value', diagnostics: `${at}.boundsRange.high: must not be shorter than low`, expression: [`${at}.boundsRange.high`] });
    return undefined;
  }
  return low ?? high;
}

type Lasting = { lastingMs: number } | { lastingMonths: number };
const approximateMs = (l: Lasting) => ('lastingMs' in l ? l.lastingMs : l.lastingMonths * MEAN_MONTH_MS);

function lastingFrom(d: fhir4.Duration, path: string, issues: Issue[]): Lasting | undefined {
  const u = ucumDuration(d);
  const months = u?.unit === 'mo' ? 1 : u?.unit === 'a' ? 12 : undefined;
  if (u && months !== undefined) {
    return Number.isInteger(u.value * months) ? { lastingMonths: u.value * months } : { lastingMs: u.value * months * MEAN_MONTH_MS };
  }
  const ms = durationMs(d);
  if (ms !== undefined) return { lastingMs: ms };
  issues.push({ code: 'value', diagnostics: `${path}: must be a non-negative duration in s, min, h, d, wk, mo or a (UCUM)`, expression: [path] });
  return undefined;
}

/** The grace-period extension of a resource: ms, undefined when absent, an issue when unreadable. */
export function gracePeriodOf(resource: { extension?: fhir4.Extension[] }, path: string, issues: Issue[]): number | undefined {
  const ext = resource.extension?.find((e) => e.url === GRACE_URL);
  if (!ext) return undefined;
  const ms = durationMs(ext.valueDuration);
  if (ms === undefined) {
    issues.push({ code: 'value', diagnostics: `${path}: the dose grace period must be a valueDuration in s, min, h or d (UCUM)`, expression: [path] });
  }
  return ms;
}

const instantText = (text: string | undefined, end: boolean) => {
  const r = text ? parseDateRange(text) : undefined;
  return r && (end ? r.high : r.low);
};

const momentOf = (text: string | undefined, end: boolean): Moment | undefined => (text && /^\d{4}-\d{2}-\d{2}$/.test(text) ? text : instantText(text, end));

/** A moment as an instant in `zone`: a date's first instant, or (`end`) its last. */
function placed(m: Moment | undefined, zone: string, end: boolean): number | undefined {
  if (typeof m !== 'string') return m;
  const date = localDateText(m);
  return end ? instantOf(zone, addDays(date, 1), 0) - 1 : instantOf(zone, date, 0);
}

/** A FHIR date (`2027-03-26`) as a calendar date. */
function localDateText(text: string): LocalDate {
  const [year, month, day] = text.split('-').map(Number) as [number, number, number];
  return { year, month, day };
}

/**
 * The local minutes of the day a `when` list names, with the offset applied (before for AC*, after
 * otherwise): at the patient's own time of an event when the routine has one, else the server's.
 */
function whenMinutes(when: readonly string[], offset: number | undefined, at: string, issues: Issue[], routine?: ReadonlyMap<string, number>): number[] {
  const { events } = eventTiming();
  const minutes: number[] = [];
  for (const code of when) {
    const sign = code.startsWith('AC') ? -1 : 1;
    const bases = eventsOf(code);
    if (bases.length === 0) {
      issues.push({ code: 'not-supported', diagnostics: `${at}: the event '${code}' has no time of day on this server`, expression: [at] });
      continue;
    }
    for (const b of bases) minutes.push(((routine?.get(b) ?? minuteOf(events[b]!)) + sign * (offset ?? 0) + 1440) % 1440);
  }
  return minutes;
}

/** The daily events a `when` code stands for: a meal code's meals, else itself if the server knows its time. */
function eventsOf(code: string): string[] {
  const { events, meals } = eventTiming();
  return meals[code] ?? (events[code] ? [code] : []);
}

/**
 * Where a rule's time of day came from when the order did not state it: the patient's routine
 * (every event of its `when` recorded on the Patient) or the server's table (event-timing.json).
 * Undefined when the order gave the times (timeOfDay, event, an interval from its start).
 */
export function timeSourceOf(rule: DoseRule, clock: PatientClock): 'patient-routine' | 'server-default' | undefined {
  if (rule.kind === 'events' && !rule.dates?.length) return undefined;
  if (rule.when) return rule.when.codes.flatMap(eventsOf).every((e) => clock.routine?.has(e)) ? 'patient-routine' : 'server-default';
  return rule.defaultTimes ? 'server-default' : undefined;
}

/** A rule's minutes of the day for this patient: the routine moves the doses given by `when`. */
function placedRule<R extends DoseRule>(rule: R, clock: PatientClock): R {
  if (!rule.when || !clock.routine?.size) return rule;
  const minutes = whenMinutes(rule.when.codes, rule.when.offset, '', [], clock.routine);
  if (minutes.length === 0) return rule;
  return rule.kind === 'interval' ? { ...rule, anchorMinute: minutes[0]! } : { ...rule, minutes: uniqueSorted(minutes) };
}

/** One Timing as a rule; an issue and undefined when the server cannot place its doses. */
function ruleOf(timing: fhir4.Timing, at: string, issues: Issue[]): DoseRule | undefined {
  if (timing.event?.length) return eventsRule(timing.event, timing.repeat, at, issues);
  const coded = timing.code?.coding?.find((c) => c.code && eventTiming().timingCodes[c.code])?.code;
  // R4 Timing.code: the code states the whole schedule, "with the exception that .repeat.bounds
  // still applies over the code": a repeat that schedules nothing (bounds, a count) joins the code's.
  const given = timing.repeat;
  const schedules = given !== undefined && (given.frequency !== undefined || given.period !== undefined || given.periodUnit !== undefined
    || !!given.timeOfDay?.length || !!given.when?.length || !!given.dayOfWeek?.length);
  const repeat = coded && !schedules ? { ...eventTiming().timingCodes[coded], ...given } : given;
  if (!repeat) {
    issues.push({ code: 'required', diagnostics: `${at}: a scheduled dose needs Timing.repeat (or event, or a known Timing.code)`, expression: [at] });
    return undefined;
  }
  const path = `${at}.repeat`;
  const frequency = repeat.frequency ?? 1;
  // A period range ("every 4-6 h") at its longest: the fewest doses the order asks for (decision 011).
  const period = repeat.periodMax ?? repeat.period;
  const unit = repeat.periodUnit;
  const minutes = timesOf(repeat, path, issues);
  const when = whenOf(repeat);
  const withWhen = when ? { when } : {};
  const daysOfWeek = repeat.dayOfWeek?.map((d) => DAYS.indexOf(d) + 1);
  if (daysOfWeek?.includes(0)) {
    issues.push({ code: 'value', diagnostics: `${path}.dayOfWeek: must be one of ${DAYS.join(', ')}`, expression: [`${path}.dayOfWeek`] });
    return undefined;
  }
  if (period === undefined || !unit) {
    if (minutes?.length) return { kind: 'wall', minutes: uniqueSorted(minutes), ...withWhen, everyDays: 1, ...(daysOfWeek ? { daysOfWeek } : {}) };
    issues.push({ code: 'required', diagnostics: `${path}: needs period and periodUnit, timeOfDay or when`, expression: [path] });
    return undefined;
  }
  if (period <= 0 || frequency <= 0) {
    issues.push({ code: 'value', diagnostics: `${path}: period and frequency must be positive`, expression: [path] });
    return undefined;
  }
  if (unit === 's' || unit === 'min' || unit === 'h') {
    const everyMs = (period * UNIT_MS[unit]!) / frequency;
    if (everyMs < 60_000) {
      issues.push({ code: 'value', diagnostics: `${path}: doses less than a minute apart are not a schedule`, expression: [path] });
      return undefined;
    }
    return { kind: 'interval', everyMs, ...(minutes?.length ? { anchorMinute: minutes[0]!, ...withWhen } : {}), ...(daysOfWeek ? { daysOfWeek } : {}) };
  }
  if (unit === 'd' && Number.isInteger(period)) {
    const times = minutes ?? eventTiming().dailyTimes[String(frequency)]?.map(minuteOf);
    // More than the table's times a day and no times given: spread by the clock, like an interval.
    if (!times) return { kind: 'interval', everyMs: (period * 86_400_000) / frequency, anchorMinute: minuteOf(eventTiming().dailyTimes['1']![0]!), defaultTimes: true, ...(daysOfWeek ? { daysOfWeek } : {}) };
    return { kind: 'wall', minutes: uniqueSorted(times), ...(minutes ? withWhen : { defaultTimes: true }), everyDays: period, ...(daysOfWeek ? { daysOfWeek } : {}) };
  }
  const weekly = uniqueSorted(minutes ?? eventTiming().dailyTimes['1']!.map(minuteOf));
  // Each day listed at each time of day is one dose ("twice a week, Monday and Thursday"): a
  // frequency that is not that many ("once a week, Monday and Thursday") does not say which to give.
  if (unit === 'wk' && Number.isInteger(period) && frequency === (daysOfWeek?.length ?? 1) * weekly.length) {
    return { kind: 'wall', minutes: weekly, ...(minutes ? withWhen : { defaultTimes: true }), everyWeeks: period, ...(daysOfWeek ? { daysOfWeek } : {}) };
  }
  if ((unit === 'mo' || unit === 'a') && Number.isInteger(period) && frequency === 1 && !daysOfWeek) {
    return { kind: 'wall', minutes: uniqueSorted(minutes ?? eventTiming().dailyTimes['1']!.map(minuteOf)), ...(minutes ? withWhen : { defaultTimes: true }), everyMonths: unit === 'a' ? 12 * period : period };
  }
  const days = daysOfWeek ? ` on ${repeat.dayOfWeek!.join(', ')}` : '';
  const times = minutes ? ` at ${minutes.length} time(s) of day` : '';
  issues.push({ code: 'not-supported', diagnostics: `${path}: ${frequency} per ${period} ${unit}${days}${times} cannot be placed on a calendar; give one dayOfWeek per dose, timeOfDay or a period in h`, expression: [path] });
  return undefined;
}

/** The local minutes of the day a repeat gives: its timeOfDay, else its `when` at the server's times. */
function timesOf(repeat: fhir4.TimingRepeat | undefined, path: string, issues: Issue[]): number[] | undefined {
  if (repeat?.timeOfDay?.length) return repeat.timeOfDay.map(minuteOf);
  return repeat?.when?.length ? whenMinutes(repeat.when, repeat.offset, `${path}.when`, issues) : undefined;
}

/** `when` kept for the patient's routine; explicit times win (R4 tim-10: not both). */
function whenOf(repeat: fhir4.TimingRepeat | undefined): WhenEvents | undefined {
  if (repeat?.timeOfDay?.length || !repeat?.when?.length) return undefined;
  return { codes: repeat.when, ...(repeat.offset !== undefined ? { offset: repeat.offset } : {}) };
}

/**
 * Timing.event: the instants given. A date-only event is a day, not the UTC midnight that starts
 * it: the patient's local day, at the repeat's times of day, else at the server's once-daily time
 * (said as `server-default`). An event of a month or a year names no day and is not placed.
 */
function eventsRule(events: readonly string[], repeat: fhir4.TimingRepeat | undefined, at: string, issues: Issue[]): DoseRule | undefined {
  const instants: number[] = [];
  const dates: string[] = [];
  const known = issues.length;
  events.forEach((e, i) => {
    const t = /T/.test(e) ? instantText(e, false) : undefined;
    if (/^\d{4}-\d{2}-\d{2}$/.test(e)) dates.push(e);
    else if (t !== undefined) instants.push(t);
    else issues.push({ code: 'not-supported', diagnostics: `${at}.event[${i}]: '${e}' names no day to give the dose on`, expression: [`${at}.event[${i}]`] });
  });
  if (issues.length > known) return undefined;
  instants.sort((a, b) => a - b);
  if (!dates.length) return { kind: 'events', instants };
  const minutes = timesOf(repeat, `${at}.repeat`, issues);
  const when = whenOf(repeat);
  return {
    kind: 'events', instants, dates: [...new Set(dates)].sort(), minutes: uniqueSorted(minutes ?? eventTiming().dailyTimes['1']!.map(minuteOf)),
    ...(when ? { when } : minutes ? {} : { defaultTimes: true }),
  };
}

/**
 * The ranges of a repeat read by their required end, each said so: the schedule holds the doses the
 * order asks for at the least, so the doses it leaves to the patient are neither reminded nor
 * counted missed (decision 011). Ranges whose ends are equal say nothing.
 */
function rangesRead(repeat: fhir4.TimingRepeat | undefined, at: string): Array<{ element: string; text: string }> {
  if (!repeat) return [];
  const read: Array<{ element: string; text: string }> = [];
  const frequency = repeat.frequency ?? 1;
  if (repeat.frequencyMax !== undefined && repeat.frequencyMax !== frequency) {
    read.push({ element: `${at}.frequencyMax`, text: `${frequency} to ${repeat.frequencyMax} doses a period: scheduled ${frequency}, the fewest` });
  }
  if (repeat.periodMax !== undefined && repeat.periodMax !== repeat.period) {
    read.push({ element: `${at}.periodMax`, text: `every ${repeat.period} to ${repeat.periodMax} ${repeat.periodUnit}: scheduled every ${repeat.periodMax} ${repeat.periodUnit}, the longest` });
  }
  if (repeat.countMax !== undefined && repeat.countMax !== repeat.count) {
    read.push({ element: `${at}.countMax`, text: `${repeat.count} to ${repeat.countMax} doses: the schedule ends after ${repeat.count}, the fewest` });
  }
  const { low, high } = repeat.boundsDuration ? {} : repeat.boundsRange ?? {};
  if (low) {
    const amount = (q: fhir4.Quantity) => `${q.value} ${q.code ?? q.unit}`;
    read.push({ element: `${at}.boundsRange.low`, text: `lasting ${amount(low)}${high ? ` to ${amount(high)}` : ' or more'}: the schedule ends after ${amount(low)}, the shortest` });
  }
  if (repeat.durationMax !== undefined && repeat.durationMax !== repeat.duration) {
    read.push({ element: `${at}.durationMax`, text: `each dose lasting ${repeat.duration} to ${repeat.durationMax} ${repeat.durationUnit}: the duration given is ${repeat.duration}, the shortest` });
  }
  return read;
}

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const uniqueSorted = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);

/** Whether the server acts on this request: an active order (not a proposal) for a Patient. */
function isActedOn(request: fhir4.MedicationRequest): boolean {
  return request.status === 'active' && ACTIVE_INTENTS.has(request.intent) && !request.doNotPerform && /^Patient\//.test(request.subject?.reference ?? '');
}

/**
 * Compiles a MedicationRequest. For a request the server acts on, throws a 422 naming every
 * invalid value (a grace period that is not a time, doses under a minute apart, a count beyond
 * reason); what cannot be placed on a calendar is left out.
 */
export function compileRequest(request: fhir4.MedicationRequest, storedAt: Moment, strict = isActedOn(request)): CompiledRequest {
  const issues: Issue[] = [];
  const instructions: DoseInstruction[] = [];
  const unplaced: Array<{ index: number; reason: string }> = [];
  const assumed: Array<{ index: number; element: string; text: string }> = [];
  let asNeededOnly = (request.dosageInstruction?.length ?? 0) > 0;
  request.dosageInstruction?.forEach((dosage, index) => {
    const at = `MedicationRequest.dosageInstruction[${index}]`;
    // As needed (PRN): nothing is due, nothing is missed (R4 Dosage.asNeeded[x]).
    if (dosage.asNeededBoolean || dosage.asNeededCodeableConcept || !dosage.timing) return;
    asNeededOnly = false;
    const known = issues.length;
    const repeat = dosage.timing.repeat;
    issues.push(...repeatIssues(repeat, `${at}.timing.repeat`));
    const rule = issues.length === known ? ruleOf(dosage.timing, `${at}.timing`, issues) : undefined;
    if (!rule) {
      unplaced.push({ index, reason: issues.slice(known).map((i) => i.diagnostics).join('; ') });
      return;
    }
    const count = repeat?.count;
    if (count !== undefined && count > MAX_COUNT) {
      issues.push({ code: 'value', diagnostics: `${at}.timing.repeat.count: at most ${MAX_COUNT} doses`, expression: [`${at}.timing.repeat.count`] });
      return;
    }
    const start = momentOf(repeat?.boundsPeriod?.start, false);
    const end = momentOf(repeat?.boundsPeriod?.end, true);
    const lasting = repeat && lastingOf(repeat, `${at}.timing.repeat`, issues);
    const duration = repeat?.duration !== undefined && repeat.durationUnit ? { duration: { value: repeat.duration, unit: repeat.durationUnit } } : {};
    instructions.push({
      index, ...(dosage.text ? { text: dosage.text } : {}), rule, ...(count !== undefined ? { count } : {}),
      ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}), ...lasting, ...duration,
    });
    assumed.push(...rangesRead(repeat, `${at}.timing.repeat`).map((r) => ({ index, ...r })));
  });
  const graceMs = gracePeriodOf(request, 'MedicationRequest.extension', issues);
  // Invalid values are refused; a valid timing the server cannot place ("3 times a week" without
  // days, a Timing.code of free text) is stored as sent and schedules nothing (R4 examples do this).
  const invalid = issues.filter((i) => i.code === 'value');
  if (invalid.length && strict) throw new OperationOutcomeError(422, invalid);
  const patient = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(request.subject?.reference ?? '')?.[1];
  const medication = request.medicationCodeableConcept?.text ?? request.medicationCodeableConcept?.coding?.[0]?.display ?? request.medicationReference?.display ?? request.medicationReference?.reference ?? 'medication';
  return {
    ...(patient ? { patient } : {}),
    active: isActedOn(request),
    start: momentOf(request.authoredOn, false) ?? storedAt,
    medication,
    ...(request.medicationCodeableConcept?.coding?.[0] ? { coding: request.medicationCodeableConcept.coding[0] } : {}),
    instructions,
    ...(unplaced.length ? { unplaced } : {}),
    ...(assumed.length ? { assumed } : {}),
    asNeeded: asNeededOnly,
    ...(graceMs !== undefined ? { graceMs } : {}),
    carePlanIds: (request.basedOn ?? []).map((b) => /^CarePlan\/([A-Za-z0-9\-.]{1,64})$/.exec(b.reference ?? '')?.[1]).filter((id): id is string => id !== undefined),
  };
}

export interface DueDose {
  /** Index of the dosage instruction. */
  instruction: number;
  at: number;
}

/** Bound on the calendar days walked for one instruction (a count from years ago). */
const MAX_DAYS = 3 * 366;

/**
 * The doses of `request` due in [from, to) in `zone`, in time order. A count is counted from the
 * instruction's start, so the walk starts there when there is one.
 */
export function dosesBetween(request: CompiledRequest, clock: PatientClock, from: number, to: number): DueDose[] {
  const { zone } = clock;
  const doses: DueDose[] = [];
  for (const ins of request.instructions) {
    const start = placed(ins.start, zone, false) ?? placed(request.start, zone, false) ?? from;
    const last = ins.lastingMs !== undefined ? start + ins.lastingMs - 1 : ins.lastingMonths !== undefined ? monthsAfter(zone, start, ins.lastingMonths) - 1 : placed(ins.end, zone, true);
    const end = Math.min(to, last === undefined ? Number.POSITIVE_INFINITY : last + 1);
    const walkFrom = ins.count !== undefined ? start : Math.max(start, from);
    if (walkFrom >= end) continue;
    let n = 0;
    const take = (t: number): boolean => {
      if (t < start) return true;
      if (ins.count !== undefined && n >= ins.count) return false;
      n++;
      if (t >= from && t < end) doses.push({ instruction: ins.index, at: t });
      return t < end;
    };
    walk(placedRule(ins.rule, clock), zone, start, walkFrom, end, take);
  }
  return doses.sort((a, b) => a.at - b.at || a.instruction - b.instruction);
}

/** The instant `months` calendar months after `t` at the same local time in `zone`. */
function monthsAfter(zone: string, t: number, months: number): number {
  const minute = Math.floor((((t + offsetAt(zone, t)) % 86_400_000) + 86_400_000) % 86_400_000 / 60_000);
  return instantOf(zone, addMonths(localDateOf(zone, t), months), minute);
}

/** Calls `take` with each dose time of `rule` from `walkFrom` (aligned to `start`) until it returns false or `end`. */
function walk(rule: DoseRule, zone: string, start: number, walkFrom: number, end: number, take: (t: number) => boolean): void {
  if (rule.kind === 'events') {
    const days = (rule.dates ?? []).flatMap((d) => rule.minutes!.map((m) => instantOf(zone, localDateText(d), m)));
    const instants = days.length ? [...rule.instants, ...days].sort((a, b) => a - b) : rule.instants;
    for (const t of instants) if (t >= walkFrom && !take(t)) return;
    return;
  }
  if (rule.kind === 'interval') {
    const anchor = rule.anchorMinute === undefined ? start : instantOf(zone, localDateOf(zone, start), rule.anchorMinute);
    let k = Math.max(0, Math.ceil((walkFrom - anchor) / rule.everyMs));
    // An anchor later than the start on the first day: the first dose is the anchor itself.
    for (let t = anchor + k * rule.everyMs; t < end; t = anchor + ++k * rule.everyMs) {
      // "Every 8 h on Mondays": the doses that fall on those local days (R4 dayOfWeek).
      if (rule.daysOfWeek && !rule.daysOfWeek.includes(dayOfWeek(localDateOf(zone, t)))) continue;
      if (!take(t)) return;
    }
    return;
  }
  const first = localDateOf(zone, start);
  // One day early: a dose early in the local day can fall before walkFrom's UTC date.
  let date = addDays(localDateOf(zone, walkFrom), -1);
  for (let i = 0; i < MAX_DAYS; i++, date = addDays(date, 1)) {
    if (!onScheduledDay(rule, first, date)) continue;
    for (const m of rule.minutes) {
      const t = instantOf(zone, date, m);
      if (t < walkFrom) continue;
      if (t >= end || !take(t)) return;
    }
  }
}

function onScheduledDay(rule: Extract<DoseRule, { kind: 'wall' }>, first: LocalDate, date: LocalDate): boolean {
  const days = daysBetween(first, date);
  if (days < 0) return false;
  if (rule.daysOfWeek && !rule.daysOfWeek.includes(dayOfWeek(date))) return false;
  if (rule.everyMonths) {
    // On the start's day of the month, or the month's last day when it has none (31 → 28 February).
    const months = (date.year - first.year) * 12 + date.month - first.month;
    return months % rule.everyMonths === 0 && addMonths(first, months).day === date.day;
  }
  if (rule.everyWeeks) {
    // With days of the week: those days in every n-th week; without: the start's weekday.
    return rule.daysOfWeek ? Math.floor(days / 7) % rule.everyWeeks === 0 : days % (7 * rule.everyWeeks) === 0;
  }
  return days % (rule.everyDays ?? 1) === 0;
}
