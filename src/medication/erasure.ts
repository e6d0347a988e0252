import type { ErasedCompartment, UnitOfWork } from '../pipeline';

/** erase hook: the compiled schedules, missed doses and reminders of the erased MedicationRequests. One statement. */
export async function forgetMedication(uow: UnitOfWork, erased: ErasedCompartment): Promise<void> {
  const requests = [...(erased.resources.get('MedicationRequest') ?? [])];
  await uow.tx.query(
    `WITH schedules AS (DELETE FROM medication_schedule WHERE patient = $1 OR request_id = ANY($2::text[])),
          missed AS (DELETE FROM medication_missed_dose WHERE request_id = ANY($2::text[]))
     DELETE FROM medication_reminder WHERE request_id = ANY($2::text[])`,
    [erased.patientId, requests],
  );
}
