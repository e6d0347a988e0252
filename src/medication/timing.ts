import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Issue, OperationOutcomeError } from '../kernel/outcome';
import { terminologyDir } from '../kernel/paths';
import { parseDateRange } from '../search/date-range';
import { addDays, dayOfWeek, daysBetween, instantOf, type LocalDate, localDateOf } from './zone';

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

export type DoseRule =
  | { kind: 'wall'; minutes: number[]; when?: WhenEvents; everyDays?: number; everyWeeks?: number; everyMonths?: number; daysOfWeek?: number[] }
  | { kind: 'interval'; everyMs: number; anchorMinute?: number; when?: WhenEvents }
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
  /** Timing.repeat.boundsDuration: the schedule lasts this long from its start. */
  lastingMs?: number;
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

/** A Duration as ms: a UCUM time unit, or undefined. */
export function durationMs(d: fhir4.Duration | undefined): number | undefined {
  const unit = d?.code ?? d?.unit;
  if (d?.value === undefined || d.value < 0 || !unit || (d.system && d.system !== UCUM)) return undefined;
  const ms = UNIT_MS[unit];
  return ms === undefined ? undefined : d.value * ms;
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
  const { events, meals } = eventTiming();
  const minutes: number[] = [];
  for (const code of when) {
    const meal = meals[code];
    const sign = code.startsWith('AC') ? -1 : 1;
    const bases = meal ?? (events[code] ? [code] : []);
    if (bases.length === 0) {
      issues.push({ code: 'not-supported', diagnostics: `${at}: the event '${code}' has no time of day on this server`, expression: [at] });
      continue;
    }
    for (const b of bases) minutes.push(((routine?.get(b) ?? minuteOf(events[b]!)) + sign * (offset ?? 0) + 1440) % 1440);
  }
  return minutes;
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
  const repeat = timing.repeat ?? (coded ? eventTiming().timingCodes[coded] : undefined);
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
  const daysOfWeek = repeat.dayOfWeek?.map((d) => ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].indexOf(d) + 1);
  if (!period || !unit) {
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
    if (!times) return { kind: 'interval', everyMs: (period * 86_400_000) / frequency, anchorMinute: minuteOf(eventTiming().dailyTimes['1']![0]!) };
    return { kind: 'wall', minutes: uniqueSorted(times), ...(minutes ? withWhen : {}), everyDays: period, ...(daysOfWeek ? { daysOfWeek } : {}) };
  }
  if (unit === 'wk' && Number.isInteger(period) && (frequency === 1 || (daysOfWeek && daysOfWeek.length === frequency))) {
    return { kind: 'wall', minutes: uniqueSorted(minutes ?? eventTiming().dailyTimes['1']!.map(minuteOf)), ...withWhen, everyWeeks: period, ...(daysOfWeek ? { daysOfWeek } : {}) };
  }
  if ((unit === 'mo' || unit === 'a') && Number.isInteger(period) && frequency === 1) {
    return { kind: 'wall', minutes: uniqueSorted(minutes ?? eventTiming().dailyTimes['1']!.map(minuteOf)), ...withWhen, everyMonths: unit === 'a' ? 12 * period : period };
  }
  issues.push({ code: 'not-supported', diagnostics: `${path}: ${frequency} per ${period} ${unit} cannot be placed on a calendar; give dayOfWeek, timeOfDay or a period in h`, expression: [path] });
  return undefined;
}

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
  let asNeededOnly = (request.dosageInstruction?.length ?? 0) > 0;
  request.dosageInstruction?.forEach((dosage, index) => {
    const at = `MedicationRequest.dosageInstruction[${index}]`;
    // As needed (PRN): nothing is due, nothing is missed (R4 Dosage.asNeeded[x]).
    if (dosage.asNeededBoolean || dosage.asNeededCodeableConcept || !dosage.timing) return;
    asNeededOnly = false;
    const rule = ruleOf(dosage.timing, `${at}.timing`, issues);
    if (!rule) return;
    const repeat = dosage.timing.repeat;
    const count = repeat?.count;
    if (count !== undefined && count > MAX_COUNT) {
      issues.push({ code: 'value', diagnostics: `${at}.timing.repeat.count: at most ${MAX_COUNT} doses`, expression: [`${at}.timing.repeat.count`] });
      return;
    }
    const start = momentOf(repeat?.boundsPeriod?.start, false);
    const end = momentOf(repeat?.boundsPeriod?.end, true);
    const lastingMs = durationMs(repeat?.boundsDuration);
    instructions.push({
      index, ...(dosage.text ? { text: dosage.text } : {}), rule, ...(count !== undefined ? { count } : {}),
      ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}), ...(lastingMs !== undefined ? { lastingMs } : {}),
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
    const last = ins.lastingMs !== undefined ? start + ins.lastingMs - 1 : placed(ins.end, zone, true);
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
    const months = (date.year - first.year) * 12 + date.month - first.month;
    return date.day === first.day && months % rule.everyMonths === 0;
  }
  if (rule.everyWeeks) {
    // With days of the week: those days in every n-th week; without: the start's weekday.
    return rule.daysOfWeek ? Math.floor(days / 7) % rule.everyWeeks === 0 : days % (7 * rule.everyWeeks) === 0;
  }
  return days % (rule.everyDays ?? 1) === 0;
}
