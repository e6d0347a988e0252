import type { FhirContext } from '../fhir/context';
import { type FlagEvent, type FlagKey, closeFlags, type RaisedFlag, raiseFlags } from '../monitoring/flags';
import { type CommittedWrite, type UnitOfWork, withUnitOfWork } from '../pipeline';
import { findMatchingIds } from '../search';
import type { Queryable } from '../store/db';
import { administrations, judgeDoses } from './doses';
import { activeSchedules, clocksOf, gracesOf, type Schedule } from './schedules';
import type { PatientClock } from './timing';
import { localDateTime } from './zone';

/**
 * Missed doses, judged the way missed measurements are (src/monitoring/adherence.ts): a dose is
 * judged once its grace has passed, once (medication_schedule.checked_until), doses due before
 * the request was stored are not judged, and the missed ones raise the request's one
 * `missed-dose` Flag in the unit of work of the judgement (raiseFlags: no storm, one Flag
 * counting the doses while it is active). Taking a dose again closes it (catchUp).
 */

/** Missed doses of one request share one Flag key. */
const flagKey = (requestId: string): FlagKey => ({ careplanId: requestId, measure: 'medication', direction: 'missed-dose' });
/** Doses judged per request in one check at most (a server down for months). */
const MAX_JUDGED_MS = 31 * 86_400_000;

export interface DoseCheckResult {
  requests: number;
  missed: number;
  flags: RaisedFlag[];
}

/** The taken administrations of `requestIds` between `from` and `to`, for the server (jobs). */
export async function administrationsOf(db: Queryable, requestIds: readonly string[], from: number, to: number) {
  if (requestIds.length === 0) return [];
  const ids = await findMatchingIds(db, 'MedicationAdministration', administrationQuery(requestIds, from, to));
  return administrations(db, ids);
}

export function administrationQuery(requestIds: readonly string[], from: number, to: number): URLSearchParams {
  const q = new URLSearchParams({ request: requestIds.map((id) => `MedicationRequest/${id}`).join(',') });
  q.append('effective-time', `ge${new Date(from).toISOString()}`);
  q.append('effective-time', `lt${new Date(to).toISOString()}`);
  return q;
}

async function checkSchedule(uow: UnitOfWork, s: Schedule, clock: PatientClock, grace: number, now: number): Promise<{ missed: number; flags: RaisedFlag[] }> {
  const { tx } = uow;
  // The job and $check-adherence queue here and judge each dose once.
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`medication|${s.requestId}`]);
  const { rows } = await tx.query<{ checked_until: Date | string | null }>('SELECT checked_until FROM medication_schedule WHERE request_id = $1', [s.requestId]);
  const checked = rows[0]?.checked_until ? new Date(rows[0].checked_until).getTime() : Number.NEGATIVE_INFINITY;
  const cut = now - grace;
  const from = Math.max(checked, s.storedAt, cut - MAX_JUDGED_MS);
  if (from >= cut) return { missed: 0, flags: [] };
  const taken = await administrationsOf(tx, [s.requestId], from - grace - 86_400_000, now);
  const missed = judgeDoses(s, clock, grace, from, cut, now, taken).filter((d) => d.status === 'missed');
  let flags: RaisedFlag[] = [];
  if (missed.length) {
    const { rows: fresh } = await tx.query<{ due_at: Date | string }>(
      `INSERT INTO medication_missed_dose (request_id, due_at) SELECT $1, d FROM unnest($2::timestamptz[]) AS d
       ON CONFLICT DO NOTHING RETURNING due_at`,
      [s.requestId, missed.map((d) => new Date(d.at).toISOString())],
    );
    const events: FlagEvent[] = fresh.map((r) => {
      const at = new Date(r.due_at).getTime();
      const due = localDateTime(clock.zone, at);
      return {
        ...flagKey(s.requestId),
        basis: 'MedicationRequest',
        patient: s.patient,
        display: s.compiled.medication,
        coding: s.compiled.coding ?? { display: s.compiled.medication },
        critical: false,
        time: new Date(at).toISOString(),
        text: `${s.compiled.medication}: dose due ${due} not taken within ${Math.round(grace / 60_000)} min`,
        window: { start: new Date(at - grace).toISOString(), end: new Date(at + grace).toISOString() },
      };
    });
    flags = await raiseFlags(uow, events);
    if (flags.length && fresh.length) {
      await tx.query('UPDATE medication_missed_dose SET flag_id = $2 WHERE request_id = $1 AND flag_id IS NULL', [s.requestId, flags[0]!.id]);
    }
  }
  await tx.query('UPDATE medication_schedule SET checked_until = $2 WHERE request_id = $1', [s.requestId, new Date(cut).toISOString()]);
  return { missed: missed.length, flags };
}

