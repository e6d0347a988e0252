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
       period_end = EXCLUDED.period_end, limits = EXCLUDED.limits, schedule = EXCLUDED.schedule, goal_ids = EXCLUDED.goal_ids`,
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

const ms = (v: Date | string | null) => (v === null ? undefined : new Date(v).getTime());

/** The hot lookup: the active plans with limits of these patients, one index scan. */
export async function activePlansOf(tx: Queryable, patients: readonly string[]): Promise<PlanLimits[]> {
  if (patients.length === 0) return [];
  const patient = oneOf('patient', 1, patients);
  const { rows } = await tx.query<PlanRow>(
    `SELECT careplan_id, patient, period_start, period_end, limits FROM monitoring_plan
      WHERE ${patient.sql} AND active AND limits <> '[]'::jsonb`,
    [patient.value],
  );
  return rows.map(toLimits);
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
