import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { type BenchContext, type BenchWorkload, benchAuthorization, HttpClient, type LoadStats, measured, type ResultRow } from './harness';

/**
 * Issue 21's workload: a Bulk Data export of N Observations (`_type=Observation`, system level)
 * and the download of its NDJSON file, with the server's resident memory sampled throughout, to
 * show that both stream (memory stays flat whatever N is). Beside it, raw SQL reads the same rows
 * by the same keyset batches on the same database.
 *
 * On PostgreSQL the Observations are loaded by raw SQL (generate_series, 100,000 rows per
 * statement: the export reads only the resource table, so no index rows are needed); embedded,
 * the server's database is inside its process, so they are posted as transaction Bundles.
 * `--n` counts Observations (default 100,000; the issue's figure is `--n 1000000`).
 */

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
const LOAD_STEP = 100_000;
const BUNDLE = 500;
const RAW_BATCH = 2_000;

/** A /proc/<pid>/status field in KiB (VmRSS: resident now; VmHWM: the peak since start). */
function memoryKib(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Samples the server's RSS every 100 ms while `run` runs: the largest sample, and the samples at each quarter of the run. */
async function sampledPeak<T>(pid: number, run: () => Promise<T>): Promise<{ result: T; peakKib: number; quarters: number[] }> {
  const samples: number[] = [memoryKib(pid, 'VmRSS')];
  const timer = setInterval(() => samples.push(memoryKib(pid, 'VmRSS')), 100);
  try {
    const result = await run();
    samples.push(memoryKib(pid, 'VmRSS'));
    const quarters = [1, 2, 3, 4].map((q) => samples[Math.min(samples.length - 1, Math.floor((q * samples.length) / 4))]!);
    return { result, peakKib: Math.max(...samples), quarters };
  } finally {
    clearInterval(timer);
  }
}

const trajectory = (quarters: number[]) => quarters.map(mib).join(' → ');

function singleRun(count: number, ms: number): LoadStats {
  return { count, errors: 0, errorSamples: [], seconds: ms / 1000, perSecond: count / (ms / 1000), p50: ms, p95: ms, p99: ms, truncated: false };
}

const authHeaders = (): Record<string, string> => (benchAuthorization.header ? { authorization: benchAuthorization.header } : {});

async function loadObservations(ctx: BenchContext, n: number): Promise<void> {
  const lastUpdated = new Date(Date.now() - 3_600_000).toISOString();
  if (ctx.raw.kind === 'postgres') {
    for (let from = 1; from <= n; from += LOAD_STEP) {
      const to = Math.min(n, from + LOAD_STEP - 1);
      await ctx.raw.query(
        `INSERT INTO observation (id, version_id, last_updated, content)
         SELECT id, 1, $3::timestamptz, jsonb_build_object(
           'resourceType', 'Observation', 'id', id, 'meta', jsonb_build_object('versionId', '1', 'lastUpdated', $3::text),
           'status', 'final',
           'category', jsonb_build_array(jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('system', 'http://terminology.hl7.org/CodeSystem/observation-category', 'code', 'vital-signs')))),
           'code', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('system', 'http://loinc.org', 'code', '8867-4', 'display', 'Heart rate'))),
           'subject', jsonb_build_object('reference', 'Patient/bench-export-' || (g % 1000)),
           'effectiveDateTime', to_char(timestamptz '2026-01-01' + g * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'valueQuantity', jsonb_build_object('value', 60 + g % 40, 'unit', '/min', 'system', 'http://unitsofmeasure.org', 'code', '/min'))
         FROM (SELECT g, $4 || '-' || g AS id FROM generate_series($1::int, $2::int) g) s`,
        [from, to, lastUpdated, `bench-export-${ctx.runId}`],
      );
      ctx.log(`export: loaded ${fmt(to)} of ${fmt(n)} Observations`);
    }
    await ctx.raw.query('ANALYZE observation');
    return;
  }
  const client = new HttpClient(ctx.fhirBase, 2);
  try {
    for (let from = 0; from < n; from += BUNDLE) {
      const entry = Array.from({ length: Math.min(BUNDLE, n - from) }, (_, i) => ({
        resource: {
          resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
          subject: { reference: `Patient/bench-export-${(from + i) % 1000}` }, effectiveDateTime: '2026-01-01T00:00:00Z',
          valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
        },
        request: { method: 'POST', url: 'Observation' },
      }));
      const res = await client.request('POST', '', JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry }));
      if (res.status !== 200) throw new Error(`loading: ${res.status} ${res.body.slice(0, 300)}`);
    }
  } finally {
    client.close();
  }
}

