import { performance } from 'node:perf_hooks';
import { newResourceId } from '../src/kernel/id';
import { INDEX_KINDS, indexTableOf } from '../src/search/index-tables';
import { writeSearchIndex } from '../src/search/index-writer';
import { firstPageSql } from '../src/search/search';
import { lastnMatchesSql } from '../src/search/lastn';
import type { Queryable } from '../src/store/db';
import { type BenchContext, type BenchWorkload, checkpoint, type HttpClient, type LoadStats, measured, type OpResult, type ResultRow, runHttpLoad, runLoad } from './harness';
import { vitalSignObservation } from './vitals';

/**
 * Issue 3's and 16's workloads: Observations loaded for 1,000 patients over a year (BP panels,
 * heart rates, weights), then the hot searches over HTTP at concurrency 8, each beside the SQL
 * the server runs for it, executed raw on the same database (the server ÷ raw ratio is the cost
 * of parsing, planning in JS, and the Bundle).
 *
 * `search`: SEARCH_BENCH_OBSERVATIONS (default 100,000). `search-1m` then grows the same data to
 * SEARCH_BENCH_1M (default 1,000,000) and measures the hot searches again, so their p95 reads
 * beside the 100k figure of the same run. The load goes straight to the tables with the
 * server's own extraction and set-based index writer (src/search writeSearchIndex), 1,000
 * Observations per statement on two connections, so the bench measures search, not ingest,
 * and a million loads in minutes. Storage per Observation (table, indexes, history) is printed
 * after each load.
 */
const PATIENTS = 1_000;
/** The page size clients get by default (the server's `_count` default), and the shapes' `_count`. */
const PAGE = 50;
/** Mean entries of a first page, per measured group (`hot search, no _sort @1.0M`). */
const entries = new Map<string, number>();
const CONCURRENCY = 8;
const BATCH = 1_000;
const LOADERS = 2;
const YEAR_MS = 365 * 86_400_000;
const LOADED = 'search:loaded';

interface Loaded {
  patients: string[];
  count: number;
  /** p95 of each hot shape at the first size, for the 1M phase to compare with. */
  p95: Map<string, number>;
}

function size(): number {
  return Number(process.env.SEARCH_BENCH_OBSERVATIONS ?? 100_000);
}

function millionSize(): number {
  return Number(process.env.SEARCH_BENCH_1M ?? 1_000_000);
}

async function loadPatients(ctx: BenchContext): Promise<string[]> {
  const patients = Array.from({ length: PATIENTS }, (_, i) => `bench-${ctx.runId}-p${i}`);
  const now = new Date().toISOString();
  const patientRows = patients.map((id, i) => ({
    id,
    resource: { resourceType: 'Patient', id, meta: { versionId: '1', lastUpdated: now }, identifier: [{ system: ctx.identifierSystem, value: id }], name: [{ family: `Bench${i}`, given: ['Remote'] }] } as fhir4.Patient,
  }));
  await ctx.raw.query(
    'INSERT INTO patient (id, version_id, last_updated, deleted, content) SELECT id, 1, now(), false, c::jsonb FROM unnest($1::text[], $2::text[]) AS t(id, c)',
    [patientRows.map((p) => p.id), patientRows.map((p) => JSON.stringify(p.resource))],
  );
  await writeSearchIndex(ctx.raw as unknown as Queryable, 'Patient', patientRows);
  return patients;
}

/**
 * Observations `from` … `to` - 1: patient k mod 1,000, taken at a point of the past year spread
 * by a multiplicative hash of k (so a grown data set interleaves with the first one).
 */
