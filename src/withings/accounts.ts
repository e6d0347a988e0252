import { randomUUID } from 'node:crypto';
import { conflict } from '../kernel/outcome';
import type { Db, Queryable } from '../store/db';
import type { TokenSet } from './api';
import type { TokenCipher } from './cipher';

/**
 * The linked accounts and their sync job's state (table withings_account). All scheduling is
 * done with the database's clock (now()), so nodes with skewed clocks agree on what is due.
 */
export interface AccountRow {
  id: string;
  patient_id: string;
  withings_userid: string;
  status: 'active' | 'relink-needed';
  subscribed: boolean;
  cursor_lastupdate: string | null;
  next_attempt_at: Date | string;
  sync_requested_at: Date | string | null;
  attempts: number;
  lease_until: Date | string | null;
  last_success_at: Date | string | null;
  last_error: string | null;
  last_error_at: Date | string | null;
  readings_stored: string;
  readings_refused: string;
  linked_at: Date | string;
}

const iso = (v: Date | string | null) => (v === null ? undefined : new Date(v).toISOString());

/** What the operator API shows of an account: its sync state, never its tokens. */
export function accountView(row: AccountRow): Record<string, unknown> {
  const leased = row.lease_until !== null && new Date(row.lease_until).getTime() > Date.now();
  return {
    id: row.id,
    patient: { reference: `Patient/${row.patient_id}` },
    withingsUserId: row.withings_userid,
    status: row.status,
    syncing: leased,
    subscribed: row.subscribed,
    linkedAt: iso(row.linked_at),
    lastSuccess: iso(row.last_success_at),
    lastError: row.last_error ?? undefined,
    lastErrorAt: iso(row.last_error_at),
    nextAttempt: row.status === 'active' ? iso(row.next_attempt_at) : undefined,
    consecutiveFailures: row.attempts,
    cursor: row.cursor_lastupdate === null ? undefined : new Date(Number(row.cursor_lastupdate) * 1000).toISOString(),
    readingsStored: Number(row.readings_stored),
    readingsRefused: Number(row.readings_refused),
  };
}

const COLUMNS = `id, patient_id, withings_userid, status, subscribed, cursor_lastupdate, next_attempt_at, sync_requested_at, attempts, lease_until,
  last_success_at, last_error, last_error_at, readings_stored, readings_refused, linked_at`;

export async function accountById(db: Queryable, id: string): Promise<AccountRow | undefined> {
  return (await db.query<AccountRow>(`SELECT ${COLUMNS} FROM withings_account WHERE id = $1`, [id])).rows[0];
}

/**
 * One page of accounts in link order (all of them, or one patient's), after the account `after`
 * names: the operator list filters each page by the caller's policy, so it pages rather than
 * cutting the whole table at a fixed count before the filter.
 */
export async function listAccounts(db: Queryable, page: { patientId?: string; after?: AccountRow; limit: number }): Promise<AccountRow[]> {
  const params: unknown[] = [page.limit];
  const where: string[] = [];
  if (page.patientId !== undefined) where.push(`patient_id = $${params.push(page.patientId)}`);
  if (page.after) where.push(`(linked_at, id) > ($${params.push(page.after.linked_at)}::timestamptz, $${params.push(page.after.id)})`);
  const sql = `SELECT ${COLUMNS} FROM withings_account ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY linked_at, id LIMIT $1`;
  return (await db.query<AccountRow>(sql, params)).rows;
}

/**
 * Stores the tokens of a completed link: a new account, or the same Withings user linked again
 * (after a 503, or to refresh consent), which resumes where its sync stopped. A Withings user
 * already linked to another patient is a conflict: one person's readings never reach two charts.
 */
