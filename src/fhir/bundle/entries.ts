import { badRequest, OperationOutcomeError } from '../../kernel/outcome';
import { isSupportedType } from '../../kernel/resource-types';
import { servedDefinitionsOf } from '../served-definitions';
import { parseIfNoneMatchOnUpdate, parseVersionTag } from '../../kernel/etag';
import { type InputLimits, parseJsonWithin } from '../../kernel/input-limits';
import { isFhirPathPatch, type WriteOp } from '../../pipeline';

/** One entry of a transaction or batch, parsed from `entry.request`. */
export interface ParsedEntry {
  index: number;
  fullUrl?: string;
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** The entry's `request.url`, relative to the FHIR base. */
  url: string;
  resource?: Record<string, unknown>;
  /** A GET's conditional read (`request.ifNoneMatch`, `request.ifModifiedSince`), as the REST headers. */
  conditions?: { ifNoneMatch?: string; ifModifiedSince?: string };
  /** Set for POST/PUT/PATCH/DELETE: the write this entry asks for. */
  write?: WriteOp;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);

/** `Patient/123` → type and id; `Patient?identifier=x` → type and search; an absolute URL on `baseUrl` is made relative. */
export function splitRequestUrl(url: string, baseUrl: string, index?: number): { path: string[]; query: URLSearchParams } {
  // An absolute URL (it has a scheme) that is not on our base names another server: say so,
  // rather than take its scheme for a resource type. (A read entry's error is named by its caller.)
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(url) && !url.startsWith(`${baseUrl}/`)) {
    const said = `request.url ${url} is not on this server's base ${baseUrl}`;
    throw index === undefined ? badRequest(said) : entryError(index, 400, said);
  }
  let relative = url.startsWith(`${baseUrl}/`) ? url.slice(baseUrl.length + 1) : url;
  relative = relative.replace(/^\/+/, '');
  const q = relative.indexOf('?');
  const path = (q === -1 ? relative : relative.slice(0, q)).split('/').filter((s) => s !== '');
  return { path, query: new URLSearchParams(q === -1 ? '' : relative.slice(q + 1)) };
}

/**
 * Bundle invariant bdl-7: a fullUrl names one entry, unless the entries carry different
 * `meta.versionId`s (`versionId` given only where that exception may apply). 400 for the whole
 * bundle, before any entry is processed: the bundle itself is invalid, a batch's included.
 */
export function checkUniqueFullUrls(entries: ReadonlyArray<{ index: number; fullUrl?: string; versionId?: string }>): void {
  // bdl-7 as its FHIRPath has it: `fullUrl & resource.meta.versionId` distinct (an absent versionId is '').
  const seen = new Map<string, number>();
  for (const e of entries) {
    if (!e.fullUrl) continue;
    const key = `${e.fullUrl}\u0000${e.versionId ?? ''}`;
    const first = seen.get(key);
    if (first !== undefined) throw entryError(e.index, 400, `fullUrl ${e.fullUrl} is already the fullUrl of entry ${first} (bdl-7)`);
    seen.set(key, e.index);
  }
}

export function entryError(index: number, status: number, diagnostics: string): OperationOutcomeError {
  return new OperationOutcomeError(status, { code: status === 404 ? 'not-found' : status === 405 ? 'not-supported' : 'invalid', diagnostics: `Bundle.entry[${index}]: ${diagnostics}`, expression: [`Bundle.entry[${index}]`] });
}

/**
 * Checks the Bundle's shape and turns each entry into a ParsedEntry. Shape errors of the whole
 * bundle are thrown; an entry's own problem is thrown as an error naming the entry (a batch
 * catches it per entry, a transaction fails with it).
 */
export function parseBundle(body: unknown, maxEntries: number): { type: 'transaction' | 'batch'; entries: unknown[] } {
  const bundle = body as { resourceType?: unknown; type?: unknown; entry?: unknown } | null;
  if (!bundle || typeof bundle !== 'object' || bundle.resourceType !== 'Bundle') {
    throw badRequest('POST to the FHIR base takes a Bundle of type transaction or batch', ['resourceType']);
  }
  if (bundle.type !== 'transaction' && bundle.type !== 'batch') {
    throw badRequest(`Bundle.type must be transaction or batch to be processed, not ${JSON.stringify(bundle.type)}`, ['Bundle.type']);
  }
  const entries = bundle.entry ?? [];
  if (!Array.isArray(entries)) throw badRequest('Bundle.entry must be an array', ['Bundle.entry']);
  if (entries.length > maxEntries) {
    throw new OperationOutcomeError(413, { code: 'too-costly', diagnostics: `the bundle has ${entries.length} entries; this server takes at most ${maxEntries} per bundle`, expression: ['Bundle.entry'] });
  }
  return { type: bundle.type, entries };
}

