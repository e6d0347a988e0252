import type { Plugin, Request } from '@hapi/hapi';
import { badRequest, notFound } from '../kernel/outcome';
import { queryParamsOf, rawQueryOf } from '../kernel/request-target';
import type { FhirContext } from './context';
import { preferences } from './negotiation';
import { refuseWrites } from './read-only-routes';
import { respond } from './respond';

/** The canonical of one of the server's own OperationDefinitions: where it is read (R4 resource.html#canonical). */
export function operationDefinitionUrl(ctx: FhirContext, id: string): string {
  return `${ctx.baseUrl}/OperationDefinition/${id}`;
}

/** The paths served here, public like `metadata` (decision 041): auth's strategy lets them through without a token. */
export const OPERATION_DEFINITION_PATHS = ['/fhir/OperationDefinition', '/fhir/OperationDefinition/{id}'] as const;

/** Search parameters of `GET /fhir/OperationDefinition` (R4 OperationDefinition `url` and `code`); `_format`, `_pretty` are the response's. */
const SEARCH = new Set(['url', 'code', '_format', '_pretty']);

/**
 * `GET /fhir/OperationDefinition/{id}` and `GET /fhir/OperationDefinition?url=…&code=…`: the
 * server's own OperationDefinitions, the ones its capabilities register with their operations
 * (JSON files beside the code that implements them), so that every `operation.definition` of
 * the CapabilityStatement resolves here or is an HL7 canonical. Read-only, like AuditEvent: the
 * definitions describe what the code does, so no client writes, changes or deletes them
 * (decision 041; OperationDefinition is not a stored type).
 */
export const operationDefinitionRoutes: Plugin<{ ctx: FhirContext }> = {
  name: 'operation-definitions',
  register(server, { ctx }) {
    // Each definition with the canonical it has on this server (the base is configuration).
    const served = () => ctx.operations.ownDefinitions().map((d) => ({ ...d, url: operationDefinitionUrl(ctx, d.id!) }));

    server.route({
      method: 'GET',
      path: OPERATION_DEFINITION_PATHS[1],
      handler: (request, h) => {
        const id = String(request.params.id);
        const found = served().find((d) => d.id === id);
        if (!found) throw notFound(`OperationDefinition/${id.slice(0, 64)} is not one of this server's operations`);
        return respond(request, h, { status: 200, body: found });
      },
    });

    server.route({
      method: 'GET',
      path: OPERATION_DEFINITION_PATHS[0],
      handler: (request, h) => {
        const matches = served().filter(matcher(request));
        const bundle: fhir4.Bundle = {
          resourceType: 'Bundle',
          type: 'searchset',
          total: matches.length,
          link: [{ relation: 'self', url: `${ctx.baseUrl}/OperationDefinition${rawQueryOf(request) ? `?${rawQueryOf(request)}` : ''}` }],
          // R4 json.html: arrays are never empty, so no match means no entry element.
          ...(matches.length ? { entry: matches.map((d) => ({ fullUrl: d.url, resource: d, search: { mode: 'match' as const } })) } : {}),
        };
        return respond(request, h, { status: 200, body: bundle });
      },
    });

    refuseWrites(server, ctx, OPERATION_DEFINITION_PATHS, 'OperationDefinitions describe the operations this server implements and cannot be written, changed or deleted through the API');
  },
};

/**
 * The filter of a search: each `url` and `code` parameter must match (AND), any of its
 * comma-separated values (OR), exactly (uri and token without a system). An unknown parameter is
 * refused unless the client prefers lenient handling, as the ordinary search does.
 */
function matcher(request: Request): (d: fhir4.OperationDefinition) => boolean {
  const query = queryParamsOf(request);
  const lenient = preferences(request.headers.prefer as string | undefined).lenient;
  const tests: Array<(d: fhir4.OperationDefinition) => boolean> = [];
  for (const [name, value] of query) {
    if (!SEARCH.has(name)) {
      if (lenient) continue;
      throw badRequest(`unknown search parameter '${name.slice(0, 64)}' for OperationDefinition (supported: url, code)`, [name.slice(0, 64)]);
    }
    const values = value.split(',');
    if (name === 'url') tests.push((d) => values.includes(d.url ?? ''));
    if (name === 'code') tests.push((d) => values.includes(d.code));
  }
  return (d) => tests.every((t) => t(d));
}