async function loadObservations(ctx: BenchContext, patients: string[], from: number, to: number): Promise<{ seconds: number }> {
  const raw = ctx.raw as unknown as Queryable;
  const yearAgo = Date.now() - YEAR_MS;
  const now = new Date().toISOString();
  let next = from;
  let reported = from;
  const started = performance.now();
  const loader = async () => {
    while (next < to) {
      const first = next;
      next = Math.min(to, first + BATCH);
      const entries: Array<{ id: string; resource: fhir4.Observation; isNew: true }> = [];
      for (let k = first; k < Math.min(to, first + BATCH); k++) {
        const at = yearAgo + (((k * 2654435761) % 1_000_003) / 1_000_003) * YEAR_MS;
        const resource = vitalSignObservation({ patientRef: `Patient/${patients[k % PATIENTS]}`, identifierSystem: ctx.identifierSystem, index: k, effective: new Date(at) });
        resource.id = newResourceId();
        resource.meta = { ...resource.meta, versionId: '1', lastUpdated: now };
        entries.push({ id: resource.id, resource, isNew: true });
      }
      await ctx.raw.transaction(async (tx) => {
        await tx.query(
          `INSERT INTO observation (id, version_id, last_updated, deleted, method, content) SELECT id, 1, now(), false, 'POST', c::jsonb FROM unnest($1::text[], $2::text[]) AS t(id, c)`,
          [entries.map((e) => e.id), entries.map((e) => JSON.stringify(e.resource))],
        );
        await writeSearchIndex(tx, 'Observation', entries);
      });
      if (next - reported >= 100_000) {
        reported = next;
        ctx.log(`search bench: loaded ${next - from} of ${to - from} Observations (${((next - from) / ((performance.now() - started) / 1000)).toFixed(0)}/s)`);
      }
    }
  };
  await Promise.all(Array.from({ length: LOADERS }, loader));
  const seconds = (performance.now() - started) / 1000;
  // As autovacuum leaves tables: statistics and the visibility map (index-only scans).
  for (const table of ['patient', 'observation', ...INDEX_KINDS.map((k) => indexTableOf('observation', k))]) await ctx.raw.query(`VACUUM ANALYZE ${table}`);
  // The load leaves ~1 GB of dirty buffers; without a checkpoint here the checkpointer writes
  // them during the first measured phase (the unsorted search), which then read 1.5–2× slower
  // than the identical SQL of the phase after it.
  await checkpoint(ctx);
  return { seconds };
}

/** Bytes per stored Observation: current and history tables with their indexes and TOAST, and every index table. */
async function storagePerObservation(ctx: BenchContext): Promise<string> {
  const tables = ['observation', 'observation_history', ...INDEX_KINDS.map((k) => indexTableOf('observation', k))];
  const parts: Array<[string, number]> = [];
  for (const t of tables) {
    const { rows } = await ctx.raw.query<{ bytes: string | number; n: string | number }>(`SELECT pg_total_relation_size('${t}') AS bytes, (SELECT count(*) FROM ${t}) AS n`);
    parts.push([`${t}`, Number(rows[0].bytes)]);
  }
  const { rows } = await ctx.raw.query<{ n: string | number; rows: string | number }>(
    `SELECT (SELECT count(*) FROM observation) AS n, ${INDEX_KINDS.map((k) => `(SELECT count(*) FROM ${indexTableOf('observation', k)})`).join(' + ')} AS rows`,
  );
  const n = Number(rows[0].n);
  const total = parts.reduce((s, [, b]) => s + b, 0);
  const biggest = parts.filter(([, b]) => b > 0.02 * total).sort((a, b) => b[1] - a[1]).map(([t, b]) => `${t} ${(b / n).toFixed(0)} B`);
  return `storage per Observation at ${n.toLocaleString('en-US')}: ${(total / n / 1024).toFixed(2)} kB (target < 2.5 kB), ${(Number(rows[0].rows) / n).toFixed(1)} index rows each; ${biggest.join(', ')}`;
}

interface Shape {
  group: string;
  type: string;
  query(i: number, patients: string[]): string;
  /** For a compartment search (`Patient/X/type?…`): the i-th search's patient. */
  compartment?(i: number, patients: string[]): string;
  /** The raw SQL twin when it is not a search's first page (an operation's statement). */
  rawSql?(params: URLSearchParams): { sql: string; values: unknown[] };
}

const since = () => new Date(Date.now() - 90 * 86_400_000).toISOString().slice(0, 10);

/** The issue's hot search, as clients send it (no _sort) and sorted newest first. */
const HOT: Shape[] = [
  { group: 'hot search, no _sort', type: 'Observation', query: (i, p) => `subject=Patient/${p[i % p.length]}&code=http://loinc.org|8867-4&date=ge${since()}&_count=50` },
  { group: 'hot search, -date', type: 'Observation', query: (i, p) => `subject=Patient/${p[i % p.length]}&code=http://loinc.org|8867-4&date=ge${since()}&_sort=-date&_count=50` },
];

