import { notFound } from '../kernel/outcome';
import { isSupportedType } from '../kernel/resource-types';
import type { Queryable } from '../store/db';
import { CUSTOM_PLAN } from '../store/prepared';
import { tableOf } from '../store/tables';
import { searchsetJson } from './bundle';
import { type Cursor, decodeCursor, encodeCursor } from './cursor';
import { findIncluded, type FoundResource } from './include';
import type { InputLimits } from '../kernel/input-limits';
import { type ParsedSearch, type ParseOptions, parseSearch } from './parse';
import { canBeInPatientCompartment, compartmentCondition, type DrivingRows, filterConditions, keysetCondition, limitConditions, orderBy, planDriver, type SortColumn, sortColumn } from './sql';
import { checkReach } from './reach-check';
import { planNewestFirst } from './newest-first';
import { planSortedByRow } from './sorted-by-row';
import { impliedSort } from './default-order';
import { limitsIfAllowed, type Reach, unlimited } from './reach';
import { SqlParams } from '../kernel/sql-params';
import { subsetJson, subsetModeFor, type SubsetMode } from './summary';
import { parseWithStoredTerminology, StoredTerminology } from './stored-terminology';

/** What a search needs of the server: its database, page-size settings and public base URL. */
export interface SearchContext {
  readonly db: Queryable;
  readonly baseUrl: string;
  readonly config: { readonly defaultPageSize: number; readonly maxPageSize: number; readonly inputLimits?: InputLimits };
}

/** A searchset Bundle as JSON text (stored JSON is streamed into it unparsed). */
export interface SearchResult {
  status: 200;
  body: { json: string };
  /** The patients of subsetted entries (InteractionResult.disclosedPatients); absent when nothing was subsetted. */
  disclosedPatients?: string[];
}

export interface SearchRequest {
  resourceType: string;
  params: URLSearchParams;
  compartment?: { resourceType: 'Patient'; id: string };
  preferLenient?: boolean;
  requestUrl?: string;
  /** What the caller may see of the other types the search reaches (chains, _has, includes); unlimited when absent. */
  reach?: Reach;
}

/** Rows of a search: FROM, WHERE conditions (AND) and the sort columns, the id's last. */
export interface Rows {
  from: string;
  conditions: string[];
  columns: SortColumn[];
  /**
   * The rows are the page's ids and sort values only (`id`, an expression of FROM): the page is
   * cut first and its resources fetched from `table` after, so that no match beyond the page has
   * its JSON read and converted (./sorted-by-row.ts).
   */
  fetch?: { id: string; table: string };
}

export interface Query extends Rows {
  q: SqlParams;
  /**
   * The matches the driver's rows miss: sorting after every one of them (the undated of
   * ./newest-first.ts), or `merged` among them by the same sort values (a compartment's members
   * the patient key misses, ./sql.ts compartmentTail).
   */
  tail?: Rows & { merged?: boolean };
  /**
   * How its statements start: nothing when a patient index drives (its generic plan is the range
   * scan, kept for the planning it saves), else CUSTOM_PLAN, planned for its values every time.
   */
  lead: string;
  /** The patient index rows that drive it, when one does (./sql.ts planDriver). */
  driving?: DrivingRows;
}

/**
 * FROM, WHERE conditions and sort columns of a parsed search (no paging yet). `q` is given when
 * the query becomes part of a larger statement (the bulk export's scan, ./scan.ts).
 */
