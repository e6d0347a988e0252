import type { Plugin, Request, ResponseToolkit } from '@hapi/hapi';
import type { FhirContext } from './context';
import { parseJsonBody } from './negotiation';
import { checkParameters } from './operations';
import { badRequest, notFound } from '../kernel/outcome';
import { respond } from './respond';
import { mapsWithSource, translate } from '../terminology/conceptmap';
import { terminology } from '../terminology/load';

/**
 * ConceptMaps served read-only from terminology/ (they are not stored in the database):
 * `GET /fhir/ConceptMap`, `GET /fhir/ConceptMap/{id}`, and `$translate` (R4
 * conceptmap-operation-translate) at type and instance level, GET or POST with Parameters.
 */
export const terminologyRoutes: Plugin<{ ctx: FhirContext }> = {
  name: 'terminology',
  register(server, { ctx }) {
    server.route({
      method: 'GET',
      path: '/fhir/ConceptMap',
      handler: (request, h) => {
        const url = (request.query as Record<string, string | undefined>).url;
        const maps = [...terminology().conceptMaps.values()].filter((cm) => !url || cm.url === url);
        const bundle: fhir4.Bundle = {
          resourceType: 'Bundle',
          type: 'searchset',
          total: maps.length,
          link: [{ relation: 'self', url: `${ctx.baseUrl}/ConceptMap${url ? `?url=${encodeURIComponent(url)}` : ''}` }],
          entry: maps.map((cm) => ({ fullUrl: `${ctx.baseUrl}/ConceptMap/${cm.id}`, resource: cm, search: { mode: 'match' } })),
        };
        return respond(request, h, { status: 200, body: bundle });
      },
    });
    server.route({
      method: 'GET',
      path: '/fhir/ConceptMap/{id}',
      handler: (request, h) => respond(request, h, { status: 200, body: conceptMap(request.params.id as string) }),
    });
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
  if (!cm) throw notFound(`ConceptMap/${id} is not known`);
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
