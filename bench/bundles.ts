import { randomUUID } from 'node:crypto';
import { newResourceId } from '../src/kernel/id';
import type { Queryable } from '../src/store/db';
import { extractIndex } from '../src/search/extract';
import { INDEX_COLUMNS, INDEX_KINDS, type IndexKind, indexTableOf } from '../src/search/index-tables';
import { type BenchContext, type BenchWorkload, checkpoint, HttpClient, type LoadStats, measured, type ResultRow, runHttpLoad, runLoad } from './harness';
import { indexInsert } from './index-rows';
import { benchPatient, vitalSignObservation } from './vitals';

/**
 * Issue 4's ingest workloads: transaction Bundles of Observations POSTed to the FHIR base, as a
 * device gateway uploads them, beside the same rows written by raw multi-row SQL on the same
 * database in the same run.
 *
 * What a transaction of N `POST Observation` entries writes (src/fhir/bundle/transaction.ts → src/pipeline/unit-of-work.ts →
 * src/store/repository.ts writeVersions, src/search/index-writer.ts): in one
 * database transaction, N current rows (each JSON stored once) and every search index row of the N
 * Observations. The raw side writes exactly those rows — the JSON the server stores (id and
 * meta included), the index rows of src/search extractIndex(), the same extraction
 * bench/index-rows.ts uses — as multi-row `INSERT … VALUES` statements, one transaction per
 * bundle, at the same concurrency. Everything is built before the clock starts.
 *
 * `--n` counts Observations per phase (so `--n 2000` is 20 bundles of 100 and 2 of 1,000).
 */

const PATIENTS = 20;
/** The issue's targets: on PostgreSQL, 100-entry transactions at ≥10,000 Observations/s and ≥½ of raw SQL. */
const TARGET_PER_SECOND = 10_000;
const TARGET_RATIO = 0.5;
/** PostgreSQL's limit is 65,535 bind parameters per statement; raw statements stay under this. */
const MAX_PARAMS = 60_000;

// ---- data -----------------------------------------------------------------------------------

async function patients(ctx: BenchContext): Promise<string[]> {
  // The same key as bench/crud.ts: one set of bench Patients per run, whoever makes it first.
  const existing = ctx.shared.get('patient-refs') as string[] | undefined;
  if (existing) return existing;
  const client = new HttpClient(ctx.fhirBase, 4);
  try {
    const refs: string[] = [];
    for (let i = 0; i < PATIENTS; i++) {
      const res = await client.request('POST', 'Patient', JSON.stringify(benchPatient(ctx.identifierSystem, i)));
      const id = res.headers.location?.match(/\/Patient\/([^/]+)\/_history\//)?.[1];
      if (res.status !== 201 || !id) throw new Error(`creating bench Patient ${i}: ${res.status} ${res.body.slice(0, 300)}`);
      refs.push(`Patient/${id}`);
    }
    ctx.shared.set('patient-refs', refs);
    return refs;
  } finally {
    client.close();
  }
}

/** Pulse oximetry, shaped like the R4 vital-signs oxygen saturation example (vitals.ts has no SpO2). */
function spo2Observation(patientRef: string, identifierSystem: string, index: number, effective: Date): fhir4.Observation {
  return {
    resourceType: 'Observation',
    meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] },
    identifier: [{ system: identifierSystem, value: String(index) }],
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }], text: 'Vital Signs' }],
    code: {
      coding: [
        { system: 'http://loinc.org', code: '2708-6', display: 'Oxygen saturation in Arterial blood' },
        { system: 'http://loinc.org', code: '59408-5', display: 'Oxygen saturation in Arterial blood by Pulse oximetry' },
      ],
      text: 'SpO2',
    },
    subject: { reference: patientRef },
    effectiveDateTime: effective.toISOString(),
    device: { display: 'home pulse oximeter' },
    valueQuantity: { value: 90 + ((index * 7919) % 10), unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
  };
}

let nextIndex = 0;
/** Observation numbers unique across every phase of the run (and apart from crud.ts's), so identifiers never repeat. */
function takeIndexes(count: number): number {
  const first = nextIndex;
  nextIndex += count;
  return first;
}

/**
 * The k-th reading of the run: per 10, four BP panels (two components each), four heart
 * rates, one body weight, one SpO2, spread over the bench Patients, a minute apart.
 */
