import { DEFAULT_INPUT_LIMITS, parseJsonWithin } from '../kernel/input-limits';
import { noteClaimedActor } from '../audit';
import { constantTimeEqual } from './secrets';
import type { Request, ResponseObject, ResponseToolkit, Server } from '@hapi/hapi';
import { type AuthenticatedClient, OAuthError, authenticateClient, claimedClientId } from './client-auth';
import { type ClientMetadata, RegistrationError, findClient, registerClient } from './clients';
import { exchangeCode, refresh, revokeRefreshToken, withRefreshTokenClient } from './grants';
import { ACCEPTED_ALGS, ID_TOKEN_ALG } from './keys';
import { grantScopes, splitScope } from '../access/scopes';
import type { AuthState } from './state';
import { forgive, take } from './throttle';
import { activeAccessToken, issueAccessToken, revokeToken, verifiedByServer } from './tokens';

const MAX_FORM_BYTES = 64 * 1024;
/** Grant types of /auth/token. */
const GRANT_TYPES_SUPPORTED = ['authorization_code', 'client_credentials', 'refresh_token'];

/** Not a FHIR endpoint: OAuth errors are JSON objects of RFC 6749, not OperationOutcomes. */
function oauthJson(h: ResponseToolkit, status: number, body: object, headers: Record<string, string> = {}): ResponseObject {
  const res = h.response(body).code(status).type('application/json').header('cache-control', 'no-store').header('pragma', 'no-cache');
  for (const [k, v] of Object.entries(headers)) res.header(k, v);
  return res;
}

/** 429 with Retry-After (RFC 6585): the token endpoint's budget for this address or client is spent. */
function tooMany(retryAfterSeconds: number): OAuthError {
  return new OAuthError(429, 'invalid_request', 'too many token requests; retry later', { 'retry-after': String(retryAfterSeconds) });
}

function oauthError(h: ResponseToolkit, err: unknown): ResponseObject {
  if (err instanceof OAuthError) return oauthJson(h, err.status, err.body(), err.headers);
  throw err;
}

/**
 * One attempt at client authentication, counted per claimed client and address before any
 * signature or secret is checked (RFC 6749 §2.3.1: an endpoint that takes a client password MUST
 * be protected against guessing). The token, introspection and revocation endpoints share the
 * budget, so a guesser gains nothing by moving between them; the caller forgives the attempt when
 * it succeeds. 429 when the budget is spent.
 */
async function failureAttempt(state: AuthState, request: Request, params: URLSearchParams): Promise<string> {
  const claimed = claimedClientId(params, authorizationOf(request));
  noteClaimedActor(request, { claimedClient: claimed });
  const attempt = await take(state.db, [{ bucket: `token-fail:${claimed}|${request.info.remoteAddress}`, limit: state.config.tokenFailuresPerClient, windowMs: state.config.tokenFailureWindowMs }]);
  if (!attempt.allowed) throw tooMany(attempt.retryAfterSeconds);
  return attempt.attempt;
}

/** authenticateClient at introspection and revocation, within the guessing budget of failureAttempt. */
async function countedClientAuthentication(state: AuthState, request: Request, params: URLSearchParams, options: { allowPublic?: boolean } = {}): Promise<AuthenticatedClient> {
  const attempt = await failureAttempt(state, request, params);
  const authenticated = await authenticateClient(state, params, authorizationOf(request), options);
  await forgive(state.db, attempt);
  return authenticated;
}

/** Form bodies are parsed here rather than by Hapi so that a wrong body is an OAuth error, not a FHIR one. */
function form(request: Request): URLSearchParams {
  const type = String(request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new OAuthError(400, 'invalid_request', 'the body must be application/x-www-form-urlencoded');
  }
  const params = new URLSearchParams(String(request.payload ?? ''));
  // RFC 6749 §3.2: parameters must not be repeated.
  const seen = new Set<string>();
  for (const k of params.keys()) {
    if (seen.has(k)) throw new OAuthError(400, 'invalid_request', `parameter ${k} is repeated`);
    seen.add(k);
  }
  return params;
}

function authorizationOf(request: Request): string | undefined {
  const value = (request.headers as Record<string, string | undefined>).authorization;
  return typeof value === 'string' ? value : undefined;
}

const formPayload = { parse: false, output: 'data', maxBytes: MAX_FORM_BYTES } as const;

