import type { Plugin, Request, RouteOptions } from '@hapi/hapi';
import type { FhirContext } from '../fhir/context';
import { OperationOutcomeError } from '../fhir/outcome';
import { registerAuthorizeRoutes } from './authorize';
import { contributeSecurity } from './capability';
import { fhirDirectory } from './directory';
import { KeyStore } from './keys';
import { type AccessPolicy, unrestricted } from './policy';
import { RemoteJwksCache } from './remote-jwks';
import { registerLaunchRoute } from './launch';
import { registerOidcLogin } from './oidc-login';
import { registerAuthRoutes } from './routes';
import { registerSessionCookie } from './session';
import { type AuthState, authUrls } from './state';
import { registerStrategy } from './strategy';
import { purgeExpired } from './tokens';
import { ensureDevelopmentAdmin } from './users';

export type { AccessPolicy, Action } from './policy';
export { policyFromScopes, unrestricted } from './policy';
export type { SmartCredentials } from './strategy';

const PURGE_INTERVAL_MS = 10 * 60_000;

/** Route options for a FHIR route that must stay public (the spec requires /metadata and discovery to be). */
export const publicRoute: Pick<RouteOptions, 'auth'> = Object.freeze({ auth: false });

/**
 * The SMART authorization server and the resource-server strategy. With auth on, `smart` is the
 * server's default strategy: every route that does not say `auth: false` (publicRoute) needs a
 * valid access token, and request.auth.credentials.policy is its AccessPolicy.
 * Register before the FHIR routes.
 */
export const authPlugin: Plugin<{ ctx: FhirContext }> = {
  name: 'smart-auth',
  async register(server, { ctx }) {
    const state: AuthState = {
      db: ctx.db,
      keys: new KeyStore(ctx.db),
      remoteJwks: new RemoteJwksCache(),
      config: ctx.config.auth,
      log: ctx.log,
      directory: fhirDirectory(ctx),
      urls: () => authUrls(ctx.baseUrl),
    };
    await state.keys.init(ctx.config.auth.signingKey);
    server.expose('disabled', ctx.config.auth.disabled);
    server.expose('state', state);
    contributeSecurity();
    await registerStrategy(server, state);
    registerAuthRoutes(server, state);
    registerSessionCookie(server, state);
    registerAuthorizeRoutes(server, state);
    registerLaunchRoute(server, state);
    if (ctx.config.auth.oidc) await registerOidcLogin(server, state, ctx.config.auth.oidc);

    const admin = await ensureDevelopmentAdmin(ctx.db, !ctx.config.databaseUrl.startsWith('postgres'));
    if (admin) {
      ctx.log.warn(
        { username: admin.username, password: admin.password },
        `development login created for this empty embedded database: username "${admin.username}", password "${admin.password}" (npm run user -- add … for more)`,
      );
    }

    if (ctx.config.auth.disabled) {
      ctx.log.warn(
        '!!! AUTH_DISABLED=true: every FHIR request is served WITHOUT an access token, with full access. For local experiments only; never with real patient data. !!!',
      );
    } else {
      server.auth.default('smart');
    }

    const timer = setInterval(() => {
      purgeExpired(state).catch((err: unknown) => ctx.log.warn({ err }, 'purging expired tokens failed'));
    }, PURGE_INTERVAL_MS);
    timer.unref();
    server.events.on('stop', () => clearInterval(timer));
  },
};

/**
 * The access policy of a request: its token's, or full access when auth is disabled. A route
 * that is public has no policy: asking for one there is a 401.
 */
export function policyOf(request: Request): AccessPolicy {
  const policy = request.auth.credentials?.policy;
  if (policy) return policy;
  const plugin = (request.server.plugins as unknown as Record<string, { disabled?: boolean } | undefined>)['smart-auth'];
  if (plugin?.disabled) return unrestricted;
  throw new OperationOutcomeError(401, { code: 'login', diagnostics: 'an access token is required (Authorization: Bearer …)' }, { 'www-authenticate': 'Bearer realm="fhir"' });
}
