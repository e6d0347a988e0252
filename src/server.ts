import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import Hapi from '@hapi/hapi';
import type { GrantStandings } from './access/grant';
import hapiPino from 'hapi-pino';
import pino, { type Logger } from 'pino';
import { type AuditTrail, auditRoutes, registerAudit } from './audit';
import { authPlugin, grantStandings } from './auth';
import { type ExportWorker, registerBulk } from './bulk';
import type { Config } from './config';
import type { FhirContext } from './fhir/context';
import { DASHBOARD_PATH, dashboardPlugin } from './dashboard';
import { devicesPlugin, registerDevices } from './devices';
import { errorsPlugin } from './fhir/errors-plugin';
import { inputGuard } from './fhir/input-guard';
import { OperationRegistry } from './fhir/operations';
import { abortInFlight } from './fhir/request-lifetime';
import { fhirRoutes } from './fhir/routes';
import { commitLsnHeader } from './fhir/read-routing';
import { openReadRouting } from './store/replica';
import { Stages } from './pipeline';
import { serveBase } from './search';
import { type Db, openDb } from './store/db';
import { registerMedication } from './medication';
import { registerMonitoring } from './monitoring';
import { registerGdpr } from './gdpr';
import { migrateAll } from './schema';
import { terminologyRoutes } from './fhir/terminology-routes';
import { servedDefinitionRoutes } from './fhir/served-definitions';
import { warmUp } from './validation/schema';
import { landingRoutes } from './landing';
import { registerWithings } from './withings';

export interface App {
  server: Hapi.Server;
  ctx: FhirContext;
  audit: AuditTrail;
  /** The bulk export worker of this process (tests drive it directly). */
  bulk: ExportWorker;
  /** Stops accepting requests, lets in-flight ones finish, closes the database. */
  stop(): Promise<void>;
}

/**
 * Browser apps (SMART apps) may use every header the API reads, and read every header it
 * answers with: a preflight that refused If-Match or Prefer made browser writes impossible.
 * Tokens travel as Bearer headers, never cookies, so any origin is allowed without credentials.
 */
const CORS = {
  origin: ['*'],
  // hapi allows Accept, Authorization, Content-Type and If-None-Match by default.
  additionalHeaders: ['If-Match', 'If-None-Exist', 'Prefer', 'X-Request-Id', 'X-Commit-LSN'],
  // hapi exposes WWW-Authenticate by default (a 401's reason).
  additionalExposedHeaders: ['ETag', 'Location', 'Content-Location', 'Last-Modified', 'X-Request-Id', 'X-Commit-LSN'],
  maxAge: 600,
};

/**
 * The Node HTTP server under hapi, with the bounds of DESIGN's interface rather than Node's
 * defaults: how long a request may take to arrive (408 and closed past it: src/fhir/errors-plugin.ts),
 * how long an idle connection is kept. Node checks the bounds every `connectionsCheckingInterval`
 * (30 s by default, which alone let a stalled request live half a minute past them): a quarter of
 * the shorter bound. A request without Host reaches hapi, to be answered 400 with an
 * OperationOutcome (src/fhir/input-guard.ts) instead of Node's bare 400.
 */
function httpListener(config: Config): HttpServer {
  const listener = createHttpServer({
    requestTimeout: config.requestTimeoutMs,
    headersTimeout: config.headersTimeoutMs,
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(config.headersTimeoutMs / 4))),
    requireHostHeader: false,
  });
  listener.keepAliveTimeout = config.keepAliveTimeoutMs;
  return listener;
}

/**
 * Composes the server from its capabilities; reads as the table of contents of src/.
 * The database is opened and migrated here, so a fresh machine needs no setup step.
 */
