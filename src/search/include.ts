import { supportedTypes } from '../kernel/resource-types';
import type { Queryable } from '../store/db';
import { tableOf } from '../store/tables';
import { indexTableOf } from './index-tables';
import type { IncludeSpec } from './parse';
import { referenceParams } from './parse';
import { storedSourcesOf } from './registry';
import { limitsIfAllowed, type Reach, type TypeLimits } from './reach';
import { limitConditions } from './sql';
import { SqlParams } from '../kernel/sql-params';

/**
 * `_include` and `_revinclude` through the reference index: one query per (type, parameter
 * set) for the targets, one per target type for their JSON. Every included resource, at every
 * `:iterate` level, is held to what the caller may read of its type (compartment and granular
 * limits, as SQL conditions): a server once leaked other patients' data through includes.
 */
export interface FoundResource {
  type: string;
  id: string;
  json: string;
}

/** A safety cap on resources added by one include pass (the page size bounds matches, not these). */
export const MAX_INCLUDED = 1000;

function key(type: string, id: string): string {
  return `${type}/${id}`;
}

async function fetchResources(db: Queryable, type: string, ids: string[], limits: TypeLimits): Promise<FoundResource[]> {
  if (!ids.length) return [];
  const q = new SqlParams();
  const conds = [`r.id = ANY(${q.bind(ids, 'text[]')})`, 'NOT r.deleted', ...limitConditions(type, limits, 'r', q)];
  const { rows } = await db.query<{ id: string; json: string }>(`SELECT r.id, r.content::text AS json FROM ${tableOf(type)} r WHERE ${conds.join(' AND ')} LIMIT ${MAX_INCLUDED}`, q.values);
  return rows.map((row) => ({ type, id: row.id, json: row.json }));
}

/**
 * What may be included of `type`: the caller's read limits, narrowed to the compartment of a
 * compartment search. Undefined when the caller may not read the type at all (then nothing of it
 * is included; searches that name such a type explicitly were refused before any SQL ran).
 */
function includeLimits(reach: Reach, type: string, compartment: string | undefined): TypeLimits | undefined {
  const limits = limitsIfAllowed(reach, type, 'r');
  if (!limits) return undefined;
  return compartment !== undefined && limits.compartmentPatientId === undefined ? { ...limits, compartmentPatientId: compartment } : limits;
}

async function forward(db: Queryable, spec: IncludeSpec, sources: FoundResource[], reach: Reach, compartment: string | undefined): Promise<FoundResource[]> {
  const ids = sources.filter((s) => s.type === spec.sourceType).map((s) => s.id);
  if (!ids.length || !spec.params.length) return [];
  const q = new SqlParams();
  const codes = [...new Set(spec.params.flatMap((p) => storedSourcesOf(p).map((s) => s.code)))];
  const conds = [`i.id = ANY(${q.bind(ids, 'text[]')})`, `i.param = ANY(${q.bind(codes, 'text[]')})`, 'i.target_id IS NOT NULL'];
  if (spec.targetType) conds.push(`i.target_type = ${q.bind(spec.targetType)}`);
  const { rows } = await db.query<{ target_type: string; target_id: string }>(
    `SELECT DISTINCT i.target_type, i.target_id FROM ${indexTableOf(tableOf(spec.sourceType), 'reference')} i WHERE ${conds.join(' AND ')}`,
    q.values,
  );
  const byType = new Map<string, string[]>();
  for (const row of rows) {
    if (!supportedTypes.includes(row.target_type)) continue;
    byType.set(row.target_type, [...(byType.get(row.target_type) ?? []), row.target_id]);
  }
  const found: FoundResource[] = [];
  for (const [type, targetIds] of byType) {
    const limits = includeLimits(reach, type, compartment);
    if (limits) found.push(...(await fetchResources(db, type, targetIds, limits)));
  }
  return found;
}

async function reverse(db: Queryable, spec: IncludeSpec, targets: FoundResource[], reach: Reach, compartment: string | undefined): Promise<FoundResource[]> {
  const found: FoundResource[] = [];
  // `_revinclude=*`: every reference parameter of every type.
  const pairs = spec.sourceType === '*' ? supportedTypes.map((t) => ({ type: t, params: referenceParams(t) })) : [{ type: spec.sourceType, params: spec.params }];
  for (const { type: sourceType, params } of pairs) {
    const limits = includeLimits(reach, sourceType, compartment);
    if (!limits) continue;
    for (const targetType of new Set(targets.map((t) => t.type))) {
      if (spec.targetType && spec.targetType !== targetType) continue;
      const relevant = params.filter((p) => !p.targets.length || p.targets.includes(targetType));
      if (!relevant.length) continue;
      const ids = targets.filter((t) => t.type === targetType).map((t) => t.id);
      const q = new SqlParams();
      const codes = [...new Set(relevant.flatMap((p) => storedSourcesOf(p).map((s) => s.code)))];
      const conds = [
        `r.id IN (SELECT i.id FROM ${indexTableOf(tableOf(sourceType), 'reference')} i WHERE i.target_id = ANY(${q.bind(ids, 'text[]')}) AND i.target_type = ${q.bind(targetType)} AND i.param = ANY(${q.bind(codes, 'text[]')}))`,
        'NOT r.deleted',
        ...limitConditions(sourceType, limits, 'r', q),
      ];
      const { rows } = await db.query<{ id: string; json: string }>(
        `SELECT r.id, r.content::text AS json FROM ${tableOf(sourceType)} r WHERE ${conds.join(' AND ')} ORDER BY r.id LIMIT ${MAX_INCLUDED}`,
        q.values,
      );
      found.push(...rows.map((row) => ({ type: sourceType, id: row.id, json: row.json })));
    }
  }
  return found;
}

/**
 * Resources to add with `search.mode = include`: the first pass from the matches, then the
 * `:iterate` specs once more from what the first pass added (one extra level).
 */
export async function findIncluded(
  db: Queryable,
  include: readonly IncludeSpec[],
  revinclude: readonly IncludeSpec[],
  matches: readonly FoundResource[],
  reach: Reach,
  /** A compartment search's patient: included resources stay in that compartment too. */
  compartment: string | undefined,
): Promise<FoundResource[]> {
  const seen = new Set(matches.map((m) => key(m.type, m.id)));
  const added: FoundResource[] = [];
  const addAll = (list: FoundResource[]) => {
    const fresh: FoundResource[] = [];
    for (const r of list) {
      const k = key(r.type, r.id);
      if (seen.has(k)) continue;
      seen.add(k);
      fresh.push(r);
    }
    added.push(...fresh);
    return fresh;
  };
  const firstPass: FoundResource[] = [];
  for (const spec of include) if (!spec.iterate || spec.sourceType === matches[0]?.type) firstPass.push(...addAll(await forward(db, spec, [...matches], reach, compartment)));
  for (const spec of revinclude) firstPass.push(...addAll(await reverse(db, spec, [...matches], reach, compartment)));
  const iterateFrom = [...firstPass];
  if (iterateFrom.length) {
    for (const spec of include) if (spec.iterate) addAll(await forward(db, spec, iterateFrom, reach, compartment));
    for (const spec of revinclude) if (spec.iterate) addAll(await reverse(db, spec, iterateFrom, reach, compartment));
  }
  return added;
}
