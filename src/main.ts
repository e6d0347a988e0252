import { loadConfig } from './config';
import { createServer } from './server';
import { DataDirInUseError } from './store/data-dir-lock';

/** Process start: serve until SIGTERM/SIGINT, then drain in-flight requests and close the database. */
async function main(): Promise<void> {
  const config = loadConfig();
  const app = await createServer(config);
  await app.server.start();
  app.ctx.log.info({ fhirBase: app.ctx.baseUrl, database: app.ctx.db.kind }, 'FHIR server listening');

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.ctx.log.info({ signal }, 'shutting down');
    app.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        app.ctx.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  // A second server on one embedded data directory: the message says what to do, a stack would bury it.
  console.error(err instanceof DataDirInUseError ? err.message : err);
  process.exit(1);
});