export async function createServer(config: Config, options: { db?: Db; logger?: Logger } = {}): Promise<App> {
  const log = options.logger ?? pino({ level: config.logLevel });
  const db = options.db ?? (await openDb(config.databaseUrl, config.dataDir, { statementTimeoutMs: config.statementTimeoutMs, preparedStatements: config.preparedStatements, listenUrl: config.databaseListenUrl }));
  await migrateAll(db);
  // The type every device reading writes; the other types' validators compile on their first
  // use (5-30 ms each), so that the ~140 a monitoring server rarely sees cost no memory
  // (decision 023).
  warmUp(['Observation']);

  // Searches may run on a streaming replica (docs/decisions/019-scale-out.md).
  const reads = config.databaseReplicaUrl ? openReadRouting(db, config.databaseReplicaUrl, { statementTimeoutMs: config.statementTimeoutMs, preparedStatements: config.preparedStatements }) : undefined;
  const ctx: FhirContext = { db, config, baseUrl: `${config.baseUrl}/fhir`, log, stages: new Stages(), operations: new OperationRegistry(), ...(reads ? { reads } : {}) };
  // Absolute references on this base are local ones; on any other base they are not (decision 034).
  serveBase(ctx.baseUrl);
  const server = Hapi.server({
    port: config.port,
    host: config.host,
    listener: httpListener(config),
    routes: {
      // The time a body may take to arrive is the listener's (REQUEST_TIMEOUT), not hapi's: on its
      // payload timeout hapi waits for the rest of the body before it answers, so a stalled body
      // held its socket until Node's own 300 s, and a slow legitimate upload was cut at 10 s.
      payload: { timeout: false },
      cors: CORS,
      // Any answer may carry PHI (a resource, a search, an error naming an id): no cache may keep
      // it. Only the public discovery documents set their own cache-control (src/auth/routes.ts).
      cache: { otherwise: 'no-store' },
      // hapi sets these on every response, errors and unrouted paths included. HSTS only when the
      // server is reached over https (BASE_URL or TLS_PROXY): over plain http it means nothing.
      // No frames: the JSON has no business in one, and the login pages already deny them.
      security: { noSniff: true, hsts: config.hsts ? { maxAge: 31_536_000, includeSubDomains: true } : false, xframe: 'deny', xss: false, referrer: 'no-referrer' },
    },
    router: { stripTrailingSlash: true },
  });

  await server.register({
    plugin: hapiPino,
    options: {
      instance: log,
      // Every log line of a request carries its id; clients see the same id in X-Request-Id.
      getChildBindings: (request) => ({ requestId: request.info.id }),
      ignorePaths: ['/fhir/metadata'],
      serializers: {
        // No PHI in plain logs (ASVS 16.2.5): a search's query string names patients and values;
        // the audit trail, in its protected store, is where requests are recorded in full.
        req: (req: { url?: string }) => ({ ...req, url: req.url?.split('?')[0] }),
        // The status and the size, not the headers: they are the same on every response (CORS,
        // security, cache) apart from ids the line already has. Measured reason: they made a
        // read's line 1.1 kB, and pino's JSON of a line twice as slow (3.6–4.4 µs against 1.7–2.2).
        res: (res: { statusCode?: number; headers?: Record<string, unknown> }) => ({ statusCode: res.statusCode, length: res.headers?.['content-length'] }),
      },
    },
  });
  server.ext('onPreResponse', (request, h) => {
    const response = request.response;
    // Errors get theirs where they are rendered (errors-plugin.ts).
    if (response && !(response instanceof Error)) response.header('x-request-id', request.info.id);
    return h.continue;
  });
  await server.register(errorsPlugin);
  await server.register(inputGuard);
  // Before anything that writes or answers: every interaction after it is audited.
  const audit = registerAudit(ctx, server);
  // Before every route: with auth on, its strategy is the default of all of them.
  await server.register({ plugin: authPlugin, options: { ctx } });
  await server.register({ plugin: fhirRoutes, options: { ctx } });
  await server.register({ plugin: commitLsnHeader, options: { ctx } });
  await server.register({ plugin: auditRoutes, options: { ctx } });
  // What acts on after its request (a bulk export, a Subscription) does so only while the
  // authorization server says its grant stands (decision 032).
  const grants: GrantStandings = (db, refs) => grantStandings(db, config.auth, refs);
  // Bulk Data export: $export at system, Patient and Group level, its status and files.
  const bulk = await registerBulk(ctx, server, grants);
  // Capabilities plug into named pipeline stages; the stage order, not this order, decides
  // that readings are mapped (enrich) before they are judged.
  registerDevices(ctx);
  const monitoring = registerMonitoring(ctx, server, grants);
  const medication = registerMedication(ctx);
  registerGdpr(ctx);
  await server.register({ plugin: devicesPlugin, options: { ctx } });
  await server.register({ plugin: terminologyRoutes, options: { ctx } });
  await server.register({ plugin: servedDefinitionRoutes, options: { ctx } });
  await server.register({ plugin: landingRoutes, options: { config, apps: [{ href: DASHBOARD_PATH, title: 'Clinician dashboard', note: 'a SMART app of this API' }] } });
  // The clinician dashboard, a SMART app of this FHIR API, served beside it.
  await server.register({ plugin: dashboardPlugin, options: { ctx } });
  // Patients' Withings accounts feeding the device door (when WITHINGS_CLIENT_ID is set).
  const withings = await registerWithings(ctx, server);

  return {
    server,
    ctx,
    audit,
    bulk: bulk.worker,
    async stop() {
      // In-flight requests get most of the promised 10 s; then their statements are cancelled,
      // so that hapi's own deadline finds them answered and the database can close.
      const grace = setTimeout(() => abortInFlight(server), 8_000);
      await server.stop({ timeout: 10_000 });
      clearTimeout(grace);
      abortInFlight(server);
      await bulk.stop();
      await withings.stop();
      await medication.stop();
      await monitoring.stop();
      await audit.stop();
      await reads?.close();
      if (!options.db) await db.close();
    },
  };
}