export function buildQuery(parsed: ParsedSearch, compartmentId: string | undefined, reach: Reach, q = new SqlParams(), purpose: 'page' | 'set' = 'set'): Query {
  const r = 'r';
  // Only a page, read in order, may drive a compartment from its key rows: its members the key
  // misses are a second set of rows, which a count, a set of ids or the export's EXISTS do not read.
  // A page the client did not sort is read in the order of the index its date filter reads,
  // when no patient index drives it (./default-order.ts).
  const implied = purpose === 'page' && parsed.sort.length === 0 ? impliedSort(parsed.filters, compartmentId) : [];
  const driver = planDriver(parsed.resourceType, parsed.filters, parsed.sort, { id: compartmentId, withTail: purpose === 'page' }, r, q) ?? planNewestFirst(parsed.resourceType, parsed.filters, parsed.sort.length ? parsed.sort : implied, compartmentId, r, q);
  // Of an implied order, only one an index gives: a date parameter's sort that the date index
  // does not drive would compute every match's date and sort them all.
  const sortKeys = parsed.sort.length || driver ? parsed.sort : implied.filter((k) => k.param.storage.kind === 'column');
  const rest = parsed.filters.filter((f) => !driver?.consumed.has(f));
  const checks = filterConditions(parsed.resourceType, rest, r, q, reach);
  if (compartmentId !== undefined && !driver?.answersCompartment) checks.push(compartmentCondition(parsed.resourceType, compartmentId, r, q));
  // The searched type's compartment and constraint come in as arguments; what a Consent denies
  // the caller of this type comes from its reach, like every other type's limits.
  const own = limitsIfAllowed(reach, parsed.resourceType, 's') ?? limitsIfAllowed(reach, parsed.resourceType, 'r');
  if (own?.exclude?.length) checks.push(...limitConditions(parsed.resourceType, { exclude: own.exclude }, r, q));
  // A page sorted by one parameter's values that nothing above drives: one set of the matches'
  // values, cut to the page, then the valueless (./sorted-by-row.ts). Counts and sets read no order.
  const byRow = !driver && purpose === 'page' ? planSortedByRow(parsed.resourceType, parsed.sort, r, q) : undefined;
  if (byRow) {
    const matching = [`NOT ${r}.deleted`, ...checks];
    return { ...byRow.valued(matching), q, ...(byRow.valueless ? { tail: byRow.valueless(matching) } : {}), lead: CUSTOM_PLAN };
  }
  const sort = driver?.sort ?? sortKeys.map((k) => sortColumn(parsed.resourceType, k, r, q));
  // The id makes the order total, so a keyset cursor never skips or repeats a row: the driver's,
  // when it serves the order. Otherwise it runs the way of the last key, so that a resource
  // column's index `(column, id)` serves the order read either way (`_sort=-_lastUpdated` reads
  // `(last_updated, id)` backwards).
  const tiebreak: SortColumn = driver?.sort ? driver.tiebreak : { expression: `${r}.id`, descending: sort.at(-1)?.descending ?? false, pgType: 'text', notNull: true };
  // Every set of rows is checked against the same filters and limits (the same bound values).
  const tail = driver?.tail && { from: driver.tail.from, conditions: [`NOT ${r}.deleted`, ...driver.tail.conditions, ...checks], columns: [...driver.tail.sort, driver.tail.tiebreak], merged: driver.tail.merged };
  return {
    from: driver?.from ?? `${tableOf(parsed.resourceType)} ${r}`,
    conditions: [`NOT ${r}.deleted`, ...(driver?.conditions ?? []), ...checks],
    columns: [...sort, tiebreak],
    q,
    ...(tail ? { tail } : {}),
    ...(driver?.driving ? { driving: driver.driving } : {}),
    lead: driver?.planOnce ? '' : CUSTOM_PLAN,
  };
}

interface Page {
  rows: Array<FoundResource & { keys: Array<string | null> }>;
  hasNext: boolean;
  hasPrev: boolean;
}

