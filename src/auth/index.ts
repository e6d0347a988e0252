import type { Plugin, RouteOptions } from '@hapi/hapi';
import { serveWithoutTokens } from '../access/request';
import type { FhirContext } from '../fhir/context';
import { registerAuthorizeRoutes } from './authorize';
import { contributeSecurity } from './capability';
import { listenForCacheNotices } from './cache-notices';
import { registerConsentStages } from './consent-stages';
import { fhirDirectory } from './directory';
import { forgetGrants } from './erasure';
import { KeyStore } from './keys';
import { RemoteJwksCache } from './remote-jwks';
import { registerLaunchRoute } from './launch';
import { registerOidcLogin } from './oidc-login';
import { registerAuthRoutes } from './routes';
import { registerSessionCookie } from './session';
import { type AuthState, authUrls } from './state';
import { registerStrategy } from './strategy';
import { VerifiedTokens } from './token-cache';
import { purgeExpired } from './tokens';
import { ensureDevelopmentAdmin } from './users';

export type { SmartCredentials } from './strategy';
export { ensureClient } from './clients';
export { grantStandings } from './grant-standing';

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
      verifiedTokens: new VerifiedTokens(),
      config: ctx.config.auth,
      log: ctx.log,
      directory: fhirDirectory(ctx),
      urls: () => authUrls(ctx.baseUrl),
    };
    await state.keys.init(ctx.config.auth.signingKey);
    server.expose('state', state);
    registerConsentStages(ctx.stages);
    contributeSecurity();
    ctx.stages.use('erase', 'auth.grants', (uow, erased) => forgetGrants(uow, erased, state.verifiedTokens));
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
      serveWithoutTokens(server);
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

    // Another node's revocations and Consents reach this node's caches at their commit.
    const stopListening = await listenForCacheNotices(ctx.db, state.verifiedTokens).catch((err: unknown) => {
      ctx.log.error({ err }, 'the server could not listen for other nodes\' revocations and Consents: they hold here within a second');
      return undefined;
    });
    server.ext('onPostStop', async () => stopListening?.());
  },
};