/** Kick-off, then polls until complete; the manifest. */
async function exportObservations(ctx: BenchContext): Promise<{ manifest: { output: Array<{ type: string; url: string; count: number }> }; ms: number }> {
  const t0 = performance.now();
  const kick = await fetch(`${ctx.fhirBase}/$export?_type=Observation`, { headers: { accept: 'application/fhir+json', prefer: 'respond-async', ...authHeaders() } });
  if (kick.status !== 202) throw new Error(`kick-off: ${kick.status} ${await kick.text()}`);
  const status = kick.headers.get('content-location')!;
  for (let polls = 0; ; polls++) {
    const res = await fetch(status, { headers: authHeaders() });
    if (res.status === 200) return { manifest: (await res.json()) as never, ms: performance.now() - t0 };
    if (res.status !== 202) throw new Error(`status: ${res.status} ${await res.text()}`);
    if (polls % 20 === 0) ctx.log(`export: ${res.headers.get('x-progress')}`);
    // Faster than Retry-After asks, to time the end to within a quarter second.
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Downloads a file, counting its lines without holding it. */
async function download(url: string): Promise<{ lines: number; bytes: number }> {
  const res = await fetch(url, { headers: authHeaders() });
  if (res.status !== 200 || !res.body) throw new Error(`download: ${res.status}`);
  let lines = 0;
  let bytes = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += chunk.length;
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
  }
  return { lines, bytes };
}

export const workloads: BenchWorkload[] = [
  {
    name: 'export',
    description: 'Bulk Data $export of N Observations (default 100,000) and its download: rows/s and the server\'s peak RSS, beside raw SQL keyset reads',
    async run(ctx: BenchContext) {
      const n = ctx.n(100_000);
      const once = { ...ctx, warmup: 0 };
      const setup = performance.now();
      ctx.log(`export: loading ${fmt(n)} Observations (${ctx.raw.kind === 'postgres' ? 'raw SQL' : 'batch Bundles over HTTP'})…`);
      await loadObservations(ctx, n);
      ctx.log(`export: loaded in ${((performance.now() - setup) / 1000).toFixed(1)} s`);

      const pid = ctx.serverPid;
      const rssBefore = memoryKib(pid, 'VmRSS');
      const rows: ResultRow[] = [];

      let exported = 0;
      let manifest: Awaited<ReturnType<typeof exportObservations>>['manifest'] | undefined;
      let exportPeak = 0;
      let exportQuarters: number[] = [];
      const exportPhase = await measured(once, 'server', async () => {
        const { result, peakKib, quarters } = await sampledPeak(pid, () => exportObservations(ctx));
        manifest = result.manifest;
        exportPeak = peakKib;
        exportQuarters = quarters;
        exported = manifest.output.reduce((s, o) => s + o.count, 0);
        return singleRun(exported, result.ms);
      });
      ctx.log(`export: ${fmt(exported)} Observations in ${exportPhase.stats.seconds.toFixed(1)} s, ${fmt(exportPhase.stats.perSecond)}/s; RSS ${mib(rssBefore)} before, peak ${mib(exportPeak)}, at each quarter ${trajectory(exportQuarters)}`);
      rows.push({
        workload: 'export', group: 'export write', target: 'server', concurrency: 1, ...exportPhase,
        note: `kick-off to complete manifest, ${fmt(exported)} Observations into NDJSON chunks: ${exportPhase.stats.seconds.toFixed(1)} s, ${fmt(exportPhase.stats.perSecond)} resources/s; server RSS ${mib(rssBefore)} before, peak ${mib(exportPeak)}, at each quarter of the run ${trajectory(exportQuarters)} (sampled every 100 ms); CPU columns per resource`,
      });

      let downloaded = { lines: 0, bytes: 0 };
      let downloadPeak = 0;
      let downloadQuarters: number[] = [];
      const downloadPhase = await measured(once, 'server', async () => {
        const t0 = performance.now();
        const { result, peakKib, quarters } = await sampledPeak(pid, () => download(manifest!.output[0]!.url));
        downloaded = result;
        downloadPeak = peakKib;
        downloadQuarters = quarters;
        return singleRun(result.lines, performance.now() - t0);
      });
      if (downloaded.lines !== exported) throw new Error(`downloaded ${downloaded.lines} lines of ${exported}`);
      ctx.log(`export: downloaded ${fmt(downloaded.lines)} lines, ${(downloaded.bytes / 2 ** 20).toFixed(0)} MiB in ${downloadPhase.stats.seconds.toFixed(1)} s; peak RSS ${mib(downloadPeak)}, at each quarter ${trajectory(downloadQuarters)}; VmHWM ${mib(memoryKib(pid, 'VmHWM'))}`);
      rows.push({
        workload: 'export', group: 'export download', target: 'server', concurrency: 1, ...downloadPhase,
        note: `GET of the NDJSON file, ${(downloaded.bytes / 2 ** 20).toFixed(0)} MiB streamed from the chunks table: ${fmt(downloadPhase.stats.perSecond)} lines/s; server RSS peak ${mib(downloadPeak)}, at each quarter ${trajectory(downloadQuarters)}; peak since server start (VmHWM) ${mib(memoryKib(pid, 'VmHWM'))}`,
      });

      // The same read in raw SQL: keyset batches over the table, the JSON as text.
      const rawPhase = await measured(once, 'raw SQL', async () => {
        const t0 = performance.now();
        let count = 0;
        let after = '';
        for (;;) {
          const { rows: batch } = await ctx.raw.query<{ id: string; json: string }>('SELECT id, content::text AS json FROM observation WHERE id > $1 AND NOT deleted ORDER BY id LIMIT $2', [after, RAW_BATCH]);
          if (batch.length === 0) break;
          count += batch.length;
          after = batch[batch.length - 1]!.id;
        }
        return singleRun(count, performance.now() - t0);
      });
      rows.push({
        workload: 'export', group: 'export write', target: 'raw SQL', concurrency: 1, ...rawPhase,
        note: `keyset batches of ${fmt(RAW_BATCH)} over observation, content as text, nothing written: ${fmt(rawPhase.stats.perSecond)} rows/s`,
      });
      return rows;
    },
  },
];
