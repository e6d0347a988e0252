import { oneOf } from '../kernel/sql-any';
import type { Queryable } from '../store/db';
import { readResources } from '../store/repository';
import type { PlanLimits } from './judge';
import { compilePlan, type CompiledPlan, type ScheduledMeasure, storedGoalIds } from './plan';

/**
 * monitoring_plan: the compiled limits and schedule of every CarePlan with a Patient subject,
 * written in the transaction of the CarePlan (or of a Goal it reads).
 */

/** The stored, live Goals of these ids. */
export function loadGoals(tx: Queryable, ids: readonly string[]): Promise<Map<string, fhir4.Goal>> {
  return readResources<fhir4.Goal>(tx, 'Goal', ids);
}

export async function storePlans(tx: Queryable, plans: ReadonlyArray<{ id: string; compiled?: CompiledPlan }>): Promise<void> {
  const gone = plans.filter((p) => !p.compiled?.patient).map((p) => p.id);
  if (gone.length) await tx.query('DELETE FROM monitoring_plan WHERE careplan_id = ANY($1::text[])', [gone]);
  const kept = plans.filter((p) => p.compiled?.patient);
  if (kept.length === 0) return;
  await tx.query(
    `INSERT INTO monitoring_plan (careplan_id, patient, active, period_start, period_end, limits, schedule, goal_ids, stored_at)
     SELECT id, patient, active, ps, pe, l, s, string_to_array(g, ' ') , now()
       FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[], $5::timestamptz[], $6::jsonb[], $7::jsonb[], $8::text[])
         AS v(id, patient, active, ps, pe, l, s, g)
     ON CONFLICT (careplan_id) DO UPDATE SET patient = EXCLUDED.patient, active = EXCLUDED.active, period_start = EXCLUDED.period_start,
       period_end = EXCLUDED.period_end, limits = EXCLUDED.limits, schedule = EXCLUDED.schedule, goal_ids = EXCLUDED.goal_ids,
       revision = nextval('monitoring_plan_revision')`,
    [
      kept.map((p) => p.id),
      kept.map((p) => p.compiled!.patient),
      kept.map((p) => p.compiled!.active),
      kept.map((p) => p.compiled!.periodStart ?? null),
      kept.map((p) => p.compiled!.periodEnd ?? null),
      kept.map((p) => JSON.stringify(p.compiled!.limits)),
      kept.map((p) => JSON.stringify(p.compiled!.schedule)),
      kept.map((p) => p.compiled!.goalIds.join(' ')),
    ],
  );
}

/** Of these Goal ids, those read by a plan the server acts on (their limits are enforced). */
export async function goalsInActivePlans(tx: Queryable, goalIds: readonly string[]): Promise<Set<string>> {
  if (goalIds.length === 0) return new Set();
  const { rows } = await tx.query<{ id: string }>(
    `SELECT DISTINCT g AS id FROM monitoring_plan, unnest(goal_ids) AS g
      WHERE goal_ids && $1::text[] AND active AND (period_end IS NULL OR period_end >= now()) AND g = ANY($1::text[])`,
    [goalIds],
  );
  return new Set(rows.map((r) => r.id));
}

/** Recompiles the stored plans that read any of these Goals (a Goal's limits changed). */
export async function recompilePlansOfGoals(tx: Queryable, goalIds: readonly string[]): Promise<void> {
  const { rows } = await tx.query<{ careplan_id: string }>('SELECT careplan_id FROM monitoring_plan WHERE goal_ids && $1::text[]', [goalIds]);
  if (rows.length === 0) return;
  const careplans = await readResources<fhir4.CarePlan>(tx, 'CarePlan', rows.map((r) => r.careplan_id));
  const goals = await loadGoals(tx, [...careplans.values()].flatMap(storedGoalIds));
  const plans: Array<{ id: string; compiled?: CompiledPlan }> = [];
  for (const [id, careplan] of careplans) {
    // The Goals were checked on their own write; a deleted one leaves the plan without its limits.
    plans.push({ id, compiled: compilePlan(careplan, goals, false) });
  }
  await storePlans(tx, plans);
}

interface PlanRow {
  careplan_id: string;
  patient: string;
  period_start: Date | string | null;
  period_end: Date | string | null;
  limits: PlanLimits['limits'];
}

/** The active plans with limits of some patients, and what each patient's were when read. */
export interface PlansRead {
  plans: PlanLimits[];
  /** Per patient asked for: its plans as `careplan_id:revision`, in careplan_id order (none: empty). */
  revisions: Map<string, string[]>;
}

