import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import type { Queryable } from '../store/db';
import { jose } from './jose';
import { ACCEPTED_ALGS } from './keys';
import type { AuthState } from './state';
import { purgeThrottle } from './throttle';
import { TOKENS_REVOKED_CALL } from './cache-notices';

/** RFC 9068's type: an access token can never be taken for an id_token or a client assertion. */
export const ACCESS_TOKEN_TYP = 'at+jwt';

export interface AccessTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope: string;
  patient?: string;
  fhirUser?: string;
}

export interface IssuedToken {
  accessToken: string;
  expiresIn: number;
  claims: AccessTokenClaims;
}

/**
 * Signs an access token and records it by jti: the resource server accepts only recorded,
 * unrevoked tokens, so revocation is immediate in every process.
 */
export async function issueAccessToken(
  state: AuthState,
  grant: {
    clientId: string;
    scopes: readonly string[];
    subject?: string;
    patient?: string;
    /** The user's FHIR identity: recorded always (the access policy needs it), claimed only when `claimFhirUser`. */
    fhirUser?: string;
    claimFhirUser?: boolean;
    encounter?: string;
    grantId?: string;
    lifetime?: number;
  },
  db: Queryable = state.db,
): Promise<IssuedToken> {
  const key = await state.keys.signingKey();
  const urls = state.urls();
  const lifetime = Math.min(grant.lifetime ?? state.config.accessTokenLifetime, state.config.accessTokenLifetime);
  const iat = Math.floor(Date.now() / 1000);
  const claims: AccessTokenClaims = {
    iss: urls.issuer,
    sub: grant.subject ?? grant.clientId,
    aud: urls.fhirBase,
    iat,
    exp: iat + lifetime,
    jti: randomUUID(),
    client_id: grant.clientId,
    scope: grant.scopes.join(' '),
    ...(grant.patient ? { patient: grant.patient } : {}),
    ...(grant.fhirUser && grant.claimFhirUser !== false ? { fhirUser: grant.fhirUser } : {}),
  };
  await db.query(
    `INSERT INTO auth_token (jti, kind, client_id, subject, patient, scope, issued_at, expires_at, grant_id, fhir_user, encounter)
     VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), to_timestamp($8), $9, $10, $11)`,
    [claims.jti, 'access', claims.client_id, grant.subject ?? null, grant.patient ?? null, claims.scope, iat, claims.exp, grant.grantId ?? null, grant.fhirUser ?? null, grant.encounter ?? null],
  );
  const accessToken = await new (jose().SignJWT)(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: ACCESS_TOKEN_TYP }).sign(key.privateKey);
  return { accessToken, expiresIn: lifetime, claims };
}

/**
 * Why the claims of a signature-verified access token are not acceptable at this server, or
 * undefined when they are (signature and exp are checked by the caller).
 */
export function claimsProblem(state: AuthState, header: { typ?: unknown }, payload: Record<string, unknown>): string | undefined {
  const urls = state.urls();
  if (header.typ !== ACCESS_TOKEN_TYP) return `the token is not an access token (typ must be ${ACCESS_TOKEN_TYP})`;
  if (payload.iss !== urls.issuer) return 'the token was not issued by this server';
  const aud = payload.aud;
  if (!(aud === urls.fhirBase || (Array.isArray(aud) && aud.includes(urls.fhirBase)))) return `the token's audience is not ${urls.fhirBase}`;
  if (typeof payload.exp !== 'number') return 'the token has no exp';
  if (typeof payload.jti !== 'string' || typeof payload.client_id !== 'string' || typeof payload.scope !== 'string') return 'the token lacks jti, client_id or scope';
  return undefined;
}

export interface TokenRecord {
  client_id: string;
  fhir_user: string | null;
  grant_id: string | null;
  revoked: boolean;
  expired: boolean;
}

export async function tokenRecord(state: AuthState, jti: string): Promise<TokenRecord | undefined> {
  const { rows } = await state.db.query<TokenRecord>(
    'SELECT client_id, fhir_user, grant_id, revoked_at IS NOT NULL AS revoked, expires_at <= now() AS expired FROM auth_token WHERE jti = $1',
    [jti],
  );
  return rows[0];
}

/**
 * The claims of a token that is active right now (signature by a key of this server, claims,
 * exp, recorded and not revoked); undefined otherwise. For introspection and Bearer callers.
 */
