import { oneOf } from '../kernel/sql-any';
import type { Queryable } from '../store/db';
import { readResources } from '../store/repository';
import { gracePeriodOf, type CompiledRequest, type Moment, type PatientClock } from './timing';
import { isTimeZone } from './zone';

/**
 * medication_schedule: every MedicationRequest for a Patient, compiled, written in the request's
 * own transaction; and what the schedules read at use time (the patient's zone, a CarePlan's
 * grace period), which can change after the request was written.
 */

export const TIMEZONE_URL = 'http://hl7.org/fhir/StructureDefinition/timezone';
/**
 * A patient's own time of a daily event (repeated, one per event): sub-extensions `event`
 * (valueCode, an R4 EventTiming code such as CM for breakfast or HS for bedtime) and `time`
 * (valueTime, local). Doses given by `when` follow it; the server's table is the fallback.
 */
export const ROUTINE_URL = 'http://rpm.example.org/fhir/StructureDefinition/patient-event-time';

/** The routine entries a Patient records, as written, each with its place (for the validate stage's issues). */
export function routineEntries(patient: fhir4.Patient | undefined): Array<{ at: string; event?: string; time?: string }> {
  const entries: Array<{ at: string; event?: string; time?: string }> = [];
  (patient?.extension ?? []).forEach((ext, i) => {
    if (ext.url !== ROUTINE_URL) return;
    const event = ext.extension?.find((e) => e.url === 'event')?.valueCode;
    const time = ext.extension?.find((e) => e.url === 'time')?.valueTime;
    entries.push({ at: `Patient.extension[${i}]`, ...(event ? { event } : {}), ...(time ? { time } : {}) });
  });
  return entries;
}

/** The routine a Patient records: event code → local minute of the day (valid entries only; the validate stage refuses the others). */
export function routineOf(patient: fhir4.Patient | undefined): Map<string, number> {
  const routine = new Map<string, number>();
  for (const { event, time } of routineEntries(patient)) {
    const hm = /^([01]\d|2[0-3]):([0-5]\d)(:[0-5]\d(\.\d+)?)?$/.exec(time ?? '');
    if (event && hm) routine.set(event, Number(hm[1]) * 60 + Number(hm[2]));
  }
  return routine;
}

export interface Schedule {
  requestId: string;
  patient: string;
  storedAt: number;
  checkedUntil?: number;
  compiled: CompiledRequest;
}

export async function storeSchedules(tx: Queryable, requests: ReadonlyArray<{ id: string; compiled?: CompiledRequest }>): Promise<void> {
  const gone = requests.filter((r) => !r.compiled?.patient).map((r) => r.id);
  if (gone.length) await tx.query('DELETE FROM medication_schedule WHERE request_id = ANY($1::text[])', [gone]);
  const kept = requests.filter((r) => r.compiled?.patient);
  if (kept.length === 0) return;
  await tx.query(
    `INSERT INTO medication_schedule (request_id, patient, active, compiled, stored_at)
     SELECT id, p, a, c, now() FROM unnest($1::text[], $2::text[], $3::bool[], $4::jsonb[]) AS v(id, p, a, c)
     ON CONFLICT (request_id) DO UPDATE SET patient = EXCLUDED.patient, active = EXCLUDED.active, compiled = EXCLUDED.compiled`,
    [kept.map((r) => r.id), kept.map((r) => r.compiled!.patient), kept.map((r) => r.compiled!.active), kept.map((r) => JSON.stringify(r.compiled))],
  );
}

interface Row {
  request_id: string;
  patient: string;
  stored_at: Date | string;
  checked_until: Date | string | null;
  compiled: CompiledRequest;
}

const toSchedule = (r: Row): Schedule => ({
  requestId: r.request_id,
  patient: r.patient,
  storedAt: new Date(r.stored_at).getTime(),
  ...(r.checked_until ? { checkedUntil: new Date(r.checked_until).getTime() } : {}),
  compiled: r.compiled,
});

/** The active schedules with doses due: of these requests, or every one (the reminder and judgement jobs). */
export async function activeSchedules(db: Queryable, requestIds?: readonly string[]): Promise<Schedule[]> {
  const requests = requestIds && oneOf('request_id', 1, requestIds);
  const { rows } = await db.query<Row>(
    `SELECT request_id, patient, stored_at, checked_until, compiled FROM medication_schedule
      WHERE active AND compiled->>'asNeeded' = 'false' ${requests ? `AND ${requests.sql}` : ''} ORDER BY request_id`,
    requests ? [requests.value] : [],
  );
  return rows.map(toSchedule);
}

/** The start each of these requests' active schedule was compiled with (none for a schedule not active: it starts anew). */
export async function activeStarts(db: Queryable, requestIds: readonly string[]): Promise<Map<string, Moment>> {
  if (requestIds.length === 0) return new Map();
  const { rows } = await db.query<{ request_id: string; start: Moment | null }>(
    `SELECT request_id, compiled->'start' AS start FROM medication_schedule WHERE active AND request_id = ANY($1::text[])`,
    [requestIds],
  );
  return new Map(rows.filter((r) => r.start !== null).map((r) => [r.request_id, r.start!]));
}

/** Each patient's clock: IANA zone (Patient timezone extension, else `fallback`) and own routine. */
export async function clocksOf(db: Queryable, patients: readonly string[], fallback: string): Promise<Map<string, PatientClock>> {
  const stored = await readResources<fhir4.Patient>(db, 'Patient', [...new Set(patients)]);
  const clocks = new Map<string, PatientClock>();
  for (const p of patients) {
    const patient = stored.get(p);
    const code = patient?.extension?.find((e) => e.url === TIMEZONE_URL)?.valueCode;
    const routine = routineOf(patient);
    clocks.set(p, { zone: code && isTimeZone(code) ? code : fallback, ...(routine.size ? { routine } : {}) });
  }
  return clocks;
}

/**
 * The grace period of each schedule: the request's own, else that of a CarePlan it is based on,
 * else `fallback`. CarePlans are read now, so a changed plan applies from its next judgement.
 */
export async function gracesOf(db: Queryable, schedules: readonly Schedule[], fallback: number): Promise<Map<string, number>> {
  const planIds = schedules.filter((s) => s.compiled.graceMs === undefined).flatMap((s) => s.compiled.carePlanIds);
  const plans = planIds.length ? await readResources<fhir4.CarePlan>(db, 'CarePlan', [...new Set(planIds)]) : new Map<string, fhir4.CarePlan>();
  const graces = new Map<string, number>();
  for (const s of schedules) {
    let grace = s.compiled.graceMs;
    for (const id of s.compiled.carePlanIds) {
      const plan = plans.get(id);
      if (grace === undefined && plan) grace = gracePeriodOf(plan, 'CarePlan.extension', []);
    }
    graces.set(s.requestId, grace ?? fallback);
  }
  return graces;
}
