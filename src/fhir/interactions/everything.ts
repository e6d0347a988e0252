import { badRequest } from '../../kernel/outcome';
import { parseStoredJson } from '../../kernel/input-limits';
import { containsKeptDecimals } from '../../kernel/json-decimals';
import { isSupportedType, supportedTypes } from '../../kernel/resource-types';
import { parseDateRange } from '../../search/date-range';
import { parameterOf, patientCompartmentOf } from '../../search/registry';
import type { FhirContext, InteractionResult } from '../context';
import type { RestRequest } from '../rest-request';
import { search } from './search';
import { operationQuery } from '../operation-params';

/**
 * `Patient/{id}/$everything` (R4 OperationDefinition Patient-everything; GDPR Art. 15 and 20):
 * the Patient and every resource of its compartment the caller may search, as a searchset
 * Bundle. Each type is an ordinary compartment search through the one access policy, so a
 * token sees here exactly what it could find type by type, nothing more; types it has no
 * right to search are left out, not refused.
 *
 * Parameters: start/end (care dates, on the types that have a `date` parameter), _since
 * (meta.lastUpdated), _type (which types), _count (page size). Paging walks the types in order;
 * the next link carries the type reached and that type's own search cursor.
 */
export async function everything(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const patientId = req.id!;
  const given = operationQuery(req);
  const count = Math.min(Math.max(intOf(given, '_count') ?? ctx.config.defaultPageSize, 1), ctx.config.maxPageSize);
  for (const name of ['start', 'end', '_since'] as const) {
    const value = given.get(name);
    if (value !== null && !parseDateRange(value)) throw badRequest(`${name}: '${value.slice(0, 40)}' is not a FHIR date`, [name]);
  }
  const types = typesOf(given.get('_type')).filter((t) => req.policy.allows(t, 's'));

  let at = intOf(given, '_page-type') ?? 0;
  let inner = given.get('_page-cursor') ?? undefined;
  const entries: fhir4.BundleEntry[] = [];
  let more = false;
  while (at < types.length) {
    const type = types[at]!;
    const query = new URLSearchParams();
    if (type === 'Patient') query.set('_id', patientId);
    if (given.get('_since')) query.set('_lastUpdated', `ge${given.get('_since')}`);
    if (parameterOf(type, 'date')) {
      if (given.get('start')) query.append('date', `ge${given.get('start')}`);
      if (given.get('end')) query.append('date', `le${given.get('end')}`);
    }
    if (inner) query.set('_cursor', inner);
    query.set('_count', String(count - entries.length));
    const result = await search(ctx, {
      ...req, type, id: undefined, operation: undefined, query, url: `${ctx.baseUrl}/${type}?${query.toString()}`,
      ...(type === 'Patient' ? {} : { compartmentOf: patientId }),
    });
    const body = result.body as { json: string } | fhir4.Bundle;
    const bundle = ('json' in body ? parseStoredJson(body.json) : body) as fhir4.Bundle;
    entries.push(...(bundle.entry ?? []).filter((e) => e.search?.mode !== 'outcome'));
    const next = bundle.link?.find((l) => l.relation === 'next');
    if (next) {
      inner = new URL(next.url).searchParams.get('_cursor') ?? undefined;
      if (entries.length >= count) {
        more = true;
        break;
      }
    } else {
      at++;
      inner = undefined;
      if (entries.length >= count) {
        more = at < types.length;
        break;
      }
    }
  }

  const self = `${ctx.baseUrl}/Patient/${patientId}/$everything?${given.toString()}`;
  const link: fhir4.BundleLink[] = [{ relation: 'self', url: self }];
  if (more) {
    const next = new URLSearchParams([...given].filter(([k]) => k !== '_page-type' && k !== '_page-cursor'));
    next.set('_page-type', String(at));
    if (inner) next.set('_page-cursor', inner);
    link.push({ relation: 'next', url: `${ctx.baseUrl}/Patient/${patientId}/$everything?${next.toString()}` });
  }
  const everything: fhir4.Bundle = { resourceType: 'Bundle', type: 'searchset', link, entry: entries };
  containsKeptDecimals(everything, entries.map((e) => e.resource));
  return { status: 200, body: everything };
}

/** The Patient first, then every type with a Patient compartment, or those `_type` names. */
function typesOf(requested: string | null): string[] {
  const all = ['Patient', ...supportedTypes.filter((t) => t !== 'Patient' && patientCompartmentOf(t).params.length > 0)];
  if (requested === null) return all;
  const asked = requested.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of asked) if (!isSupportedType(t)) throw badRequest(`_type: '${t.slice(0, 40)}' is not a resource type this server supports`, ['_type']);
  return all.filter((t) => asked.includes(t));
}

/** The query (GET) or a Parameters body (POST), as one list of parameters. */
function intOf(params: URLSearchParams, name: string): number | undefined {
  const text = params.get(name);
  if (text === null) return undefined;
  if (!/^\d{1,6}$/.test(text)) throw badRequest(`${name} must be a non-negative integer`, [name]);
  return Number(text);
}
