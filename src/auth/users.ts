import { randomBytes } from 'node:crypto';
import { hashSecret, PASSWORD_COST, verifySecret } from './secrets';
import type { Budget } from './throttle';
import type { AuthConfig } from '../config';
import type { Queryable } from '../store/db';
import type { AuthState } from './state';
import { revokeTokens } from './tokens';

/**
 * Local users of the authorization server. Passwords are kept as scrypt hashes whose string
 * names the cost parameters, so they can be raised later without breaking stored hashes.
 */
export interface User {
  username: string;
  /** `Patient/ID`, `Practitioner/ID` or `RelatedPerson/ID` (a caregiver); absent for an administrator without a FHIR identity. */
  fhirUser?: string;
  passwordHash?: string;
}

/** A patient user gets their own Patient as context; a caregiver their linked patient's; anyone else is a clinician. */
export function isPatientUser(fhirUser: string | undefined): boolean {
  return fhirUser?.startsWith('Patient/') ?? false;
}

/** A caregiver (a RelatedPerson of a patient): sees what that patient's Consents grant them, read-only. */
export function isCaregiverUser(fhirUser: string | undefined): boolean {
  return fhirUser?.startsWith('RelatedPerson/') ?? false;
}

export function hashPassword(password: string): Promise<string> {
  return hashSecret(password, PASSWORD_COST);
}

export function verifyPassword(password: string, stored: string | undefined): Promise<boolean> {
  return verifySecret(password, stored);
}

const FHIR_USER = /^(Patient|Practitioner|RelatedPerson)\/[A-Za-z0-9\-.]{1,64}$/;

export function validFhirUser(value: string): boolean {
  return FHIR_USER.test(value);
}

export async function addUser(db: Queryable, user: { username: string; password: string; fhirUser?: string }): Promise<void> {
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(user.username)) throw new Error('username must be 1-64 letters, digits or . _ @ -');
  if (user.password.length < 8) throw new Error('password must have at least 8 characters');
  if (user.fhirUser !== undefined && !validFhirUser(user.fhirUser)) throw new Error('fhir-user must be Practitioner/ID, Patient/ID or RelatedPerson/ID');
  const { rowCount } = await db.query(
    'INSERT INTO auth_user (username, password_hash, fhir_user) VALUES ($1, $2, $3) ON CONFLICT (username) DO NOTHING',
    [user.username, await hashPassword(user.password), user.fhirUser ?? null],
  );
  if (rowCount === 0) throw new Error(`user ${user.username} exists already`);
}

export async function findUser(db: Queryable, username: string): Promise<User | undefined> {
  const { rows } = await db.query<{ username: string; password_hash: string | null; fhir_user: string | null }>(
    'SELECT username, password_hash, fhir_user FROM auth_user WHERE username = $1',
    [username],
  );
  const r = rows[0];
  if (!r) return undefined;
  return { username: r.username, ...(r.fhir_user ? { fhirUser: r.fhir_user } : {}), ...(r.password_hash ? { passwordHash: r.password_hash } : {}) };
}

export async function listUsers(db: Queryable): Promise<Array<{ username: string; fhir_user: string | null }>> {
  return (await db.query<{ username: string; fhir_user: string | null }>('SELECT username, fhir_user FROM auth_user ORDER BY username')).rows;
}

/**
 * Removes a local user and everything they were granted, in one transaction: their sessions, their
 * unspent authorization codes, and every token of theirs, refresh and access (revoked: refused at
 * once here, within TOKEN_CACHE_MS by a running server). The Subscriptions they set are silent from
 * the commit on and then turned off (decision 032). The token endpoint also refuses a refresh for a
 * user who no longer exists, should a grant slip past this (./grant-standing.ts).
 */
export async function removeUser(state: AuthState, username: string): Promise<boolean> {
  return state.db.transaction(async (tx) => {
    const removed = (await tx.query('DELETE FROM auth_user WHERE username = $1', [username])).rowCount > 0;
    if (!removed) return false;
    await tx.query('DELETE FROM auth_session WHERE username = $1', [username]);
    await tx.query('DELETE FROM auth_code WHERE username = $1 AND used_at IS NULL', [username]);
    await revokeTokens(state, { subject: username }, tx);
    return true;
  });
}

/**
 * Login throttling budgets, counted before the password is checked (src/auth/throttle.ts), so
 * that guessing gains nothing past a limit however many guesses run at once:
 * - per account from one address (LOGIN_MAX_FAILURES_PER_ACCOUNT): the guesser is stopped, the
 *   account's owner elsewhere is not (a lock per account alone let anyone who knows a username
 *   lock that clinician out with five wrong passwords);
 * - per account from everywhere (…_PER_ACCOUNT_TOTAL, 100 as NIST SP 800-63B 5.2.2 allows):
 *   the ceiling for guessing spread over many addresses;
 * - per address (…_PER_ADDRESS): one address guessing many accounts.
 * A successful login is forgiven and clears its account's counts (not its address's: one good
 * password must not reopen a guessing address).
 */
export function loginBudgets(config: AuthConfig, username: string, address: string): Budget[] {
  return [
    { bucket: accountBuckets(username, address)[0], limit: config.loginMaxFailuresPerAccount, windowMs: config.loginFailureWindowMs },
    { bucket: accountBuckets(username, address)[1], limit: config.loginMaxFailuresPerAccountTotal, windowMs: config.loginFailureWindowMs },
    { bucket: `login-addr:${address}`, limit: config.loginMaxFailuresPerAddress, windowMs: config.loginFailureWindowMs },
  ];
}

/** The account's buckets: from this address, and from everywhere. */
export const accountBuckets = (username: string, address: string): [string, string] => [
  `login-user-addr:${username.toLowerCase()}|${address}`,
  `login-user:${username.toLowerCase()}`,
];

/**
 * Development convenience: on the first start of an empty embedded database, an `admin` login
 * (no FHIR identity: a clinician who picks patients) with a random password, printed once.
 */
export async function ensureDevelopmentAdmin(db: Queryable, embedded: boolean): Promise<{ username: string; password: string } | undefined> {
  if (!embedded) return undefined;
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM auth_user');
  if (Number(rows[0]!.n) > 0) return undefined;
  const password = randomBytes(12).toString('base64url');
  await addUser(db, { username: 'admin', password });
  return { username: 'admin', password };
}
