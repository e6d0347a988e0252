import Hapi from '@hapi/hapi';
import hapiPino from 'hapi-pino';
import pino, { type Logger } from 'pino';
import { type AuditTrail, auditRoutes, registerAudit } from './audit';
import { authPlugin } from './auth';
import type { Config } from './config';
import type { FhirContext } from './fhir/context';
import { devicesPlugin, registerDevices } from './devices';
import { errorsPlugin } from './fhir/errors-plugin';
import { supportedTypes } from './kernel/resource-types';
import { OperationRegistry } from './fhir/operations';
import { abortInFlight } from './fhir/request-lifetime';
import { fhirRoutes } from './fhir/routes';
import { Stages } from './pipeline';
import { type Db, openDb } from './store/db';
import { registerMonitoring } from './monitoring';
import { migrateAll } from './schema';
import { terminologyRoutes } from './fhir/terminology-routes';
import { warmUp } from './validation/schema';

export interface App {
  server: Hapi.Server;
  ctx: FhirContext;
  audit: AuditTrail;
  /** Stops accepting requests, lets in-flight ones finish, closes the database. */
  stop(): Promise<void>;
}

/**
 * Composes the server from its capabilities; reads as the table of contents of src/.
 * The database is opened and migrated here, so a fresh machine needs no setup step.
 */
export async function createServer(config: Config, options: { db?: Db; logger?: Logger } = {}): Promise<App> {
  const log = options.logger ?? pino({ level: config.logLevel });
  const db = options.db ?? (await openDb(config.databaseUrl, config.dataDir, { statementTimeoutMs: config.statementTimeoutMs }));
  await migrateAll(db);
  warmUp(supportedTypes);

  const ctx: FhirContext = { db, config, baseUrl: `${config.baseUrl}/fhir`, log, stages: new Stages(), operations: new OperationRegistry() };
  const server = Hapi.server({
    port: config.port,
    host: config.host,
    routes: { cors: { origin: ['*'], exposedHeaders: ['ETag', 'Location', 'Last-Modified', 'X-Request-Id'] } },
    router: { stripTrailingSlash: true },
  });

  await server.register({
    plugin: hapiPino,
    options: {
      instance: log,
      // Every log line of a request carries its id; clients see the same id in X-Request-Id.
      getChildBindings: (request) => ({ requestId: request.info.id }),
      ignorePaths: ['/fhir/metadata'],
      // No PHI in plain logs (ASVS 16.2.5): a search's query string names patients and values;
      // the audit trail, in its protected store, is where requests are recorded in full.
      serializers: { req: (req: { url?: string }) => ({ ...req, url: req.url?.split('?')[0] }) },
    },
  });
  server.ext('onPreResponse', (request, h) => {
    const response = request.response;
    // Errors get theirs where they are rendered (errors-plugin.ts).
    if (response && !(response instanceof Error)) response.header('x-request-id', request.info.id);
    return h.continue;
  });
  await server.register(errorsPlugin);
  // Before anything that writes or answers: every interaction after it is audited.
  const audit = registerAudit(ctx, server);
  // Before every route: with auth on, its strategy is the default of all of them.
  await server.register({ plugin: authPlugin, options: { ctx } });
  await server.register({ plugin: fhirRoutes, options: { ctx } });
  await server.register({ plugin: auditRoutes, options: { ctx } });
  // Capabilities plug into named pipeline stages; the stage order, not this order, decides
  // that readings are mapped (enrich) before they are judged.
  registerDevices(ctx);
  const monitoring = registerMonitoring(ctx, server);
  await server.register({ plugin: devicesPlugin, options: { ctx } });
  await server.register({ plugin: terminologyRoutes, options: { ctx } });

  return {
    server,
    ctx,
    audit,
    async stop() {
      // In-flight requests get most of the promised 10 s; then their statements are cancelled,
      // so that hapi's own deadline finds them answered and the database can close.
      const grace = setTimeout(() => abortInFlight(server), 8_000);
      await server.stop({ timeout: 10_000 });
      clearTimeout(grace);
      abortInFlight(server);
      await monitoring.stop();
      await audit.stop();
      if (!options.db) await db.close();
    },
  };
}