export function parseEntry(raw: unknown, index: number, baseUrl: string, limits: InputLimits): ParsedEntry {
  const entry = raw as { fullUrl?: unknown; resource?: unknown; request?: Record<string, unknown> } | null;
  if (!entry || typeof entry !== 'object') throw entryError(index, 400, 'is not an object');
  const request = entry.request;
  if (!request || typeof request.method !== 'string' || typeof request.url !== 'string') {
    throw entryError(index, 400, 'request.method and request.url are required in a transaction or batch');
  }
  const method = request.method.toUpperCase();
  if (!METHODS.has(method)) throw entryError(index, 400, `request.method ${request.method} is not an HTTP verb of FHIR`);
  const fullUrl = typeof entry.fullUrl === 'string' ? entry.fullUrl : undefined;
  const resource = entry.resource && typeof entry.resource === 'object' ? (entry.resource as Record<string, unknown>) : undefined;
  const parsed: ParsedEntry = { index, fullUrl, method: method as ParsedEntry['method'], url: request.url, resource };
  const text = (key: string) => (typeof request[key] === 'string' ? (request[key] as string) : undefined);
  if (method === 'GET' || method === 'HEAD') {
    parsed.conditions = { ifNoneMatch: text('ifNoneMatch'), ifModifiedSince: text('ifModifiedSince') };
    return parsed;
  }

  const { path, query } = splitRequestUrl(request.url, baseUrl, index);
  const [type, id, ...rest] = path;
  const served = type ? servedDefinitionsOf(type) : undefined;
  // The server's own definitions: refused as their REST writes are (405).
  if (served) throw entryError(index, 405, `request.url ${request.url}: ${served.readOnly}`);
  if (!type || !isSupportedType(type)) throw entryError(index, 404, `request.url ${request.url}: '${type ?? ''}' is not a resource type this server supports`);
  if (rest.length > 0 || (id !== undefined && id.startsWith('$'))) {
    throw entryError(index, 400, `request.url ${request.url} is not a ${method} this server supports in a bundle`);
  }
  const ifMatch = parseVersionTag(text('ifMatch'), `Bundle.entry[${index}].request.ifMatch`);
  const match = id === undefined && [...query.keys()].length > 0 ? query : undefined;
  const needsBody = method === 'POST' || method === 'PUT' || method === 'PATCH';
  if (needsBody && !resource) throw entryError(index, 400, `a ${method} entry needs a resource`);
  switch (method) {
    case 'POST': {
      if (id !== undefined) throw entryError(index, 400, `POST goes to the type (${type}), not to an id`);
      const ifNoneExist = typeof request.ifNoneExist === 'string' ? new URLSearchParams(request.ifNoneExist.replace(/^.*\?/, '')) : undefined;
      parsed.write = { kind: 'create', type, resource, ifNoneExist };
      break;
    }
    case 'PUT':
      if (id === undefined && !match) throw entryError(index, 400, 'PUT needs an id or search parameters in request.url');
      parsed.write = { kind: 'update', type, id, match, resource, ifMatch };
      if (parseIfNoneMatchOnUpdate(text('ifNoneMatch'), `Bundle.entry[${index}].request.ifNoneMatch`)) parsed.write.ifNoneMatchAny = true;
      break;
    case 'PATCH':
      parsed.write = { kind: 'patch', type, id, match, patch: patchOperations(resource!, index, limits), ifMatch };
      break;
    case 'DELETE':
      if (id === undefined && !match) throw entryError(index, 400, 'DELETE needs an id or search parameters in request.url');
      parsed.write = { kind: 'delete', type, id, match, ifMatch };
      break;
  }
  return parsed;
}

/**
 * In a bundle, a FHIRPath Patch is the entry's Parameters resource, and a JSON Patch travels as a
 * Binary resource whose base64 `data` is the patch (R4 http.html#patch, "Patch using JSON Patch"
 * in a transaction).
 */
function patchOperations(resource: Record<string, unknown>, index: number, limits: InputLimits): unknown {
  if (isFhirPathPatch(resource)) return resource;
  if (resource.resourceType !== 'Binary' || typeof resource.data !== 'string') {
    throw entryError(index, 400, 'a PATCH entry carries a FHIRPath Patch (a Parameters resource) or its JSON Patch as a Binary resource with contentType application/json-patch+json and base64 data');
  }
  try {
    return parseJsonWithin(Buffer.from(resource.data, 'base64').toString('utf8'), limits);
  } catch (err) {
    if (err instanceof OperationOutcomeError) throw entryError(index, err.status, err.message);
    throw entryError(index, 400, 'the Binary data of a PATCH entry is not a base64 JSON Patch document');
  }
}
