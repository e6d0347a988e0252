import type { Plugin, Request, ResponseToolkit } from '@hapi/hapi';
import type { FhirContext } from './context';
import { parseJsonBody } from './negotiation';
import { checkParameters } from './operations';
import { badRequest, notFound } from '../kernel/outcome';
import { respond } from './respond';
import { mapsWithSource, translate } from '../terminology/conceptmap';
import { terminology } from '../terminology/load';

/** The CapabilityStatement entry of what this plugin serves (ConceptMap is not a stored type). */
export const conceptMapCapability: fhir4.CapabilityStatementRestResource = {
  type: 'ConceptMap',
  profile: 'http://hl7.org/fhir/StructureDefinition/ConceptMap',
  documentation: 'Read-only: the code maps the device doors use (terminology/), not stored in the database.',
  interaction: [{ code: 'read' }, { code: 'search-type' }],
  searchParam: [{ name: 'url', type: 'uri', definition: 'http://hl7.org/fhir/SearchParameter/ConceptMap-url' }],
  operation: [{ name: 'translate', definition: 'http://hl7.org/fhir/OperationDefinition/ConceptMap-translate' }],
};

/**
 * `$translate` (R4 conceptmap-operation-translate) at type and instance level, GET or POST with
 * Parameters, over the server's own ConceptMaps in terminology/ (the device mappings). Those are
 * files, not stored resources: ConceptMap is a stored type like any other (issue 15), so
 * `GET /fhir/ConceptMap/{id}` reads what clients stored.
 */
export const terminologyRoutes: Plugin<{ ctx: FhirContext }> = {
  name: 'terminology',
  register(server, { ctx }) {
    for (const method of ['GET', 'POST'] as const) {
      for (const path of ['/fhir/ConceptMap/$translate', '/fhir/ConceptMap/{id}/$translate']) {
        server.route({
          method,
          path,
          options: method === 'POST' ? { payload: { parse: false, output: 'data', maxBytes: ctx.config.maxBodyBytes } } : undefined,
          handler: (request: Request, h: ResponseToolkit) => respond(request, h, { status: 200, body: translateOperation(ctx, request) }),
        });
      }
    }
  },
};

function conceptMap(id: string): fhir4.ConceptMap {
  const cm = terminology().conceptMaps.get(id);
  if (!cm) throw notFound(`ConceptMap/${id} is not one of this server's maps`);
  return cm;
}

function translateParameters(ctx: FhirContext, request: Request): Map<string, string> {
  const params = new Map<string, string>();
  for (const [k, v] of Object.entries(request.query as Record<string, string | string[]>)) {
    params.set(k, Array.isArray(v) ? v[0]! : v);
  }
  if (request.method === 'post') {
    const body = parseJsonBody(request.payload, ctx.config.inputLimits) as fhir4.Parameters;
    if (body?.resourceType !== 'Parameters') throw badRequest('$translate takes a Parameters resource in the body');
    checkParameters(body);
    // Only string values count: a number or object where a uri/code belongs is no parameter.
    const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
    for (const p of body.parameter ?? []) {
      const value = text(p.valueUri) ?? text(p.valueCode) ?? text(p.valueString) ?? text(p.valueCanonical);
      if (value !== undefined) params.set(p.name, value);
      const coding = p.name === 'coding' ? (p.valueCoding as Record<string, unknown> | null | undefined) : undefined;
      if (coding && typeof coding === 'object') {
        if (text(coding.system)) params.set('system', coding.system as string);
        if (text(coding.code)) params.set('code', coding.code as string);
      }
    }
  }
  return params;
}

/** R4 ConceptMap/$translate: source system|code to the targets of the named (or every) map. */
function translateOperation(ctx: FhirContext, request: Request): fhir4.Parameters {
  const params = translateParameters(ctx, request);
  const system = params.get('system');
  const code = params.get('code');
  if (!system || !code) throw badRequest('$translate needs system and code (or a coding)');
  let mapIds: string[];
  const id = request.params.id as string | undefined;
  const url = params.get('url');
  if (id) mapIds = [conceptMap(id).id!];
  else if (url) {
    const cm = [...terminology().conceptMaps.values()].find((m) => m.url === url);
    if (!cm) throw notFound(`no ConceptMap with url ${url}`);
    mapIds = [cm.id!];
  } else mapIds = mapsWithSource(system, code);
  const targetSystem = params.get('targetsystem');
  const matches: fhir4.ParametersParameter[] = [];
  for (const mapId of mapIds) {
    const cm = conceptMap(mapId);
    for (const t of translate(mapId, system, code) ?? []) {
      if (!t.code || (targetSystem && t.system !== targetSystem)) continue;
      const part: fhir4.ParametersParameter[] = [
        { name: 'equivalence', valueCode: t.equivalence },
        { name: 'concept', valueCoding: { system: t.system, code: t.code, ...(t.display ? { display: t.display } : {}) } },
        { name: 'source', valueUri: cm.url },
      ];
      matches.push({ name: 'match', part });
    }
  }
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'result', valueBoolean: matches.length > 0 },
      ...(matches.length === 0 ? [{ name: 'message', valueString: `no verified mapping for ${system}|${code}` }] : []),
      ...matches,
    ],
  };
}
