import type { ErasedCompartment, UnitOfWork } from '../pipeline';

/**
 * erase hook: an erased patient's Withings link goes with them — the account (its encrypted
 * tokens, sync cursor and state) and any link still in progress. Withings' notify subscriptions
 * cannot be revoked inside the erasing transaction; a later notification for the forgotten user
 * finds no account and is answered 404 (src/withings/notify.ts), so nothing is fetched again.
 */
export async function forgetWithings(uow: UnitOfWork, erased: ErasedCompartment): Promise<void> {
  await uow.tx.query(
    `WITH accounts AS (DELETE FROM withings_account WHERE patient_id = $1)
     DELETE FROM withings_link_ticket WHERE patient_id = $1`,
    [erased.patientId],
  );
}