export async function activeAccessToken(state: AuthState, token: string): Promise<AccessTokenClaims | undefined> {
  const verified = await verifiedByServer(state, token);
  if (!verified) return undefined;
  const { header, payload } = verified;
  if (claimsProblem(state, header, payload)) return undefined;
  if ((payload.exp as number) <= Math.floor(Date.now() / 1000)) return undefined;
  const record = await tokenRecord(state, payload.jti as string);
  if (!record || record.revoked || record.expired) return undefined;
  return payload as AccessTokenClaims;
}

/** Header and payload of a token whose signature verifies with one of this server's keys (expiry not checked). */
export async function verifiedByServer(state: AuthState, token: string): Promise<{ header: Record<string, unknown>; payload: Record<string, unknown> } | undefined> {
  try {
    const header = jose().decodeProtectedHeader(token);
    if (!ACCEPTED_ALGS.includes(header.alg as never)) return undefined;
    const key = await state.keys.verificationKey(header.kid);
    if (!key || key.alg !== header.alg) return undefined;
    const { payload } = await jose().compactVerify(token, key.publicKey, { algorithms: [key.alg] });
    const claims = JSON.parse(new TextDecoder().decode(payload)) as unknown;
    if (!claims || typeof claims !== 'object' || Array.isArray(claims)) return undefined;
    return { header: header as Record<string, unknown>, payload: claims as Record<string, unknown> };
  } catch {
    return undefined;
  }
}

/** Revokes a recorded token of `clientId`; 'not-theirs' when it was issued to another client. */
export async function revokeToken(state: AuthState, jti: string, clientId: string): Promise<'revoked' | 'unknown' | 'not-theirs'> {
  const record = await tokenRecord(state, jti);
  if (!record) return 'unknown';
  if (record.client_id !== clientId) return 'not-theirs';
  await revokeTokens(state, { jti });
  return 'revoked';
}

/**
 * Every revocation of recorded tokens goes through here: the token `jti`, every token of grant
 * `grantId`, of user `subject` (a removed user) or of client `clientId` (a removed client), on
 * `db` (a caller's transaction) or the state's. Answers how many were alive. When an access token
 * was among them, this process forgets every token it verified recently before the caller
 * answers (src/auth/token-cache.ts); other processes at its commit, and within TOKEN_CACHE_MS
 * should their listening connection be down.
 */
export async function revokeTokens(
  state: AuthState,
  which: { jti: string } | { grantId: string } | { subject: string } | { clientId: string },
  db: Queryable = state.db,
): Promise<number> {
  const [column, value] = 'jti' in which ? ['jti', which.jti] : 'grantId' in which ? ['grant_id', which.grantId] : 'subject' in which ? ['subject', which.subject] : ['client_id', which.clientId];
  // An access token revoked tells every node to forget what it verified (./cache-notices.ts), in
  // the same statement: at once where `db` commits by itself, else at the caller's commit.
  const { rows } = await db.query<{ kind: string }>(
    `WITH revoked AS (UPDATE auth_token SET revoked_at = now() WHERE ${column} = $1 AND revoked_at IS NULL RETURNING kind)
     SELECT kind, CASE WHEN kind = 'access' THEN ${TOKENS_REVOKED_CALL} END AS notice FROM revoked`,
    [value],
  );
  if (rows.some((r) => r.kind === 'access')) state.verifiedTokens.forget();
  return rows.length;
}

/** Drops expired jti, token, code, launch, session and throttling rows; their expiry already refuses them. */
export async function purgeExpired(state: AuthState): Promise<void> {
  await state.db.query("DELETE FROM auth_assertion_jti WHERE expires_at < now() - interval '1 minute'");
  await state.db.query("DELETE FROM auth_token WHERE expires_at < now() - interval '1 day'");
  // Used codes stay a day so that a replay still finds (and revokes) its grant.
  await state.db.query("DELETE FROM auth_code WHERE expires_at < now() - interval '1 day'");
  await state.db.query("DELETE FROM auth_launch WHERE expires_at < now() - interval '1 hour'");
  await state.db.query('DELETE FROM auth_request WHERE expires_at < now()');
  await state.db.query('DELETE FROM auth_session WHERE expires_at < now()');
  await purgeThrottle(state.db, Math.max(state.config.loginFailureWindowMs, state.config.tokenFailureWindowMs, 60_000));
}
