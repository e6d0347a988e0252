import { storableText } from '../kernel/storable-text';
import type { JWK } from 'jose';
import { type Client, findClient, verifySecret } from './clients';
import { jose } from './jose';
import { ACCEPTED_ALGS, type SigningAlg } from './keys';
import type { AuthState } from './state';

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** SMART Backend Services: an assertion's exp is at most five minutes ahead. */
const MAX_ASSERTION_LIFETIME_S = 300;
/** Clock skew tolerated on exp, both ways. */
const SKEW_S = 5;

/** An OAuth error response (RFC 6749 §5.2) with its status. */
export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
  }
  body(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}

const invalidClient = (description: string, basic = false) =>
  new OAuthError(401, 'invalid_client', description, basic ? { 'www-authenticate': 'Basic realm="auth", charset="UTF-8"' } : {});

export interface AuthenticatedClient {
  client: Client;
  method: 'private_key_jwt' | 'client_secret_basic' | 'none';
}

/**
 * Client authentication at the token, introspection and revocation endpoints: a private_key_jwt
 * assertion (SMART Backend Services), HTTP Basic with a client secret (RFC 6749 §2.3.1), or, for
 * public clients only when `allowPublic`, a bare client_id. Throws OAuthError(invalid_client).
 */
/**
 * Who a token request says it is, before anything is verified: the Basic user, the assertion's
 * issuer, or client_id. Only for counting failures per claimed client (src/auth/throttle.ts).
 */
export function claimedClientId(form: URLSearchParams, authorization: string | undefined): string {
  const basic = /^Basic\s+(.+)$/i.exec(authorization ?? '');
  // Decoded, not parsed as a form: it may hold a NUL, which the throttle's bucket key and the
  // audit record cannot (a 500, and an audit batch that could not be stored).
  if (basic) {
    const user = Buffer.from(basic[1]!, 'base64').toString('utf8').split(':')[0] ?? '';
    let decoded = user;
    try {
      decoded = decodeURIComponent(user.replace(/%(?![0-9A-Fa-f]{2})/g, '%25'));
    } catch {
      // Percent-escapes that are no UTF-8 (%E0%A4%A): counted under the user as sent.
    }
    return storableText(decoded.slice(0, 200));
  }
  const assertion = form.get('client_assertion');
  if (assertion) {
    try {
      const payload = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')) as { iss?: unknown };
      if (typeof payload.iss === 'string') return storableText(payload.iss.slice(0, 200));
    } catch {
      // Malformed: counted under the anonymous bucket below.
    }
  }
  return (form.get('client_id') ?? '-').slice(0, 200);
}

export async function authenticateClient(
  state: AuthState,
  form: URLSearchParams,
  authorization: string | undefined,
  { allowPublic = false } = {},
): Promise<AuthenticatedClient> {
  const assertionType = form.get('client_assertion_type');
  const assertion = form.get('client_assertion');
  const basic = /^Basic\s+(.+)$/i.exec(authorization ?? '');
  if (basic && (assertionType || assertion)) {
    throw new OAuthError(400, 'invalid_request', 'use one client authentication method, not both Basic and a client assertion');
  }
  if (basic) return authenticateBasic(state, basic[1]!);
  if (assertionType !== null || assertion !== null) {
    if (assertionType !== JWT_BEARER_ASSERTION) throw invalidClient(`client_assertion_type must be ${JWT_BEARER_ASSERTION}`);
    if (!assertion) throw invalidClient('client_assertion is missing');
    const client = await verifyClientAssertion(state, assertion, form.get('client_id'));
    return { client, method: 'private_key_jwt' };
  }
  const clientId = form.get('client_id');
  if (allowPublic && clientId) {
    const client = await findClient(state.db, clientId);
    if (client?.authMethod === 'none') return { client, method: 'none' };
    if (client) throw invalidClient('this client must authenticate (private_key_jwt or client_secret_basic)');
    throw invalidClient('unknown client');
  }
  throw invalidClient('client authentication is required: a private_key_jwt client_assertion or HTTP Basic');
}

async function authenticateBasic(state: AuthState, encoded: string): Promise<AuthenticatedClient> {
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw invalidClient('malformed Basic credentials', true);
  // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
  let clientId: string;
  let secret: string;
  try {
    clientId = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
    secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
  } catch {
    throw invalidClient('malformed Basic credentials', true);
  }
  const client = await findClient(state.db, clientId);
  if (!client || client.authMethod !== 'client_secret_basic' || !(await verifySecret(secret, client.secretHash))) {
    throw invalidClient('unknown client or wrong client secret', true);
  }
  return { client, method: 'client_secret_basic' };
}

