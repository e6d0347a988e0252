import { badRequest } from '../kernel/outcome';
import type { FoundResource } from './include';
import { type Filter, type ParsedSearch, parseSearch } from './parse';
import { checkReach } from './reach-check';
import { type Reach, unlimited } from './reach';
import { parameterOf } from './registry';
import { buildQuery, parseClientSearch, type Query, type SearchContext, searchsetAnswer, type SearchResult } from './search';
import { type DrivingRows, sortColumn } from './sql';
import { indexTableOf } from './index-tables';
import { systemCodeHash } from './hash';
import { tableOf } from '../store/tables';
import { CUSTOM_PLAN } from '../store/prepared';

/**
 * `Observation/$lastn` (R4 OperationDefinition Observation-lastn): the newest `max` Observations
 * of each code among those an ordinary search with the same parameters would find.
 *
 * The matches are those of the one search query (filters, compartment, granular limits and
 * Consent exclusions of the caller, as conditions). When a patient index drives it, their codes
 * and dates come from that index and the conditions are checked on the few that may be chosen
 * (indexedMatchesSql, decision 042); otherwise each match's id, code and `date` are read. The
 * groups are formed here, since a code's codings join groups transitively (an Observation coded
 * both a and c puts every a and every c in one group), which SQL cannot express over rows. Only
 * the chosen Observations' JSON is then read.
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
  const parsed = await parseClientSearch(ctx.db, request.reach, 'Observation', request.params, {
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

  const chosen = (await chosenMatches(ctx, parsed, request)).flat();
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
 * A row of the matches statement:
 * - `key`: one of the newest `max` matches (and their ties) among those with a coding whose hash
 *   is `code`, from the patient index;
 * - `join`: the hashes of a set of codings (`{h1,h2}`) that some match has all of and no others;
 * - `json`: a match whose codes are read from its JSON, `code` (the generic statement's every
 *   match; the indexed one's matches without a coding, and a compartment's members the key misses).
 */
interface MatchRow {
  kind: 'key' | 'join' | 'json';
  code: string | null;
  id: string;
  version: number;
  at: number | null;
}

const epochMs = (date: string) => `(extract(epoch FROM ${date}) * 1000)::float8`;

/**
 * The statement that reads the matches. When a patient index drives the search (a patient and a
 * category or code, the usual call: `query.driving`), only index rows are read for all of them,
 * and the search's conditions are checked on a few (indexedMatchesSql). Any other search reads the
 * set of matches with each one's code, which the planner drives from whatever index suits, each
 * match's date as `_sort=-date` computes it.
 */
function matchesSql(parsed: ParsedSearch, compartmentId: string | undefined, reach: Reach, max: number): { sql: string; values: unknown[] } {
  const newestFirst = [{ param: parameterOf('Observation', 'date')!, descending: true }];
  const driven = buildQuery({ ...parsed, sort: newestFirst }, compartmentId, reach, undefined, 'page');
  if (driven.driving) return { sql: indexedMatchesSql(driven, driven.driving, max), values: driven.q.values };
  const query = buildQuery({ ...parsed, sort: [] }, compartmentId, reach);
  const at = sortColumn('Observation', newestFirst[0]!, 'r', query.q).expression;
  const limit = query.q.bind(LASTN_MAX_MATCHES + 1, 'int');
  const sql = `${CUSTOM_PLAN}SELECT 'json' AS kind, (r.content->'code')::text AS code, r.id, r.version_id AS version, ${epochMs(at)} AS at FROM ${query.from} WHERE ${query.conditions.join(' AND ')} LIMIT ${limit}`;
  return { sql, values: query.q.values };
}

