import Bell from '@hapi/bell';
import type { Server } from '@hapi/hapi';
import type { OidcConfig } from '../config';
import { jose } from './jose';
import { errorPage } from './pages';
import { currentSession, loginSession } from './session';
import type { AuthState } from './state';

interface FederatedProfile {
  sub: string;
  fhirUser?: string;
}

/**
 * Clinicians may sign in at an external OpenID Connect provider (Keycloak, Entra ID, …) instead
 * of with a local password: @hapi/bell runs the code flow with PKCE and its own encrypted state
 * cookie; we verify the provider's id_token (signature by its JWKS, iss, aud, exp) and map its
 * fhirUser claim to a Practitioner of this server. Anyone else is refused: patients use local
 * logins.
 */
export async function registerOidcLogin(server: Server, state: AuthState, config: OidcConfig): Promise<void> {
  await server.register(Bell);
  const jwks = jose().createRemoteJWKSet(new URL(config.jwksUri));
  server.auth.strategy('oidc-login', 'bell', {
    provider: {
      name: 'oidc',
      protocol: 'oauth2',
      useParamsAuth: true,
      pkce: 'S256',
      auth: config.authorizationEndpoint,
      token: config.tokenEndpoint,
      scope: ['openid', 'profile'],
      async profile(credentials: { profile?: FederatedProfile }, params: { id_token?: string }) {
        if (!params.id_token) throw new Error('the identity provider returned no id_token');
        const { payload } = await jose().jwtVerify(params.id_token, jwks, { issuer: config.issuer, audience: config.clientId, requiredClaims: ['sub', 'exp'] });
        const claim = payload[config.fhirUserClaim];
        credentials.profile = { sub: payload.sub!, ...(typeof claim === 'string' ? { fhirUser: claim } : {}) };
      },
    },
    password: config.cookiePassword,
    clientId: config.clientId,
    clientSecret: config.clientSecret,
    cookie: 'bell-oidc',
    isSecure: state.config.secureCookies,
    // The provider sends the browser back cross-site: a Strict cookie would not come along.
    isSameSite: 'Lax',
    location: () => `${state.urls().issuer}/login/oidc`,
  } as never);

  server.route({
    method: 'GET',
    path: '/auth/login/oidc',
    options: { auth: { strategy: 'oidc-login', mode: 'try' } },
    handler: async (request, h) => {
      const html = (status: number, message: string) => {
        const p = errorPage(status, message);
        return h.response(p.html).code(p.status).type('text/html; charset=utf-8').header('cache-control', 'no-store');
      };
      if (!request.auth.isAuthenticated) {
        state.log.warn({ err: request.auth.error }, 'external login failed');
        return html(401, 'Sign-in at the identity provider failed.');
      }
      const credentials = request.auth.credentials as unknown as { profile?: FederatedProfile; query?: Record<string, string> };
      const pendingId = credentials.query?.request;
      const profile = credentials.profile;
      const practitioner = profile?.fhirUser ? practitionerId(state, profile.fhirUser) : undefined;
      if (!profile || !practitioner) return html(403, 'Your account at the identity provider has no fhirUser naming a Practitioner of this server.');
      if (!(await state.directory.exists('Practitioner', practitioner))) return html(403, `Practitioner/${practitioner} does not exist on this server.`);
      const session = await currentSession(state, request);
      if (!session || !pendingId) return html(400, 'This sign-in has expired or belongs to another browser. Start again from the app.');
      const { rows } = await state.db.query('SELECT 1 FROM auth_request WHERE id = $1 AND session = $2 AND expires_at > now()', [pendingId, session.idHash]);
      if (rows.length === 0) return html(400, 'This sign-in has expired or belongs to another browser. Start again from the app.');
      const username = `${config.issuer}#${profile.sub}`;
      await loginSession(state, h, session, { username, fhirUser: `Practitioner/${practitioner}` });
      state.log.info({ username, fhirUser: `Practitioner/${practitioner}` }, 'user logged in through the identity provider');
      return h.response().code(303).header('location', `/auth/interaction/${encodeURIComponent(pendingId)}`).header('cache-control', 'no-store');
    },
  });
}

/** `Practitioner/ID`, or an absolute URL of it on this FHIR base; the id, or undefined. */
export function practitionerId(state: AuthState, fhirUser: string): string | undefined {
  const base = `${state.urls().fhirBase}/`;
  const relative = fhirUser.startsWith(base) ? fhirUser.slice(base.length) : fhirUser;
  return /^Practitioner\/([A-Za-z0-9\-.]{1,64})$/.exec(relative)?.[1];
}
