import { createHash, randomUUID } from 'node:crypto';
import { constantTimeEqual } from './secrets';
import { type Client } from './clients';
import { OAuthError } from './client-auth';
import { jose } from './jose';
import { ID_TOKEN_ALG } from './keys';
import { grantScopes, parseResourceScope, scopesNotCovered, splitScope } from '../access/scopes';
import { grantStandings } from './grant-standing';
import { randomToken, sha256 } from './session';
import type { AuthState } from './state';
import { issueAccessToken, revokeTokens } from './tokens';

/** RFC 6749 §4.1.2 recommends at most 10 minutes; the issue asks for 60 s. */
export const CODE_LIFETIME_S = 60;
const ID_TOKEN_LIFETIME_S = 300;
/** RFC 7636 §4.1: 43 to 128 characters of the unreserved set. */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;
/** The S256 challenge is base64url of 32 bytes: exactly 43 characters. */
export const S256_CHALLENGE = /^[A-Za-z0-9\-_]{43}$/;

/** What the user granted, carried from consent to the code and on into tokens. */
export interface Grant {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scopes: string[];
  username: string;
  fhirUser?: string;
  patient?: string;
  encounter?: string;
  needPatientBanner: boolean;
  nonce?: string;
  /** The login session, for online_access refresh tokens (they die with it). */
  session?: string;
}

/** A fresh single-use code for `grant`, stored by hash. */
export async function issueCode(state: AuthState, grant: Grant): Promise<string> {
  const code = randomToken();
  await state.db.query(
    `INSERT INTO auth_code (code_hash, grant_id, client_id, redirect_uri, code_challenge, scope, username, fhir_user, patient, encounter, need_banner, nonce, session, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now() + make_interval(secs => $14))`,
    [
      sha256(code), randomUUID(), grant.clientId, grant.redirectUri, grant.codeChallenge, grant.scopes.join(' '), grant.username,
      grant.fhirUser ?? null, grant.patient ?? null, grant.encounter ?? null, grant.needPatientBanner, grant.nonce ?? null, grant.session ?? null, CODE_LIFETIME_S,
    ],
  );
  return code;
}

interface CodeRow {
  grant_id: string;
  client_id: string;
  redirect_uri: string;
  code_challenge: string;
  scope: string;
  username: string;
  fhir_user: string | null;
  patient: string | null;
  encounter: string | null;
  need_banner: boolean;
  nonce: string | null;
  session: string | null;
  expired: boolean;
}

const invalidGrant = (description: string) => new OAuthError(400, 'invalid_grant', description);

function s256(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}


/**
 * grant_type=authorization_code for an authenticated client. A code is burnt at its first
 * presentation whatever the outcome (so a stolen code tried with a wrong verifier is dead for
 * everyone), and a second presentation revokes every token its grant produced (RFC 6749 §4.1.2).
 */
