import { isStorableText } from '../kernel/storable-text';
import { randomBytes, randomUUID } from 'node:crypto';
import { CLIENT_SECRET_COST, hashSecret, verifySecret } from './secrets';
import type { JWK } from 'jose';
import type { Db } from '../store/db';
import type { AuthState } from './state';
import { revokeTokens } from './tokens';
import { isKnownScope, splitScope } from '../access/scopes';


export type ClientAuthMethod = 'none' | 'client_secret_basic' | 'private_key_jwt';
const AUTH_METHODS: readonly ClientAuthMethod[] = ['none', 'client_secret_basic', 'private_key_jwt'];
const GRANT_TYPES = ['authorization_code', 'client_credentials', 'refresh_token'];

export interface Client {
  clientId: string;
  clientName?: string;
  authMethod: ClientAuthMethod;
  secretHash?: string;
  jwks?: { keys: JWK[] };
  jwksUri?: string;
  redirectUris: string[];
  grantTypes: string[];
  /** The pre-authorised scopes: no token carries more. */
  scope: string[];
  /** May introspect any token (a resource server or gateway), also with its own Bearer token. */
  canIntrospect: boolean;
  /** The app's launch URL (OpenID Connect third-party login initiation): where an EHR launch sends the user. */
  initiateLoginUri?: string;
}

/** RFC 7591 client metadata as received. */
export interface ClientMetadata {
  client_name?: unknown;
  redirect_uris?: unknown;
  grant_types?: unknown;
  token_endpoint_auth_method?: unknown;
  jwks?: unknown;
  jwks_uri?: unknown;
  scope?: unknown;
  /** This server's extension (admin-only, as registration is): may introspect any token. */
  can_introspect?: unknown;
  initiate_login_uri?: unknown;
  [other: string]: unknown;
}

export class RegistrationError extends Error {
  constructor(
    readonly error: 'invalid_client_metadata' | 'invalid_redirect_uri',
    message: string,
  ) {
    super(message);
  }
}

function absoluteUrl(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  try {
    const u = new URL(value);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.hash === '';
  } catch {
    return false;
  }
}