/**
 * The matches of a search driven by patient K's index rows, read by the index (R4's grouping
 * needs each match's codes; reading them from every match's JSON cost a heap fetch per match,
 * 115 ms at p95 for a patient's 1,000 readings):
 * - `drv`: the driving rows' ids (index-only): every match is among them, since the driving
 *   conditions are the search's own;
 * - `cand`: their `code` rows with a code (index-only, from the same patient index);
 * - `key` rows: for each distinct coding of `cand`, its rows of those candidates newest first,
 *   each checked against the search's every condition (the driven query itself, on that one id:
 *   access policy, compartment, Consent exclusions, filters), until `max` match, with ties;
 * - `join` rows: each distinct set of several codings of one candidate, when one candidate with
 *   that set matches (R4's transitive grouping: an Observation coded a and c joins a's group to c's);
 * - `json` rows: the candidates with no coded code (text-only: grouped by their text), checked
 *   and read whole, and the compartment's members the key misses (`tail`), as the generic statement.
 * The newest `max` of a group are among the newest `max` of each of its codings, with ties, so
 * the groups formed from these rows are those the whole set of matches gives.
 */
function indexedMatchesSql(query: Query, driving: DrivingRows, max: number): string {
  const { q } = query;
  const tokens = indexTableOf(tableOf('Observation'), 'token');
  const key = q.bind(driving.key);
  const [c, k, v, u, x] = [q.alias('c'), q.alias('k'), q.alias('v'), q.alias('u'), q.alias('x')];
  const codeRows = (alias: string) => `${alias}.patient = ${key} AND ${alias}.drives AND ${alias}.param = ${q.bind('code')}`;
  // The driven query on one id: a row when that resource matches the search.
  const matching = (id: string, columns: string) => `SELECT ${columns} FROM ${query.from} WHERE ${[...query.conditions, `r.id = ${id}`].join(' AND ')} LIMIT 1`;
  const at = query.columns[0]!.expression;
  // Only the candidates are checked. Written as NOT … NOT IN so that PostgreSQL tests it on each
  // row against one hash of `cand` (a hashed SubPlan) and keeps reading the index in order; an IN
  // becomes a join, which it planned as a scan of `cand` per row.
  const perCoding = `SELECT DISTINCT ON (${c}.date_high, ${c}.id) ${c}.id, ${v}.version, ${c}.date_high FROM ${tokens} ${c}
      CROSS JOIN LATERAL (${matching(`${c}.id`, 'r.version_id AS version')}) ${v}
      WHERE ${codeRows(c)} AND ${c}.code_hash = ${k}.code_hash AND ${c}.hash = ${k}.hash AND NOT (${c}.id NOT IN (SELECT id FROM cand))
      ORDER BY ${c}.date_high DESC NULLS LAST, ${c}.id`;
  const parts = [
    // DISTINCT ON: a coding repeated with two displays is two rows of one resource.
    `SELECT 'key' AS kind, ${k}.hash::text AS code, m.id, m.version, ${epochMs('m.date_high')} AS at
      FROM (SELECT DISTINCT code_hash, hash FROM cand) ${k}
      CROSS JOIN LATERAL (SELECT * FROM (${perCoding}) n ORDER BY n.date_high DESC NULLS LAST FETCH FIRST (${q.bind(max, 'int')}) ROWS WITH TIES) m`,
    `SELECT 'join', s.hashes, NULL, NULL, NULL FROM (SELECT hashes, array_agg(id) AS ids FROM
        (SELECT id, array_agg(DISTINCT hash ORDER BY hash)::text AS hashes FROM cand GROUP BY id HAVING count(DISTINCT hash) > 1) sets GROUP BY hashes) s
      WHERE EXISTS (SELECT 1 FROM unnest(s.ids) ${u}(id) CROSS JOIN LATERAL (${matching(`${u}.id`, '1')}) ${x})`,
    `SELECT 'json', m.code, m.id, m.version, m.at FROM (SELECT DISTINCT id FROM drv WHERE id NOT IN (SELECT id FROM cand)) ${u}
      CROSS JOIN LATERAL (${matching(`${u}.id`, `(r.content->'code')::text AS code, r.id, r.version_id AS version, ${epochMs(at)} AS at`)}) m`,
    ...(query.tail ? [`SELECT 'json', (r.content->'code')::text, r.id, r.version_id, ${epochMs(query.tail.columns[0]!.expression)} FROM ${query.tail.from} WHERE ${query.tail.conditions.join(' AND ')}`] : []),
  ];
  return `${CUSTOM_PLAN}WITH drv AS MATERIALIZED (SELECT d.id FROM ${driving.from} WHERE ${driving.conditions.join(' AND ')}),
    cand AS MATERIALIZED (SELECT ${c}.id, ${c}.code_hash, ${c}.hash FROM ${tokens} ${c} WHERE ${codeRows(c)} AND ${c}.id IN (SELECT id FROM drv))
    ${parts.join('\n    UNION ALL ')} LIMIT ${q.bind(LASTN_MAX_MATCHES + 1, 'int')}`;
}

