import { badRequest } from '../../kernel/outcome';
import { isSupportedType } from '../../kernel/resource-types';
import { parseStoredJson } from '../../kernel/input-limits';
import { containsKeptDecimals } from '../../kernel/json-decimals';
import type { FhirContext, InteractionResult } from '../context';
import type { RestRequest } from '../rest-request';
import { search } from './search';

/** Where a walk over several types is: the index of the type reached and that type's own search cursor. */
export interface WalkPosition {
  at: number;
  inner?: string;
}

/** One type's search in a walk: its query (without paging) and the patient compartment it is confined to, if any. */
export interface TypeSearch {
  query: URLSearchParams;
  compartmentOf?: string;
}

/** The parameters of the next link that carry a walk's position (`_page-type`, `_page-cursor`). */
const PAGE_TYPE = '_page-type';
const PAGE_CURSOR = '_page-cursor';

export function walkPositionOf(given: URLSearchParams): WalkPosition {
  const text = given.get(PAGE_TYPE);
  if (text !== null && !/^\d{1,4}$/.test(text)) throw badRequest(`${PAGE_TYPE} must be a non-negative integer`, [PAGE_TYPE]);
  const inner = given.get(PAGE_CURSOR);
  return { at: text === null ? 0 : Number(text), ...(inner !== null ? { inner } : {}) };
}

/**
 * One page of `count` entries over several types' searches, type after type (Patient/$everything,
 * system-level search). Each type is an ordinary search of that type through the one access
 * policy (`search`: compartment, granular scopes, reach of chains and includes, audit of what it
 * disclosed), so a walk shows exactly what its caller could find type by type.
 */
export async function walkTypes(
  ctx: FhirContext,
  req: RestRequest,
  types: readonly string[],
  count: number,
  from: WalkPosition,
  searchOf: (type: string) => TypeSearch,
): Promise<{ entries: fhir4.BundleEntry[]; next?: WalkPosition }> {
  let { at, inner } = from;
  const entries: fhir4.BundleEntry[] = [];
  while (at < types.length) {
    const type = types[at]!;
    const { query, compartmentOf } = searchOf(type);
    if (inner) query.set('_cursor', inner);
    query.set('_count', String(count - entries.length));
    const bundle = searchsetOf(await searchOfType(ctx, req, type, query, compartmentOf));
    entries.push(...(bundle.entry ?? []).filter((e) => e.search?.mode !== 'outcome'));
    const next = bundle.link?.find((l) => l.relation === 'next');
    if (next) {
      inner = new URL(next.url).searchParams.get('_cursor') ?? undefined;
      if (entries.length >= count) return { entries, next: { at, ...(inner ? { inner } : {}) } };
    } else {
      at++;
      inner = undefined;
      if (entries.length >= count) return { entries, ...(at < types.length ? { next: { at } } : {}) };
    }
  }
  return { entries };
}

/** `req` as the ordinary search of `type` with `query` (and, if given, within a patient's compartment). */
export function searchOfType(ctx: FhirContext, req: RestRequest, type: string, query: URLSearchParams, compartmentOf?: string): Promise<InteractionResult> {
  return search(ctx, {
    ...req, type, id: undefined, operation: undefined, query, url: withQuery(`${ctx.baseUrl}/${type}`, query),
    ...(compartmentOf !== undefined ? { compartmentOf } : {}),
  });
}

/** The types `_type` values name (comma-separated, possibly repeated), in order, each once; a type this server does not have is a 400. */
export function namedTypes(values: readonly string[]): string[] {
  const types: string[] = [];
  for (const t of values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean)) {
    if (!isSupportedType(t)) throw badRequest(`_type: '${t.slice(0, 40)}' is not a resource type this server supports`, ['_type']);
    if (!types.includes(t)) types.push(t);
  }
  return types;
}

/** A walk's page size: `_count` (0 allowed, for a count only), at most `max`. */
export function walkCountOf(given: URLSearchParams, defaultCount: number, max: number): number {
  const text = given.get('_count');
  if (text === null) return defaultCount;
  if (!/^\d{1,6}$/.test(text)) throw badRequest('_count must be a non-negative integer', ['_count']);
  return Math.min(Number(text), max);
}

/** The searchset a search answered, parsed (decimals as written). */
export function searchsetOf(result: InteractionResult): fhir4.Bundle {
  const body = result.body as { json: string } | fhir4.Bundle;
  return ('json' in body ? parseStoredJson(body.json) : body) as fhir4.Bundle;
}

/** A searchset Bundle of a walk's page, its next link carrying the position reached. */
export function walkBundle(selfUrl: string, given: URLSearchParams, page: { entries: fhir4.BundleEntry[]; next?: WalkPosition }, total?: number): fhir4.Bundle {
  const link: fhir4.BundleLink[] = [{ relation: 'self', url: withQuery(selfUrl, given) }];
  if (page.next) {
    const next = new URLSearchParams([...given].filter(([k]) => k !== PAGE_TYPE && k !== PAGE_CURSOR));
    next.set(PAGE_TYPE, String(page.next.at));
    if (page.next.inner) next.set(PAGE_CURSOR, page.next.inner);
    link.push({ relation: 'next', url: withQuery(selfUrl, next) });
  }
  // R4 json.html: arrays are never empty, so a page with nothing on it has no entry element.
  const bundle: fhir4.Bundle = { resourceType: 'Bundle', type: 'searchset', ...(total !== undefined ? { total } : {}), link, ...(page.entries.length ? { entry: page.entries } : {}) };
  containsKeptDecimals(bundle, page.entries.map((e) => e.resource));
  return bundle;
}

const withQuery = (url: string, query: URLSearchParams) => (query.toString() ? `${url}?${query.toString()}` : url);
