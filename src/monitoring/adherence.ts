import type { FhirContext } from '../fhir/context';
import { type UnitOfWork, withUnitOfWork } from '../pipeline';
import { readingTimes } from '../search';
import { type FlagEvent, type RaisedFlag, raiseFlags } from './flags';
import { isJudged } from './judge';
import { type ScheduledPlan, scheduledPlans } from './plans';

/**
 * Missed measurements. A plan's activity due every L (Timing period / frequency) cuts time
 * into windows [anchor + kL, anchor + (k+1)L), anchored at the plan's period start (else the
 * time it was stored). A window that has ended, ended after the plan was stored and holds no
 * Observation of the measure for the patient is missed. monitoring_adherence remembers per
 * plan and measure how far windows were judged, so a window is judged once.
 */

/** Bound on the windows judged per plan and measure in one check (a server down for months). */
const MAX_WINDOWS = 1000;

export interface AdherenceResult {
  plans: number;
  missed: number;
  flags: RaisedFlag[];
}

const hours = (ms: number) => (ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : `${Math.round(ms / 60_000)} min`);

async function checkPlan(uow: UnitOfWork, plan: ScheduledPlan, now: number): Promise<{ missed: number; flags: RaisedFlag[] }> {
  const { tx } = uow;
  // Two checks of one plan (scheduler and $check-adherence) queue here and judge each window once.
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`adherence|${plan.careplanId}`]);
  const { rows } = await tx.query<{ measure: string; checked_until: Date | string }>(
    'SELECT measure, checked_until FROM monitoring_adherence WHERE careplan_id = $1',
    [plan.careplanId],
  );
  const checked = new Map(rows.map((r) => [r.measure, new Date(r.checked_until).getTime()]));
  const events: FlagEvent[] = [];
  const advanced: Array<{ measure: string; until: number }> = [];
  const anchor = plan.periodStart ?? plan.storedAt;
  const until = Math.min(now, plan.periodEnd ?? Number.POSITIVE_INFINITY);
  for (const s of plan.schedule) {
    const after = Math.max(checked.get(s.measure) ?? Number.NEGATIVE_INFINITY, plan.storedAt);
    // First window ending after `after`, last ending at or before `until`.
    const first = Math.max(0, Math.floor((after - anchor) / s.everyMs));
    const last = Math.floor((until - anchor) / s.everyMs) - 1;
    if (last < first) continue;
    const from = Math.max(first, last - MAX_WINDOWS + 1);
    const windows: Array<{ start: number; end: number }> = [];
    for (let k = from; k <= last; k++) {
      const end = anchor + (k + 1) * s.everyMs;
      if (end > after) windows.push({ start: anchor + k * s.everyMs, end });
    }
    if (windows.length === 0) continue;
    const times = await readingTimes(tx, {
      patient: plan.patient,
      code: s.measure,
      from: new Date(windows[0]!.start).toISOString(),
      to: new Date(windows[windows.length - 1]!.end).toISOString(),
    });
    // A reading the rules do not judge (entered-in-error, cancelled, a shared device's reading
    // nobody has confirmed as the patient's) is no measurement taken.
    const taken = times.filter(isJudged).map((r) => r.at);
    for (const w of windows) {
      if (taken.some((t) => t >= w.start && t < w.end)) continue;
      const window = { start: new Date(w.start).toISOString(), end: new Date(w.end).toISOString() };
      events.push({
        patient: plan.patient,
        careplanId: plan.careplanId,
        measure: s.measure,
        display: s.display,
        direction: 'missed',
        critical: false,
        time: window.end,
        text: `${s.display} not measured between ${window.start} and ${window.end} (due every ${hours(s.everyMs)})`,
        window,
      });
    }
    advanced.push({ measure: s.measure, until: windows[windows.length - 1]!.end });
  }
  const flags = await raiseFlags(uow, events);
  if (advanced.length) {
    await tx.query(
      `INSERT INTO monitoring_adherence (careplan_id, measure, checked_until)
       SELECT $1, m, u FROM unnest($2::text[], $3::timestamptz[]) AS v(m, u)
       ON CONFLICT (careplan_id, measure) DO UPDATE SET checked_until = GREATEST(monitoring_adherence.checked_until, EXCLUDED.checked_until)`,
      [plan.careplanId, advanced.map((a) => a.measure), advanced.map((a) => new Date(a.until).toISOString())],
    );
  }
  return { missed: events.length, flags };
}

/**
 * Judges the due windows of every active plan (or one) that ended by `now`: a short unit of work
 * per plan, whose Flags reach the after-commit stage (notifications) like any other write.
 */
export async function checkAdherence(ctx: FhirContext, now: Date, careplanIds?: readonly string[]): Promise<AdherenceResult> {
  const plans = await scheduledPlans(ctx.db, careplanIds);
  const result: AdherenceResult = { plans: plans.length, missed: 0, flags: [] };
  for (const plan of plans) {
    const outcome = await withUnitOfWork(ctx, (uow) => checkPlan(uow, plan, now.getTime()));
    result.missed += outcome.missed;
    result.flags.push(...outcome.flags);
  }
  return result;
}