/**
 * A patient's latest readings of every kind, as a chart or a SMART app asks for them: no code to
 * drive from, so it is driven by the patient's key rows (src/search/sql.ts, planDriver). Measured
 * at 1M too, where each patient has ten times the readings.
 */
const PATIENT_NEWEST: Shape = { group: 'patient, newest first', type: 'Observation', query: (i, p) => `patient=${p[i % p.length]}&_sort=-date` };

/**
 * A chart's series in one search, as SMART apps ask for them: a list of codes, unsorted, the
 * default page. Driven by one range scan per code, merged (src/search/sql.ts, termBranches).
 */
const PATIENT_CODES: Shape = {
  group: "patient, a chart's codes",
  type: 'Observation',
  query: (i, p) => `patient=${p[i % p.length]}&code=http://loinc.org|85354-9,http://loinc.org|8867-4,http://loinc.org|29463-7`,
};

/**
 * The same patient's readings of one code through the compartment (`Patient/X/Observation?code=…`),
 * as EHR integrations ask: driven by the patient's key rows, the members the key misses after
 * them (src/search/sql.ts, compartmentTail).
 */
const COMPARTMENT_CODE: Shape = { group: "a patient's compartment, a code", type: 'Observation', compartment: (i, p) => p[i % p.length]!, query: () => 'code=http://loinc.org|8867-4' };

/**
 * A sync client's poll, what changed since its last one (`_lastUpdated=gt…`, unsorted, the default
 * page), from where the newest 5,000 changes begin: set after each load (markLastPoll), so that
 * a poll finds as many changes at 1M as at 100k.
 */
let lastPoll = '';

async function markLastPoll(ctx: BenchContext): Promise<void> {
  const { rows } = await ctx.raw.query<{ at: string }>(
    `SELECT to_char(last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at FROM observation ORDER BY last_updated DESC OFFSET 5000 LIMIT 1`,
  );
  lastPoll = rows[0]!.at;
}

const lastWeek = () => new Date(Date.now() - 7 * 86_400_000).toISOString().slice(0, 10);

/**
 * Across patients: a sync client's poll for changes (read from its bound in the
 * `(last_updated, id)` index, src/search/default-order.ts), a care team's worklist of one reading in the last week (found by the code's
 * estimate and the date's index), the same newest first, a list view's or sync client's newest
 * changes first, and a population view's newest vital signs (the sorted ones driven by the date
 * index read backwards, src/search/newest-first.ts).
 */
const ACROSS_PATIENTS: Shape[] = [
  { group: 'changes since a poll', type: 'Observation', query: () => `_lastUpdated=gt${lastPoll}` },
  { group: 'a code, last week', type: 'Observation', query: () => `code=http://loinc.org|8867-4&date=ge${lastWeek()}` },
  { group: 'a code, last week, newest first', type: 'Observation', query: () => `code=http://loinc.org|8867-4&date=ge${lastWeek()}&_sort=-date` },
  { group: 'last updated first', type: 'Observation', query: () => '_sort=-_lastUpdated' },
  { group: 'vital signs, newest first', type: 'Observation', query: () => 'category=vital-signs&_sort=-date' },
];

/**
 * A chart's or dashboard's latest vital signs of a patient, one per code
 * (`Observation/$lastn`, src/search/lastn.ts): the codes and dates of the patient's readings
 * are read from the patient index (100 at 100k, 1,000 at 1M) and the search's conditions checked
 * on the newest of each code (decision 042). Raw SQL: the statement that reads the chosen
 * matches; the server also groups them and reads their JSON.
 */
const PATIENT_LASTN: Shape = {
  group: "a patient's latest vital signs ($lastn)",
  type: 'Observation/$lastn',
  query: (i, p) => `patient=${p[i % p.length]}&category=vital-signs`,
  rawSql: lastnMatchesSql,
};

const OTHERS: Shape[] = [
  PATIENT_NEWEST,
  PATIENT_LASTN,
  PATIENT_CODES,
  COMPARTMENT_CODE,
  ...ACROSS_PATIENTS,
  { group: 'Patient?name=', type: 'Patient', query: (i) => `name=bench${i % 1000}` },
  { group: 'code-value-quantity', type: 'Observation', query: (i, p) => `subject=Patient/${p[i % p.length]}&code-value-quantity=http://loinc.org|29463-7$gt${60 + (i % 30)}|http://unitsofmeasure.org|kg` },
];

