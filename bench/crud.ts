import { newResourceId } from '../src/kernel/id';
import type { Queryable } from '../src/store/db';
import { type BenchContext, type BenchWorkload, type HttpClient, HttpClient as Client, measured, type ResultRow, runHttpLoad, runLoad } from './harness';
import { type IndexStatement, indexBaseline, indexInsert } from './index-rows';
import { benchPatient, vitalSignObservation } from './vitals';

/**
 * Issue 2's workloads: create Observations over HTTP at concurrency 1 and 16, read them by id
 * at concurrency 16, each beside the same work as raw SQL on the same database.
 *
 * What a REST create writes (src/fhir/write.ts, src/store/repository.ts): in one transaction,
 * the current row and the history row of version 1, then the search index rows. The raw side
 * does the same as one single-row INSERT each, one transaction per create, like the server.
 */

const PATIENTS = 20;
const SERVER_IDS = 'observation-ids:server';
const RAW_IDS = 'observation-ids:raw';

/** A stored-as-is Observation row for the raw side: the JSON the server would store, meta included. */
interface RawRow {
  id: string;
  resource: fhir4.Observation;
  json: string;
  index?: IndexStatement;
}

/** The run's bench Patients (created once, shared by the workloads that need some). */
export async function patients(ctx: BenchContext): Promise<string[]> {
  const existing = ctx.shared.get('patient-refs') as string[] | undefined;
  if (existing) return existing;
  const client = new Client(ctx.fhirBase, 4);
  try {
    const refs: string[] = [];
    for (let i = 0; i < PATIENTS; i++) {
      const res = await client.request('POST', 'Patient', JSON.stringify(benchPatient(ctx.identifierSystem, i)));
      if (res.status !== 201) throw new Error(`creating bench Patient ${i}: ${res.status} ${res.body.slice(0, 300)}`);
      refs.push(`Patient/${idFromLocation(res.headers.location)}`);
    }
    ctx.shared.set('patient-refs', refs);
    return refs;
  } finally {
    client.close();
  }
}

