import type { FhirContext } from '../fhir/context';
import { newResourceId } from '../kernel/id';
import { withUnitOfWork } from '../pipeline';
import { activeSchedules, clocksOf } from './schedules';
import { dosesBetween } from './timing';
import { localDateTime } from './zone';

/**
 * Reminders before each due dose. The job writes a Communication (category `reminder`, about the
 * MedicationRequest, for the patient) through the unit of work, so a Subscription on
 * Communication (`Communication?category=reminder&patient=…`, the home tablet's) is notified
 * by monitoring's outbox like for any other write: queued in the same transaction, delivered
 * with retries. medication_reminder makes each dose reminded once, across processes.
 */

export const DOSE_DUE_URL = 'http://rpm.example.org/fhir/StructureDefinition/reminder-dose-due';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/communication-category';
/** Reminders written per unit of work: one transaction stays short on the embedded database. */
const BATCH = 100;

interface Pending {
  requestId: string;
  patient: string;
  at: number;
  text: string;
  due: string;
}

function reminder(p: Pending, id: string, now: string): fhir4.Communication {
  return {
    resourceType: 'Communication',
    id,
    status: 'completed',
    category: [{ coding: [{ system: CATEGORY, code: 'reminder', display: 'Reminder' }] }],
    subject: { reference: `Patient/${p.patient}` },
    about: [{ reference: `MedicationRequest/${p.requestId}` }],
    basedOn: [{ reference: `MedicationRequest/${p.requestId}` }],
    sent: now,
    payload: [{ contentString: p.text }],
    extension: [{ url: DOSE_DUE_URL, valueDateTime: p.due }],
  };
}

/** Writes the reminders of the doses due in (now, now + lead]; returns how many were new. */
export async function sendReminders(ctx: FhirContext, now: Date): Promise<number> {
  const lead = ctx.config.medicationReminderLeadMs;
  const schedules = await activeSchedules(ctx.db);
  const clocks = await clocksOf(ctx.db, schedules.map((s) => s.patient), ctx.config.defaultTimeZone);
  const pending: Pending[] = [];
  for (const s of schedules) {
    const clock = clocks.get(s.patient)!;
    const { zone } = clock;
    for (const d of dosesBetween(s.compiled, clock, now.getTime() + 1, now.getTime() + lead + 1)) {
      const due = localDateTime(zone, d.at);
      const text = s.compiled.instructions.find((i) => i.index === d.instruction)?.text;
      pending.push({ requestId: s.requestId, patient: s.patient, at: d.at, due, text: `${s.compiled.medication} due at ${due}${text ? `: ${text}` : ''}` });
    }
  }
  let sent = 0;
  for (let i = 0; i < pending.length; i += BATCH) {
    const batch = pending.slice(i, i + BATCH);
    sent += await withUnitOfWork(ctx, async (uow) => {
      // Claim first: only the doses this unit claimed get a Communication.
      const { rows } = await uow.tx.query<{ request_id: string; due_at: Date | string; communication_id: string }>(
        `INSERT INTO medication_reminder (request_id, due_at, communication_id)
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[]) ON CONFLICT DO NOTHING RETURNING request_id, due_at, communication_id`,
        [batch.map((p) => p.requestId), batch.map((p) => new Date(p.at).toISOString()), batch.map(() => newResourceId())],
      );
      if (rows.length === 0) return 0;
      const byKey = new Map(batch.map((p) => [`${p.requestId}|${p.at}`, p]));
      const stamp = now.toISOString();
      await uow.apply(rows.map((r) => ({ kind: 'create', type: 'Communication', id: r.communication_id, resource: reminder(byKey.get(`${r.request_id}|${new Date(r.due_at).getTime()}`)!, r.communication_id, stamp) })));
      return rows.length;
    });
  }
  return sent;
}