/** The SQL of one page: `count + 1` rows after (or before) the cursor, in sort order. */
function pageSql(parsed: ParsedSearch, query: Query, cursor: Cursor | undefined): string {
  const { q } = query;
  const reverse = cursor?.reverse ?? false;
  const limit = q.bind(parsed.count + 1, 'int');
  const select = (rows: Rows, limitSql: string, sortValues = false) => {
    const conditions = cursor ? [...rows.conditions, keysetCondition(rows.columns, cursor.values, reverse, q)] : rows.conditions;
    if (rows.fetch) {
      const where = conditions.length ? ` WHERE ${conditions.join(' AND ')}` : '';
      const cut = `SELECT ${rows.fetch.id} AS id, ${rows.columns.map((c, k) => `${c.expression} AS s${k}`).join(', ')} FROM ${rows.from}${where} ORDER BY ${orderBy(rows.columns, reverse)} LIMIT ${limitSql}`;
      const inPage = rows.columns.map((c, k) => ({ ...c, expression: `p.s${k}` }));
      const keys = inPage.map((c, k) => `(${c.expression})::text AS k${k}${sortValues ? `, ${c.expression} AS s${k}` : ''}`).join(', ');
      return `SELECT r.id, r.content::text AS json, ${keys} FROM (${cut}) p JOIN ${rows.fetch.table} r ON r.id = p.id ORDER BY ${orderBy(inPage, reverse)}`;
    }
    const keys = rows.columns.map((c, k) => `(${c.expression})::text AS k${k}${sortValues ? `, ${c.expression} AS s${k}` : ''}`).join(', ');
    return `SELECT r.id, r.content::text AS json, ${keys} FROM ${rows.from} WHERE ${conditions.join(' AND ')} ORDER BY ${orderBy(rows.columns, reverse)} LIMIT ${limitSql}`;
  };
  if (!query.tail) return `${query.lead}${select(query, limit)}`;
  const inPart = query.columns.map((c, k) => ({ ...c, expression: `s${k}` }));
  // Two sets of rows in one order (a compartment's members the key misses, among the driven
  // ones): the page is the first of each set's own first page, merged by the typed sort values.
  if (query.tail.merged) {
    return `${query.lead}SELECT * FROM ((${select(query, limit, true)}) UNION ALL (${select(query.tail, limit, true)})) page
    ORDER BY ${orderBy(inPart, reverse)} LIMIT ${limit}`;
  }
  // Two sets of rows, one sorting after the other (read backwards, the other way round). The
  // second fills what the first leaves of the page: its LIMIT, the rows still wanted, is worked
  // out once, and at 0 its plan is never started (as a WHERE, PostgreSQL still started the
  // parallel workers beneath the test, ~40 ms). The result is ordered by part, then by the typed
  // sort values (s0, s1, …; the k columns are their text).
  const [first, second] = reverse ? [query.tail, query] : [query, query.tail];
  return `${query.lead}WITH first AS MATERIALIZED (${select(first, limit, true)})
    SELECT * FROM (SELECT 1 AS part, * FROM first UNION ALL SELECT 2, * FROM (${select(second, `(SELECT greatest(${limit} - count(*), 0) FROM first)`, true)}) second) page
    ORDER BY part, ${orderBy(inPart, reverse)}`;
}

async function readPage(db: Queryable, parsed: ParsedSearch, query: Query, cursor: Cursor | undefined): Promise<Page> {
  const sql = pageSql(parsed, query, cursor);
  const { rows } = await db.query<Record<string, string | null>>(sql, query.q.values);
  const reverse = cursor?.reverse ?? false;
  const more = rows.length > parsed.count;
  const page = rows.slice(0, parsed.count).map((row) => ({
    type: parsed.resourceType,
    id: row.id as string,
    json: row.json as string,
    keys: query.columns.map((_, k) => row[`k${k}`] ?? null),
  }));
  if (reverse) page.reverse();
  return { rows: page, hasNext: reverse ? true : more, hasPrev: reverse ? more : cursor !== undefined };
}

/**
 * The SQL and bound values of a search's first page (or of the page its `_cursor` names), as
 * `searchResources` runs it: for EXPLAIN tests and the benchmark's side-by-side with hand-written SQL.
 */
export function firstPageSql(resourceType: string, params: URLSearchParams, count = 50, compartmentId?: string): { sql: string; values: unknown[] } {
  const parsed = parseSearch(resourceType, params, { defaultCount: count, maxCount: Math.max(count, 1000) });
  const query = buildQuery(parsed, compartmentId, unlimited, undefined, 'page');
  const cursor = parsed.cursor !== undefined ? decodeCursor(parsed.cursor, query.columns.length) : undefined;
  return { sql: pageSql(parsed, query, cursor), values: query.q.values };
}