export async function exchangeCode(state: AuthState, client: Client, params: URLSearchParams): Promise<Record<string, unknown>> {
  const code = params.get('code');
  const redirectUri = params.get('redirect_uri');
  const verifier = params.get('code_verifier');
  if (!code) throw new OAuthError(400, 'invalid_request', 'code is required');
  if (!redirectUri) throw new OAuthError(400, 'invalid_request', 'redirect_uri is required');
  const { rows } = await state.db.query<CodeRow>(
    `UPDATE auth_code SET used_at = now() WHERE code_hash = $1 AND used_at IS NULL
     RETURNING grant_id, client_id, redirect_uri, code_challenge, scope, username, fhir_user, patient, encounter, need_banner, nonce, session, expires_at <= now() AS expired`,
    [sha256(code)],
  );
  const row = rows[0];
  if (!row) {
    const replayed = await state.db.query<{ grant_id: string }>('SELECT grant_id FROM auth_code WHERE code_hash = $1', [sha256(code)]);
    if (replayed.rows[0]) {
      await revokeTokens(state, { grantId: replayed.rows[0].grant_id });
      state.log.warn({ clientId: client.clientId, grantId: replayed.rows[0].grant_id }, 'authorization code replayed; its tokens are revoked');
      throw invalidGrant('the authorization code was already used; tokens issued for it are revoked');
    }
    throw invalidGrant('unknown authorization code');
  }
  if (row.expired) throw invalidGrant('the authorization code has expired');
  if (row.client_id !== client.clientId) throw invalidGrant('the authorization code was issued to another client');
  if (row.redirect_uri !== redirectUri) throw invalidGrant('redirect_uri differs from the one of the authorization request');
  if (!verifier) throw invalidGrant('code_verifier is required (PKCE)');
  if (!VERIFIER.test(verifier)) throw invalidGrant('code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~');
  if (!constantTimeEqual(s256(verifier), row.code_challenge)) throw invalidGrant('code_verifier does not match the code_challenge');

  const grant: Grant = {
    clientId: row.client_id,
    redirectUri: row.redirect_uri,
    codeChallenge: row.code_challenge,
    scopes: splitScope(row.scope),
    username: row.username,
    ...(row.fhir_user ? { fhirUser: row.fhir_user } : {}),
    ...(row.patient ? { patient: row.patient } : {}),
    ...(row.encounter ? { encounter: row.encounter } : {}),
    needPatientBanner: row.need_banner,
    ...(row.nonce ? { nonce: row.nonce } : {}),
    ...(row.session ? { session: row.session } : {}),
  };
  return tokenResponse(state, grant, row.grant_id, grant.scopes, { newRefresh: true });
}

/** The token response of a grant: access token, context, id_token and refresh token as granted. */
async function tokenResponse(
  state: AuthState,
  grant: Grant,
  grantId: string,
  scopes: string[],
  options: { newRefresh: boolean; refreshExpiresAt?: number },
): Promise<Record<string, unknown>> {
  const issued = await issueAccessToken(state, {
    clientId: grant.clientId,
    scopes,
    subject: grant.username,
    ...(grant.patient ? { patient: grant.patient } : {}),
    ...(grant.fhirUser ? { fhirUser: grant.fhirUser, claimFhirUser: scopes.includes('fhirUser') || scopes.includes('openid') } : {}),
    ...(grant.encounter ? { encounter: grant.encounter } : {}),
    grantId,
  });
  const body: Record<string, unknown> = {
    access_token: issued.accessToken,
    token_type: 'Bearer',
    expires_in: issued.expiresIn,
    scope: scopes.join(' '),
    ...(grant.patient ? { patient: grant.patient } : {}),
    ...(grant.encounter ? { encounter: grant.encounter } : {}),
    need_patient_banner: grant.needPatientBanner,
    smart_style_url: `${state.urls().issuer}/smart-style.json`,
  };
  if (scopes.includes('openid')) body.id_token = await idToken(state, grant, scopes);
  if (options.newRefresh && (scopes.includes('offline_access') || scopes.includes('online_access'))) {
    body.refresh_token = await issueRefreshToken(state, grant, grantId, options.refreshExpiresAt);
  }
  return body;
}

/**
 * OpenID Connect Core §2 id_token, RS256 with the id_token key: sub is the user, aud the
 * client; fhirUser (SMART §"Scopes for requesting identity data") as an absolute URL on this
 * FHIR base when `fhirUser` was granted.
 */
export async function idToken(state: AuthState, grant: Grant, scopes: readonly string[]): Promise<string> {
  const key = await state.keys.signingKey(ID_TOKEN_ALG);
  const iat = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    iss: state.urls().issuer,
    sub: grant.username,
    aud: grant.clientId,
    iat,
    exp: iat + ID_TOKEN_LIFETIME_S,
    ...(grant.nonce ? { nonce: grant.nonce } : {}),
    ...(scopes.includes('fhirUser') && grant.fhirUser ? { fhirUser: `${state.urls().fhirBase}/${grant.fhirUser}` } : {}),
    ...(scopes.includes('profile') ? { preferred_username: grant.username } : {}),
  };
  return new (jose().SignJWT)(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
}

