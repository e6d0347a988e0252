import { elementTypeAt } from '../../kernel/structure-definitions';

/**
 * Walks every `reference` string of a resource (nested elements, extensions' valueReference,
 * contained resources) and replaces it by what `replace` returns; also rewrites the same
 * placeholders where the narrative links to them (R4 bundle.html#references) and where elements
 * of type uri, url, oid or uuid hold them (R4 http.html#trules).
 */
export function rewriteReferences(resource: Record<string, unknown>, replace: (reference: string) => string | undefined, placeholders: ReadonlyMap<string, string>): void {
  walk(resource, replace);
  if (placeholders.size > 0) rewriteUris(resource, String(resource.resourceType), [], placeholders);
  const text = resource.text as { div?: unknown } | undefined;
  if (text && typeof text.div === 'string' && text.div.includes('urn:')) {
    let div = text.div;
    for (const [from, to] of placeholders) {
      if (div.includes(from)) div = div.replaceAll(from, to);
    }
    text.div = div;
  }
}

/** R4 http.html#trules: links in these elements are rewritten as references are. */
const URI_TYPES = new Set(['uri', 'url', 'oid', 'uuid']);

/**
 * Rewrites the values that are an entry's fullUrl in elements of type uri, url, oid and uuid
 * (an Attachment.url naming the Binary posted beside it, an extension's valueUri). Only a value
 * equal to a fullUrl has its element's type looked up; the same text in a string (an
 * Identifier.value naming a resource by its placeholder) is left as sent. `reference` is
 * `walk`'s, the narrative `rewriteReferences`'s.
 */
function rewriteUris(node: unknown, resourceType: string, keys: string[], placeholders: ReadonlyMap<string, string>): void {
  if (Array.isArray(node)) {
    for (const item of node) rewriteUris(item, resourceType, keys, placeholders);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const obj = node as Record<string, unknown>;
  // A contained resource's elements are named from its own type.
  if (keys.length > 0 && typeof obj.resourceType === 'string') return rewriteUris(obj, obj.resourceType, [], placeholders);
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    if (key === 'reference' || key === 'div' || key.startsWith('_')) continue;
    keys.push(key);
    if (typeof value === 'string') {
      const target = placeholders.get(value);
      if (target !== undefined && URI_TYPES.has(elementTypeAt(resourceType, keys) ?? '')) obj[key] = target;
    } else if (typeof value === 'object') {
      rewriteUris(value, resourceType, keys, placeholders);
    }
    keys.pop();
  }
}

function walk(node: unknown, replace: (reference: string) => string | undefined): void {
  if (Array.isArray(node)) {
    for (const item of node) walk(item, replace);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const obj = node as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    if (key === 'reference' && typeof value === 'string') {
      const replacement = replace(value);
      if (replacement !== undefined) obj[key] = replacement;
    } else if (typeof value === 'object') {
      walk(value, replace);
    }
  }
}

/** Every `reference` string of a resource, for resolving conditional references up front. */
export function collectReferences(resource: Record<string, unknown>): string[] {
  const found: string[] = [];
  walk(resource, (r) => {
    found.push(r);
    return undefined;
  });
  return found;
}

/** `Type/id`: a relative literal reference (no version, search or fragment). */
const RELATIVE = /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/;
/** A RESTful fullUrl `{base}/Type/id`: its base. */
const RESTFUL_FULL_URL = /^(https?:\/\/.+)\/[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/;

/**
 * R4 bundle.html#references: a relative reference in an entry whose fullUrl is a RESTful URL
 * means that URL's base plus the reference. `Patient/123` in a bundle exported from
 * http://ehr.example/fhir names the entry with fullUrl http://ehr.example/fhir/Patient/123, which
 * this server stores under an id of its own; left as sent it would name this server's
 * Patient/123, another patient or none. Such references are made absolute here, so the
 * transaction's fullUrl rewrite points them at the entry's new id. A relative reference that names
 * no entry is left as sent: clients put made-up bases in fullUrls and mean this server's resources.
 */
export function absoluteWhereAnEntryIsNamed(entries: ReadonlyArray<{ fullUrl?: string; resource?: Record<string, unknown>; method: string }>): void {
  const fullUrls = new Set(entries.flatMap((e) => (e.fullUrl ? [e.fullUrl] : [])));
  for (const entry of entries) {
    const base = entry.fullUrl ? RESTFUL_FULL_URL.exec(entry.fullUrl)?.[1] : undefined;
    // A PATCH entry's resource is its patch document, not the resource it writes.
    if (!base || !entry.resource || entry.method === 'PATCH') continue;
    walk(entry.resource, (ref) => (RELATIVE.test(ref) && fullUrls.has(`${base}/${ref}`) ? `${base}/${ref}` : undefined));
  }
}

export const isPlaceholder = (reference: string) => reference.startsWith('urn:uuid:') || reference.startsWith('urn:oid:');

/** `Patient?identifier=x|1`: a search in place of an id, allowed in transactions (R4 http.html#trules). */
export const isConditionalReference = (reference: string) => /^[A-Z][A-Za-z]+\?/.test(reference);