function observation(ctx: BenchContext, refs: string[], k: number, base: number): fhir4.Observation {
  const patientRef = refs[k % refs.length];
  const effective = new Date(base + k * 60_000);
  const obs = k % 10 === 2
    ? spo2Observation(patientRef, ctx.identifierSystem, k, effective)
    : vitalSignObservation({ patientRef, identifierSystem: ctx.identifierSystem, index: k, effective });
  obs.identifier = [{ system: ctx.identifierSystem, value: `bundle-${k}` }];
  return obs;
}

/** `count` transaction Bundles of `size` POST Observation entries with urn:uuid fullUrls, as request bodies. */
function serverBodies(ctx: BenchContext, refs: string[], count: number, size: number): string[] {
  const first = takeIndexes(count * size);
  const base = Date.now() - 30 * 86_400_000;
  return Array.from({ length: count }, (_, b) => {
    const entry: fhir4.BundleEntry[] = Array.from({ length: size }, (_, e) => ({
      fullUrl: `urn:uuid:${randomUUID()}`,
      resource: observation(ctx, refs, first + b * size + e, base),
      request: { method: 'POST', url: 'Observation' },
    }));
    return JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry } satisfies fhir4.Bundle);
  });
}

interface Statement {
  sql: string;
  params: unknown[];
}

/**
 * How the raw side spells its multi-row INSERTs. `hot-only` is the floor issue 16 measures
 * against: the JSON and only what the hot search needs (the `code` token rows, which carry the
 * patient and date), in the unnest form.
 */
type RawForm = 'unnest' | 'values' | 'hot-only';

/** The rows of `rows` the hot search reads: the Observation's own code tokens. */
function hotOnly(rows: BundleRows): BundleRows {
  const code = rows.index.get('token')!.filter((r) => r[1] === 'code');
  return { ...rows, index: new Map(INDEX_KINDS.map((kind) => [kind, kind === 'token' ? code : []])), indexRows: code.length };
}

/** One raw bundle: its statements (run in order in one transaction) and what they write. */
interface RawBundle {
  statements: Statement[];
  indexRows: number;
}

/** The rows a bundle of new Observations writes, as the server would store them. */
interface BundleRows {
  lastUpdated: string;
  ids: string[];
  json: string[];
  /** Per index table: rows of (id, param, patient, …INDEX_COLUMNS). */
  index: Map<IndexKind, unknown[][]>;
  indexRows: number;
}

function bundleRows(ctx: BenchContext, refs: string[], first: number, size: number, base: number): BundleRows {
  const lastUpdated = new Date().toISOString();
  const out: BundleRows = { lastUpdated, ids: [], json: [], index: new Map(INDEX_KINDS.map((kind) => [kind, []])), indexRows: 0 };
  const checkEvery = Math.max(1, Math.floor(size / 10));
  for (let e = 0; e < size; e++) {
    const resource: fhir4.Observation = observation(ctx, refs, first + e, base);
    const id = newResourceId();
    // What the server stores: the body plus the assigned id and meta (versionId, lastUpdated).
    resource.id = id;
    resource.meta = { ...resource.meta, versionId: '1', lastUpdated };
    out.ids.push(id);
    out.json.push(JSON.stringify(resource));
    const { patient, rows } = extractIndex('Observation', resource);
    let mine = 0;
    for (const kind of INDEX_KINDS) {
      for (const { param, row } of rows[kind]) {
        out.index.get(kind)!.push([id, param, patient, ...INDEX_COLUMNS[kind].map((_, c) => row[c] ?? null)]);
        mine++;
      }
    }
    // Cross-check against bench/index-rows.ts (the create workload's baseline) on a sample.
    if (e % checkEvery === 0) {
      const expected = indexInsert('Observation', 'observation', id, resource)?.rows ?? 0;
      if (expected !== mine) throw new Error(`index rows of Observation ${id}: ${mine} here, ${expected} by bench/index-rows.ts`);
    }
    out.indexRows += mine;
  }
  return out;
}

/** A version 1 is one row of the current table (its JSON stored once, as the server stores it). */
const VERSION_INSERT = `INSERT INTO observation (id, version_id, last_updated, deleted, method, content) SELECT id, 1, $1::timestamptz, false, 'POST', content FROM v`;