/** Judges the doses of every active schedule (or those of `requestIds`) whose grace ended by `now`: a short unit per request. */
export async function checkDoses(ctx: FhirContext, now: Date, requestIds?: readonly string[]): Promise<DoseCheckResult> {
  const schedules = await activeSchedules(ctx.db, requestIds);
  const clocks = await clocksOf(ctx.db, schedules.map((s) => s.patient), ctx.config.defaultTimeZone);
  const graces = await gracesOf(ctx.db, schedules, ctx.config.medicationGraceMs);
  const result: DoseCheckResult = { requests: schedules.length, missed: 0, flags: [] };
  for (const s of schedules) {
    const outcome = await withUnitOfWork(ctx, (uow) => checkSchedule(uow, s, clocks.get(s.patient)!, graces.get(s.requestId)!, now.getTime()));
    result.missed += outcome.missed;
    result.flags.push(...outcome.flags);
  }
  return result;
}

/**
 * rules stage, for committed MedicationAdministrations: a dose taken at or after the window of
 * the first missed dose not yet caught up with closes the request's missed-dose Flag, in the
 * administration's own transaction.
 */
export async function catchUp(ctx: FhirContext, uow: UnitOfWork, committed: readonly CommittedWrite[]): Promise<void> {
  const written = committed.filter((w) => w.type === 'MedicationAdministration' && w.resource);
  if (written.length === 0) return;
  const taken = await administrations(uow.tx, written.map((w) => w.id));
  if (taken.length === 0) return;
  const requestIds = [...new Set(taken.map((a) => a.requestId))];
  // The judgement's lock: a check running now either sees this administration (it waits for this
  // commit) or has committed its missed doses, which the query below then reads.
  await uow.tx.query('SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY 1) s', [requestIds.map((id) => `medication|${id}`)]);
  const { rows } = await uow.tx.query<{ request_id: string; first: Date | string }>(
    'SELECT request_id, min(due_at) AS first FROM medication_missed_dose WHERE request_id = ANY($1::text[]) AND NOT caught_up GROUP BY request_id',
    [requestIds],
  );
  if (rows.length === 0) return;
  const graces = await gracesOf(uow.tx, await activeSchedules(uow.tx, rows.map((r) => r.request_id)), ctx.config.medicationGraceMs);
  const caughtUp: Array<{ requestId: string; at: number }> = [];
  for (const r of rows) {
    const opens = new Date(r.first).getTime() - (graces.get(r.request_id) ?? ctx.config.medicationGraceMs);
    const at = taken.filter((a) => a.requestId === r.request_id && a.at >= opens).map((a) => a.at);
    if (at.length) caughtUp.push({ requestId: r.request_id, at: Math.min(...at) });
  }
  if (caughtUp.length === 0) return;
  await uow.tx.query('UPDATE medication_missed_dose SET caught_up = true WHERE request_id = ANY($1::text[]) AND NOT caught_up', [caughtUp.map((c) => c.requestId)]);
  for (const c of caughtUp) await closeFlags(uow, [flagKey(c.requestId)], new Date(c.at).toISOString());
}

/** Closes the missed-dose Flags of requests that are no longer acted on. */
export async function closeMissedDoseFlags(uow: UnitOfWork, requestIds: readonly string[], end: string): Promise<void> {
  if (requestIds.length === 0) return;
  await closeFlags(uow, requestIds.map(flagKey), end);
}