export function idFromLocation(location: string | undefined): string {
  const m = location?.match(/\/Observation\/([^/]+)\/_history\/|\/Patient\/([^/]+)\/_history\//);
  const id = m?.[1] ?? m?.[2];
  if (!id) throw new Error(`no id in Location header ${location}`);
  return id;
}

/** Request bodies built before the clock starts, so the load generator only sends bytes. */
function serverBodies(ctx: BenchContext, refs: string[], first: number, count: number): string[] {
  const base = Date.now() - 30 * 86_400_000;
  return Array.from({ length: count }, (_, k) => {
    const index = first + k;
    return JSON.stringify(vitalSignObservation({ patientRef: refs[index % refs.length], identifierSystem: ctx.identifierSystem, index, effective: new Date(base + index * 60_000) }));
  });
}

function rawRows(ctx: BenchContext, refs: string[], first: number, count: number): RawRow[] {
  const base = Date.now() - 30 * 86_400_000;
  return Array.from({ length: count }, (_, k) => {
    const index = first + k;
    const resource = vitalSignObservation({ patientRef: refs[index % refs.length], identifierSystem: ctx.identifierSystem, index, effective: new Date(base + index * 60_000) });
    const id = newResourceId();
    // Same shape as a stored version: the body plus the server-assigned id and meta.
    resource.id = id;
    resource.meta = { ...resource.meta, versionId: '1', lastUpdated: new Date().toISOString() };
    return { id, resource, json: JSON.stringify(resource), index: indexInsert('Observation', 'observation', id, resource) };
  });
}

/** The raw create: what the server's transaction writes for a version 1, one statement per row. */
async function rawCreate(tx: Queryable, row: RawRow): Promise<void> {
  const lastUpdated = new Date().toISOString();
  await tx.query(`INSERT INTO observation (id, version_id, last_updated, deleted, method, content) VALUES ($1, 1, $2, false, 'POST', $3)`, [row.id, lastUpdated, row.json]);
  if (row.index) await tx.query(row.index.sql, row.index.params);
}

let nextIndex = 0;
/** Indexes are unique across every phase of a run, so identifiers never repeat. */
function takeIndexes(count: number): number {
  const first = nextIndex;
  nextIndex += count;
  return first;
}

export async function serverCreate(ctx: BenchContext, refs: string[], n: number, concurrency: number): Promise<{ row: ResultRow; ids: string[] }> {
  const bodies = serverBodies(ctx, refs, takeIndexes(ctx.warmup + n), ctx.warmup + n);
  const ids: string[] = [];
  const { stats, cpu } = await measured(ctx, 'server', () =>
    runHttpLoad(ctx, n, concurrency, async (client: HttpClient, i) => {
      const res = await client.request('POST', 'Observation', bodies[i]);
      if (res.status === 201) ids.push(idFromLocation(res.headers.location));
      return res;
    }),
  );
  return { row: { workload: 'create', group: `create c=${concurrency}`, target: 'server', concurrency, stats, cpu, note: 'POST /Observation, 201 + body' }, ids };
}

export async function rawCreates(ctx: BenchContext, refs: string[], n: number, concurrency: number): Promise<{ row: ResultRow; ids: string[] }> {
  const rows = rawRows(ctx, refs, takeIndexes(ctx.warmup + n), ctx.warmup + n);
  const indexRows = rows.reduce((sum, r) => sum + (r.index?.rows ?? 0), 0) / rows.length;
  const { stats, cpu } = await measured(ctx, 'raw SQL', () =>
    runLoad({
      n,
      concurrency,
      warmup: ctx.warmup,
      maxSeconds: ctx.maxSeconds,
      op: async (i) => {
        await ctx.raw.transaction((tx) => rawCreate(tx, rows[i]));
        return { ok: true };
      },
    }),
  );
  return {
    row: { workload: 'create', group: `create c=${concurrency}`, target: 'raw SQL', concurrency, stats, cpu, note: `BEGIN; INSERT current; INSERT history; ${indexRows ? `INSERT ${indexRows.toFixed(1)} index rows (avg); ` : '(no search index rows: src/search extraction unavailable) '}COMMIT` },
    ids: rows.slice(0, ctx.warmup + stats.count).map((r) => r.id),
  };
}

function remember(ctx: BenchContext, key: string, ids: string[]): void {
  ctx.shared.set(key, [...((ctx.shared.get(key) as string[] | undefined) ?? []), ...ids]);
}

export const createObservations: BenchWorkload = {
  name: 'create',
  description: 'POST vital-sign Observations (BP panel, heart rate, weight) at c=1 and c=16 vs. INSERT current + history + search index rows, one transaction each',
  async run(ctx) {
    const refs = await patients(ctx);
    const rows: ResultRow[] = [];
    ctx.log(`raw creates write ${indexBaseline}`);
    for (const [concurrency, defaultN] of [[1, 2000], [16, 5000]] as const) {
      const n = ctx.n(defaultN);
      ctx.log(`create c=${concurrency}: ${n} via HTTP…`);
      const server = await serverCreate(ctx, refs, n, concurrency);
      remember(ctx, SERVER_IDS, server.ids);
      ctx.log(`create c=${concurrency}: ${n} via raw SQL…`);
      const raw = await rawCreates(ctx, refs, n, concurrency);
      remember(ctx, RAW_IDS, raw.ids);
      rows.push(server.row, raw.row);
    }
    return rows;
  },
};

/** Ids to read: those `create` made in this run, or a seed of 1,000 made here (untimed) when run alone. */
async function idsToRead(ctx: BenchContext): Promise<{ server: string[]; raw: string[] }> {
  let server = ctx.shared.get(SERVER_IDS) as string[] | undefined;
  let raw = ctx.shared.get(RAW_IDS) as string[] | undefined;
  const seed = 1000;
  if (!server?.length || !raw?.length) {
    ctx.log(`read: seeding ${seed} Observations through the server and ${seed} by raw SQL (untimed)…`);
    const refs = await patients(ctx);
    const seedCtx: BenchContext = { ...ctx, warmup: 0, maxSeconds: 600 };
    server = (await serverCreate(seedCtx, refs, seed, 16)).ids;
    raw = (await rawCreates(seedCtx, refs, seed, 16)).ids;
    ctx.shared.set(SERVER_IDS, server);
    ctx.shared.set(RAW_IDS, raw);
  }
  return { server, raw };
}

/** A fixed scatter over the ids (7919 is prime), so reads do not walk the table in insert order. */
const scatter = (ids: string[], i: number) => ids[(i * 7919) % ids.length];

export const readObservations: BenchWorkload = {
  name: 'read',
  description: 'GET /Observation/{id} at c=16 vs. SELECT content::text by id',
  async run(ctx) {
    const ids = await idsToRead(ctx);
    const n = ctx.n(10_000);
    const concurrency = 16;
    ctx.log(`read c=${concurrency}: ${n} via HTTP over ${ids.server.length} ids…`);
    const server = await measured(ctx, 'server', () =>
      runHttpLoad(ctx, n, concurrency, (client, i) => client.request('GET', `Observation/${scatter(ids.server, i)}`)),
    );
    ctx.log(`read c=${concurrency}: ${n} via raw SQL over ${ids.raw.length} ids…`);
    const raw = await measured(ctx, 'raw SQL', () =>
      runLoad({
        n,
        concurrency,
        warmup: ctx.warmup,
        maxSeconds: ctx.maxSeconds,
        op: async (i) => {
          const { rows } = await ctx.raw.query<{ content: string }>('SELECT content::text AS content FROM observation WHERE id = $1', [scatter(ids.raw, i)]);
          return rows.length === 1 ? { ok: true } : { ok: false, detail: 'row not found' };
        },
      }),
    );
    return [
      { workload: 'read', group: `read c=${concurrency}`, target: 'server', concurrency, ...server, note: 'GET /Observation/{id}, 200 + body' },
      { workload: 'read', group: `read c=${concurrency}`, target: 'raw SQL', concurrency, ...raw, note: 'SELECT content::text WHERE id = $1' },
    ];
  },
};

export const workloads: BenchWorkload[] = [createObservations, readObservations];
