import type { Issue } from '../kernel/outcome';
import { OperationOutcomeError } from '../kernel/outcome';
import { parseDateRange } from '../search/date-range';
import { terminology } from '../terminology/load';
import { convertUnit } from '../terminology/convert';
import { UCUM_SYSTEM } from '../terminology/ucum';

/**
 * A monitoring CarePlan compiled to what the rules need (profiles/StructureDefinition-
 * monitoring-careplan.json): the limits of its Goals, per LOINC measure, and the measurements
 * its activities schedule. Compiled once when the plan (or a Goal it reads) is written, so that
 * judging a reading is a lookup, not a walk over CarePlan and Goal JSON.
 */
export const LOINC = 'http://loinc.org';
export const GOAL_PRIORITY = 'http://terminology.hl7.org/CodeSystem/goal-priority';

export interface Limit {
  measure: string;
  display: string;
  /** UCUM code the bounds are in; readings are converted to it. */
  unit: string;
  low?: number;
  high?: number;
  /** From a Goal with priority `high-priority` (docs/decisions/005-monitoring-rules.md). */
  critical: boolean;
  /** `Goal/id` or `#id` of a contained Goal. */
  goal: string;
}

export interface ScheduledMeasure {
  measure: string;
  display: string;
  /** One measurement is due per window of this length (Timing period / frequency). */
  everyMs: number;
}

export interface CompiledPlan {
  /** Patient id when the subject is a Patient. */
  patient?: string;
  /** status active and intent plan/order: the plan is acted on. */
  active: boolean;
  periodStart?: string;
  /** Inclusive end: a date-only end covers its whole day. */
  periodEnd?: string;
  limits: Limit[];
  schedule: ScheduledMeasure[];
  /** Ids of stored Goals it reads. */
  goalIds: string[];
}

interface MeasureInfo {
  display: string;
  unit?: string;
}

let measures: Map<string, MeasureInfo> | undefined;

/**
 * The LOINC measures we know a unit for: the observation rules of terminology/ (the codes the
 * device mapping produces, with their UCUM units), including their alternative codes (59408-5
 * beside 2708-6).
 */
export function knownMeasures(): Map<string, MeasureInfo> {
  if (measures) return measures;
  measures = new Map();
  for (const [code, rule] of terminology().rules) {
    measures.set(code, { display: rule.display, unit: rule.unit });
    if (rule.alsoCode?.code && rule.alsoCode.system === LOINC) {
      measures.set(rule.alsoCode.code, { display: rule.alsoCode.display ?? rule.display, unit: rule.unit });
    }
  }
  return measures;
}

const UNIT_MS: Record<string, number> = { s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000, wk: 7 * 86_400_000, mo: 30 * 86_400_000, a: 365 * 86_400_000 };

/** The Goals a plan reads: CarePlan.goal and activity.detail.goal, each once. */
function goalReferences(plan: fhir4.CarePlan): Array<{ reference: string; path: string }> {
  const refs: Array<{ reference: string; path: string }> = [];
  const seen = new Set<string>();
  const add = (reference: string | undefined, path: string) => {
    if (!reference || seen.has(reference)) return;
    seen.add(reference);
    refs.push({ reference, path });
  };
  plan.goal?.forEach((g, i) => add(g.reference, `CarePlan.goal[${i}]`));
  plan.activity?.forEach((a, i) => a.detail?.goal?.forEach((g, j) => add(g.reference, `CarePlan.activity[${i}].detail.goal[${j}]`)));
  return refs;
}

/** Stored Goal ids a CarePlan refers to (`Goal/x`), to load before compiling. */
export function storedGoalIds(plan: fhir4.CarePlan): string[] {
  return goalReferences(plan)
    .map((r) => /^Goal\/([A-Za-z0-9\-.]{1,64})$/.exec(r.reference)?.[1])
    .filter((id): id is string => id !== undefined);
}

const INACTIVE_GOAL = new Set(['cancelled', 'entered-in-error', 'rejected', 'completed']);

