import Boom from '@hapi/boom';
import type { Server } from '@hapi/hapi';
import Jwt from '@hapi/jwt';
import { ACCEPTED_ALGS } from './keys';
import { withConsents } from '../access/consent';
import { SERVED_DEFINITION_PATHS } from '../fhir/served-definitions';
import { type AccessPolicy, policyFromScopes } from '../access/policy';
import { splitScope } from '../access/scopes';
import type { AuthState } from './state';
import { type VerifiedToken } from './token-cache';
import { claimsProblem, tokenRecord } from './tokens';

/**
 * FHIR routes the SMART spec requires to be public (/.well-known routes are ours and say auth: false),
 * and the server's own OperationDefinitions and SearchParameters the CapabilityStatement names,
 * public like it (decisions 041, 043).
 */
const PUBLIC_FHIR_PATHS = new Set<string>(['/fhir/metadata', ...SERVED_DEFINITION_PATHS]);

/** What a verified access token puts in request.auth.credentials. */
export interface SmartCredentials {
  policy: AccessPolicy;
  clientId: string;
  /** Hapi's own scope slot: the granted SMART scopes. */
  scope: string[];
  subject?: string;
  patient?: string;
  jti: string;
  exp: number;
}


/**
 * The resource server side. `smart-jwt` is the @hapi/jwt strategy (signature by a key of this
 * server, exp, nbf; then our claims: typ at+jwt, iss, aud = the FHIR base read at request time,
 * recorded and not revoked). `smart` wraps it so that every failure is a 401 whose
 * WWW-Authenticate follows RFC 6750 §3 (errors-plugin renders it as an OperationOutcome).
 */
export async function registerStrategy(server: Server, state: AuthState): Promise<void> {
  await server.register(Jwt);
  server.auth.strategy('smart-jwt', 'jwt', {
    keys: [
      async (artifacts: { decoded: { header: { kid?: unknown } } }) => {
        const key = await state.keys.verificationKey(artifacts.decoded.header.kid);
        return key ? [{ key: key.publicKey as never, algorithms: [key.alg], kid: key.kid }] : [];
      },
    ] as never,
    verify: { aud: false, iss: false, sub: false, nbf: true, exp: true, timeSkewSec: 0 },
    validate: async (artifacts: { decoded: { header: Record<string, unknown>; payload: Record<string, unknown> } }) => {
      const { header, payload } = artifacts.decoded;
      if (!ACCEPTED_ALGS.includes(header.alg as never)) throw new Error('the token is not signed with an accepted algorithm');
      const problem = claimsProblem(state, header, payload);
      if (problem) throw new Error(problem);
      const record = await tokenRecord(state, payload.jti as string);
      if (!record) throw new Error('the token is unknown to this server');
      if (record.revoked) throw new Error('the token has been revoked');
      if (record.expired) throw new Error('the token has expired');
      return { isValid: true, credentials: await credentialsOf(state, payload as VerifiedToken['payload'], record.fhir_user ?? undefined, record.grant_id ?? undefined) };
    },
  } as never);

  server.auth.scheme('smart', () => ({
    async authenticate(request, h) {
      // Public by specification even where the route does not carry publicRoute (auth: false):
      // such a request is let through with no policy (policyOf refuses it).
      if (PUBLIC_FHIR_PATHS.has(request.route.path)) return h.authenticated({ credentials: {} });
      const text = bearerText(request.headers.authorization as string | undefined);
      const known = text === undefined ? undefined : state.verifiedTokens.get(text);
      if (known) {
        // Consents are still applied per request (they have their own cache and invalidation).
        return h.authenticated({ credentials: (await credentialsOf(state, known.payload, known.fhirUser, known.grantId)) as never, artifacts: { decoded: { header: known.header, payload: known.payload } } });
      }
      const started = state.verifiedTokens.started;
      try {
        const { credentials, artifacts } = await server.auth.test('smart-jwt', request);
        const decoded = (artifacts as { decoded: Omit<VerifiedToken, 'fhirUser'> }).decoded;
        const { fhirUser, grant } = (credentials as unknown as SmartCredentials).policy;
        if (text !== undefined) state.verifiedTokens.keep(text, { ...decoded, ...(fhirUser ? { fhirUser } : {}), ...(grant?.grantId ? { grantId: grant.grantId } : {}) }, started);
        return h.authenticated({ credentials, artifacts });
      } catch (err) {
        return h.unauthenticated(bearerChallenge(err, request.headers.authorization !== undefined));
      }
    },
  }));
  server.auth.strategy('smart', 'smart');
}

/**
 * The request's credentials from a verified token. The user's FHIR identity comes from the
 * server's record of the token, whether or not the app was granted the fhirUser claim: the policy
 * needs to know a patient from a clinician. So does the token's grant. Consents and caregiver
 * links are read as they stand now, not as they stood at issue: a withdrawal holds for tokens
 * already out (decision record 015).
 */
async function credentialsOf(state: AuthState, payload: VerifiedToken['payload'], fhirUser: string | undefined, grantId: string | undefined): Promise<SmartCredentials> {
  const scopes = splitScope(payload.scope as string);
  const clientId = payload.client_id as string;
  const subject = payload.sub !== clientId && typeof payload.sub === 'string' ? payload.sub : undefined;
  const patient = typeof payload.patient === 'string' ? payload.patient : undefined;
  // The grant, for what acts on after this request under it (a Subscription, decision 032).
  const grant = { tokenId: payload.jti as string, ...(grantId ? { grantId } : {}) };
  return {
    policy: await withConsents(state.db, policyFromScopes(scopes, { clientId, ...(subject ? { subject } : {}), ...(patient ? { patient } : {}), ...(fhirUser ? { fhirUser } : {}), expiresAt: payload.exp, grant })),
    clientId,
    scope: scopes,
    ...(subject ? { subject } : {}),
    ...(patient ? { patient } : {}),
    jti: payload.jti as string,
    exp: payload.exp,
  };
}

/** The token of an `Authorization: Bearer …` header, as @hapi/jwt reads it; undefined otherwise. */
function bearerText(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Bearer\s+(\S+)$/i.exec(header);
  return m?.[1];
}

/** RFC 6750 §3: no error code when no token came; invalid_token with a description otherwise. */
function bearerChallenge(err: unknown, tokenSent: boolean): Boom.Boom {
  const boom = err as Boom.Boom;
  // @hapi/jwt says "missing" also when no key matched; only an absent header is a missing token.
  if (!tokenSent) {
    const missing = Boom.unauthorized('an access token is required (Authorization: Bearer …)');
    missing.output.headers['WWW-Authenticate'] = 'Bearer realm="fhir"';
    return missing;
  }
  const reason = translate(Boom.isBoom(boom) ? boom.message : String(err));
  const invalid = Boom.unauthorized(`invalid access token: ${reason}`);
  invalid.output.headers['WWW-Authenticate'] = `Bearer realm="fhir", error="invalid_token", error_description="${reason.replace(/["\\]/g, '')}"`;
  return invalid;
}

function translate(message: string): string {
  if (message === '' || message === 'Unauthorized') return 'the token is not signed by a key of this server';
  if (message === 'Token expired') return 'the token has expired';
  if (message === 'Invalid token signature') return 'the token signature does not verify';
  if (message.startsWith('Invalid token') || message === 'Token header missing alg attribute') return 'the token is malformed';
  return message;
}