/** Checks RFC 7591 metadata and fills its defaults; throws RegistrationError with the RFC's error code. */
export function validateMetadata(m: ClientMetadata): Omit<Client, 'clientId' | 'secretHash'> {
  const authMethod = (m.token_endpoint_auth_method ?? 'client_secret_basic') as ClientAuthMethod;
  if (!AUTH_METHODS.includes(authMethod)) {
    throw new RegistrationError('invalid_client_metadata', `token_endpoint_auth_method must be one of ${AUTH_METHODS.join(', ')}`);
  }
  // RFC 7591 §2: without grant_types the client uses authorization_code only.
  const grantTypes = m.grant_types ?? ['authorization_code'];
  if (!Array.isArray(grantTypes) || grantTypes.length === 0 || !grantTypes.every((g) => GRANT_TYPES.includes(g as string))) {
    throw new RegistrationError('invalid_client_metadata', `grant_types must be a non-empty array of ${GRANT_TYPES.join(', ')}`);
  }
  if (grantTypes.includes('client_credentials') && authMethod === 'none') {
    throw new RegistrationError('invalid_client_metadata', 'client_credentials needs a confidential client (private_key_jwt or client_secret_basic)');
  }
  const redirectUris = m.redirect_uris ?? [];
  if (!Array.isArray(redirectUris) || !redirectUris.every(absoluteUrl)) {
    throw new RegistrationError('invalid_redirect_uri', 'redirect_uris must be absolute http(s) URLs without a fragment');
  }
  if (grantTypes.includes('authorization_code') && redirectUris.length === 0) {
    throw new RegistrationError('invalid_redirect_uri', 'authorization_code clients need at least one redirect_uri');
  }
  let jwks: { keys: JWK[] } | undefined;
  let jwksUri: string | undefined;
  if (m.jwks !== undefined && m.jwks_uri !== undefined) {
    throw new RegistrationError('invalid_client_metadata', 'jwks and jwks_uri are mutually exclusive (RFC 7591 §2)');
  }
  if (m.jwks !== undefined) {
    const keys = (m.jwks as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys) || keys.length === 0 || !keys.every(isPublicSigningJwk)) {
      throw new RegistrationError('invalid_client_metadata', 'jwks must be {"keys": [...]} of public RSA or EC keys, each with a kid');
    }
    jwks = { keys: keys as JWK[] };
  }
  if (m.jwks_uri !== undefined) {
    if (!absoluteUrl(m.jwks_uri)) throw new RegistrationError('invalid_client_metadata', 'jwks_uri must be an absolute http(s) URL');
    jwksUri = m.jwks_uri;
  }
  if (authMethod === 'private_key_jwt' && !jwks && !jwksUri) {
    throw new RegistrationError('invalid_client_metadata', 'private_key_jwt needs jwks or jwks_uri');
  }
  if (typeof m.scope !== 'string' || splitScope(m.scope).length === 0) {
    throw new RegistrationError('invalid_client_metadata', 'scope is required: the space-separated scopes this client is pre-authorised for');
  }
  const scope = splitScope(m.scope);
  const unknown = scope.filter((s) => !isKnownScope(s));
  if (unknown.length > 0) throw new RegistrationError('invalid_client_metadata', `unknown scopes: ${unknown.join(' ')}`);
  if (m.client_name !== undefined && typeof m.client_name !== 'string') {
    throw new RegistrationError('invalid_client_metadata', 'client_name must be a string');
  }
  if (m.initiate_login_uri !== undefined && !absoluteUrl(m.initiate_login_uri)) {
    throw new RegistrationError('invalid_client_metadata', 'initiate_login_uri must be an absolute http(s) URL');
  }
  if (m.can_introspect !== undefined && typeof m.can_introspect !== 'boolean') {
    throw new RegistrationError('invalid_client_metadata', 'can_introspect must be a boolean');
  }
  return {
    ...(m.client_name !== undefined ? { clientName: m.client_name as string } : {}),
    authMethod,
    ...(jwks ? { jwks } : {}),
    ...(jwksUri ? { jwksUri } : {}),
    redirectUris: redirectUris as string[],
    grantTypes: grantTypes as string[],
    scope,
    canIntrospect: m.can_introspect === true,
    ...(m.initiate_login_uri !== undefined ? { initiateLoginUri: m.initiate_login_uri as string } : {}),
  };
}

function isPublicSigningJwk(k: unknown): boolean {
  if (!k || typeof k !== 'object') return false;
  const jwk = k as JWK;
  return (jwk.kty === 'RSA' || jwk.kty === 'EC') && typeof jwk.kid === 'string' && jwk.d === undefined && (jwk.use === undefined || jwk.use === 'sig');
}

/** Registers a client: a fresh client_id, and for client_secret_basic a secret returned once. */
export async function registerClient(db: Db, metadata: ClientMetadata): Promise<{ client: Client; clientSecret?: string; issuedAt: number }> {
  const fields = validateMetadata(metadata);
  const clientId = randomUUID();
  const clientSecret = fields.authMethod === 'client_secret_basic' ? randomBytes(32).toString('base64url') : undefined;
  const secretHash = clientSecret ? await hashClientSecret(clientSecret) : undefined;
  const rows = await writeClient(db, clientId, fields, secretHash, metadata, 'insert');
  return { client: { clientId, ...fields, ...(secretHash ? { secretHash } : {}) }, ...(clientSecret ? { clientSecret } : {}), issuedAt: Math.floor(Date.parse(rows[0]!.created_at) / 1000) };
}

/**
 * A client the server itself ships (its clinician dashboard): registered under a fixed id on
 * first start, and its registration brought up to date on every start (BASE_URL may have moved
 * its redirect URI). Public or key-authenticated only: a shipped secret would be no secret.
 */
export async function ensureClient(db: Db, clientId: string, metadata: ClientMetadata): Promise<Client> {
  const fields = validateMetadata(metadata);
  if (fields.authMethod === 'client_secret_basic') throw new RegistrationError('invalid_client_metadata', 'a shipped client cannot hold a secret');
  await writeClient(db, clientId, fields, undefined, metadata, 'upsert');
  return { clientId, ...fields };
}