const indexNames = (kind: IndexKind) => ['id', 'param', 'patient', ...INDEX_COLUMNS[kind].map(([n]) => n)];
const indexTypes = (kind: IndexKind) => ['text', 'text', 'text', ...INDEX_COLUMNS[kind].map(([, t]) => t)];

/**
 * `unnest`: two statements whatever the size — current + history from one set of arrays (the
 * JSON sent once), then every index table's rows as `INSERT … SELECT FROM unnest(column
 * arrays)` CTEs. The cheapest plain SQL found for PostgreSQL to parse and plan.
 */
function unnestStatements(rows: BundleRows): Statement[] {
  const params: unknown[] = [];
  const ctes: string[] = [];
  for (const kind of INDEX_KINDS) {
    const kindRows = rows.index.get(kind)!;
    if (!kindRows.length) continue;
    const arrays = indexTypes(kind).map((type, c) => {
      params.push(kindRows.map((r) => r[c]));
      return `$${params.length}::${type}[]`;
    });
    ctes.push(`i_${kind} AS (INSERT INTO ${indexTableOf('observation', kind)} (${indexNames(kind).join(', ')}) SELECT * FROM unnest(${arrays.join(', ')}))`);
  }
  return [
    { sql: `WITH v AS (SELECT * FROM unnest($2::text[], $3::jsonb[]) AS v(id, content)) ${VERSION_INSERT}`, params: [rows.lastUpdated, rows.ids, rows.json] },
    ...(ctes.length ? [{ sql: `WITH ${ctes.join(',\n')} SELECT 1`, params }] : []),
  ];
}

/**
 * `values`: the same rows as `INSERT … VALUES ($1, $2, …), (…)` lists with one bind parameter
 * per cell, grouped as CTEs into as few statements as the 65,535-parameter limit allows.
 */
function valuesStatements(rows: BundleRows): Statement[] {
  const versionParams: unknown[] = [rows.lastUpdated];
  const versionValues = rows.ids.map((id, e) => {
    versionParams.push(id, rows.json[e]);
    return `($${versionParams.length - 1}::text, $${versionParams.length}::jsonb)`;
  });
  const statements: Statement[] = [{ sql: `WITH v (id, content) AS (VALUES ${versionValues.join(', ')}) ${VERSION_INSERT}`, params: versionParams }];
  let ctes: string[] = [];
  let params: unknown[] = [];
  const flush = () => {
    if (ctes.length) statements.push({ sql: `WITH ${ctes.join(',\n')} SELECT 1`, params });
    ctes = [];
    params = [];
  };
  for (const kind of INDEX_KINDS) {
    const kindRows = rows.index.get(kind)!;
    const types = indexTypes(kind);
    for (let start = 0; start < kindRows.length;) {
      const room = Math.floor((MAX_PARAMS - params.length) / types.length);
      if (room === 0) {
        flush();
        continue;
      }
      const chunk = kindRows.slice(start, start + room);
      const values = chunk.map((row) => `(${row.map((cell, c) => {
        params.push(cell);
        return `$${params.length}::${types[c]}`;
      }).join(', ')})`);
      ctes.push(`i${ctes.length}_${kind} AS (INSERT INTO ${indexTableOf('observation', kind)} (${indexNames(kind).join(', ')}) VALUES ${values.join(', ')})`);
      start += chunk.length;
    }
  }
  flush();
  return statements;
}

/** What the server writes for `count` bundles of `size` new Observations, as raw statements of `form`. */
function rawBundles(ctx: BenchContext, refs: string[], count: number, size: number, form: RawForm): RawBundle[] {
  const first = takeIndexes(count * size);
  const base = Date.now() - 30 * 86_400_000;
  return Array.from({ length: count }, (_, b) => {
    const rows = bundleRows(ctx, refs, first + b * size, size, base);
    const written = form === 'hot-only' ? hotOnly(rows) : rows;
    return { statements: form === 'values' ? valuesStatements(written) : unnestStatements(written), indexRows: written.indexRows };
  });
}

async function rawTransaction(tx: Queryable, bundle: RawBundle): Promise<void> {
  for (const s of bundle.statements) await tx.query(s.sql, s.params);
}

// ---- phases ---------------------------------------------------------------------------------