/**
 * The limits of one Goal, with an issue for each target that cannot be acted on: a measure
 * that is not a known LOINC code, a unit not comparable with the measure's, low above high.
 */
export function goalLimits(goal: fhir4.Goal, ref: string, path: string, issues: Issue[]): Limit[] {
  const limits: Limit[] = [];
  const critical = goal.priority?.coding?.some((c) => c.system === GOAL_PRIORITY && c.code === 'high-priority') ?? false;
  goal.target?.forEach((target, j) => {
    const at = `${path}.target[${j}]`;
    if (!target.measure || !target.detailRange) return;
    const loinc = target.measure.coding?.find((c) => c.system === LOINC && c.code);
    if (!loinc) {
      issues.push({ code: 'code-invalid', diagnostics: `${at}.measure: a limit's measure must be a LOINC coding`, expression: [`${at}.measure`] });
      return;
    }
    const info = knownMeasures().get(loinc.code!);
    if (!info) {
      issues.push({ code: 'code-invalid', diagnostics: `${at}.measure: unknown LOINC measure ${loinc.code}`, expression: [`${at}.measure`] });
      return;
    }
    if (!info.unit) {
      issues.push({ code: 'business-rule', diagnostics: `${at}.measure: ${loinc.code} (${info.display}) has no quantity of its own; set limits on its components`, expression: [`${at}.measure`] });
      return;
    }
    const bounds: Partial<Record<'low' | 'high', { value: number; unit: string }>> = {};
    for (const side of ['low', 'high'] as const) {
      const q = target.detailRange[side];
      if (!q) continue;
      const unit = q.code ?? q.unit;
      if (q.value === undefined || !unit) {
        issues.push({ code: 'required', diagnostics: `${at}.detailRange.${side}: needs a value and a UCUM code`, expression: [`${at}.detailRange.${side}`] });
        continue;
      }
      if ((q.system && q.system !== UCUM_SYSTEM) || convertUnit(1, unit, info.unit) === undefined) {
        issues.push({
          code: 'business-rule',
          diagnostics: `${at}.detailRange.${side}: unit '${unit}' is not comparable with ${info.display} (${loinc.code}, measured in ${info.unit})`,
          expression: [`${at}.detailRange.${side}.code`],
        });
        continue;
      }
      bounds[side] = { value: q.value, unit };
    }
    if (!bounds.low && !bounds.high) return;
    // The limit keeps the unit the physician wrote; readings are converted to it.
    const unit = (bounds.high ?? bounds.low)!.unit;
    const low = bounds.low && convertUnit(bounds.low.value, bounds.low.unit, unit)!;
    const high = bounds.high && convertUnit(bounds.high.value, bounds.high.unit, unit)!;
    if (low !== undefined && high !== undefined && low > high) {
      issues.push({ code: 'business-rule', diagnostics: `${at}.detailRange: low (${bounds.low!.value} ${bounds.low!.unit}) is above high (${bounds.high!.value} ${bounds.high!.unit})`, expression: [`${at}.detailRange`] });
      return;
    }
    if (goal.lifecycleStatus && INACTIVE_GOAL.has(goal.lifecycleStatus)) return;
    limits.push({ measure: loinc.code!, display: info.display, unit, ...(low !== undefined ? { low } : {}), ...(high !== undefined ? { high } : {}), critical, goal: ref });
  });
  return limits;
}

function instant(text: string | undefined, end: boolean): string | undefined {
  if (!text) return undefined;
  const range = parseDateRange(text);
  return range && new Date(end ? range.high : range.low).toISOString();
}

/**
 * Whether the server acts on this plan from now on: active, a plan or order, for a Patient,
 * its period not over. Only such plans have their limits enforced on write; a draft, a
 * completed plan or one that ended (most of the R4 spec examples) is stored as sent, with
 * the limits that can be read.
 */