async function countMatches(db: Queryable, parsed: ParsedSearch, compartmentId: string | undefined, reach: Reach, estimate: boolean): Promise<number> {
  // Unsorted: what matches does not depend on the order, and a sorted driver reads only the dated rows.
  const query = buildQuery({ ...parsed, sort: [] }, compartmentId, reach);
  const sql = `${query.lead}SELECT count(*) AS n FROM ${query.from} WHERE ${query.conditions.join(' AND ')}`;
  if (estimate) {
    // The planner's row estimate: free, and what `_total=estimate` asks for.
    const { rows } = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) SELECT 1 FROM ${query.from} WHERE ${query.conditions.join(' AND ')}`, query.q.values);
    const plan = rows[0]?.['QUERY PLAN'];
    const parsedPlan = (typeof plan === 'string' ? JSON.parse(plan) : plan) as Array<{ Plan: { 'Plan Rows': number } }>;
    return Math.round(parsedPlan[0].Plan['Plan Rows']);
  }
  const { rows } = await db.query<{ n: string | number }>(sql, query.q.values);
  return Number(rows[0].n);
}

/**
 * The planner's estimate, but never fewer than the matches the answer itself shows: this page's,
 * one more for a next page and one for a previous (the planner's guess on a small or unanalysed
 * table said 1 of a page of 2, and 280 where the 28 on the page were all).
 */
function atLeastSeen(estimate: number, page: { rows: readonly unknown[]; hasNext: boolean; hasPrev: boolean }): number {
  return Math.max(estimate, page.rows.length + (page.hasNext ? 1 : 0) + (page.hasPrev ? 1 : 0));
}

function applySubset(resources: FoundResource[], mode: SubsetMode | undefined, disclosed: Set<string>): FoundResource[] {
  if (!mode) return resources;
  return resources.map((r) => ({ ...r, json: subsetJson(r.type, r.json, mode, disclosed) }));
}

/**
 * A search's answer: its matches and includes, subsetted as `_summary`/`_elements` ask (with the
 * patients of the subsetted entries for the audit), and a warning for each parameter a lenient
 * search ignored. Also Observation/$lastn's (./lastn.ts).
 */
export function searchsetAnswer(
  baseUrl: string,
  parsed: ParsedSearch,
  parts: { total?: number; links: Array<{ relation: string; url: string }>; matches: FoundResource[]; included: FoundResource[] },
): SearchResult {
  const mode = subsetModeFor(parsed.summary, parsed.elements);
  const disclosed = new Set<string>();
  const warnings = parsed.ignored.map((i) => `Parameter '${i.name}' was ignored: ${i.reason}`);
  const json = searchsetJson({
    baseUrl,
    total: parts.total,
    links: parts.links,
    matches: applySubset(parts.matches, mode, disclosed),
    // search.html#elements: "The list of elements does not apply to included resources" (a
    // Patient included beside `_elements=valueQuantity` readings would be its id alone).
    included: applySubset(parts.included, mode && 'elements' in mode ? undefined : mode, disclosed),
    warnings,
  });
  return mode ? { status: 200, body: { json }, disclosedPatients: [...disclosed] } : { status: 200, body: { json } };
}

function linkUrl(base: string, params: ReadonlyArray<[string, string]>): string {
  const query = new URLSearchParams(params as Array<[string, string]>).toString();
  return query ? `${base}?${query}` : base;
}

/**
 * A search a client sent (GET/POST search, compartment search, $lastn): its `:in`/`:not-in`
 * may also name the stored ValueSets `reach` lets the client search (./stored-terminology.ts).
 * The server's own searches (conditional writes, Subscription criteria, access limits) parse
 * with the shipped value sets only (decision 039).
 */
export async function parseClientSearch(db: Queryable, reach: Reach, resourceType: string, params: URLSearchParams, opts: ParseOptions): Promise<ParsedSearch> {
  // The caller's granular constraint is among `params` (fhir/interactions/search.ts ANDs it in),
  // but a limit must not depend on a ValueSet the limited caller may edit: it is held to the
  // shipped value sets, as where it limits other types (./sql.ts limitConditions).
  const constraint = limitsIfAllowed(reach, resourceType, 's')?.constraint;
  if (constraint) parseSearch(resourceType, constraint, { defaultCount: 0, maxCount: 0 });
  const stored = new StoredTerminology(db, (type, query, limit) => findReachableIds(db, reach, type, query, limit, true));
  return parseWithStoredTerminology(stored, (terminology) => parseSearch(resourceType, params, { ...opts, terminology }));
}

/** A searchset Bundle for GET /{type}, POST /{type}/_search and GET /Patient/{id}/{type}. */
export async function searchResources(ctx: SearchContext, request: SearchRequest): Promise<SearchResult> {
  const { resourceType } = request;
  if (!isSupportedType(resourceType)) throw notFound(`Resource type '${resourceType}' is not supported`);
  const reach = request.reach ?? unlimited;
  const parsed = await parseClientSearch(ctx.db, reach, resourceType, request.params, {
    defaultCount: ctx.config.defaultPageSize,
    maxCount: ctx.config.maxPageSize,
    lenient: request.preferLenient,
    limits: ctx.config.inputLimits,
  });
  checkReach(parsed, reach);
  const compartmentId = request.compartment?.id;
  const base = compartmentId !== undefined ? `${ctx.baseUrl}/Patient/${encodeURIComponent(compartmentId)}/${resourceType}` : `${ctx.baseUrl}/${resourceType}`;
  const selfParams = parsed.accepted;
  const links = [{ relation: 'self', url: linkUrl(base, selfParams) }];

  const countOnly = parsed.summary === 'count' || parsed.count === 0;
  if (countOnly) {
    const total = await countMatches(ctx.db, parsed, compartmentId, reach, false);
    return searchsetAnswer(ctx.baseUrl, parsed, { total, links, matches: [], included: [] });
  }

  const query = buildQuery(parsed, compartmentId, reach, undefined, 'page');
  const cursor = parsed.cursor !== undefined ? decodeCursor(parsed.cursor, query.columns.length) : undefined;
  const page = await readPage(ctx.db, parsed, query, cursor);

  const withoutCursor = selfParams.filter(([n]) => n !== '_cursor');
  if (page.hasNext && page.rows.length) {
    const last = page.rows[page.rows.length - 1];
    links.push({ relation: 'next', url: linkUrl(base, [...withoutCursor, ['_cursor', encodeCursor({ values: last.keys, reverse: false })]]) });
  }
  if (page.hasPrev && page.rows.length) {
    links.push({ relation: 'previous', url: linkUrl(base, [...withoutCursor, ['_cursor', encodeCursor({ values: page.rows[0].keys, reverse: true })]]) });
  }

  // Bundle.total only when it costs nothing (the whole result is on this first page) unless asked.
  const wholeResult = !cursor && !page.hasNext;
  let total: number | undefined;
  if (parsed.total === 'estimate') total = wholeResult ? page.rows.length : atLeastSeen(await countMatches(ctx.db, parsed, compartmentId, reach, true), page);
  else if (parsed.total === 'accurate') total = await countMatches(ctx.db, parsed, compartmentId, reach, false);
  else if (parsed.total !== 'none' && wholeResult) total = page.rows.length;

  const matches: FoundResource[] = page.rows.map(({ type, id, json }) => ({ type, id, json }));
  const included = parsed.include.length || parsed.revinclude.length ? await findIncluded(ctx.db, parsed.include, parsed.revinclude, matches, reach, compartmentId) : [];
  return searchsetAnswer(ctx.baseUrl, parsed, { total, links, matches, included });
}

/**
 * The ids matching a search, for conditional create/update/delete (If-None-Exist,
 * `PUT Observation?identifier=…`, through the access policy's `findVisibleIds`, which hands in
 * the caller's limits) and the server's own look-ups; runs on the caller's transaction. Result
 * parameters are ignored; an unknown parameter is a 400, never a match-everything.
 */
export async function findMatchingIds(
  db: Queryable,
  resourceType: string,
  params: URLSearchParams,
  limit?: number,
  /** Only resources in this Patient's compartment (patient-scoped access). */
  compartmentPatientId?: string,
  /** What the caller may see of types its chains and _has reach. */
  reach: Reach = unlimited,
  /** The search size caps (src/kernel/input-limits.ts); the defaults unless the caller knows better. */
  limits?: InputLimits,
): Promise<string[]> {
  const parsed = parseSearch(resourceType, params, { defaultCount: 0, maxCount: Number.MAX_SAFE_INTEGER, ...(limits ? { limits } : {}) });
  const query = buildQuery({ ...parsed, sort: [] }, compartmentPatientId, reach);
  checkReach(parsed, reach);
  const limitClause = limit !== undefined ? ` LIMIT ${query.q.bind(limit, 'int')}` : '';
  const { rows } = await db.query<{ id: string }>(`SELECT r.id FROM ${query.from} WHERE ${query.conditions.join(' AND ')}${limitClause}`, query.q.values);
  return rows.map((row) => row.id);
}

/**
 * The ids of `type` matching `params` that `reach` lets the caller search: its compartment,
 * granular constraint and exclusions are conditions of the SQL (the access policy's
 * `findVisibleIds` is this with the policy's reach; `action` r asks what it may read rather than
 * search, as mayRead does for one id). A caller that may not search the type gets
 * a 403, or no ids when `noneIfForbidden` (a look-up whose refusal must not differ from "none").
 */
export async function findReachableIds(db: Queryable, reach: Reach, type: string, params: URLSearchParams, limit?: number, noneIfForbidden = false, action: 'r' | 's' = 's'): Promise<string[]> {
  const limits = noneIfForbidden ? limitsIfAllowed(reach, type, action) : reach(type, action);
  // A patient-confined grant of a type outside the Patient compartment (ValueSet under
  // `patient/*.rs`) reaches none of it: as "none", not the compartment's 400.
  if (!limits || (noneIfForbidden && limits.compartmentPatientId !== undefined && !canBeInPatientCompartment(type))) return [];
  const merged = new URLSearchParams(params);
  for (const [k, v] of limits.constraint ?? []) merged.append(k, v);
  return findMatchingIds(db, type, merged, limit, limits.compartmentPatientId, reach);
}
