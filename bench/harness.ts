import http from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { RawDb } from './rawdb';
import { LeanHttpPool } from './lean-http';

/**
 * The load generator and the contract every workload implements. A workload measures one
 * thing through the server over real HTTP and, beside it, the same work done by raw SQL on
 * the same database, so that a figure reads as a ratio that holds on a noisy machine
 * (DESIGN.md "Performance, honestly measured").
 */

/** What `npm run bench` hands to every workload. */
export interface BenchContext {
  /** `http://127.0.0.1:<port>/fhir` of the server child process. */
  fhirBase: string;
  /** Raw SQL on the server's database (or, embedded, on a PGlite of the same schema: see rawdb.ts). */
  raw: RawDb;
  /** Unique per run; bench resources carry `identifier.system = identifierSystem`. */
  runId: string;
  identifierSystem: string;
  /** `--n` when given, else the workload's own default. */
  n(defaultN: number): number;
  /** Requests run and discarded before each measured phase (JIT, pools, caches). */
  warmup: number;
  /** Upper bound on one measured phase; a phase cut short says so in its note. */
  maxSeconds: number;
  /** Pid of the server child, to charge its CPU time to the phase that used it. */
  serverPid: number;
  /** State shared between workloads (e.g. ids created by `create` that `read` can reuse). */
  shared: Map<string, unknown>;
  log(line: string): void;
  /** A figure that is not a load phase (storage per resource, load time), printed with the results. */
  figure(line: string): void;
  /**
   * Starts another server process on the same database and schema, with `env` over the bench
   * server's (an A/B of a setting within one run); the caller stops it.
   */
  startServer?(env: Record<string, string>): Promise<{ fhirBase: string; pid: number; stop(): Promise<unknown> }>;
}

/** One measured phase, as a table row. Rows with the same `group` are compared (server ÷ raw). */
export interface ResultRow {
  workload: string;
  group: string;
  target: 'server' | 'raw SQL';
  concurrency: number;
  stats: LoadStats;
  cpu: CpuPerRequest;
  /** Largest resident set of the server process seen during a server phase (MB). */
  rssMb?: number;
  note?: string;
}

export interface BenchWorkload {
  /** What `--only` matches: `create`, `read`, `search-…`. */
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<ResultRow[]>;
}

export interface LoadStats {
  /** Measured requests (warm-up excluded). */
  count: number;
  errors: number;
  /** First few error descriptions (status and start of body), to print. */
  errorSamples: string[];
  seconds: number;
  perSecond: number;
  /** Milliseconds, nearest-rank over every measured sample. */
  p50: number;
  p95: number;
  p99: number;
  /** True when maxSeconds stopped the phase before `count` reached the requested n. */
  truncated: boolean;
}

/** The outcome of one request: a status (HTTP, or 200/500 for SQL) and, on error, what to print. */
export interface OpResult {
  ok: boolean;
  detail?: string;
}

export interface LoadSpec {
  n: number;
  concurrency: number;
  warmup: number;
  maxSeconds: number;
  /** The i-th request; i counts from 0 over warm-up then measured requests, so data can be pre-built per index. */
  op(i: number): Promise<OpResult>;
}

/** Nearest-rank percentile of sorted samples: no interpolation, no averaging of percentiles. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(p * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * Runs `warmup` requests then `n` measured ones, `concurrency` in flight at a time, and records
 * the latency of every measured request. Each of `concurrency` workers takes the next index as
 * soon as its previous request completes (closed loop), so the figures are what C clients
 * waiting on their answers get, not an open-loop arrival rate.
 */
