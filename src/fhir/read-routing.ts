import type { Plugin } from '@hapi/hapi';
import type { FhirContext, InteractionResult } from './context';
import type { RestRequest } from './rest-request';

/**
 * Read routing at the HTTP edge (src/store/replica.ts has the mechanism): searches may run on the
 * replica, and every successful write answers with `X-Commit-LSN`, the position a later search
 * sends back to read its own writes. Without DATABASE_REPLICA_URL both are no-ops.
 */
export const COMMIT_LSN_HEADER = 'x-commit-lsn';

/** A search handler run on the replica when the routing allows, else on the primary. */
export const onReplica =
  <R extends RestRequest>(handler: (ctx: FhirContext, req: R) => Promise<InteractionResult>) =>
  (ctx: FhirContext, req: R): Promise<InteractionResult> =>
    ctx.reads ? ctx.reads.read(req.commitLsn, (db) => handler({ ...ctx, db: ctx.signal ? db.withSignal(ctx.signal) : db }, req)) : handler(ctx, req);

/**
 * Whether a request may write FHIR data (REST, bundles, operations, device doors): a POST search
 * reads, and the auth endpoints write only the server's own tables; neither needs the primary's
 * position, which costs a query to learn.
 */
function writesData(method: string, path: string): boolean {
  if (method === 'get' || method === 'head' || method === 'options') return false;
  if (path.endsWith('/_search')) return false; // type, system and compartment searches
  return path.startsWith('/fhir') || path.startsWith('/ingest/');
}

/** Adds X-Commit-LSN to the 2xx answer of every write (REST, bundles, device doors) when a replica is configured. */
export const commitLsnHeader: Plugin<{ ctx: FhirContext }> = {
  name: 'commit-lsn',
  register(server, { ctx }) {
    const reads = ctx.reads;
    if (!reads) return;
    server.ext('onPreResponse', async (request, h) => {
      const response = request.response;
      if (!writesData(request.method, request.route.path)) return h.continue;
      if (!response || response instanceof Error || response.statusCode >= 300) return h.continue;
      response.header(COMMIT_LSN_HEADER, await reads.commitLsn());
      return h.continue;
    });
  },
};