export function isActedOn(plan: fhir4.CarePlan, now = Date.now()): boolean {
  const end = plan.period?.end ? parseDateRange(plan.period.end)?.high : undefined;
  return plan.status === 'active' && (plan.intent === 'plan' || plan.intent === 'order') && /^Patient\//.test(plan.subject?.reference ?? '') && (end === undefined || end >= now);
}

/**
 * Compiles a CarePlan with the stored Goals it references (`goals`, by id). For a plan the server
 * acts on, throws a 422 naming every element whose limits cannot be acted on, whether or not the
 * plan claims the profile; otherwise limits that cannot be read are left out.
 */
export function compilePlan(plan: fhir4.CarePlan, goals: ReadonlyMap<string, fhir4.Goal>, strict = isActedOn(plan)): CompiledPlan {
  const issues: Issue[] = [];
  const limits: Limit[] = [];
  const goalIds: string[] = [];
  const patient = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(plan.subject?.reference ?? '')?.[1];
  for (const { reference, path } of goalReferences(plan)) {
    if (reference.startsWith('#')) {
      const index = plan.contained?.findIndex((r) => r.resourceType === 'Goal' && r.id === reference.slice(1)) ?? -1;
      if (index < 0) {
        issues.push({ code: 'not-found', diagnostics: `${path}: no contained Goal ${reference}`, expression: [path] });
        continue;
      }
      limits.push(...goalLimits(plan.contained![index] as fhir4.Goal, reference, `CarePlan.contained[${index}]`, issues));
      continue;
    }
    const id = /^Goal\/([A-Za-z0-9\-.]{1,64})$/.exec(reference)?.[1];
    if (!id) continue;
    goalIds.push(id);
    const goal = goals.get(id);
    if (!goal) {
      issues.push({ code: 'not-found', diagnostics: `${path}: ${reference} does not exist; the plan's limits cannot be read`, expression: [path] });
      continue;
    }
    // A plan acts on its own patient's readings by its own patient's limits: another patient's
    // Goal would tie one record's alerts to another's (and a Goal write would recompile both).
    if (patient !== undefined && goal.subject?.reference !== `Patient/${patient}`) {
      issues.push({ code: 'business-rule', diagnostics: `${path}: ${reference} is not a Goal of Patient/${patient}, the plan's subject; a plan reads only its own patient's Goals`, expression: [path] });
      continue;
    }
    limits.push(...goalLimits(goal, reference, `${path}.resolve()`, issues));
  }

  const schedule: ScheduledMeasure[] = [];
  plan.activity?.forEach((activity, i) => {
    const detail = activity.detail;
    const loinc = detail?.code?.coding?.find((c) => c.system === LOINC && c.code);
    if (!detail || !loinc) return;
    // Any LOINC code can be checked for presence; no unit is needed to see a reading is missing.
    const display = knownMeasures().get(loinc.code!)?.display ?? loinc.display ?? detail.code?.text ?? loinc.code!;
    const repeat = detail.scheduledTiming?.repeat;
    if (!repeat?.period || !repeat.periodUnit) return;
    const everyMs = (repeat.period * UNIT_MS[repeat.periodUnit]!) / (repeat.frequency ?? 1);
    if (detail.status === 'cancelled' || detail.status === 'stopped' || detail.status === 'completed' || detail.status === 'entered-in-error') return;
    schedule.push({ measure: loinc.code!, display, everyMs });
  });

  if (issues.length && strict) throw new OperationOutcomeError(422, issues);
  return {
    patient,
    active: plan.status === 'active' && (plan.intent === 'plan' || plan.intent === 'order'),
    periodStart: instant(plan.period?.start, false),
    periodEnd: instant(plan.period?.end, true),
    limits,
    schedule,
    goalIds,
  };
}

/** Validates a Goal written on its own that a plan acted on reads: the same checks as inside a plan. */
export function assertValidGoal(goal: fhir4.Goal): void {
  const issues: Issue[] = [];
  goalLimits(goal, `Goal/${goal.id}`, 'Goal', issues);
  if (issues.length) throw new OperationOutcomeError(422, issues);
}