interface RefreshContext {
  redirectUri: string;
  needPatientBanner: boolean;
  online: boolean;
  session?: string;
  nonce?: string;
}

/**
 * Refresh tokens are opaque (only their sha256 is kept, as jti 'rt:…'). offline_access ones live
 * REFRESH_TOKEN_LIFETIME; online_access ones end with the login session that made them.
 */
async function issueRefreshToken(state: AuthState, grant: Grant, grantId: string, expiresAt?: number): Promise<string> {
  const token = randomToken();
  const online = !grant.scopes.includes('offline_access');
  const lifetime = online ? state.config.sessionLifetime : state.config.refreshTokenLifetime;
  const context: RefreshContext = {
    redirectUri: grant.redirectUri,
    needPatientBanner: grant.needPatientBanner,
    online,
    ...(grant.session ? { session: grant.session } : {}),
  };
  await state.db.query(
    `INSERT INTO auth_token (jti, kind, client_id, subject, patient, scope, issued_at, expires_at, grant_id, fhir_user, encounter, context)
     VALUES ($1, 'refresh', $2, $3, $4, $5, now(), to_timestamp($6), $7, $8, $9, $10)`,
    [
      refreshJti(token), grant.clientId, grant.username, grant.patient ?? null, grant.scopes.join(' '),
      expiresAt ?? Math.floor(Date.now() / 1000) + lifetime, grantId, grant.fhirUser ?? null, grant.encounter ?? null, JSON.stringify(context),
    ],
  );
  return token;
}

interface RefreshRow {
  client_id: string;
  subject: string;
  patient: string | null;
  scope: string;
  grant_id: string;
  fhir_user: string | null;
  encounter: string | null;
  context: RefreshContext;
  expires: number;
  expired: boolean;
  revoked: boolean;
}

/** Where a refresh token is kept: only its hash is stored. */
function refreshJti(token: string): string {
  return `rt:${sha256(token)}`;
}

/** The client and grant a refresh token was issued for; undefined when it is none of ours. */
async function refreshTokenOwner(state: AuthState, token: string): Promise<{ client_id: string; grant_id: string } | undefined> {
  const { rows } = await state.db.query<{ client_id: string; grant_id: string }>(
    "SELECT client_id, grant_id FROM auth_token WHERE jti = $1 AND kind = 'refresh'",
    [refreshJti(token)],
  );
  return rows[0];
}

/**
 * A refresh request without any client credentials or client_id, with the client its refresh
 * token was issued to named in it: that client is then held to its own registration (a public
 * one passes as itself, a confidential one is still asked to authenticate). Anything else, and
 * an unknown token, is left as sent.
 */
export async function withRefreshTokenClient(state: AuthState, params: URLSearchParams, authorization: string | undefined): Promise<URLSearchParams> {
  const token = params.get('refresh_token');
  if (!token || authorization || params.has('client_id') || params.has('client_assertion') || params.has('client_assertion_type')) return params;
  const owner = await refreshTokenOwner(state, token);
  if (!owner) return params;
  const named = new URLSearchParams(params);
  named.set('client_id', owner.client_id);
  return named;
}

/**
 * grant_type=refresh_token: bound to its client; rotated on use (the presented token dies, and
 * presenting a dead one again revokes the whole grant, RFC 9700 §4.14.2); `scope` may narrow
 * the access token's scope to any part of the grant, never widen it (the new refresh token keeps
 * the original scope, RFC 6749 §6).
 */
