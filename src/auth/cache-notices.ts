import { forgetConsents } from '../access/consent';
import type { Db } from '../store/db';
import type { VerifiedTokens } from './token-cache';

/**
 * How one node tells the others to drop what they cached about access (decision 024's
 * amendment): a NOTIFY sent in the transaction of the change, heard at its commit by every node
 * that LISTENs (DATABASE_LISTEN_URL behind PgBouncer). The caches' own bounds (TOKEN_CACHE_MS,
 * CONSENT_CACHE_MS) remain what holds when a node's listening connection is down.
 */
const TOKENS_REVOKED = 'fhir_tokens_revoked';
const CONSENTS_CHANGED = 'fhir_consents_changed';

/** The statement that tells every node to forget the tokens it verified (in a transaction: at its commit). */
export const TOKENS_REVOKED_NOTICE = `SELECT pg_notify('${TOKENS_REVOKED}', '')`;
/** As a SQL expression, for a statement that notifies only when it revoked an access token. */
export const TOKENS_REVOKED_CALL = `pg_notify('${TOKENS_REVOKED}', '')`;
/** The statement that tells every node to forget the Consents it cached. */
export const CONSENTS_CHANGED_NOTICE = `SELECT pg_notify('${CONSENTS_CHANGED}', '')`;

/** Listens for the notices of other nodes (and this one's own, harmlessly); answers how to stop. */
export async function listenForCacheNotices(db: Db, verifiedTokens: VerifiedTokens): Promise<() => Promise<void>> {
  const stopTokens = await db.listen(TOKENS_REVOKED, () => verifiedTokens.forget());
  const stopConsents = await db.listen(CONSENTS_CHANGED, () => forgetConsents()).catch(async (err: unknown) => {
    await stopTokens();
    throw err;
  });
  return async () => {
    await stopTokens();
    await stopConsents();
  };
}
