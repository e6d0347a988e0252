import { TOKENS_REVOKED_NOTICE } from './cache-notices';
import type { ErasedCompartment, UnitOfWork } from '../pipeline';
import type { VerifiedTokens } from './token-cache';

/**
 * erase hook: every grant bound to the erased patient — access and refresh tokens (a token whose
 * row is gone is refused: src/auth/strategy.ts), unused authorization codes, EHR launches,
 * pending authorization requests — and the patient's own login (auth_user whose fhirUser is the
 * Patient) with its sessions: the username may itself identify the person. One statement.
 * This server instance then forgets the tokens it verified recently, and the other nodes at the
 * commit (./cache-notices.ts); as with Consents, a request between that and the commit may
 * verify a doomed token again, for the cache's second at most.
 */
export async function forgetGrants(uow: UnitOfWork, erased: ErasedCompartment, verifiedTokens: VerifiedTokens): Promise<void> {
  const fhirUser = `Patient/${erased.patientId}`;
  await uow.tx.query(
    `WITH tokens AS (DELETE FROM auth_token WHERE patient = $1 OR fhir_user = $2 OR grant_id IN (SELECT grant_id FROM auth_code WHERE patient = $1 OR fhir_user = $2)),
          codes AS (DELETE FROM auth_code WHERE patient = $1 OR fhir_user = $2),
          launches AS (DELETE FROM auth_launch WHERE patient = $1),
          requests AS (DELETE FROM auth_request WHERE patient = $1),
          users AS (DELETE FROM auth_user WHERE fhir_user = $2 RETURNING username)
     DELETE FROM auth_session WHERE fhir_user = $2 OR username IN (SELECT username FROM users)`,
    [erased.patientId, fhirUser],
  );
  verifiedTokens.forget();
  uow.tx.later(TOKENS_REVOKED_NOTICE);
}