export async function storeLink(db: Db, cipher: TokenCipher, link: { patientId: string; tokens: TokenSet; linkedBy?: string }): Promise<{ id: string; created: boolean }> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{ id: string; patient_id: string }>('SELECT id, patient_id FROM withings_account WHERE withings_userid = $1 FOR UPDATE', [link.tokens.userid]);
    const existing = rows[0];
    if (existing && existing.patient_id !== link.patientId) {
      throw conflict(`this Withings account is already linked to another patient; unlink it there first`);
    }
    const id = existing?.id ?? randomUUID();
    const access = cipher.seal(link.tokens.accessToken, id);
    const refresh = cipher.seal(link.tokens.refreshToken, id);
    if (existing) {
      await tx.query(
        `UPDATE withings_account SET status = 'active', access_token = $2, refresh_token = $3, access_expires_at = now() + $4 * interval '1 second',
           token_version = token_version + 1, refresh_lock_until = NULL, scope = $5, subscribed = false, next_attempt_at = now(), attempts = 0,
           last_error = NULL, last_error_at = NULL, linked_by = $6, linked_at = now()
         WHERE id = $1`,
        [id, access, refresh, link.tokens.expiresIn, link.tokens.scope, link.linkedBy ?? null],
      );
    } else {
      await tx.query(
        `INSERT INTO withings_account (id, patient_id, withings_userid, access_token, refresh_token, access_expires_at, scope, linked_by)
         VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 second', $7, $8)`,
        [id, link.patientId, link.tokens.userid, access, refresh, link.tokens.expiresIn, link.tokens.scope, link.linkedBy ?? null],
      );
    }
    return { id, created: !existing };
  });
}

/**
 * A notification (or an operator) asks for a sync: due now. Recorded in the row, so a restart
 * between this answer and the sync loses nothing; a sync already running sees that it was asked
 * again after it started and runs once more.
 */
export async function requestSync(db: Queryable, where: { userid: string } | { id: string }): Promise<boolean> {
  const [column, value] = 'userid' in where ? ['withings_userid', where.userid] : ['id', where.id];
  const { rowCount } = await db.query(
    `UPDATE withings_account SET sync_requested_at = now(), next_attempt_at = least(next_attempt_at, now()) WHERE ${column} = $1 AND status = 'active'`,
    [value],
  );
  return rowCount > 0;
}

export interface ClaimedAccount {
  id: string;
  patientId: string;
  userid: string;
  subscribed: boolean;
  cursor?: number;
  attempts: number;
  /** Database time the claim was made: a notification after it asks for another run. */
  claimedAt: Date;
}

/**
 * Up to `limit` due accounts, leased to `owner` for `leaseMs`: FOR UPDATE SKIP LOCKED makes two
 * nodes claiming at once take different rows, and the lease keeps a row from being taken again
 * while its sync runs (a crashed node's lease simply runs out).
 */
export async function claimDue(db: Queryable, owner: string, leaseMs: number, limit: number): Promise<ClaimedAccount[]> {
  const { rows } = await db.query<{ id: string; patient_id: string; withings_userid: string; subscribed: boolean; cursor_lastupdate: string | null; attempts: number; now: Date | string }>(
    `UPDATE withings_account a SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond'
      WHERE a.id IN (SELECT id FROM withings_account
                      WHERE status = 'active' AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now())
                      ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
      RETURNING a.id, a.patient_id, a.withings_userid, a.subscribed, a.cursor_lastupdate, a.attempts, now() AS now`,
    [owner, leaseMs, limit],
  );
  return rows.map((r) => ({
    id: r.id,
    patientId: r.patient_id,
    userid: r.withings_userid,
    subscribed: r.subscribed,
    cursor: r.cursor_lastupdate === null ? undefined : Number(r.cursor_lastupdate),
    attempts: r.attempts,
    claimedAt: new Date(r.now),
  }));
}

/** Still working on it: the lease runs for another `leaseMs`. False when it was lost (unlinked, or taken over). */
export async function renewLease(db: Queryable, id: string, owner: string, leaseMs: number): Promise<boolean> {
  const { rowCount } = await db.query(`UPDATE withings_account SET lease_until = now() + $3 * interval '1 millisecond' WHERE id = $1 AND lease_owner = $2`, [id, owner, leaseMs]);
  return rowCount > 0;
}