/**
 * Bundles run and discarded before each phase (`--warmup` caps it): about 1,000–2,000
 * Observations, enough for the server's JIT to settle on the bundle path.
 */
function bundleWarmup(ctx: BenchContext, size: number): number {
  return Math.min(ctx.warmup, size >= 1000 ? 2 : 10);
}

const ENTRY_CREATED = /"status":"201 Created"/g;

type Phase = { stats: LoadStats; cpu: ResultRow['cpu'] };

async function serverPhase(ctx: BenchContext, refs: string[], bundles: number, size: number, concurrency: number): Promise<Phase> {
  const phaseCtx: BenchContext = { ...ctx, warmup: bundleWarmup(ctx, size) };
  const bodies = serverBodies(ctx, refs, phaseCtx.warmup + bundles, size);
  // Each phase starts just after a checkpoint. PostgreSQL writes a whole page to the WAL the
  // first time a checkpoint interval touches it; without this, whichever phase ran while the last
  // checkpoint was young paid for the first touch of the shared index pages: in one run the
  // server's statement wrote 9,558 full pages where the raw phases after it wrote 347
  // (pg_stat_statements), 1.5× the WAL for the same rows.
  await checkpoint(ctx);
  return measured(phaseCtx, 'server', () =>
    runHttpLoad(phaseCtx, bundles, concurrency, async (client, i) => {
      const res = await client.request('POST', '', bodies[i]);
      if (res.status !== 200) return res;
      // A 200 must also say that every entry was created.
      const created = res.body.match(ENTRY_CREATED)?.length ?? 0;
      return created === size ? res : { ...res, status: 590, body: `transaction-response with ${created} of ${size} entries 201 Created: ${res.body.slice(0, 200)}` };
    }),
  );
}