export async function runLoad(spec: LoadSpec): Promise<LoadStats> {
  const { n, concurrency, warmup, maxSeconds } = spec;
  await phase(warmup, 0, undefined);
  const samples = new Float64Array(n);
  const errorSamples: string[] = [];
  let errors = 0;
  let done = 0;
  const deadline = performance.now() + maxSeconds * 1000;
  const started = performance.now();
  await phase(n, warmup, (k, ms, result) => {
    samples[k] = ms;
    done++;
    if (!result.ok) {
      errors++;
      if (errorSamples.length < 3) errorSamples.push(result.detail ?? 'error');
    }
  }, deadline);
  const seconds = (performance.now() - started) / 1000;
  const measured = samples.subarray(0, done).sort();
  return {
    count: done,
    errors,
    errorSamples,
    seconds,
    perSecond: done / seconds,
    p50: percentile(measured, 0.5),
    p95: percentile(measured, 0.95),
    p99: percentile(measured, 0.99),
    truncated: done < n,
  };

  async function phase(count: number, offset: number, record?: (k: number, ms: number, r: OpResult) => void, until = Infinity): Promise<void> {
    let next = 0;
    let slot = 0;
    const worker = async () => {
      while (next < count && performance.now() < until) {
        const k = next++;
        const t0 = performance.now();
        let result: OpResult;
        try {
          result = await spec.op(offset + k);
        } catch (err) {
          result = { ok: false, detail: err instanceof Error ? err.message : String(err) };
        }
        // Samples are stored in completion order so that a time-truncated phase keeps a dense prefix.
        if (record) record(slot++, performance.now() - t0, result);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(count, 1)) }, worker));
  }
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** The Authorization header every bench request carries when auth is on (bench/auth.ts). */
export const benchAuthorization: { header?: string } = {};

/** `BENCH_HTTP_CLIENT=node` loads the server with node:http's client instead of bench/lean-http.ts. */
const nodeHttpClient = process.env.BENCH_HTTP_CLIENT === 'node';

/** Which HTTP client loaded the server, for the report. */
export function httpClientName(): string {
  return nodeHttpClient ? 'node:http (BENCH_HTTP_CLIENT=node)' : 'bench/lean-http.ts (BENCH_HTTP_CLIENT=node for node:http)';
}

/**
 * A keep-alive HTTP client to the bench server only. One per load phase, with as many sockets
 * as the phase has workers; closed after the phase so no socket outlives the server's
 * keep-alive timeout between phases.
 */
export class HttpClient {
  private readonly agent?: http.Agent;
  private readonly lean?: LeanHttpPool;
  private readonly base: URL;

  constructor(base: string, maxSockets: number) {
    this.base = new URL(base);
    if (this.base.hostname !== '127.0.0.1') {
      throw new Error(`the bench only loads 127.0.0.1, not ${this.base.hostname}`);
    }
    if (nodeHttpClient) this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
    else this.lean = new LeanHttpPool(this.base, maxSockets);
  }

  /** `path` is relative to the FHIR base (`Observation/123`). */
  request(method: string, path: string, body?: string, extraHeaders: Record<string, string> = {}): Promise<HttpResponse> {
    const fullPath = `${this.base.pathname.replace(/\/$/, '')}/${path}`;
    const headers: Record<string, string> = {
      accept: 'application/fhir+json',
      ...(benchAuthorization.header ? { authorization: benchAuthorization.header } : {}),
      ...(body !== undefined ? { 'content-type': 'application/fhir+json' } : {}),
      ...extraHeaders,
    };
    if (this.lean) return this.lean.request(method, fullPath, headers, body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          agent: this.agent,
          host: this.base.hostname,
          port: this.base.port,
          method,
          path: fullPath,
          headers: body !== undefined ? { ...headers, 'content-length': Buffer.byteLength(body) } : headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent?.destroy();
    this.lean?.close();
  }
}

/** Turns an HTTP response into a load result: anything but 2xx is an error, printed with its body's start. */
export function httpResult(res: HttpResponse): OpResult {
  if (res.status >= 200 && res.status < 300) return { ok: true };
  return { ok: false, detail: `${res.status} ${res.body.slice(0, 300)}` };
}

/** Runs an HTTP load phase against the bench server with a fresh keep-alive agent. */
export async function runHttpLoad(
  ctx: BenchContext,
  n: number,
  concurrency: number,
  request: (client: HttpClient, i: number) => Promise<HttpResponse>,
): Promise<LoadStats> {
  const client = new HttpClient(ctx.fhirBase, concurrency);
  try {
    return await runLoad({ n, concurrency, warmup: ctx.warmup, maxSeconds: ctx.maxSeconds, op: async (i) => httpResult(await request(client, i)) });
  } finally {
    client.close();
  }
}

// ---- where the CPU goes -------------------------------------------------------------------

/** CPU milliseconds per measured request, by process; undefined when it cannot be observed. */
export interface CpuPerRequest {
  server?: number;
  postgres?: number;
  bench?: number;
}

const TICK_MS = 10; // Linux USER_HZ is 100 on every mainstream build.

function procCpuMs(pid: number): number | undefined {
  try {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return undefined;
  }
}

/** CPU of the given PostgreSQL processes (read from /proc: the bench runs beside the database). */
function postgresCpuMs(pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    const ms = procCpuMs(pid);
    if (ms !== undefined) out.set(pid, ms);
  }
  return out;
}

