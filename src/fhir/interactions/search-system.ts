import { readLimits } from '../../access/enforce';
import { badRequest } from '../../kernel/outcome';
import { supportedTypes } from '../../kernel/resource-types';
import { searchParametersFor } from '../../search';
import { patientCompartmentOf } from '../../search/registry';
import type { FhirContext, InteractionResult } from '../context';
import type { RestRequest } from '../rest-request';
import { namedTypes, searchOfType, searchsetOf, walkBundle, walkCountOf, walkPositionOf, walkTypes } from './type-walk';

/** Parameters that order or extend one type's matches: no meaning across several types. */
const ONE_TYPE_ONLY = new Set(['_sort', '_include', '_revinclude']);
/** The walk's own paging and totals; the other parameters go to each type's search as given. */
const WALK_PARAMS = new Set(['_type', '_count', '_total', '_page-type', '_page-cursor', '_cursor']);

/**
 * The parameters a search at the base takes whatever the types (CapabilityStatement
 * rest.searchParam): `_type`, and those every supported type has (`_id`, `_lastUpdated`, `_tag`,
 * …, the result parameters) but the ones that need a single type, and `_has`, whose reference
 * parameter refers to some of the types only (`_has:Observation:subject:…` is a 400 for an
 * Observation).
 */
export function systemSearchParameters(): fhir4.CapabilityStatementRestResourceSearchParam[] {
  const [first, ...others] = supportedTypes.map((t) => searchParametersFor(t));
  const everywhere = first!.filter((p) => !ONE_TYPE_ONLY.has(p.name) && p.name !== '_has' && others.every((ps) => ps.some((q) => q.name === p.name && q.type === p.type)));
  return [
    { name: '_type', type: 'special', documentation: 'Comma-separated resource types; without it, every type the token may search' },
    ...everywhere.map((p) => ({
      name: p.name,
      type: p.type as fhir4.CapabilityStatementRestResourceSearchParam['type'],
      ...(p.definition ? { definition: p.definition } : {}),
      ...(p.documentation ? { documentation: p.documentation } : {}),
    })),
  ];
}

/**
 * Search at the base (R4 http.html#search, search.html#all): `GET /fhir?_type=Observation,Condition&patient=…`
 * or `POST /fhir/_search`. One type is exactly that type's search, every parameter included.
 * Several are walked in the order given, one page of `_count` entries over them all, each an
 * ordinary search of its type through the one access policy: the other parameters must be ones
 * every type named has (R4: "all other search parameters SHALL be common to all nominated
 * resources"; an unknown one is the type's 400). Without `_type`, every type the token may
 * search. A type named that the token may not search is a 403, as its own search would be.
 * Across types there is no one order or include source: `_sort`, `_include` and `_revinclude`
 * need a single type.
 *
 * With `compartmentOf`, the same within a patient's compartment (`GET /Patient/{id}/*`, `POST
 * /Patient/{id}/_search`; R4 http.html "Variant Searches"): without `_type`, every type of the
 * Patient compartment the token may search, the Patient included (each type's search applies
 * the compartment, as `/Patient/{id}/{type}` does).
 */
export async function searchSystem(ctx: FhirContext, req: RestRequest, compartmentOf?: string): Promise<InteractionResult> {
  const given = req.query;
  const types = typesOf(given.getAll('_type'), req, compartmentOf !== undefined);
  for (const type of types) readLimits(req.policy, type, 's');
  const typeQuery = () => new URLSearchParams([...given].filter(([k]) => !WALK_PARAMS.has(k)));

  if (types.length === 1) {
    const type = types[0]!;
    const query = new URLSearchParams([...given].filter(([k]) => k !== '_type'));
    return searchOfType(ctx, req, type, query, compartmentOf);
  }
  for (const [name] of given) {
    if (ONE_TYPE_ONLY.has(name.split(':')[0]!)) throw badRequest(`${name} needs a single type: a search of several types (_type) has no one order or source for it`, [name]);
  }
  if (given.has('_cursor')) throw badRequest('_cursor belongs to the search of one type; a search of several pages with _page-type and _page-cursor', ['_cursor']);
  const count = walkCountOf(given, ctx.config.defaultPageSize, ctx.config.maxPageSize);
  const summary = given.get('_summary');
  const wantsTotal = given.get('_total') === 'accurate' || given.get('_total') === 'estimate' || summary === 'count' || count === 0;
  const total = wantsTotal ? await totalOf(ctx, req, types, typeQuery, compartmentOf) : undefined;
  const selfUrl = compartmentOf === undefined ? ctx.baseUrl : `${ctx.baseUrl}/Patient/${encodeURIComponent(compartmentOf)}/*`;
  if (summary === 'count' || count === 0) return { status: 200, body: walkBundle(selfUrl, given, { entries: [] }, total) };

  const from = walkPositionOf(given);
  if (from.at > types.length) throw badRequest('_page-type is past the types searched', ['_page-type']);
  const page = await walkTypes(ctx, req, types, count, from, () => ({ query: typeQuery(), ...(compartmentOf !== undefined ? { compartmentOf } : {}) }));
  const firstAndLast = !given.has('_page-type') && !page.next && given.get('_total') !== 'none';
  return { status: 200, body: walkBundle(selfUrl, given, page, total ?? (firstAndLast ? page.entries.length : undefined)) };
}

/** The types `_type` names, or every type the token may search (of the Patient compartment, for a compartment search). */
function typesOf(values: string[], req: RestRequest, inCompartment: boolean): string[] {
  if (values.length) return namedTypes(values);
  const compartmentTypes = (t: string) => !inCompartment || t === 'Patient' || patientCompartmentOf(t).params.length > 0;
  return supportedTypes.filter((t) => compartmentTypes(t) && req.policy.allows(t, 's'));
}

/** Bundle.total of a search of several types: the sum of each type's count, within the caller's rights. */
async function totalOf(ctx: FhirContext, req: RestRequest, types: readonly string[], typeQuery: () => URLSearchParams, compartmentOf?: string): Promise<number> {
  let total = 0;
  for (const type of types) {
    const query = typeQuery();
    query.set('_summary', 'count');
    if (req.query.get('_total') === 'estimate') query.set('_total', 'estimate');
    total += searchsetOf(await searchOfType(ctx, req, type, query, compartmentOf)).total ?? 0;
  }
  return total;
}
