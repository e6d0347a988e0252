import type { Request, Server } from '@hapi/hapi';
import { OperationOutcomeError } from '../kernel/outcome';
import { type AccessPolicy, type RequestOrigin, unrestricted } from './policy';

declare module '@hapi/hapi' {
  interface AuthCredentials {
    policy?: AccessPolicy;
  }
  interface ServerApplicationState {
    /** AUTH_DISABLED=true: every request has full access (local experiments only). */
    servesWithoutTokens?: boolean;
  }
}

/** Called by the auth plugin when AUTH_DISABLED=true. `server.app` is shared by every plugin's server object. */
export function serveWithoutTokens(server: Server): void {
  server.app.servesWithoutTokens = true;
}

/**
 * The access policy of a request: its token's (set by the auth strategy), or full access when
 * auth is disabled. A route that is public has no policy: asking for one there is a 401.
 */
export function policyOf(request: Request): AccessPolicy {
  const granted = request.auth.credentials?.policy ?? (request.server.app.servesWithoutTokens ? unrestricted : undefined);
  if (granted) return withOrigin(request, granted);
  throw new OperationOutcomeError(401, { code: 'login', diagnostics: 'an access token is required (Authorization: Bearer …)' }, { 'www-authenticate': 'Bearer realm="fhir"' });
}

const withOrigins = new WeakMap<Request, AccessPolicy>();

/**
 * The policy as this request holds it: the token's grant plus the request's origin, so that every
 * write it causes (through the pipeline, which carries the policy) can be audited with who and
 * from where. One object per request.
 */
function withOrigin(request: Request, granted: AccessPolicy): AccessPolicy {
  let policy = withOrigins.get(request);
  if (!policy) {
    const origin: RequestOrigin = { requestId: request.info.id, address: request.info.remoteAddress };
    policy = Object.freeze({ ...granted, origin });
    withOrigins.set(request, policy);
  }
  return policy;
}