export async function refresh(state: AuthState, client: Client, params: URLSearchParams): Promise<Record<string, unknown>> {
  const token = params.get('refresh_token');
  if (!token) throw new OAuthError(400, 'invalid_request', 'refresh_token is required');
  const jti = refreshJti(token);
  const { rows } = await state.db.query<RefreshRow>(
    `SELECT client_id, subject, patient, scope, grant_id, fhir_user, encounter, context, extract(epoch from expires_at)::bigint AS expires,
            expires_at <= now() AS expired, revoked_at IS NOT NULL AS revoked
       FROM auth_token WHERE jti = $1 AND kind = 'refresh'`,
    [jti],
  );
  const row = rows[0];
  if (!row) throw invalidGrant('unknown refresh token');
  if (row.client_id !== client.clientId) throw invalidGrant('the refresh token was issued to another client');
  if (row.expired) throw invalidGrant('the refresh token has expired');
  const revokeGrant = () => revokeTokens(state, { grantId: row.grant_id });
  if (row.revoked) {
    await revokeGrant();
    throw invalidGrant('the refresh token has been revoked or already used');
  }
  // The grant as a whole: its user still exists, its login session (online_access) has not ended
  // (the same judgement that keeps its Subscriptions alive, ./grant-standing.ts).
  const standing = (await grantStandings(state.db, state.config, [{ clientId: row.client_id, subject: row.subject, grantId: row.grant_id, scopes: splitScope(row.scope) }]))[0]!;
  if (!standing.alive) throw invalidGrant(standing.reason);
  const original = splitScope(row.scope);
  let scopes = original;
  if (params.has('scope')) {
    // Any subset of the granted access, in the client's own words (`patient/Observation.rs`
    // out of `patient/*.rs`); the access token carries exactly that.
    const asked = [...new Set(splitScope(params.get('scope') ?? undefined))];
    const wider = scopesNotCovered(asked, original);
    if (wider.length > 0) throw new OAuthError(400, 'invalid_scope', `a refresh may not widen the grant: ${wider.join(' ')} was not granted`);
    if (asked.length === 0) throw new OAuthError(400, 'invalid_scope', 'scope is empty');
    scopes = asked;
  }
  // No more than the client's registration allows now (standing.scopes: the grant cut to it), as
  // for its Subscriptions and bulk exports: a registration narrowed since the grant (an operator
  // re-registering the client) narrows what a refresh issues, though the grant itself is kept.
  const registered = grantScopes(scopes, standing.scopes, { contexts: ['patient', 'user', 'system'], otherScopes: true });
  const isResourceScope = (s: string) => parseResourceScope(s) !== undefined;
  if (scopes.some(isResourceScope) && !registered.some(isResourceScope)) {
    throw new OAuthError(400, 'invalid_scope', "the client's registration no longer allows any of the access asked for");
  }
  scopes = registered;
  const grant: Grant = {
    clientId: row.client_id,
    redirectUri: row.context.redirectUri,
    codeChallenge: '',
    scopes: original,
    username: row.subject,
    ...(row.fhir_user ? { fhirUser: row.fhir_user } : {}),
    ...(row.patient ? { patient: row.patient } : {}),
    ...(row.encounter ? { encounter: row.encounter } : {}),
    needPatientBanner: row.context.needPatientBanner,
    ...(row.context.session ? { session: row.context.session } : {}),
  };
  // The successor is stored before the presented token dies, so the grant is never without a
  // live refresh token: that is how its Subscriptions know it lives (./grant-standing.ts).
  const successor = await issueRefreshToken(state, grant, row.grant_id, Number(row.expires));
  // Rotation: only one caller can kill the presented token; a concurrent second use is a reuse
  // (and the grant, this successor with it, is revoked).
  if ((await revokeTokens(state, { jti })) === 0) {
    await revokeGrant();
    throw invalidGrant('the refresh token has been revoked or already used');
  }
  const body = await tokenResponse(state, grant, row.grant_id, scopes, { newRefresh: false });
  body.refresh_token = successor;
  return body;
}

/**
 * RFC 7009 for opaque refresh tokens: revoking one ends its whole grant (RFC 7009 §2.1: the
 * access tokens of the same grant too). Returns undefined when `token` is no refresh token.
 */
export async function revokeRefreshToken(state: AuthState, token: string, clientId: string): Promise<'revoked' | 'not-theirs' | undefined> {
  const row = await refreshTokenOwner(state, token);
  if (!row) return undefined;
  if (row.client_id !== clientId) return 'not-theirs';
  await revokeTokens(state, { grantId: row.grant_id });
  return 'revoked';
}
