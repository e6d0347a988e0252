import { badRequest } from '../kernel/outcome';
import type { FoundResource } from './include';
import { type Filter, type ParsedSearch, parseSearch } from './parse';
import { checkReach } from './reach-check';
import { type Reach, unlimited } from './reach';
import { parameterOf } from './registry';
import { buildQuery, type Query, type Rows, type SearchContext, searchsetAnswer, type SearchResult } from './search';
import { sortColumn } from './sql';
import { tableOf } from '../store/tables';
import { CUSTOM_PLAN } from '../store/prepared';

/**
 * `Observation/$lastn` (R4 OperationDefinition Observation-lastn): the newest `max` Observations
 * of each code among those an ordinary search with the same parameters would find.
 *
 * The matches are found by the one search query (filters, compartment, granular limits and
 * Consent exclusions of the caller, as conditions), reading only each match's id, code and
 * `date`; the groups are formed here, since a code's codings join groups transitively (an
 * Observation coded both a and c puts every a and every c in one group), which SQL cannot
 * express over rows. Only the chosen Observations' JSON is then read.
 */
export interface LastNRequest {
  /** The search parameters, `max` taken out. */
  params: URLSearchParams;
  max: number;
  compartmentId?: string;
  reach: Reach;
  preferLenient?: boolean;
  /** The request's own URL, for the self link. */
  selfUrl: string;
}

/** The matches a group is chosen from; beyond it the caller is asked to narrow the search (a date range). */
const LASTN_MAX_MATCHES = 100_000;

/** Result parameters that have no meaning for a grouped answer that is never paged. */
const REFUSED = ['_sort', '_count', '_cursor', '_total', '_include', '_revinclude'];

/** Search parameters whose expression reads `Observation.code` or a component's code (code, code-value-concept, combo-code, …). */
function readsACode(filter: Filter): boolean {
  return filter.kind === 'param' && /\bcode\b/.test(filter.param.expression);
}

function namesThePatient(filter: Filter): boolean {
  return filter.kind !== 'has' && (filter.param.code === 'patient' || filter.param.code === 'subject');
}

export async function lastObservations(ctx: SearchContext, request: LastNRequest): Promise<SearchResult> {
  for (const name of REFUSED) {
    if ([...request.params.keys()].some((k) => k === name || k.startsWith(`${name}:`))) throw badRequest(`$lastn does not take ${name}: it answers every group whole, newest first`, [name]);
  }
  const parsed = parseSearch('Observation', request.params, {
    defaultCount: 0,
    maxCount: Number.MAX_SAFE_INTEGER,
    lenient: request.preferLenient,
    limits: ctx.config.inputLimits,
  });
  // The operation's preconditions (a subject, and a category or a code), checked on what was
  // parsed, so that a lenient search's ignored parameter does not count.
  if (request.compartmentId === undefined && !parsed.filters.some(namesThePatient)) {
    throw badRequest('$lastn needs the patient or subject parameter', ['patient']);
  }
  if (!parsed.filters.some((f) => (f.kind === 'param' && f.param.code === 'category') || readsACode(f))) {
    throw badRequest('$lastn needs a category parameter or a parameter on the code (code, code-value-concept, …)', ['category']);
  }
  if (parsed.summary === 'count') throw badRequest('$lastn does not take _summary=count: it answers the readings themselves', ['_summary']);
  checkReach(parsed, request.reach);

  const matches = await groupedMatches(ctx, parsed, request);
  const chosen = matches.flatMap((group) => newestOf(group, request.max));
  const found = await contentsOf(ctx, chosen);

  return searchsetAnswer(ctx.baseUrl, parsed, { total: found.length, links: [{ relation: 'self', url: request.selfUrl }], matches: found, included: [] });
}

interface Match {
  id: string;
  /** The version the search's conditions were checked on: the one served. */
  version: number;
  /** The `date` parameter's latest instant (epoch ms), as `_sort=-date` orders; null when undated. */
  at: number | null;
}

/**
 * The statement that reads the matches' ids, versions, codes and dates. When a patient index
 * drives the search (a patient and a category or code, the usual call), it is read as a page
 * newest first by `date`, so that each match's date comes from its own index row; the rows
 * that index misses (a compartment's members the key does not name) are the page's tail. Any
 * other search is read as the set of matches, which the planner drives from whatever index
 * suits (a page's newest-first driver would read the whole date index), each match's date as
 * `_sort=-date` computes it.
 */
function matchesSql(parsed: ParsedSearch, compartmentId: string | undefined, reach: Reach): { sql: string; values: unknown[] } {
  const newestFirst = [{ param: parameterOf('Observation', 'date')!, descending: true }];
  const select = (rows: Rows, date: string) =>
    `SELECT r.id, r.version_id AS version, (r.content->'code')::text AS code, (extract(epoch FROM ${date}) * 1000)::float8 AS at FROM ${rows.from} WHERE ${rows.conditions.join(' AND ')}`;
  const driven = buildQuery({ ...parsed, sort: newestFirst }, compartmentId, reach, undefined, 'page');
  let query: Query;
  let parts: string[];
  if (driven.lead === '') {
    query = driven;
    parts = [driven, ...(driven.tail ? [driven.tail] : [])].map((rows) => select(rows, rows.columns[0]!.expression));
  } else {
    query = buildQuery({ ...parsed, sort: [] }, compartmentId, reach);
    parts = [select(query, sortColumn('Observation', newestFirst[0]!, 'r', query.q).expression)];
  }
  const limit = query.q.bind(LASTN_MAX_MATCHES + 1, 'int');
  // Planned for its values every time: the generic plan of a patient-driven statement was
  // measured at 53 ms against 22–30 ms for a patient's 1,000 readings.
  const sql = `${CUSTOM_PLAN}${parts.length > 1 ? `SELECT * FROM (${parts.join(' UNION ALL ')}) matches` : parts[0]} LIMIT ${limit}`;
  return { sql, values: query.q.values };
}

