import type { Plugin, Request, ResponseToolkit, RouteOptions } from '@hapi/hapi';
import { policyOf } from '../access/request';
import { search } from './interactions/search';
import { searchSystem } from './interactions/search-system';
import type { FhirContext, InteractionResult } from './context';
import { metadata } from './capability';
import { bundle } from './interactions/bundle';
import { history } from './interactions/history';
import { read, vread } from './interactions/read';
import { create, patch, remove, update } from './interactions/write-rest';
import { parseVersionTag } from '../kernel/etag';
import { rawQueryOf } from '../kernel/request-target';
import { checkBodyType, parseJsonBody, preferences, responseType } from './negotiation';
import { badRequest, notFound, notSupported } from '../kernel/outcome';
import { isSupportedType } from '../kernel/resource-types';
import { isValidId, requireValidId } from '../kernel/id';
import { cancellable, withRequestSignal } from './request-lifetime';
import { onReplica } from './read-routing';
import { respond } from './respond';
import type { RestRequest } from './rest-request';

type Handler = (ctx: FhirContext, req: RestRequest) => Promise<InteractionResult>;

/**
 * The FHIR REST routes under /fhir: a thin adapter from Hapi requests to the interactions,
 * which know nothing of Hapi (bundles replay them).
 */
export const fhirRoutes: Plugin<{ ctx: FhirContext }> = {
  name: 'fhir-rest',
  register(server, { ctx }) {
    const bodyOptions = (): RouteOptions['payload'] => ({ parse: false, output: 'data', maxBytes: ctx.config.maxBodyBytes });

    const route = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, handler: Handler, opts: { body?: 'resource' | 'resource-or-patch' | 'form' } = {}) =>
      server.route({
        method,
        path: `/fhir${path}`,
        options: { payload: opts.body ? bodyOptions() : undefined },
        handler: async (request: Request, h: ResponseToolkit) => {
          const req = toRestRequest(ctx, request, opts.body);
          return respond(request, h, await cancellable(request, (signal) => handler(withRequestSignal(ctx, signal), req)));
        },
      });

    server.route({
      method: 'GET',
      path: '/fhir/metadata',
      handler: (request, h) => respond(request, h, { status: 200, body: metadata(ctx, new URLSearchParams(rawQueryOf(request))) }),
    });

    route('POST', '', bundle, { body: 'resource' });
    route('GET', '/_history', (c, r) => history(c, { ...r, type: undefined }));
    route('GET', '/{type}/_history', (c, r) => history(c, r));
    route('GET', '/{type}/{id}/_history', (c, r) => history(c, r));
    // Without this, the compartment route below would take /Patient/{id}/_history (its literal
    // 'Patient' segment outranks '{type}' in Hapi's router).
    route('GET', '/Patient/{id}/_history', (c, r) => history(c, r));
    route('GET', '/{type}/{id}/_history/{vid}', vread);

    route('GET', '', onReplica(searchSystem));
    route('POST', '/_search', onReplica(searchSystem), { body: 'form' });
    route('GET', '/{type}', onReplica(search));
    route('POST', '/{type}/_search', onReplica(search), { body: 'form' });
    // Compartment searches (R4 http.html, "Variant Searches"): of one type, or of all (`*`, and
    // POST `_search`), each type an ordinary search confined to the patient's compartment.
    const compartmentSearch = onReplica((c: FhirContext, r: RestRequest) =>
      r.compartmentType === undefined || r.compartmentType === '*' ? searchSystem(c, r, r.id) : search(c, { ...r, type: r.compartmentType, compartmentOf: r.id }));
    route('GET', '/Patient/{id}/{compartmentType}', (c, r) => (r.operation?.startsWith('$') ? operation(c, r, 'GET') : compartmentSearch(c, r)));
    route('POST', '/Patient/{id}/_search', compartmentSearch, { body: 'form' });
    route('POST', '/Patient/{id}/{compartmentType}/_search', compartmentSearch, { body: 'form' });

    route('POST', '/{type}', create, { body: 'resource' });
    route('PUT', '/{type}', update, { body: 'resource' });
    route('PATCH', '/{type}', patch, { body: 'resource-or-patch' });
    route('DELETE', '/{type}', remove);
    route('GET', '/{type}/{id}', (c, r) => (r.id?.startsWith('$') ? operation(c, { ...r, operation: r.id, id: undefined }, 'GET') : read(c, r)));
    route('PUT', '/{type}/{id}', update, { body: 'resource' });
    route('PATCH', '/{type}/{id}', patch, { body: 'resource-or-patch' });
    route('DELETE', '/{type}/{id}', remove);

    // Operations: `$name` in the id position, at type or instance level. GET reads parameters
    // from the query; POST takes a Parameters resource or, for $validate, the resource itself.
    route('POST', '/{type}/{operation}', (c, r) => operation(c, r, 'POST'), { body: 'resource' });
    route('POST', '/{type}/{id}/{operation}', (c, r) => operation(c, r, 'POST'), { body: 'resource' });
    route('GET', '/{type}/{id}/{operation}', (c, r) => operation(c, r, 'GET'));

    // Known paths with a method the server does not serve are 405, not Hapi's bare 404.
    server.route({
      method: '*',
      path: '/fhir/{path*}',
      options: { payload: { parse: false, output: 'data', maxBytes: ctx.config.maxBodyBytes } },
      handler: (request) => {
        const first = (request.params.path as string | undefined)?.split('/')[0] ?? '';
        if (first === '' || first === 'metadata' || first === '_history' || isSupportedType(first)) {
          throw notSupported(`${request.method.toUpperCase()} ${request.path} is not an interaction this server supports`);
        }
        throw notFound(`${request.path} is not a FHIR endpoint of this server`);
      },
    });
  },
};


