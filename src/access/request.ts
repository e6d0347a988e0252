import type { Request, Server } from '@hapi/hapi';
import { OperationOutcomeError } from '../kernel/outcome';
import { type AccessPolicy, unrestricted } from './policy';

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
  const policy = request.auth.credentials?.policy;
  if (policy) return policy;
  if (request.server.app.servesWithoutTokens) return unrestricted;
  throw new OperationOutcomeError(401, { code: 'login', diagnostics: 'an access token is required (Authorization: Bearer …)' }, { 'www-authenticate': 'Bearer realm="fhir"' });
}
