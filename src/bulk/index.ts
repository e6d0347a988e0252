import type { Server } from '@hapi/hapi';
import type { GrantStandings } from '../access/grant';
import type { FhirContext } from '../fhir/context';
import { contributeExportOperations } from './capability';
import { forgetExports } from './erasure';
import { bulkRoutes } from './routes';
import { ExportWorker } from './worker';

export { bulkMigrations } from './schema';
export { ExportWorker } from './worker';

/**
 * Bulk Data export (Bulk Data Access v2.0.0, issue 21; docs/decisions/017-bulk-export.md): the
 * kick-off, status and file routes, and the worker that runs jobs in this process. `grants` says
 * whether the grant a job was started under still stands (the authorization server's, decision 032).
 */
export async function registerBulk(ctx: FhirContext, server: Server, grants: GrantStandings): Promise<{ worker: ExportWorker; stop(): Promise<void> }> {
  contributeExportOperations();
  ctx.stages.use('erase', 'bulk', forgetExports);
  const worker = new ExportWorker(ctx.db, ctx.log, ctx.config.bulk, grants);
  await server.register({ plugin: bulkRoutes, options: { ctx, worker, grants } });
  worker.start();
  return { worker, stop: () => worker.stop() };
}