/** Readings written (or refused) by a page of the sync, counted as they go. */
export async function countReadings(db: Queryable, id: string, stored: number, refused: number, refusal?: string): Promise<void> {
  await db.query(
    `UPDATE withings_account SET readings_stored = readings_stored + $2, readings_refused = readings_refused + $3,
       last_error = coalesce($4, last_error), last_error_at = CASE WHEN $4::text IS NULL THEN last_error_at ELSE now() END WHERE id = $1`,
    [id, stored, refused, refusal ?? null],
  );
}

export async function markSubscribed(db: Queryable, id: string): Promise<void> {
  await db.query('UPDATE withings_account SET subscribed = true WHERE id = $1', [id]);
}

/** A problem the operator should see that does not end the run (a refused notify subscription). */
export async function noteError(db: Queryable, id: string, error: string): Promise<void> {
  await db.query('UPDATE withings_account SET last_error = $2, last_error_at = now() WHERE id = $1', [id, error.slice(0, 500)]);
}

/**
 * A run that reached the end: the cursor moves, the lease is released, and the error of an earlier
 * run is cleared; what this run noted (a refused reading, a refused notify subscription) stays for
 * the operator, as the only place that says why `readings_refused` grew. The next run is the
 * fallback poll (spread by ±10 % so accounts linked together drift apart), or now when a
 * notification came in while this one ran.
 */
export async function finishRun(db: Queryable, account: ClaimedAccount, owner: string, cursor: number, pollMs: number): Promise<void> {
  const jitter = pollMs * (0.9 + Math.random() * 0.2);
  await db.query(
    `UPDATE withings_account SET cursor_lastupdate = $3, last_success_at = now(), attempts = 0,
       last_error = CASE WHEN last_error_at >= $4 THEN last_error END, last_error_at = CASE WHEN last_error_at >= $4 THEN last_error_at END,
       lease_owner = NULL, lease_until = NULL,
       next_attempt_at = CASE WHEN sync_requested_at > $4 THEN now() ELSE now() + $5 * interval '1 millisecond' END
     WHERE id = $1 AND lease_owner = $2`,
    [account.id, owner, cursor, account.claimedAt, jitter],
  );
}

/** A run that failed: the error is recorded and the next attempt set `retryInMs` away; the cursor stays. */
export async function failRun(db: Queryable, account: ClaimedAccount, owner: string, error: string, retryInMs: number, countsAsFailure: boolean): Promise<void> {
  await db.query(
    `UPDATE withings_account SET last_error = $3, last_error_at = now(), attempts = attempts + $5, lease_owner = NULL, lease_until = NULL,
       next_attempt_at = now() + $4 * interval '1 millisecond'
     WHERE id = $1 AND lease_owner = $2`,
    [account.id, owner, error.slice(0, 500), Math.round(retryInMs), countsAsFailure ? 1 : 0],
  );
}

/** A run stopped by the server stopping: due again at once, for whichever node comes first. */
export async function releaseRun(db: Queryable, account: ClaimedAccount, owner: string): Promise<void> {
  await db.query(`UPDATE withings_account SET lease_owner = NULL, lease_until = NULL, next_attempt_at = now() WHERE id = $1 AND lease_owner = $2`, [account.id, owner]);
}

/** The refresh token was refused (503): nothing more can be fetched until the user links again. */
export async function markRelinkNeeded(db: Queryable, id: string, error: string): Promise<void> {
  await db.query(
    `UPDATE withings_account SET status = 'relink-needed', last_error = $2, last_error_at = now(), lease_owner = NULL, lease_until = NULL, refresh_lock_until = NULL WHERE id = $1`,
    [id, error.slice(0, 500)],
  );
}

export async function deleteAccount(db: Queryable, id: string): Promise<void> {
  await db.query('DELETE FROM withings_account WHERE id = $1', [id]);
}
