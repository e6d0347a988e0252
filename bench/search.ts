import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { extractIndex } from '../src/search/extract';
import { writeSearchIndex } from '../src/search/index-writer';
import { firstPageSql } from '../src/search/search';
import type { Queryable } from '../src/store/db';
import { type BenchContext, type BenchWorkload, measured, type ResultRow, runHttpLoad, runLoad } from './harness';
import { vitalSignObservation } from './vitals';

/**
 * Issue 3's workloads: Observations loaded for 1,000 patients over a year (BP panels, heart
 * rates, weights), then the hot searches over HTTP at concurrency 8, each beside the SQL the
 * server runs for it, executed raw on the same database (the server ÷ raw ratio is the cost
 * of parsing, planning in JS, and the Bundle).
 *
 * Size: SEARCH_BENCH_OBSERVATIONS (default 100000; 1000000 for the 1M figure). The load goes
 * straight to the tables with the server's own extraction and set-based index writer, 1,000
 * per statement, so the bench measures search, not ingest.
 */
const PATIENTS = 1_000;
const CONCURRENCY = 8;
const BATCH = 1_000;

function size(): number {
  return Number(process.env.SEARCH_BENCH_OBSERVATIONS ?? 100_000);
}

async function load(ctx: BenchContext, count: number): Promise<{ patients: string[]; extractMicros: number }> {
  const raw = ctx.raw as unknown as Queryable & { transaction?: <T>(fn: (tx: Queryable) => Promise<T>) => Promise<T> };
  const patients = Array.from({ length: PATIENTS }, (_, i) => `bench-${ctx.runId}-p${i}`);
  const now = new Date().toISOString();
  const patientRows = patients.map((id, i) => ({
    id,
    resource: { resourceType: 'Patient', id, meta: { versionId: '1', lastUpdated: now }, identifier: [{ system: ctx.identifierSystem, value: id }], name: [{ family: `Bench${i}`, given: ['Remote'] }] } as fhir4.Patient,
  }));
  await raw.query(
    'INSERT INTO patient (id, version_id, last_updated, deleted, content) SELECT id, 1, now(), false, c::jsonb FROM unnest($1::text[], $2::text[]) AS t(id, c)',
    [patientRows.map((p) => p.id), patientRows.map((p) => JSON.stringify(p.resource))],
  );
  await writeSearchIndex(raw, 'Patient', patientRows);

  const yearAgo = Date.now() - 365 * 86_400_000;
  let extractNanos = 0;
  for (let first = 0; first < count; first += BATCH) {
    const entries: Array<{ id: string; resource: fhir4.Observation }> = [];
    for (let k = first; k < Math.min(count, first + BATCH); k++) {
      const resource = vitalSignObservation({ patientRef: `Patient/${patients[k % PATIENTS]}`, identifierSystem: ctx.identifierSystem, index: k, effective: new Date(yearAgo + Math.floor(k / PATIENTS) * ((365 * 86_400_000) / (count / PATIENTS))) });
      resource.id = randomUUID();
      resource.meta = { ...resource.meta, versionId: '1', lastUpdated: now };
      entries.push({ id: resource.id, resource });
    }
    const t0 = performance.now();
    for (const e of entries) extractIndex('Observation', e.resource);
    extractNanos += (performance.now() - t0) * 1e6;
    await raw.query(
      'INSERT INTO observation (id, version_id, last_updated, deleted, content) SELECT id, 1, now(), false, c::jsonb FROM unnest($1::text[], $2::text[]) AS t(id, c)',
      [entries.map((e) => e.id), entries.map((e) => JSON.stringify(e.resource))],
    );
    await writeSearchIndex(raw, 'Observation', entries);
    if (first % 100_000 === 0) ctx.log(`search bench: loaded ${first + entries.length} of ${count} Observations`);
  }
  await raw.query('ANALYZE');
  return { patients, extractMicros: extractNanos / count / 1000 };
}

interface Shape {
  group: string;
  type: string;
  query(i: number, patients: string[]): string;
}

const SHAPES: Shape[] = [
  {
    group: 'patient+code+date, -date',
    type: 'Observation',
    query: (i, p) => `subject=Patient/${p[i % p.length]}&code=http://loinc.org|8480-6&date=ge${new Date(Date.now() - 90 * 86_400_000).toISOString().slice(0, 10)}&_sort=-date&_count=50`,
  },
  { group: 'Patient?name=', type: 'Patient', query: (i) => `name=bench${i % 1000}` },
  { group: 'code-value-quantity', type: 'Observation', query: (i, p) => `subject=Patient/${p[i % p.length]}&code-value-quantity=http://loinc.org|29463-7$gt${60 + (i % 30)}|http://unitsofmeasure.org|kg` },
];

export const workloads: BenchWorkload[] = [
  {
    name: 'search',
    description: 'hot searches at concurrency 8 beside their SQL run raw',
    async run(ctx) {
      const count = size();
      const { patients, extractMicros } = await load(ctx, count);
      ctx.log(`search bench: extraction ${extractMicros.toFixed(2)} µs per Observation (JS only)`);
      const n = ctx.n(2_000);
      const rows: ResultRow[] = [];
      for (const shape of SHAPES) {
        const server = await measured(ctx, 'server', () => runHttpLoad(ctx, n, CONCURRENCY, (client, i) => client.request('GET', `${shape.type}?${shape.query(i, patients)}`)));
        const raw = await measured(ctx, 'raw SQL', () =>
          runLoad({
            n,
            concurrency: CONCURRENCY,
            warmup: ctx.warmup,
            maxSeconds: ctx.maxSeconds,
            op: async (i) => {
              const { sql, values } = firstPageSql(shape.type, new URLSearchParams(shape.query(i, patients)));
              await ctx.raw.query(sql, values);
              return { ok: true };
            },
          }),
        );
        const note = `${count} Observations, ${PATIENTS} patients`;
        rows.push({ workload: 'search', group: shape.group, target: 'server', concurrency: CONCURRENCY, ...server, note });
        rows.push({ workload: 'search', group: shape.group, target: 'raw SQL', concurrency: CONCURRENCY, ...raw, note: `the server's SQL, run raw; extraction ${extractMicros.toFixed(1)} µs/Observation` });
      }
      return rows;
    },
  },
];