async function rawPhase(ctx: BenchContext, refs: string[], bundles: number, size: number, concurrency: number, form: RawForm): Promise<Phase & { bundle: RawBundle }> {
  const phaseCtx: BenchContext = { ...ctx, warmup: bundleWarmup(ctx, size) };
  const raw = rawBundles(ctx, refs, phaseCtx.warmup + bundles, size, form);
  await checkpoint(ctx); // as serverPhase
  const result = await measured(phaseCtx, 'raw SQL', () =>
    runLoad({
      n: bundles,
      concurrency,
      warmup: phaseCtx.warmup,
      maxSeconds: ctx.maxSeconds,
      op: async (i) => {
        await ctx.raw.transaction((tx) => rawTransaction(tx, raw[i]));
        return { ok: true };
      },
    }),
  );
  return { ...result, bundle: raw[0] };
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
const met = (ok: boolean) => (ok ? 'MET' : 'NOT MET');
const latencies = (s: LoadStats) => `${s.p50.toFixed(0)}/${s.p95.toFixed(0)}/${s.p99.toFixed(0)} ms`;

function transactionWorkload(size: number, defaultBundles: number, concurrencies: readonly number[]): BenchWorkload {
  const name = `transaction-${size}`;
  return {
    name,
    description: `POST /fhir transaction Bundles of ${size} Observations (BP panels, heart rate, weight, SpO2; urn:uuid fullUrls) at c=${concurrencies.join(' and c=')} vs. multi-row INSERTs of the same current + history + search index rows, one transaction per bundle`,
    async run(ctx) {
      const refs = await patients(ctx);
      const bundles = Math.max(1, Math.ceil(ctx.n(defaultBundles * size) / size));
      const onPostgres = ctx.raw.kind === 'postgres';
      const rows: ResultRow[] = [];
      for (const concurrency of concurrencies) {
        const group = `${name} c=${concurrency}`;
        ctx.log(`${group}: ${bundles} bundles of ${size} via HTTP…`);
        const server = await serverPhase(ctx, refs, bundles, size, concurrency);
        ctx.log(`${group}: ${bundles} bundles of ${size} via raw SQL (unnest arrays, the baseline)…`);
        const raw = await rawPhase(ctx, refs, bundles, size, concurrency, 'unnest');
        ctx.log(`${group}: ${bundles} bundles of ${size} via raw SQL (VALUES lists, for comparison)…`);
        const values = await rawPhase(ctx, refs, bundles, size, concurrency, 'values');

        ctx.log(`${group}: ${bundles} bundles of ${size} via raw SQL (JSON and hot-search rows only, the floor)…`);
        const floor = await rawPhase(ctx, refs, bundles, size, concurrency, 'hot-only');

        const serverRate = server.stats.perSecond * size;
        const rawRate = raw.stats.perSecond * size;
        const valuesRate = values.stats.perSecond * size;
        const floorRate = floor.stats.perSecond * size;
        const ratio = serverRate / rawRate;
        const floorRatio = serverRate / floorRate;
        const perObs = (ms: number | undefined) => (ms === undefined ? '–' : `${((ms / size) * 1000).toFixed(0)} µs`);
        const targets = [
          size === 100 ? `≥${fmt(TARGET_PER_SECOND)} Obs/s ${met(serverRate >= TARGET_PER_SECOND)}${onPostgres ? '' : ' (the target is for PostgreSQL)'}` : undefined,
          `≥${TARGET_RATIO}× raw SQL ${met(ratio >= TARGET_RATIO)}`,
          `≥${TARGET_RATIO}× the hot-only floor ${met(floorRatio >= TARGET_RATIO)}`,
        ].filter(Boolean).join('; ');
        if (size === 100 && concurrency === 2) {
          ctx.figure(`transaction ingest (100-entry Bundles, c=2): server ${fmt(serverRate)} Obs/s; raw SQL of the same rows ${fmt(rawRate)} (server ${ratio.toFixed(2)}×); raw JSON + hot-search rows only ${fmt(floorRate)} (server ${floorRatio.toFixed(2)}×); target ≥ ${fmt(TARGET_PER_SECOND)} and ≥ ${TARGET_RATIO}× the hot-only baseline (issue 16: "a raw SQL baseline that writes only the JSON and what the hot searches need")`);
        }
        ctx.log(
          `${group}: server ${fmt(serverRate)} Obs/s, raw SQL ${fmt(rawRate)} Obs/s (VALUES form ${fmt(valuesRate)}), server/raw ${ratio.toFixed(2)}; ` +
          `per bundle p50/p95/p99 server ${latencies(server.stats)}, raw ${latencies(raw.stats)}; target ${targets}`,
        );
        const written = `${size} current + ${size} history rows (JSON sent once), ${raw.bundle.indexRows} index rows (${(raw.bundle.indexRows / size).toFixed(1)} per Observation, src/search extractIndex)`;
        rows.push(
          {
            workload: name,
            group,
            target: 'server',
            concurrency,
            ...server,
            note: `POST /fhir transaction of ${size} POST Observation entries (urn:uuid fullUrls), 200 with every entry 201 Created: ${fmt(serverRate)} Observations/s, server/raw ${ratio.toFixed(2)} (server CPU ${perObs(server.cpu.server)}, postgres ${perObs(server.cpu.postgres)} per Observation); target ${targets}`,
          },
          {
            workload: name,
            group,
            target: 'raw SQL',
            concurrency,
            stats: raw.stats,
            cpu: raw.cpu,
            note: `BEGIN; ${raw.bundle.statements.length} INSERT … SELECT FROM unnest(arrays) statements: ${written}; COMMIT: ${fmt(rawRate)} Observations/s (postgres CPU ${perObs(raw.cpu.postgres)} per Observation)`,
          },
          {
            workload: name,
            group: `${group} VALUES`,
            target: 'raw SQL',
            concurrency,
            stats: values.stats,
            cpu: values.cpu,
            note: `the same rows as INSERT … VALUES lists, one bind parameter per cell, ${values.bundle.statements.length} statements per bundle: ${fmt(valuesRate)} Observations/s (postgres CPU ${perObs(values.cpu.postgres)} per Observation); for comparison (the baseline above is the unnest form the server also uses)`,
          },
          {
            workload: name,
            group: `${group} hot-only`,
            target: 'raw SQL',
            concurrency,
            stats: floor.stats,
            cpu: floor.cpu,
            note: `the floor: only the JSON and the code token rows the hot search reads (${floor.bundle.indexRows} index rows per bundle), unnest form: ${fmt(floorRate)} Observations/s; server ÷ this ${floorRatio.toFixed(2)}`,
          },
        );
      }
      return rows;
    },
  };
}

export const workloads: BenchWorkload[] = [
  transactionWorkload(100, 20, [1, 2]),
  transactionWorkload(1000, 5, [1, 2]),
];