export function registerAuthRoutes(server: Server, state: AuthState): void {
  server.route({
    method: 'GET',
    path: '/fhir/.well-known/smart-configuration',
    options: { auth: false, cors: { origin: ['*'] } },
    // JSON whatever the Accept: SMART clients send all sorts (App Launch 2.2 §Conformance).
    handler: (_request, h) => h.response(smartConfiguration(state)).type('application/json'),
  });

  server.route({
    method: 'GET',
    path: '/auth/.well-known/openid-configuration',
    options: { auth: false, cors: { origin: ['*'] } },
    handler: (_request, h) => h.response(openidConfiguration(state)).type('application/json'),
  });

  server.route({
    method: 'GET',
    path: '/auth/smart-style.json',
    options: { auth: false, cors: { origin: ['*'] } },
    handler: (_request, h) => h.response(SMART_STYLE).type('application/json').header('cache-control', 'public, max-age=3600'),
  });

  server.route({
    method: 'GET',
    path: '/auth/jwks',
    options: { auth: false, cors: { origin: ['*'] } },
    handler: (_request, h) => h.response(state.keys.jwks()).type('application/jwk-set+json').header('cache-control', 'public, max-age=300'),
  });

  server.route({
    method: 'POST',
    path: '/auth/token',
    options: { auth: false, payload: formPayload },
    handler: async (request, h) => {
      try {
        const params = form(request);
        const address = request.info.remoteAddress;
        const perAddress = await take(state.db, [{ bucket: `token-addr:${address}`, limit: state.config.tokenRequestsPerAddress, windowMs: 60_000 }]);
        if (!perAddress.allowed) throw tooMany(perAddress.retryAfterSeconds);
        // Forgiven only when the whole request succeeds: a guessed code or refresh token counts too.
        const attempt = await failureAttempt(state, request, params);
        const response = await tokenRequest(params, authorizationOf(request));
        await forgive(state.db, attempt);
        return oauthJson(h, 200, response);
      } catch (err) {
        return oauthError(h, err);
      }
    },
  });

  /** The token endpoint's grants (RFC 6749 §4.1.3, §6; SMART Backend Services). */
  async function tokenRequest(params: URLSearchParams, authorization: string | undefined): Promise<Record<string, unknown>> {
    const grantType = params.get('grant_type');
    if (!grantType) throw new OAuthError(400, 'invalid_request', 'grant_type is required');
    if (!GRANT_TYPES_SUPPORTED.includes(grantType)) throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${grantType} is not supported`);
    if (grantType === 'authorization_code' || grantType === 'refresh_token') {
      // Public clients name themselves with client_id; confidential ones must authenticate. A
      // public client's refresh request may leave client_id out (RFC 6749 §6; SMART App Launch's
      // refresh example, and fhirclient, send none): its refresh token names the client.
      const form = grantType === 'refresh_token' ? await withRefreshTokenClient(state, params, authorization) : params;
      const { client } = await authenticateClient(state, form, authorization, { allowPublic: true });
      const named = params.get('client_id');
      if (named !== null && named !== client.clientId) throw new OAuthError(401, 'invalid_client', 'client_id does not match the authenticated client');
      if (!client.grantTypes.includes(grantType)) {
        throw new OAuthError(400, 'unauthorized_client', `this client is not registered for ${grantType}`);
      }
      return grantType === 'authorization_code' ? await exchangeCode(state, client, form) : await refresh(state, client, form);
    }
    const { client } = await authenticateClient(state, params, authorization);
    if (!client.grantTypes.includes('client_credentials')) {
      throw new OAuthError(400, 'unauthorized_client', 'this client is not registered for client_credentials');
    }
    const requested = splitScope(params.get('scope') ?? undefined);
    if (requested.length === 0) throw new OAuthError(400, 'invalid_scope', 'scope is required');
    const granted = grantScopes(requested, client.scope, { contexts: ['system'], otherScopes: false });
    if (granted.length === 0) {
      throw new OAuthError(400, 'invalid_scope', 'none of the requested scopes is within the scopes pre-authorised for this client (backend services get system/ scopes only)');
    }
    const issued = await issueAccessToken(state, { clientId: client.clientId, scopes: granted });
    return { access_token: issued.accessToken, token_type: 'Bearer', expires_in: issued.expiresIn, scope: granted.join(' ') };
  }

  server.route({
    method: 'POST',
    path: '/auth/introspect',
    options: { auth: false, payload: formPayload },
    handler: async (request, h) => {
      try {
        const params = form(request);
        const caller = await introspectionCaller(state, request, params);
        const token = params.get('token');
        if (!token) throw new OAuthError(400, 'invalid_request', 'token is required');
        const claims = await activeAccessToken(state, token);
        // RFC 7662 §2.2: anything not active (or not the caller's to see) is exactly {"active": false}.
        if (!claims || (!caller.canIntrospect && claims.client_id !== caller.clientId)) return oauthJson(h, 200, { active: false });
        return oauthJson(h, 200, {
          active: true,
          scope: claims.scope,
          client_id: claims.client_id,
          token_type: 'Bearer',
          exp: claims.exp,
          iat: claims.iat,
          sub: claims.sub,
          aud: claims.aud,
          iss: claims.iss,
          jti: claims.jti,
          ...(claims.patient ? { patient: claims.patient } : {}),
          ...(claims.fhirUser ? { fhirUser: claims.fhirUser } : {}),
        });
      } catch (err) {
        return oauthError(h, err);
      }
    },
  });

  server.route({
    method: 'POST',
    path: '/auth/revoke',
    options: { auth: false, payload: formPayload },
    handler: async (request, h) => {
      try {
        const params = form(request);
        const { client } = await countedClientAuthentication(state, request, params, { allowPublic: true });
        const token = params.get('token');
        if (!token) throw new OAuthError(400, 'invalid_request', 'token is required');
        // RFC 7009 §2.2: an invalid or unknown token is not an error.
        const refreshOutcome = await revokeRefreshToken(state, token, client.clientId);
        if (refreshOutcome === 'not-theirs') throw new OAuthError(400, 'unauthorized_client', 'the token was not issued to this client');
        if (refreshOutcome === 'revoked') {
          state.log.info({ clientId: client.clientId }, 'refresh token revoked with its grant');
          return oauthJson(h, 200, {});
        }
        const verified = await verifiedByServer(state, token);
        if (verified && typeof verified.payload.jti === 'string') {
          const outcome = await revokeToken(state, verified.payload.jti, client.clientId);
          if (outcome === 'not-theirs') throw new OAuthError(400, 'unauthorized_client', 'the token was not issued to this client');
          if (outcome === 'revoked') state.log.info({ jti: verified.payload.jti, clientId: client.clientId }, 'token revoked');
        }
        return oauthJson(h, 200, {});
      } catch (err) {
        return oauthError(h, err);
      }
    },
  });

  server.route({
    method: 'POST',
    path: '/auth/register',
    options: { auth: false, payload: { parse: false, output: 'data', maxBytes: MAX_FORM_BYTES } },
    handler: async (request, h) => {
      const expected = state.config.registrationToken;
      if (!expected) return oauthJson(h, 404, { error: 'not_found', error_description: 'dynamic registration is off (REGISTRATION_TOKEN is not configured)' });
      const bearer = /^Bearer\s+(.+)$/i.exec(authorizationOf(request) ?? '')?.[1];
      if (!bearer || !constantTimeEqual(bearer, expected)) {
        return oauthJson(h, 401, { error: 'invalid_token', error_description: 'registration needs the initial access token as Bearer' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
      }
      let metadata: ClientMetadata;
      try {
        const type = String(request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (type !== 'application/json') throw new Error('content type');
        // Bounded like every JSON body (no NUL, which no text column can hold).
        metadata = parseJsonWithin(String(request.payload ?? ''), DEFAULT_INPUT_LIMITS) as ClientMetadata;
        if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) throw new Error('not an object');
      } catch {
        return oauthJson(h, 400, { error: 'invalid_client_metadata', error_description: 'the body must be a JSON object of client metadata (application/json)' });
      }
      try {
        const { client, clientSecret, issuedAt } = await registerClient(state.db, metadata);
        state.log.info({ clientId: client.clientId, clientName: client.clientName, method: client.authMethod }, 'client registered');
        return oauthJson(h, 201, {
          client_id: client.clientId,
          client_id_issued_at: issuedAt,
          ...(clientSecret ? { client_secret: clientSecret, client_secret_expires_at: 0 } : {}),
          ...(client.clientName ? { client_name: client.clientName } : {}),
          token_endpoint_auth_method: client.authMethod,
          grant_types: client.grantTypes,
          redirect_uris: client.redirectUris,
          scope: client.scope.join(' '),
          ...(client.jwks ? { jwks: client.jwks } : {}),
          ...(client.jwksUri ? { jwks_uri: client.jwksUri } : {}),
          ...(client.canIntrospect ? { can_introspect: true } : {}),
          ...(client.initiateLoginUri ? { initiate_login_uri: client.initiateLoginUri } : {}),
        });
      } catch (err) {
        if (err instanceof RegistrationError) return oauthJson(h, 400, { error: err.error, error_description: err.message });
        throw err;
      }
    },
  });
}

/**
 * Introspection callers: a client authenticated as at the token endpoint (it sees its own
 * tokens, or all with can_introspect), or the Bearer access token of a can_introspect client.
 */
async function introspectionCaller(state: AuthState, request: Request, params: URLSearchParams): Promise<{ clientId: string; canIntrospect: boolean }> {
  const bearer = /^Bearer\s+(.+)$/i.exec(authorizationOf(request) ?? '')?.[1];
  if (bearer) {
    const claims = await activeAccessToken(state, bearer);
    const client = claims ? await findClient(state.db, claims.client_id) : undefined;
    if (!client?.canIntrospect) {
      throw new OAuthError(401, 'invalid_token', 'the Bearer token is not an active token of a client allowed to introspect', { 'www-authenticate': 'Bearer error="invalid_token"' });
    }
    return { clientId: client.clientId, canIntrospect: true };
  }
  const { client } = await countedClientAuthentication(state, request, params);
  return { clientId: client.clientId, canIntrospect: client.canIntrospect };
}


/** SMART App Launch 2.2 §"Metadata": /.well-known/smart-configuration. */
export function smartConfiguration(state: AuthState): Record<string, unknown> {
  const urls = state.urls();
  return {
    issuer: urls.issuer,
    jwks_uri: urls.jwks,
    authorization_endpoint: urls.authorize,
    token_endpoint: urls.token,
    token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic'],
    token_endpoint_auth_signing_alg_values_supported: [...ACCEPTED_ALGS],
    grant_types_supported: [...GRANT_TYPES_SUPPORTED],
    ...(state.config.registrationToken ? { registration_endpoint: urls.register } : {}),
    introspection_endpoint: urls.introspect,
    revocation_endpoint: urls.revoke,
    scopes_supported: SCOPES_SUPPORTED,
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
    capabilities: [
      'launch-ehr', 'launch-standalone', 'authorize-post',
      'client-public', 'client-confidential-symmetric', 'client-confidential-asymmetric',
      'sso-openid-connect', 'context-banner', 'context-style', 'context-ehr-patient', 'context-standalone-patient',
      'permission-offline', 'permission-online', 'permission-patient', 'permission-user', 'permission-v1', 'permission-v2',
    ],
  };
}

const SCOPES_SUPPORTED = [
  'openid', 'fhirUser', 'profile', 'launch', 'launch/patient', 'offline_access', 'online_access',
  'system/*.cruds', 'system/*.rs', 'system/*.read', 'system/*.write', 'user/*.cruds', 'user/*.rs', 'patient/*.cruds', 'patient/*.rs',
];

/** OpenID Connect Discovery 1.0 §3, at {issuer}/.well-known/openid-configuration. */
export function openidConfiguration(state: AuthState): Record<string, unknown> {
  const urls = state.urls();
  return {
    issuer: urls.issuer,
    authorization_endpoint: urls.authorize,
    token_endpoint: urls.token,
    jwks_uri: urls.jwks,
    ...(state.config.registrationToken ? { registration_endpoint: urls.register } : {}),
    introspection_endpoint: urls.introspect,
    revocation_endpoint: urls.revoke,
    scopes_supported: SCOPES_SUPPORTED,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [ID_TOKEN_ALG],
    token_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: [...ACCEPTED_ALGS],
    code_challenge_methods_supported: ['S256'],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'nonce', 'fhirUser', 'preferred_username'],
    authorization_response_iss_parameter_supported: true,
  };
}

/** SMART App Launch 2.2 §"Styling": the style the apps are asked to follow. */
const SMART_STYLE = {
  color_background: '#f5f5f5',
  color_error: '#a00000',
  color_highlight: '#005a9c',
  color_modal_backdrop: '',
  color_success: '#1a7f37',
  color_text: '#1f2328',
  dim_border_radius: '4px',
  dim_font_size: '16px',
  dim_spacing_size: '16px',
  font_family_body: 'system-ui, sans-serif',
  font_family_heading: 'system-ui, sans-serif',
};