function toRestRequest(ctx: FhirContext, request: Request, body: 'resource' | 'resource-or-patch' | 'form' | undefined): RestRequest {
  const params = request.params as Record<string, string | undefined>;
  // The type is a path parameter, or the literal segment of the /Patient/{id}/… routes; the
  // system-level routes (GET and POST /fhir, /_search, /_history) have none and read no type.
  const type = params.type ?? (request.route.path.startsWith('/fhir/Patient/') ? 'Patient' : '');
  if (type === 'metadata' || type === '_history') {
    throw notSupported(`${request.method.toUpperCase()} ${request.path} is not an interaction this server supports`);
  }
  if (type !== '' && !isSupportedType(type)) {
    throw notFound(`resource type '${type}' is not supported by this server (see /fhir/metadata)`);
  }
  if (params.compartmentType !== undefined && !params.compartmentType.startsWith('$') && params.compartmentType !== '*' && !isSupportedType(params.compartmentType)) {
    throw notFound(`resource type '${params.compartmentType}' is not supported by this server (see /fhir/metadata)`);
  }
  // Ids in the path are checked once here for every route (reads, writes, history, compartments,
  // instance operations), before they reach a query; `$name` in the id position is an operation.
  // A read of an id no resource can have is 404 (nothing is there), a write 400 (it never can be).
  for (const [value, what] of [[params.id, 'id'], [params.vid, 'version id']] as const) {
    if (value === undefined || value.startsWith('$') || isValidId(value)) continue;
    if (request.method === 'get') throw notFound(`${type}/${[params.id, params.vid].filter(Boolean).join('/_history/').slice(0, 100)} is not known (not a FHIR ${what})`);
    requireValidId(value, what);
  }
  // Negotiate before doing any work, so an unacceptable Accept is 406 even for writes.
  responseType((request.query as Record<string, string | string[] | undefined>)._format, request.headers.accept as string | undefined);
  const rawQuery = rawQueryOf(request);
  const query = new URLSearchParams(rawQuery);
  const headers = request.headers as Record<string, string | undefined>;
  const prefer = preferences(headers.prefer);
  const rest: RestRequest = {
    type,
    id: params.id,
    versionId: params.vid,
    compartmentType: params.compartmentType,
    operation: params.operation ?? (params.compartmentType?.startsWith('$') ? params.compartmentType : undefined),
    query,
    prefer: prefer.return,
    preferExplicit: prefer.explicit,
    lenient: prefer.lenient,
    url: `${ctx.baseUrl}${request.path.replace(/^\/fhir/, '')}${rawQuery ? `?${rawQuery}` : ''}`,
    ifMatch: parseVersionTag(headers['if-match'], 'If-Match'),
    policy: policyOf(request),
    ifNoneExist: headers['if-none-exist'],
    ifNoneMatch: headers['if-none-match'],
    ifModifiedSince: headers['if-modified-since'],
    ...(headers['x-commit-lsn'] !== undefined ? { commitLsn: headers['x-commit-lsn'] } : {}),
  };
  if (body === 'form') {
    // POST _search: parameters in an application/x-www-form-urlencoded body, merged with the URL's.
    const type = (headers['content-type'] ?? '').split(';')[0]!.trim();
    if (type !== 'application/x-www-form-urlencoded') {
      throw badRequest('POST _search takes an application/x-www-form-urlencoded body');
    }
    for (const [k, v] of new URLSearchParams(String(request.payload ?? ''))) query.append(k, v);
  } else if (body) {
    rest.bodyKind = checkBodyType(headers['content-type'], { allowPatch: body === 'resource-or-patch' });
    rest.body = parseJsonBody(request.payload, ctx.config.inputLimits);
  }
  return rest;
}

function operation(ctx: FhirContext, req: RestRequest, method: 'GET' | 'POST'): Promise<InteractionResult> {
  if (!req.operation?.startsWith('$')) {
    // POST /{type}/{id}: the instance's URL, which takes GET, PUT, PATCH and DELETE (R4 http.html).
    if (method === 'POST' && req.id === undefined && req.operation !== undefined && isValidId(req.operation)) {
      throw notSupported(`POST ${req.type}/${req.operation} is not an interaction: create is POST ${req.type}, update is PUT ${req.type}/${req.operation}`);
    }
    throw notFound(`${[req.type, req.id, req.operation].filter(Boolean).join('/')} is not an operation ($name) or other endpoint of this server`);
  }
  return ctx.operations.invoke(ctx, req, method);
}