async function writeClient(
  db: Db,
  clientId: string,
  fields: Omit<Client, 'clientId' | 'secretHash'>,
  secretHash: string | undefined,
  metadata: ClientMetadata,
  mode: 'insert' | 'upsert',
): Promise<Array<{ created_at: string }>> {
  const onConflict =
    mode === 'upsert'
      ? `ON CONFLICT (client_id) DO UPDATE SET client_name = EXCLUDED.client_name, auth_method = EXCLUDED.auth_method, secret_hash = EXCLUDED.secret_hash,
           jwks = EXCLUDED.jwks, jwks_uri = EXCLUDED.jwks_uri, redirect_uris = EXCLUDED.redirect_uris, grant_types = EXCLUDED.grant_types,
           scope = EXCLUDED.scope, can_introspect = EXCLUDED.can_introspect, metadata = EXCLUDED.metadata`
      : '';
  const { rows } = await db.query<{ created_at: string }>(
    `INSERT INTO auth_client (client_id, client_name, auth_method, secret_hash, jwks, jwks_uri, redirect_uris, grant_types, scope, can_introspect, metadata)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ${onConflict} RETURNING created_at`,
    [
      clientId,
      fields.clientName ?? null,
      fields.authMethod,
      secretHash ?? null,
      fields.jwks ? JSON.stringify(fields.jwks) : null,
      fields.jwksUri ?? null,
      JSON.stringify(fields.redirectUris),
      JSON.stringify(fields.grantTypes),
      fields.scope.join(' '),
      fields.canIntrospect,
      JSON.stringify(metadata),
    ],
  );
  return rows;
}

interface ClientRow {
  client_id: string;
  client_name: string | null;
  auth_method: ClientAuthMethod;
  secret_hash: string | null;
  jwks: { keys: JWK[] } | null;
  jwks_uri: string | null;
  redirect_uris: string[];
  grant_types: string[];
  scope: string;
  can_introspect: boolean;
  metadata: { initiate_login_uri?: unknown } | null;
}

export async function findClient(db: Db, clientId: string): Promise<Client | undefined> {
  // A client id decoded from Basic credentials or read from an unverified assertion may hold
  // what no registered id (nor any PostgreSQL text) can: no client, not a failed statement.
  if (!isStorableText(clientId)) return undefined;
  const { rows } = await db.query<ClientRow>('SELECT * FROM auth_client WHERE client_id = $1', [clientId]);
  const r = rows[0];
  if (!r) return undefined;
  return {
    clientId: r.client_id,
    ...(r.client_name !== null ? { clientName: r.client_name } : {}),
    authMethod: r.auth_method,
    ...(r.secret_hash !== null ? { secretHash: r.secret_hash } : {}),
    ...(r.jwks !== null ? { jwks: r.jwks } : {}),
    ...(r.jwks_uri !== null ? { jwksUri: r.jwks_uri } : {}),
    redirectUris: r.redirect_uris,
    grantTypes: r.grant_types,
    scope: splitScope(r.scope),
    canIntrospect: r.can_introspect,
    ...(typeof r.metadata?.initiate_login_uri === 'string' ? { initiateLoginUri: r.metadata.initiate_login_uri } : {}),
  };
}

export async function listClients(db: Db): Promise<ClientRow[]> {
  return (await db.query<ClientRow>('SELECT * FROM auth_client ORDER BY created_at')).rows;
}

/**
 * Removes a client and ends what it was granted, in one transaction: its unspent authorization
 * codes and every token issued to it (revoked: refused at once here, within TOKEN_CACHE_MS by a
 * running server). Its Subscriptions are silent from the commit on (decision 032).
 */
export async function removeClient(state: AuthState, clientId: string): Promise<boolean> {
  return state.db.transaction(async (tx) => {
    const removed = (await tx.query('DELETE FROM auth_client WHERE client_id = $1', [clientId])).rowCount > 0;
    if (!removed) return false;
    await tx.query('DELETE FROM auth_code WHERE client_id = $1 AND used_at IS NULL', [clientId]);
    await revokeTokens(state, { clientId }, tx);
    return true;
  });
}

function hashClientSecret(secret: string): Promise<string> {
  return hashSecret(secret, CLIENT_SECRET_COST);
}

export { verifySecret };
