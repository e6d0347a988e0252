import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Plugin, ResponseToolkit } from '@hapi/hapi';
import Inert from '@hapi/inert';
import { ensureClient, publicRoute } from '../auth';
import type { FhirContext } from '../fhir/context';
import { notFound } from '../kernel/outcome';
import { projectRoot } from '../kernel/paths';

/**
 * The clinician dashboard (app/): a SMART app served by this server at /app, built by
 * `npm run build` into dist/dashboard. It is an ordinary SMART client of the FHIR API: it sees only
 * what its token's scopes grant, and is registered (fixed client id, public, PKCE) on start.
 */
export const DASHBOARD_CLIENT_ID = 'clinician-dashboard';
export const DASHBOARD_PATH = '/app';
const ASSET_NAME = /^[A-Za-z0-9_-]{1,100}(\.[A-Za-z0-9_-]{1,20}){1,3}$/;

/**
 * What the dashboard may ask for: ward view across patients (user/), acknowledging Flags
 * (update), its live-alert websocket Subscription (create, and read for the binding token: app/src/live.ts), and online_access: access tokens live minutes, a ward stays open for a shift, so
 * fhirclient refreshes the token for as long as the clinician's login session lasts.
 */
export const DASHBOARD_SCOPE = 'launch launch/patient openid fhirUser profile online_access user/Patient.rs user/Observation.rs user/CarePlan.rs user/Goal.rs user/Flag.rus user/Subscription.cr';

// Vite's output; dist/app holds tsc's compile of app/src for the model's unit tests.
const builtApp = join(projectRoot, 'dist', 'dashboard');

// The app's own code only: no inline script, no framing by other sites, FHIR calls to this origin.
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'";

export const dashboardPlugin: Plugin<{ ctx: FhirContext }> = {
  name: 'clinician-dashboard',
  dependencies: ['smart-auth'],
  async register(server, { ctx }) {
    await server.register(Inert);
    const appUrl = `${ctx.config.baseUrl}${DASHBOARD_PATH}`;
    await ensureClient(ctx.db, DASHBOARD_CLIENT_ID, {
      client_name: 'Clinician dashboard',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris: [appUrl],
      initiate_login_uri: appUrl,
      scope: DASHBOARD_SCOPE,
    });

    const secured = (h: ResponseToolkit, response: ReturnType<ResponseToolkit['file']>) =>
      response.header('content-security-policy', CSP).header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer');

    // index.html: no cache, so a new build is picked up; it names hashed, immutable assets.
    server.route({
      method: 'GET',
      path: DASHBOARD_PATH,
      options: { ...publicRoute },
      handler: (_request, h) => {
        if (!existsSync(join(builtApp, 'index.html'))) return h.response('the dashboard is not built: run npm run build').code(404).type('text/plain');
        return secured(h, h.file(join(builtApp, 'index.html'), { confine: false })).header('cache-control', 'no-cache');
      },
    });
    // Where the app finds its FHIR server and its own client id (launch without iss: standalone here).
    server.route({
      method: 'GET',
      path: `${DASHBOARD_PATH}/config.json`,
      options: { ...publicRoute },
      handler: (_request, h) => h.response({ clientId: DASHBOARD_CLIENT_ID, fhirBase: ctx.baseUrl, scope: DASHBOARD_SCOPE }).header('cache-control', 'no-cache'),
    });
    server.route({
      method: 'GET',
      path: `${DASHBOARD_PATH}/assets/{file}`,
      options: { ...publicRoute },
      handler: (request, h) => {
        // Vite's asset names (name-hash.ext): anything else, a 300-character name included (the
        // file system's ENAMETOOLONG surfaced as a 500), is simply not one of ours.
        const file = request.params.file as string;
        if (!ASSET_NAME.test(file)) throw notFound(`${DASHBOARD_PATH}/assets/${file.slice(0, 80)} is not part of the dashboard`);
        return secured(h, h.file(file, { confine: join(builtApp, 'assets') })).header('cache-control', 'public, max-age=31536000, immutable');
      },
    });
  },
};
