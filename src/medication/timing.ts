import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Issue, OperationOutcomeError } from '../kernel/outcome';
import { terminologyDir } from '../kernel/paths';
import { parseDateRange } from '../search/date-range';
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
  | { kind: 'interval'; everyMs: number; anchorMinute?: number; when?: WhenEvents; defaultTimes?: true }
  | { kind: 'events'; instants: number[] };

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
 * How long Timing.repeat.boundsDuration (or the longest of boundsRange) lets the schedule last;
 * an issue when it cannot be read, since ignoring it would schedule doses for ever.
 */
function lastingOf(repeat: fhir4.TimingRepeat, at: string, issues: Issue[]): { lastingMs: number } | { lastingMonths: number } | undefined {
  const [d, path] = repeat.boundsDuration ? [repeat.boundsDuration, `${at}.boundsDuration`] : [repeat.boundsRange?.high, `${at}.boundsRange.high`];
  if (!d) return undefined;
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
  const [year, month, day] = m.split('-').map(Number) as [number, number, number];
  const date = { year, month, day };
  return end ? instantOf(zone, addDays(date, 1), 0) - 1 : instantOf(zone, date, 0);
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
  if (rule.kind === 'events') return undefined;
  if (rule.when) return rule.when.codes.flatMap(eventsOf).every((e) => clock.routine?.has(e)) ? 'patient-routine' : 'server-default';
  return rule.defaultTimes ? 'server-default' : undefined;
}

/** A rule's minutes of the day for this patient: the routine moves the doses given by `when`. */
function placedRule<R extends DoseRule>(rule: R, clock: PatientClock): R {
  if (rule.kind === 'events' || !rule.when || !clock.routine?.size) return rule;
  const minutes = whenMinutes(rule.when.codes, rule.when.offset, '', [], clock.routine);
  if (minutes.length === 0) return rule;
  return rule.kind === 'wall' ? { ...rule, minutes: uniqueSorted(minutes) } : { ...rule, anchorMinute: minutes[0]! };
}

/** One Timing as a rule; an issue and undefined when the server cannot place its doses. */
function ruleOf(timing: fhir4.Timing, at: string, issues: Issue[]): DoseRule | undefined {
  if (timing.event?.length) {
    const instants = timing.event.map((e) => instantText(e, false)).filter((t): t is number => t !== undefined);
    return { kind: 'events', instants: instants.sort((a, b) => a - b) };
  }
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
  const period = repeat.period;
  const unit = repeat.periodUnit;
  const minutes = repeat.timeOfDay?.length
    ? repeat.timeOfDay.map(minuteOf)
    : repeat.when?.length
      ? whenMinutes(repeat.when, repeat.offset, `${path}.when`, issues)
      : undefined;
  // Explicit times win over events (R4: timeOfDay and when are not both given).
  const when: WhenEvents | undefined = !repeat.timeOfDay?.length && repeat.when?.length ? { codes: repeat.when, ...(repeat.offset !== undefined ? { offset: repeat.offset } : {}) } : undefined;
  const withWhen = when ? { when } : {};
  if (repeat.timeOfDay?.length && repeat.when?.length) {
    issues.push({ code: 'value', diagnostics: `${path}: timeOfDay and when cannot both be given (R4 tim-10)`, expression: [path] });
    return undefined;
  }
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
    return { kind: 'interval', everyMs, ...(minutes?.length ? { anchorMinute: minutes[0]!, ...withWhen } : {}) };
  }
  if (unit === 'd' && Number.isInteger(period)) {
    const times = minutes ?? eventTiming().dailyTimes[String(frequency)]?.map(minuteOf);
    // More than the table's times a day and no times given: spread by the clock, like an interval.
    if (!times) return { kind: 'interval', everyMs: (period * 86_400_000) / frequency, anchorMinute: minuteOf(eventTiming().dailyTimes['1']![0]!), defaultTimes: true };
    return { kind: 'wall', minutes: uniqueSorted(times), ...(minutes ? withWhen : { defaultTimes: true }), everyDays: period, ...(daysOfWeek ? { daysOfWeek } : {}) };
  }
  if (unit === 'wk' && Number.isInteger(period) && (frequency === 1 || (daysOfWeek && daysOfWeek.length === frequency))) {
    return { kind: 'wall', minutes: uniqueSorted(minutes ?? eventTiming().dailyTimes['1']!.map(minuteOf)), ...(minutes ? withWhen : { defaultTimes: true }), everyWeeks: period, ...(daysOfWeek ? { daysOfWeek } : {}) };
  }
  if ((unit === 'mo' || unit === 'a') && Number.isInteger(period) && frequency === 1) {
    return { kind: 'wall', minutes: uniqueSorted(minutes ?? eventTiming().dailyTimes['1']!.map(minuteOf)), ...(minutes ? withWhen : { defaultTimes: true }), everyMonths: unit === 'a' ? 12 * period : period };
  }
  issues.push({ code: 'not-supported', diagnostics: `${path}: ${frequency} per ${period} ${unit} cannot be placed on a calendar; give dayOfWeek, timeOfDay or a period in h`, expression: [path] });
  return undefined;
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
export function compileRequest(request: fhir4.MedicationRequest, storedAt: number, strict = isActedOn(request)): CompiledRequest {
  const issues: Issue[] = [];
  const instructions: DoseInstruction[] = [];
  const unplaced: Array<{ index: number; reason: string }> = [];
  let asNeededOnly = (request.dosageInstruction?.length ?? 0) > 0;
  request.dosageInstruction?.forEach((dosage, index) => {
    const at = `MedicationRequest.dosageInstruction[${index}]`;
    // As needed (PRN): nothing is due, nothing is missed (R4 Dosage.asNeeded[x]).
    if (dosage.asNeededBoolean || dosage.asNeededCodeableConcept || !dosage.timing) return;
    asNeededOnly = false;
    const known = issues.length;
    const rule = ruleOf(dosage.timing, `${at}.timing`, issues);
    if (!rule) {
      unplaced.push({ index, reason: issues.slice(known).map((i) => i.diagnostics).join('; ') });
      return;
    }
    const repeat = dosage.timing.repeat;
    const count = repeat?.count;
    if (count !== undefined && count > MAX_COUNT) {
      issues.push({ code: 'value', diagnostics: `${at}.timing.repeat.count: at most ${MAX_COUNT} doses`, expression: [`${at}.timing.repeat.count`] });
      return;
    }
    const start = momentOf(repeat?.boundsPeriod?.start, false);
    const end = momentOf(repeat?.boundsPeriod?.end, true);
    const lasting = repeat && lastingOf(repeat, `${at}.timing.repeat`, issues);
    instructions.push({
      index, ...(dosage.text ? { text: dosage.text } : {}), rule, ...(count !== undefined ? { count } : {}),
      ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}), ...lasting,
    });
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
    for (const t of rule.instants) if (t >= walkFrom && !take(t)) return;
    return;
  }
  if (rule.kind === 'interval') {
    const anchor = rule.anchorMinute === undefined ? start : instantOf(zone, localDateOf(zone, start), rule.anchorMinute);
    let k = Math.max(0, Math.ceil((walkFrom - anchor) / rule.everyMs));
    // An anchor later than the start on the first day: the first dose is the anchor itself.
    for (let t = anchor + k * rule.everyMs; t < end; t = anchor + ++k * rule.everyMs) if (!take(t)) return;
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
