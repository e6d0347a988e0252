import type { Server } from '@hapi/hapi';
import { notSupported } from '../kernel/outcome';
import type { FhirContext } from './context';

/**
 * POST, PUT, PATCH and DELETE on `paths` answered 405 with `why`: for what the server serves but
 * no client writes (the audit trail, the server's own OperationDefinitions). The body is taken
 * unparsed within the body limit, so a large or malformed one still gets this answer, not a 400.
 */
export function refuseWrites(server: Server, ctx: FhirContext, paths: readonly string[], why: string): void {
  for (const path of paths) {
    server.route({
      method: ['POST', 'PUT', 'PATCH', 'DELETE'],
      path,
      options: { payload: { parse: false, output: 'data', maxBytes: ctx.config.maxBodyBytes } },
      handler: () => {
        throw notSupported(why);
      },
    });
  }
}