/** The plans a reading is judged by: active, with limits (the lookup and its check read the same rows). */
const ACTS_ON_LIMITS = "active AND limits <> '[]'::jsonb";

const ms = (v: Date | string | null) => (v === null ? undefined : new Date(v).getTime());

/** The hot lookup: the active plans with limits of these patients, one index scan. */
export async function activePlansOf(tx: Queryable, patients: readonly string[]): Promise<PlansRead> {
  if (patients.length === 0) return { plans: [], revisions: new Map() };
  const patient = oneOf('patient', 1, patients);
  const { rows } = await tx.query<PlanRow & { revision: string }>(
    `SELECT careplan_id, patient, period_start, period_end, limits, revision::text AS revision FROM monitoring_plan
      WHERE ${patient.sql} AND ${ACTS_ON_LIMITS}`,
    [patient.value],
  );
  const revisions = new Map<string, string[]>(patients.map((p) => [p, []]));
  for (const r of [...rows].sort((x, y) => byCodeUnit(x.careplan_id, y.careplan_id))) revisions.get(r.patient)?.push(`${r.careplan_id}:${r.revision}`);
  return { plans: rows.map(toLimits), revisions };
}

/**
 * What plansUnchanged compares: every plan of the patients as `patient=careplan_id:revision`,
 * ordered by patient, then careplan_id, in C order (JavaScript's comparison of strings is by
 * UTF-16 code unit, which is C order for the ASCII of FHIR ids), joined by commas.
 */
export function plansFingerprint(revisions: ReadonlyMap<string, readonly string[]>): string {
  return [...revisions.keys()].sort(byCodeUnit).flatMap((p) => revisions.get(p)!.map((pair) => `${p}=${pair}`)).join(',');
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The check that the plans of `patients` are still those `fingerprint` (plansFingerprint) was
 * made from: it raises check_violation on the domain of migration 014 when they are not. One
 * patient is compared with `=`, as the lookup is, so that PostgreSQL keeps one generic plan.
 */
export function plansUnchanged(patients: readonly string[], fingerprint: string): { sql: string; params: unknown[] } {
  const patient = oneOf('patient', 1, patients);
  return {
    sql: `SELECT (coalesce((SELECT string_agg(patient || '=' || careplan_id || ':' || revision, ',' ORDER BY patient COLLATE "C", careplan_id COLLATE "C")
      FROM monitoring_plan WHERE ${patient.sql} AND ${ACTS_ON_LIMITS}), '') = $2::text)::monitoring_plans_unchanged`,
    params: [patient.value, fingerprint],
  };
}

/** Whether `err` is plansUnchanged's verdict that the plans changed. */
export function plansChanged(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e.code === '23514' && (e.message ?? '').includes('monitoring_plans_unchanged');
}

function toLimits(r: PlanRow): PlanLimits {
  return { careplanId: r.careplan_id, patient: r.patient, periodStart: ms(r.period_start), periodEnd: ms(r.period_end), limits: r.limits };
}

export async function planById(tx: Queryable, careplanId: string): Promise<PlanLimits | undefined> {
  const { rows } = await tx.query<PlanRow>('SELECT careplan_id, patient, period_start, period_end, limits FROM monitoring_plan WHERE careplan_id = $1', [careplanId]);
  return rows[0] && toLimits(rows[0]);
}

export interface ScheduledPlan {
  careplanId: string;
  patient: string;
  periodStart?: number;
  periodEnd?: number;
  storedAt: number;
  schedule: ScheduledMeasure[];
}

/** Active plans that schedule measurements (all, or those of `careplanIds`). */
export async function scheduledPlans(db: Queryable, careplanIds?: readonly string[]): Promise<ScheduledPlan[]> {
  const { rows } = await db.query<PlanRow & { schedule: ScheduledMeasure[]; stored_at: Date | string }>(
    `SELECT careplan_id, patient, period_start, period_end, limits, schedule, stored_at FROM monitoring_plan
      WHERE active AND schedule <> '[]'::jsonb ${careplanIds ? 'AND careplan_id = ANY($1::text[])' : ''} ORDER BY careplan_id`,
    careplanIds ? [careplanIds] : [],
  );
  return rows.map((r) => ({ careplanId: r.careplan_id, patient: r.patient, periodStart: ms(r.period_start), periodEnd: ms(r.period_end), storedAt: ms(r.stored_at)!, schedule: r.schedule }));
}
