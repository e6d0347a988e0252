import type { ErasedCompartment, UnitOfWork } from '../pipeline';

/**
 * erase hook: an export whose files hold the erased patient is withdrawn whole (its status and
 * files then answer 404): files are copies of the record, and a manifest with a file cut out of
 * it would misstate its counts. A file holds the patient when one of its lines is the Patient or
 * refers to it; exports live only until BULK_FILE_TTL, so the scan is over little text.
 */
export async function forgetExports(uow: UnitOfWork, erased: ErasedCompartment): Promise<void> {
  const id = erased.patientId;
  await uow.tx.query(
    `DELETE FROM bulk_export_job j WHERE EXISTS (
       SELECT 1 FROM bulk_export_chunk c WHERE c.job_id = j.id
          AND (strpos(c.ndjson, $1) > 0 OR (c.file = 'Patient' AND (strpos(c.ndjson, $2) > 0 OR strpos(c.ndjson, $3) > 0))))`,
    [`"Patient/${id}"`, `"id":"${id}"`, `"id": "${id}"`],
  );
}