/**
 * One unmeasured pass of every shape, through the server and raw, before the first measured
 * phase. Measured reason: after a load, whichever phase ran first read 1.5× slower than the
 * identical SQL after it (no _sort first: 780 vs 1,164 req/s; -date first: 732 vs 1,166), in the
 * server and in PostgreSQL alike — the process's JIT and the database settling after the load —
 * which the per-phase warm-up of 200 requests did not cover.
 */
async function settle(ctx: BenchContext, shapes: Shape[], patients: string[]): Promise<void> {
  const n = 1_000;
  for (const shape of shapes) {
    await runHttpLoad(ctx, n, CONCURRENCY, serverSearch(shape, patients));
    await runLoad({ n, concurrency: CONCURRENCY, warmup: 0, maxSeconds: ctx.maxSeconds, op: rawSearch(ctx, shape, patients) });
  }
  ctx.log(`search: settled with ${n} unmeasured requests per shape, through the server and raw`);
}

/** The i-th search of a shape over HTTP. */
const serverSearch = (shape: Shape, patients: string[]) => (client: HttpClient, i: number) => client.request('GET', pathOf(shape, i, patients));

/** The i-th search's path under the base: `type?query`, within a Patient's compartment for a compartment shape. */
const pathOf = (shape: Shape, i: number, patients: string[]) => `${shape.compartment ? `Patient/${shape.compartment(i, patients)}/` : ''}${shape.type}?${shape.query(i, patients)}`;

/** The i-th search of a shape as the server's own SQL, run raw. */
const rawSearch = (ctx: BenchContext, shape: Shape, patients: string[], pages?: PageSizes) => async (i: number): Promise<OpResult> => {
  const params = new URLSearchParams(shape.query(i, patients));
  const { sql, values } = shape.rawSql ? shape.rawSql(params) : firstPageSql(shape.type, params, PAGE, shape.compartment?.(i, patients));
  const { rows } = await ctx.raw.query(sql, values);
  if (pages) {
    pages.queries++;
    // A page's SQL asks for one more row, to know of a next page; an operation's counts the rows its statement returned.
    pages.entries += shape.rawSql ? rows.length : Math.min(rows.length, PAGE);
  }
  return { ok: true };
};

/**
 * How many matches a shape's first pages held, counted on its raw SQL's answers: a page's cost
 * grows with its entries, so a p95 read beside another size's means little without them (at
 * 1M each patient has ten times the readings, and the hot search's 90 days fill the page).
 */
interface PageSizes {
  queries: number;
  entries: number;
}
const entriesPerPage = (pages: PageSizes) => (pages.queries ? pages.entries / pages.queries : 0);

async function measureShapes(ctx: BenchContext, shapes: Shape[], patients: string[], count: number, suffix: string): Promise<Array<ResultRow & { stats: LoadStats }>> {
  const n = ctx.n(2_000);
  const rows: ResultRow[] = [];
  await settle(ctx, shapes, patients);
  for (const shape of shapes) {
    const server = await measured(ctx, 'server', () => runHttpLoad(ctx, n, CONCURRENCY, serverSearch(shape, patients)));
    const pages: PageSizes = { queries: 0, entries: 0 };
    const raw = await measured(ctx, 'raw SQL', () => runLoad({ n, concurrency: CONCURRENCY, warmup: ctx.warmup, maxSeconds: ctx.maxSeconds, op: rawSearch(ctx, shape, patients, pages) }));
    const group = `${shape.group}${suffix}`;
    entries.set(group, entriesPerPage(pages));
    const note = `${count.toLocaleString('en-US')} Observations, ${PATIENTS} patients, ${entriesPerPage(pages).toFixed(1)} ${shape.rawSql ? 'rows returned' : 'entries a page'}: ${pathOf(shape, 0, ['X'])}`;
    rows.push({ workload: 'search', group, target: 'server', concurrency: CONCURRENCY, ...server, note });
    rows.push({ workload: 'search', group, target: 'raw SQL', concurrency: CONCURRENCY, ...raw, note: `the server's SQL, run raw on the same pool size` });
  }
  return rows;
}