/** The statement of `Observation/$lastn?{params}` that reads the matches, for the benchmark's raw SQL beside the server. */
export function lastnMatchesSql(params: URLSearchParams, compartmentId?: string): { sql: string; values: unknown[] } {
  return matchesSql(parseSearch('Observation', params, { defaultCount: 0, maxCount: Number.MAX_SAFE_INTEGER }), compartmentId, unlimited);
}

/** The matches' ids and dates, in groups of equivalent codes; groups newest first. */
async function groupedMatches(ctx: SearchContext, parsed: ParsedSearch, request: LastNRequest): Promise<Match[][]> {
  const { sql, values } = matchesSql(parsed, request.compartmentId, request.reach);
  const { rows } = await ctx.db.query<{ id: string; version: number; code: string | null; at: number | null }>(sql, values);
  if (rows.length > LASTN_MAX_MATCHES) {
    throw badRequest(`$lastn would group more than ${LASTN_MAX_MATCHES} Observations; narrow it with a date parameter`, ['date']);
  }
  const groups = new CodeGroups();
  const members = new Map<string, Match[]>();
  const keysOf = rows.map((row) => {
    // Plain JSON.parse: only the codings' strings are read, never a number (json-decimals.ts).
    const keys = codeKeys(row.code === null ? undefined : (JSON.parse(row.code) as fhir4.CodeableConcept));
    groups.join(keys);
    return keys;
  });
  rows.forEach((row, i) => {
    const root = groups.find(keysOf[i]![0]!);
    const list = members.get(root) ?? [];
    list.push({ id: row.id, version: row.version, at: row.at });
    members.set(root, list);
  });
  const byNewest = (a: Match, b: Match) => (b.at ?? -Infinity) - (a.at ?? -Infinity) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const sorted = [...members.values()].map((list) => list.sort(byNewest));
  return sorted.sort((a, b) => byNewest(a[0]!, b[0]!));
}

/**
 * What makes two codes the same (R4 Observation-lastn): a coding's system and code; a code with
 * no coding, its text, exactly ('Text' and 'text' are two groups).
 */
function codeKeys(code: fhir4.CodeableConcept | undefined): string[] {
  const codings = (code?.coding ?? []).filter((c) => c.code !== undefined || c.system !== undefined).map((c) => `coding ${c.system ?? ''}|${c.code ?? ''}`);
  return codings.length ? codings : [`text ${code?.text ?? ''}`];
}

/** Union-find over code keys: the codings of one Observation's code are one group, transitively. */
class CodeGroups {
  private readonly parent = new Map<string, string>();

  find(key: string): string {
    let root = key;
    for (let up = this.parent.get(root); up !== undefined && up !== root; up = this.parent.get(root)) root = up;
    // Path compression: the next find of any key on this path is one step.
    for (let at = key; at !== root; ) {
      const next = this.parent.get(at)!;
      this.parent.set(at, root);
      at = next;
    }
    return root;
  }

  join(keys: readonly string[]): void {
    for (const key of keys) if (!this.parent.has(key)) this.parent.set(key, key);
    const first = this.find(keys[0]!);
    for (const key of keys.slice(1)) {
      const root = this.find(key);
      if (root !== first) this.parent.set(root, first);
    }
  }
}

/** The newest `max` of a group, newest first, and any that tie with the last of them (R4: "both will be returned"). */
function newestOf(group: readonly Match[], max: number): Match[] {
  if (group.length <= max) return [...group];
  const last = group[max - 1]!.at;
  let end = max;
  while (end < group.length && group[end]!.at === last) end++;
  return group.slice(0, end);
}

/**
 * The chosen Observations' stored JSON, in the order given: the versions the search checked, so
 * that one changed since (to another patient, say) is left out rather than served unchecked.
 */
async function contentsOf(ctx: SearchContext, chosen: readonly Match[]): Promise<FoundResource[]> {
  if (chosen.length === 0) return [];
  const { rows } = await ctx.db.query<{ id: string; json: string }>(
    `SELECT o.id, o.content::text AS json FROM ${tableOf('Observation')} o
      JOIN unnest($1::text[], $2::int[]) AS c(id, version) ON o.id = c.id AND o.version_id = c.version WHERE NOT o.deleted`,
    [chosen.map((m) => m.id), chosen.map((m) => m.version)],
  );
  const byId = new Map(rows.map((r) => [r.id, r.json]));
  return chosen.filter((m) => byId.has(m.id)).map((m) => ({ type: 'Observation', id: m.id, json: byId.get(m.id)! }));
}