export interface CpuSnapshot {
  server?: number;
  postgres?: Map<number, number>;
  bench: number;
}

export function cpuSnapshot(serverPid: number | undefined, postgresPids: readonly number[] | undefined): CpuSnapshot {
  const usage = process.cpuUsage();
  return {
    server: serverPid === undefined ? undefined : procCpuMs(serverPid),
    postgres: postgresPids ? postgresCpuMs(postgresPids) : undefined,
    bench: (usage.user + usage.system) / 1000,
  };
}

/**
 * CPU used between two snapshots, per request. Backends that appeared in between count from
 * zero; ones that exited in between are lost (the pools keep theirs open, so that is rare).
 * Includes the warm-up requests' share: the phases are long enough for that to be small.
 */
export function cpuPerRequest(before: CpuSnapshot, after: CpuSnapshot, requests: number): CpuPerRequest {
  const per = (ms: number | undefined) => (ms === undefined || requests === 0 ? undefined : ms / requests);
  let postgres: number | undefined;
  if (before.postgres && after.postgres) {
    postgres = 0;
    for (const [pid, ms] of after.postgres) postgres += ms - (before.postgres.get(pid) ?? 0);
  }
  return {
    server: per(before.server !== undefined && after.server !== undefined ? after.server - before.server : undefined),
    postgres: per(postgres),
    bench: per(after.bench - before.bench),
  };
}

/** Resident set size of a process in MB (VmRSS), undefined when it cannot be read. */
export function rssMb(pid: number): number | undefined {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** Samples the largest RSS of `pid` every 250 ms until stopped (the server's memory under load). */
function rssSampler(pid: number): () => number | undefined {
  let max = rssMb(pid);
  const timer = setInterval(() => {
    const now = rssMb(pid);
    if (now !== undefined && (max === undefined || now > max)) max = now;
  }, 250);
  timer.unref();
  return () => {
    clearInterval(timer);
    const now = rssMb(pid);
    return now !== undefined && (max === undefined || now > max) ? now : max;
  };
}

/**
 * Makes PostgreSQL write out its dirty pages now, so that the next phase neither waits for the
 * checkpointer nor pays alone for the full-page WAL images of the next checkpoint interval
 * (bench/search.ts after its load, bench/bundles.ts before every phase). No-op on PGlite.
 */
export async function checkpoint(ctx: BenchContext): Promise<void> {
  if (ctx.raw.kind === 'postgres') await ctx.raw.query('CHECKPOINT');
}

/**
 * Runs a phase and charges the CPU of the server, PostgreSQL and this process to it; for a
 * server phase, also the largest RSS of the server process during it.
 */
export async function measured(ctx: BenchContext, target: ResultRow['target'], run: () => Promise<LoadStats>): Promise<{ stats: LoadStats; cpu: CpuPerRequest; rssMb?: number }> {
  // Only this run's backends and the background processes (WAL writer, checkpointer…): other
  // users of the database (a test run next door) must not be charged to the bench. Backends
  // opened during the phase are picked up by the second listing and count from zero.
  const pidsBefore = await ctx.raw.postgresPids();
  const before = cpuSnapshot(ctx.serverPid, pidsBefore);
  const stopRss = target === 'server' ? rssSampler(ctx.serverPid) : undefined;
  const stats = await run();
  const rss = stopRss?.();
  const pidsAfter = await ctx.raw.postgresPids();
  const after = cpuSnapshot(ctx.serverPid, pidsAfter && [...new Set([...(pidsBefore ?? []), ...pidsAfter])]);
  const cpu = cpuPerRequest(before, after, stats.count + ctx.warmup);
  // In a raw phase the server idles; charging it would only show its background noise.
  if (target === 'raw SQL') cpu.server = undefined;
  return { stats, cpu, rssMb: rss };
}