/** The statement of `Observation/$lastn?{params}` that reads the matches, for the benchmark's raw SQL beside the server. */
export function lastnMatchesSql(params: URLSearchParams, compartmentId?: string, max = 1): { sql: string; values: unknown[] } {
  return matchesSql(parseSearch('Observation', params, { defaultCount: 0, maxCount: Number.MAX_SAFE_INTEGER }), compartmentId, unlimited, max);
}

/** The chosen matches, in groups of equivalent codes, each newest first with its ties; groups newest first. */
async function chosenMatches(ctx: SearchContext, parsed: ParsedSearch, request: LastNRequest): Promise<Match[][]> {
  const { sql, values } = matchesSql(parsed, request.compartmentId, request.reach, request.max);
  const { rows } = await ctx.db.query<MatchRow>(sql, values);
  if (rows.length > LASTN_MAX_MATCHES) {
    throw badRequest(`$lastn would group more than ${LASTN_MAX_MATCHES} Observations; narrow it with a date parameter`, ['date']);
  }
  const groups = new CodeGroups();
  const keysOf = rows.map((row) => {
    // Plain JSON.parse: only the codings' strings are read, never a number (json-decimals.ts).
    const keys = row.kind === 'key' ? [codingKey(row.code!)]
      : row.kind === 'join' ? row.code!.slice(1, -1).split(',').map(codingKey)
      : codeKeys(row.code === null ? undefined : (JSON.parse(row.code) as fhir4.CodeableConcept));
    groups.join(keys);
    return keys;
  });
  // A match is in the rows of each of its codings: once in its group.
  const members = new Map<string, Map<string, Match>>();
  rows.forEach((row, i) => {
    if (row.kind === 'join') return;
    const root = groups.find(keysOf[i]![0]!);
    const group = members.get(root) ?? new Map<string, Match>();
    group.set(row.id, { id: row.id, version: row.version, at: row.at });
    members.set(root, group);
  });
  const byNewest = (a: Match, b: Match) => (b.at ?? -Infinity) - (a.at ?? -Infinity) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const sorted = [...members.values()].map((group) => [...group.values()].sort(byNewest));
  return sorted.sort((a, b) => byNewest(a[0]!, b[0]!)).map((group) => newestOf(group, request.max));
}

/** A coding's key: the hash of its `system|code`, as its index row holds it. */
const codingKey = (hash: string | number) => `coding ${hash}`;

/**
 * What makes two codes the same (R4 Observation-lastn: "if the coding.value and coding.system
 * are the same"): a coding's system and code; a code with no coding that has a code, its text,
 * exactly ('Text' and 'text' are two groups). A coding without a code names no code (decision 042).
 */
function codeKeys(code: fhir4.CodeableConcept | undefined): string[] {
  const codings = (code?.coding ?? []).filter((c) => c.code !== undefined).map((c) => codingKey(systemCodeHash(c.system, c.code!)));
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