function hotSummary(ctx: BenchContext, rows: ResultRow[], suffix: string): void {
  const server = (group: string) => rows.find((r) => r.group === `${group}${suffix}` && r.target === 'server');
  const unsorted = server(HOT[0].group);
  const sorted = server(HOT[1].group);
  if (!unsorted || !sorted) return;
  const s = unsorted.stats;
  ctx.figure(
    `hot search${suffix}: no _sort ${s.perSecond.toFixed(0)} req/s p95 ${s.p95.toFixed(1)} ms, -date ${sorted.stats.perSecond.toFixed(0)} req/s p95 ${sorted.stats.p95.toFixed(1)} ms; ` +
      `no _sort ÷ -date p95 ${(s.p95 / sorted.stats.p95).toFixed(2)} (target ≤ 1.5)`,
  );
}

export const workloads: BenchWorkload[] = [
  {
    name: 'search',
    description: 'hot searches (no _sort and -date) and the other shapes clients send, at concurrency 8 beside their SQL run raw; storage per Observation',
    async run(ctx) {
      const count = size();
      const patients = await loadPatients(ctx);
      const { seconds } = await loadObservations(ctx, patients, 0, count);
      ctx.figure(`search load: ${count.toLocaleString('en-US')} Observations in ${seconds.toFixed(0)} s (${(count / seconds).toFixed(0)}/s, ${LOADERS} connections, the server's extraction and set-based index writer, 1,000 per transaction)`);
      ctx.figure(await storagePerObservation(ctx));
      await markLastPoll(ctx);
      const rows = await measureShapes(ctx, [...HOT, ...OTHERS], patients, count, '');
      hotSummary(ctx, rows, '');
      ctx.shared.set(LOADED, { patients, count, p95: new Map(rows.filter((r) => r.target === 'server').map((r) => [r.group, r.stats.p95])) } satisfies Loaded);
      return rows;
    },
  },
  {
    name: 'search-1m',
    description: "the hot searches, a patient's newest readings, a chart's codes, a compartment's code and the searches across patients again once the data has grown to SEARCH_BENCH_1M (default 1,000,000) Observations",
    async run(ctx) {
      const target = millionSize();
      let loaded = ctx.shared.get(LOADED) as Loaded | undefined;
      if (!loaded) loaded = { patients: await loadPatients(ctx), count: 0, p95: new Map() };
      if (target <= loaded.count) {
        ctx.log(`search-1m: skipped, SEARCH_BENCH_1M=${target} is not above the ${loaded.count} Observations loaded`);
        return [];
      }
      const { seconds } = await loadObservations(ctx, loaded.patients, loaded.count, target);
      ctx.figure(`search-1m load: ${(target - loaded.count).toLocaleString('en-US')} more Observations in ${seconds.toFixed(0)} s (${((target - loaded.count) / seconds).toFixed(0)}/s)`);
      ctx.figure(await storagePerObservation(ctx));
      await markLastPoll(ctx);
      const suffix = ` @${(target / 1e6).toFixed(1)}M`;
      const shapes = [...HOT, PATIENT_NEWEST, PATIENT_LASTN, PATIENT_CODES, COMPARTMENT_CODE, ...ACROSS_PATIENTS];
      const rows = await measureShapes(ctx, shapes, loaded.patients, target, suffix);
      hotSummary(ctx, rows, suffix);
      for (const shape of shapes) {
        const before = loaded.p95.get(shape.group);
        const now = rows.find((r) => r.group === `${shape.group}${suffix}` && r.target === 'server')?.stats.p95;
        const pages = `${(entries.get(shape.group) ?? 0).toFixed(1)} → ${(entries.get(`${shape.group}${suffix}`) ?? 0).toFixed(1)} ${shape.rawSql ? 'rows returned' : 'entries a page'}`;
        if (before !== undefined && now !== undefined) ctx.figure(`${shape.group}: p95 at ${(target / 1e6).toFixed(1)}M ÷ at ${loaded.count.toLocaleString('en-US')} = ${(now / before).toFixed(2)} (target ≤ 1.5; ${pages})`);
      }
      return rows;
    },
  },
];
