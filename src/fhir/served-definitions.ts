import type { Plugin } from '@hapi/hapi';
import { badRequest, notFound } from '../kernel/outcome';
import { isValidId } from '../kernel/id';
import { rawQueryOf } from '../kernel/request-target';
import type { FhirContext, InteractionResult } from './context';
import { preferences } from './negotiation';
import { operationDefinitions } from './operation-definitions';
import { refuseWrites } from './read-only-routes';
import { respond } from './respond';
import { searchParameterDefinitions } from './search-parameter-definitions';

/** A conformance resource the server serves from its code: it has an id and, where it is served, its canonical. */
export type ServedDefinition = fhir4.FhirResource & { id?: string; url?: string };

/** A search parameter of a served type: an exact match of any comma-separated value on what `values` gives (uri, or token without a system). */
export interface ServedSearchParameter {
  name: string;
  type: 'uri' | 'token';
  /** Its official R4 definition, for the CapabilityStatement. */
  definition: string;
  documentation: string;
  values(d: ServedDefinition): readonly string[];
}

/**
 * A type whose resources are the server's own definitions, defined where the capability they
 * describe lives and served read-only from there (decisions 041 and 043): not a stored type.
 */
export interface ServedDefinitions {
  type: 'OperationDefinition' | 'SearchParameter';
  /** Each definition as served on this server (its canonical may depend on the base, which is configuration). */
  definitions(ctx: FhirContext): ServedDefinition[];
  search: readonly ServedSearchParameter[];
  /** What the CapabilityStatement says of the type. */
  documentation: string;
  /** Why a write is refused (405). */
  readOnly: string;
}

/** The types served read-only from the server's code, in the order the CapabilityStatement lists them. */
export const SERVED_DEFINITIONS: readonly ServedDefinitions[] = [operationDefinitions, searchParameterDefinitions];

const byType = new Map(SERVED_DEFINITIONS.map((s) => [s.type as string, s]));

/** The served type `type` names, if it is one. */
export function servedDefinitionsOf(type: string): ServedDefinitions | undefined {
  return byType.get(type);
}

const pathsOf = (s: ServedDefinitions) => [`/fhir/${s.type}`, `/fhir/${s.type}/{id}`] as const;

/** The paths served here, public like `metadata` (decisions 041, 043): auth's strategy lets them through without a token, the audit does not record their reads. */
export const SERVED_DEFINITION_PATHS: readonly string[] = SERVED_DEFINITIONS.flatMap(pathsOf);

/** Search parameters every served type takes: they shape the response, not the match. */
const RESPONSE_PARAMETERS = new Set(['_format', '_pretty']);

/**
 * `GET [base]/{type}/{id}`: one of the server's own definitions. The REST route and a batch or
 * transaction GET entry (bundle/read-entry.ts) both answer through here.
 */
export function readDefinition(ctx: FhirContext, served: ServedDefinitions, id: string): InteractionResult {
  const found = isValidId(id) ? served.definitions(ctx).find((d) => d.id === id) : undefined;
  if (!found) throw notFound(`${served.type}/${id.slice(0, 64)} is not one of this server's own definitions`);
  return { status: 200, body: found };
}

/**
 * `GET [base]/{type}?…`: a searchset of the server's own definitions. Each parameter must match
 * (AND), any of its comma-separated values (OR), exactly. An unknown parameter is refused unless
 * the client prefers lenient handling, as the ordinary search does. `selfUrl` is the request's URL
 * on this server's base. The REST route and a bundle's GET entry both answer through here.
 */
export function searchDefinitions(ctx: FhirContext, served: ServedDefinitions, query: URLSearchParams, lenient: boolean, selfUrl: string): InteractionResult {
  const tests: Array<(d: ServedDefinition) => boolean> = [];
  for (const [name, value] of query) {
    if (RESPONSE_PARAMETERS.has(name)) continue;
    const parameter = served.search.find((p) => p.name === name);
    if (!parameter) {
      if (lenient) continue;
      const supported = served.search.map((p) => p.name).join(', ');
      throw badRequest(`unknown search parameter '${name.slice(0, 64)}' for ${served.type} (supported: ${supported})`, [name.slice(0, 64)]);
    }
    const wanted = value.split(',');
    tests.push((d) => parameter.values(d).some((v) => wanted.includes(v)));
  }
  const matches = served.definitions(ctx).filter((d) => tests.every((t) => t(d)));
  const bundle: fhir4.Bundle = {
    resourceType: 'Bundle',
    type: 'searchset',
    total: matches.length,
    link: [{ relation: 'self', url: selfUrl }],
    // R4 json.html: arrays are never empty, so no match means no entry element.
    ...(matches.length ? { entry: matches.map((d) => ({ fullUrl: `${ctx.baseUrl}/${served.type}/${d.id}`, resource: d, search: { mode: 'match' as const } })) } : {}),
  };
  return { status: 200, body: bundle };
}

/** The CapabilityStatement entries of the served types: read and search-type, by the parameters they take. */
export function servedCapabilityEntries(): fhir4.CapabilityStatementRestResource[] {
  return SERVED_DEFINITIONS.map((s) => ({
    type: s.type,
    profile: `http://hl7.org/fhir/StructureDefinition/${s.type}`,
    documentation: s.documentation,
    interaction: [{ code: 'read' }, { code: 'search-type' }],
    searchParam: s.search.map(({ name, type, definition, documentation }) => ({ name, type, definition, documentation })),
  }));
}

/**
 * `GET /fhir/{type}/{id}` and `GET /fhir/{type}?…` for each served type, and 405 for every write:
 * the definitions describe what the code does, so no client writes, changes or deletes them.
 */
export const servedDefinitionRoutes: Plugin<{ ctx: FhirContext }> = {
  name: 'served-definitions',
  register(server, { ctx }) {
    for (const served of SERVED_DEFINITIONS) {
      const [typePath, idPath] = pathsOf(served);
      server.route({
        method: 'GET',
        path: idPath,
        handler: (request, h) => respond(request, h, readDefinition(ctx, served, String(request.params.id))),
      });
      server.route({
        method: 'GET',
        path: typePath,
        handler: (request, h) => {
          const raw = rawQueryOf(request);
          const lenient = preferences(request.headers.prefer as string | undefined).lenient;
          return respond(request, h, searchDefinitions(ctx, served, new URLSearchParams(raw), lenient, `${ctx.baseUrl}/${served.type}${raw ? `?${raw}` : ''}`));
        },
      });
      refuseWrites(server, ctx, [typePath, idPath], served.readOnly);
    }
  },
};
