// What the dashboard reads out of FHIR resources: limits from CarePlans, series from
// Observations, breaches, adherence, and the ward's ordering. Pure functions, no I/O.

const LOINC = 'http://loinc.org';
const MONITORING_FLAG_SYSTEM = 'http://rpm.example.org/fhir/CodeSystem/monitoring-flag';
const FLAG_WINDOW_URL = 'http://rpm.example.org/fhir/StructureDefinition/flag-missed-window';
const FLAG_PRIORITY_URL = 'http://hl7.org/fhir/StructureDefinition/flag-priority';
const DAY_MS = 86_400_000;

export interface Range {
  low?: number;
  high?: number;
}

/** The limits of one measure: the normal band, and the critical limits beyond it. */
export interface Limits {
  normal?: Range;
  critical?: Range;
  unit?: string;
}

export interface Point {
  time: number;
  value: number;
  observationId: string;
  breach?: 'high' | 'low';
  critical?: boolean;
}

export interface Series {
  code: string;
  display: string;
  unit: string;
  points: Point[];
  limits: Limits;
}

export interface Scheduled {
  code: string;
  display: string;
  perDay: number;
}

/** The LOINC code of a concept, else its first code. */
export function codeOf(concept: fhir4.CodeableConcept | undefined): { code: string; display: string } | undefined {
  const coding = concept?.coding?.find((c) => c.system === LOINC) ?? concept?.coding?.[0];
  if (!coding?.code) return undefined;
  return { code: coding.code, display: coding.display ?? concept?.text ?? coding.code };
}

const isCritical = (goal: fhir4.Goal) => goal.priority?.coding?.some((c) => c.code === 'high-priority') ?? false;

/**
 * Limits per measure code from the active CarePlans' goals (contained, or stored Goals in
 * `goals` by id). A normal-priority goal gives the band, a high-priority one the critical limits;
 * of several plans the narrowest band wins, which is what any of them would flag.
 */