/**
 * A SMART Backend Services client assertion: RS384/ES384 only; key by kid from the registered
 * JWKS or jwks_uri (jku honoured only when it is that URI); iss = sub = client_id; aud = the
 * token URL; exp at most 5 minutes ahead and not past; jti never accepted twice while the
 * assertion lives. The jti is recorded only after the signature verifies, so nobody else can
 * burn a client's jti.
 */
export async function verifyClientAssertion(state: AuthState, assertion: string, clientIdParam: string | null): Promise<Client> {
  let header: ReturnType<typeof import('jose').decodeProtectedHeader>;
  let unverified: ReturnType<typeof import('jose').decodeJwt>;
  try {
    header = jose().decodeProtectedHeader(assertion);
    unverified = jose().decodeJwt(assertion);
  } catch {
    throw invalidClient('client_assertion is not a JWT');
  }
  const alg = header.alg as SigningAlg;
  if (!ACCEPTED_ALGS.includes(alg)) throw invalidClient(`client_assertion alg ${String(header.alg)} is not accepted; use ${ACCEPTED_ALGS.join(' or ')}`);
  if (typeof header.kid !== 'string' || header.kid === '') throw invalidClient('client_assertion header has no kid');
  if (typeof unverified.iss !== 'string') throw invalidClient('client_assertion has no iss');
  if (clientIdParam !== null && clientIdParam !== unverified.iss) throw invalidClient('client_id does not match the assertion iss');
  const client = await findClient(state.db, unverified.iss);
  if (!client) throw invalidClient('unknown client');
  if (client.authMethod !== 'private_key_jwt') throw invalidClient('this client is not registered for private_key_jwt');

  let keys: JWK[];
  if (header.jku !== undefined) {
    if (!client.jwksUri || header.jku !== client.jwksUri) throw invalidClient('jku is not the jwks_uri registered for this client');
  }
  if (client.jwksUri) {
    try {
      keys = await state.remoteJwks.keys(client.jwksUri, header.kid);
    } catch (err) {
      throw invalidClient(`could not fetch the client's jwks_uri: ${(err as Error).message}`);
    }
  } else {
    keys = client.jwks?.keys ?? [];
  }
  const jwk = keys.find((k) => k.kid === header.kid && fitsAlg(k, alg));
  if (!jwk) throw invalidClient(`no ${alg} key with kid ${header.kid} among the client's registered keys`);

  const tokenUrl = state.urls().token;
  let payload: Awaited<ReturnType<typeof import('jose').jwtVerify>>['payload'];
  try {
    const key = await jose().importJWK(jwk, alg);
    ({ payload } = await jose().jwtVerify(assertion, key, {
      algorithms: [alg],
      issuer: client.clientId,
      subject: client.clientId,
      audience: tokenUrl,
      requiredClaims: ['exp', 'jti'],
      clockTolerance: SKEW_S,
    }));
  } catch (err) {
    throw invalidClient(assertionFailure(err, tokenUrl));
  }
  const now = Math.floor(Date.now() / 1000);
  if (payload.exp! > now + MAX_ASSERTION_LIFETIME_S + SKEW_S) throw invalidClient('client_assertion exp is more than 5 minutes ahead');
  if (typeof payload.jti !== 'string' || payload.jti === '') throw invalidClient('client_assertion jti must be a non-empty string');
  const { rowCount } = await state.db.query(
    'INSERT INTO auth_assertion_jti (client_id, jti, expires_at) VALUES ($1, $2, to_timestamp($3)) ON CONFLICT DO NOTHING',
    [client.clientId, payload.jti, payload.exp! + SKEW_S],
  );
  if (rowCount === 0) throw invalidClient('client_assertion jti was already used (replay)');
  return client;
}

function fitsAlg(jwk: JWK, alg: SigningAlg): boolean {
  if (jwk.alg !== undefined && jwk.alg !== alg) return false;
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  return alg === 'RS384' ? jwk.kty === 'RSA' : jwk.kty === 'EC' && jwk.crv === 'P-384';
}

function assertionFailure(err: unknown, tokenUrl: string): string {
  const e = err as { code?: string; claim?: string; message?: string };
  switch (e.code) {
    case 'ERR_JWT_EXPIRED':
      return 'client_assertion has expired';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return "client_assertion signature does not verify with the client's key";
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (e.claim === 'aud') return `client_assertion aud must be the token endpoint ${tokenUrl}`;
      if (e.claim === 'iss' || e.claim === 'sub') return 'client_assertion iss and sub must both be the client_id';
      return `client_assertion ${e.claim ?? ''} claim is invalid: ${e.message ?? ''}`.trim();
    default:
      return `client_assertion is invalid: ${e.message ?? String(err)}`;
  }
}