export function limitsOf(plans: fhir4.CarePlan[], goals: Map<string, fhir4.Goal>): Map<string, Limits> {
  const limits = new Map<string, Limits>();
  const narrow = (a: Range | undefined, b: Range): Range => ({
    ...(max(a?.low, b.low) !== undefined ? { low: max(a?.low, b.low)! } : {}),
    ...(min(a?.high, b.high) !== undefined ? { high: min(a?.high, b.high)! } : {}),
  });
  for (const plan of plans) {
    for (const ref of plan.goal ?? []) {
      const reference = ref.reference ?? '';
      const goal = reference.startsWith('#')
        ? (plan.contained?.find((r) => r.resourceType === 'Goal' && r.id === reference.slice(1)) as fhir4.Goal | undefined)
        : goals.get(reference.replace(/^Goal\//, ''));
      if (!goal || (goal.lifecycleStatus !== 'active' && goal.lifecycleStatus !== 'accepted')) continue;
      for (const target of goal.target ?? []) {
        const measure = codeOf(target.measure);
        const range = target.detailRange;
        if (!measure || !range) continue;
        const r: Range = {
          ...(range.low?.value !== undefined ? { low: range.low.value } : {}),
          ...(range.high?.value !== undefined ? { high: range.high.value } : {}),
        };
        const entry = limits.get(measure.code) ?? {};
        if (isCritical(goal)) entry.critical = narrow(entry.critical, r);
        else entry.normal = narrow(entry.normal, r);
        entry.unit ??= range.low?.unit ?? range.high?.unit;
        limits.set(measure.code, entry);
      }
    }
  }
  return limits;
}

function max(a: number | undefined, b: number | undefined) {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}
function min(a: number | undefined, b: number | undefined) {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

/** Goal ids the plans refer to that are not contained: they must be read. */
export function storedGoalIds(plans: fhir4.CarePlan[]): string[] {
  return [...new Set(plans.flatMap((p) => (p.goal ?? []).map((g) => g.reference ?? '').filter((r) => r.startsWith('Goal/')).map((r) => r.slice(5))))];
}

/** The measures the plans schedule, with how often per day (Timing frequency / period). */
export function scheduleOf(plans: fhir4.CarePlan[]): Scheduled[] {
  const unitDays: Record<string, number> = { min: 1 / 1440, h: 1 / 24, d: 1, wk: 7, mo: 30, a: 365 };
  const out = new Map<string, Scheduled>();
  for (const plan of plans) {
    for (const activity of plan.activity ?? []) {
      const detail = activity.detail;
      const measure = codeOf(detail?.code);
      const repeat = detail?.scheduledTiming?.repeat;
      if (!measure || !repeat?.period || !repeat.periodUnit) continue;
      const days = repeat.period * (unitDays[repeat.periodUnit] ?? 1);
      const perDay = (repeat.frequency ?? 1) / days;
      const known = out.get(measure.code);
      if (!known || known.perDay < perDay) out.set(measure.code, { ...measure, perDay });
    }
  }
  return [...out.values()];
}

function judge(value: number, limits: Limits): Pick<Point, 'breach' | 'critical'> {
  const { normal, critical } = limits;
  const isHigh = (r?: Range) => r?.high !== undefined && value > r.high;
  const isLow = (r?: Range) => r?.low !== undefined && value < r.low;
  if (isHigh(critical)) return { breach: 'high', critical: true };
  if (isLow(critical)) return { breach: 'low', critical: true };
  if (isHigh(normal)) return { breach: 'high' };
  if (isLow(normal)) return { breach: 'low' };
  return {};
}

const timeOf = (o: fhir4.Observation) => Date.parse(o.effectiveDateTime ?? o.effectivePeriod?.start ?? o.effectiveInstant ?? o.issued ?? '');

/**
 * One series per measured code: an Observation's own value, and each component's (blood
 * pressure arrives as a panel of systolic and diastolic). Oldest first, breaches judged
 * against the plan's limits.
 */
export function seriesOf(observations: fhir4.Observation[], limits: Map<string, Limits>): Series[] {
  const byCode = new Map<string, Series>();
  const add = (concept: fhir4.CodeableConcept | undefined, q: fhir4.Quantity | undefined, time: number, id: string) => {
    const measure = codeOf(concept);
    if (!measure || q?.value === undefined || Number.isNaN(time)) return;
    let s = byCode.get(measure.code);
    const l = limits.get(measure.code) ?? {};
    if (!s) byCode.set(measure.code, (s = { code: measure.code, display: measure.display, unit: q.unit ?? q.code ?? '', points: [], limits: l }));
    s.points.push({ time, value: q.value, observationId: id, ...judge(q.value, l) });
  };
  for (const o of observations) {
    if (o.status === 'entered-in-error' || o.status === 'cancelled') continue;
    const t = timeOf(o);
    add(o.code, o.valueQuantity, t, o.id ?? '');
    for (const c of o.component ?? []) add(c.code, c.valueQuantity, t, o.id ?? '');
  }
  const all = [...byCode.values()];
  for (const s of all) s.points.sort((a, b) => a.time - b.time);
  return all.sort((a, b) => a.display.localeCompare(b.display));
}

export interface Adherence extends Scheduled {
  expected: number;
  taken: number;
  days: number;
}

/** Readings taken against readings due in the last `days` days (since the plan began, if later). */
export function adherenceOf(schedule: Scheduled[], observations: fhir4.Observation[], now: number, days: number, since?: number): Adherence[] {
  const from = Math.max(now - days * DAY_MS, since ?? Number.NEGATIVE_INFINITY);
  const span = Math.max(0, (now - from) / DAY_MS);
  return schedule.map((s) => {
    const taken = observations.filter((o) => codeOf(o.code)?.code === s.code && timeOf(o) >= from && timeOf(o) <= now).length;
    return { ...s, days: Math.round(span), expected: Math.floor(span * s.perDay), taken };
  });
}

export type FlagKind = 'high' | 'low' | 'missed' | 'other';

export interface FlagView {
  flag: fhir4.Flag;
  kind: FlagKind;
  text: string;
  /** When the Flag last changed: its newest breach or missed window. */
  latest: number;
  critical: boolean;
  window?: fhir4.Period;
}

export function flagView(flag: fhir4.Flag): FlagView {
  const code = flag.code?.coding?.find((c) => c.system === MONITORING_FLAG_SYSTEM)?.code;
  const kind: FlagKind = code === 'limit-high' ? 'high' : code === 'limit-low' ? 'low' : code === 'missed-measurement' ? 'missed' : 'other';
  const window = flag.extension?.find((x) => x.url === FLAG_WINDOW_URL)?.valuePeriod;
  return {
    flag,
    kind,
    text: flag.code?.text ?? codeOf(flag.code)?.display ?? 'Flag',
    latest: Date.parse(flag.meta?.lastUpdated ?? flag.period?.start ?? '') || 0,
    critical: flag.extension?.some((x) => x.url === FLAG_PRIORITY_URL) ?? false,
    ...(window ? { window } : {}),
  };
}

export interface WardRow {
  patient: fhir4.Patient | undefined;
  patientId: string;
  flags: FlagView[];
  latest: number;
  critical: boolean;
}

/** Patients with active Flags, the one with the newest breach first. */
export function wardOf(flags: fhir4.Flag[], patients: fhir4.Patient[]): WardRow[] {
  const byId = new Map(patients.map((p) => [p.id!, p]));
  const rows = new Map<string, WardRow>();
  for (const flag of flags) {
    const id = flag.subject?.reference?.replace(/^Patient\//, '');
    if (!id || flag.status !== 'active') continue;
    const view = flagView(flag);
    let row = rows.get(id);
    if (!row) rows.set(id, (row = { patient: byId.get(id), patientId: id, flags: [], latest: 0, critical: false }));
    row.flags.push(view);
    row.latest = Math.max(row.latest, view.latest);
    row.critical ||= view.critical;
  }
  for (const row of rows.values()) row.flags.sort((a, b) => b.latest - a.latest);
  return [...rows.values()].sort((a, b) => b.latest - a.latest);
}

export function nameOf(p: fhir4.Patient | undefined): string {
  const n = p?.name?.[0];
  if (!n) return 'Unnamed patient';
  return n.text ?? [...(n.given ?? []), n.family].filter(Boolean).join(' ');
}

export function ageOf(p: fhir4.Patient | undefined, now: number): number | undefined {
  if (!p?.birthDate) return undefined;
  const b = new Date(p.birthDate);
  const d = new Date(now);
  let age = d.getUTCFullYear() - b.getUTCFullYear();
  if (d.getUTCMonth() < b.getUTCMonth() || (d.getUTCMonth() === b.getUTCMonth() && d.getUTCDate() < b.getUTCDate())) age--;
  return age;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
export const formatTime = (t: number | string | undefined) => (t === undefined || t === '' ? '' : dateTime.format(new Date(t)));
