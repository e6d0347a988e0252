import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { Pool } from 'pg';
import { workloads as auditCostWorkloads } from './audit-cost';
import { benchAuthOn, REGISTRATION_TOKEN, startBenchAuth } from './auth';
import { workloads as bundleWorkloads } from './bundles';
import { workloads as crudWorkloads } from './crud';
import { workloads as subscriptionWorkloads } from './subscriptions';
import { deviceWorkloads } from './devices';
import type { BenchContext, BenchWorkload, ResultRow } from './harness';
import { httpClientName } from './harness';
import { applicationName, openRawPglite, openRawPostgres, type RawDb, type TableSize, tableSizes } from './rawdb';
import { resultsTable, sizesTable } from './report';
import { freePort } from '../test/helpers/port';

/**
 * `npm run bench [-- --only create,read] [--n 2000] [--warmup 200] [--max-seconds 120] [--keep-schema]`
 *
 * Starts the server as a child process on the database named by DATABASE_URL (default
 * `pglite://memory`), runs the registered workloads over real HTTP on 127.0.0.1, each beside
 * the same work in raw SQL, and prints the figures with the machine and the data size.
 *
 * On PostgreSQL every run gets its own schema (`bench_<run id>`, dropped at the end unless
 * --keep-schema): each run starts from the same empty tables, so repeated runs compare, and
 * the bench never touches rows of tests or other users of the database.
 */

// ---- the registered workloads: add yours here ---------------------------------------------

/**
 * A workload module exports `workloads: BenchWorkload[]`. Modules owned by other capabilities
 * are loaded when present, so the bench builds while they are still being written.
 */
function optionalWorkloads(module: string): BenchWorkload[] {
  const file = join(__dirname, `${module}.js`);
  if (!existsSync(file)) return [];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const loaded = require(file) as { workloads?: BenchWorkload[] };
  return loaded.workloads ?? [];
}

const registered: BenchWorkload[] = [
  ...deviceWorkloads, // device ingest doors vs. transactions (issue 5)
  ...crudWorkloads, // create, read (issue 2)
  ...optionalWorkloads('search'), // search workloads (bench/search.ts)
  ...bundleWorkloads, // transaction-100, transaction-1000 (issue 4)
  ...optionalWorkloads('monitoring'), // monitoring rules' share of ingest (issue 6, bench/monitoring.ts)
  ...optionalWorkloads('medication'), // due doses of 10,000 patients (issue 19, bench/medication.ts)
  ...optionalWorkloads('export'), // Bulk Data export of N Observations (issue 21, bench/export.ts)
  ...subscriptionWorkloads, // creates beside live Subscriptions (bench/subscriptions.ts)
  ...auditCostWorkloads, // the audit trail on against off, in alternating rounds (issue 14)
];

// ---- command line ---------------------------------------------------------------------------

interface Options {
  only?: string[];
  n?: number;
  warmup: number;
  maxSeconds: number;
  keepSchema: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { warmup: 200, maxSeconds: 120, keepSchema: false };
  const positive = (flag: string, value: string | undefined) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} needs a non-negative integer, got ${value}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--only': options.only = value().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--n': options.n = positive(flag, value()); break;
      case '--warmup': options.warmup = positive(flag, value()); break;
      case '--max-seconds': options.maxSeconds = positive(flag, value()); break;
      case '--keep-schema': options.keepSchema = true; break;
      case '--list':
        for (const w of registered) console.log(`${w.name.padEnd(16)} ${w.description}`);
        process.exit(0);
        break;
      case '--help':
        console.log('npm run bench -- [--only create,read] [--n N] [--warmup N] [--max-seconds S] [--keep-schema] [--list]');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${argv[i]} (try --help)`);
    }
  }
  return options;
}

function selected(only: string[] | undefined): BenchWorkload[] {
  if (!only) return registered;
  const unknown = only.filter((name) => !registered.some((w) => w.name === name || w.name.startsWith(`${name}-`)));
  if (unknown.length) {
    throw new Error(`unknown workload ${unknown.join(', ')}; registered: ${registered.map((w) => w.name).join(', ')}`);
  }
  return registered.filter((w) => only.some((name) => w.name === name || w.name.startsWith(`${name}-`)));
}

// ---- the server child -----------------------------------------------------------------------

interface ServerChild {
  process: ChildProcess;
  fhirBase: string;
  /** Lines the server logged (LOG_LEVEL=warn: only warnings and errors). */
  output: string[];
  stop(): Promise<{ code: number | null; ms: number }>;
}

async function startServer(databaseUrl: string, poolSize: number, extraEnv: Record<string, string> = {}): Promise<ServerChild> {
  const root = resolve(__dirname, '..', '..');
  const port = await freePort();
  const fhirBase = `http://127.0.0.1:${port}/fhir`;
  // BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the server under load
  // (Node refuses --cpu-prof in NODE_OPTIONS).
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'dist', 'src', 'main.js')], {
    cwd: root,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      BASE_URL: `http://127.0.0.1:${port}`,
      LOG_LEVEL: 'warn',
      DATABASE_URL: databaseUrl,
      DATABASE_POOL_SIZE: String(poolSize),
      // The workloads measure the FHIR work itself; auth-on figures come from a workload that
      // sends tokens. BENCH_AUTH=on leaves the server's default (auth on) in place.
      ...(benchAuthOn() ? { REGISTRATION_TOKEN } : { AUTH_DISABLED: 'true' }),
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) output.push(line);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));

  // A fresh schema migrates 143 types first: over a minute on a loaded 2-core machine.
  const deadline = Date.now() + 240_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode} before serving:\n${output.slice(-20).join('\n')}`);
    try {
      const res = await fetch(`${fhirBase}/metadata`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the server did not answer ${fhirBase}/metadata within 240 s:\n${output.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  return {
    process: child,
    fhirBase,
    output,
    async stop() {
      const t0 = Date.now();
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return { code, ms: Date.now() - t0 };
    },
  };
}

// ---- machine and database -------------------------------------------------------------------

function machine(): string {
  const cpus = os.cpus();
  return [
    `machine   ${cpus.length} cores, ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, load avg ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `runtime   Node ${process.version}, ${os.type()} ${os.release()}`,
    `memory    ${hugePages()}`,
    `load      ${httpClientName()}`,
  ].join('\n');
}

/**
 * The kernel's reserved huge pages (Linux): PostgreSQL puts shared_buffers on them when its
 * huge_pages setting allows and enough are free. Decision 018: without them, on this machine kind,
 * a search's first touch of cached pages from a backend cost 3-4 ms instead of 0.45.
 */
function hugePages(): string {
  let meminfo: string;
  try {
    meminfo = readFileSync('/proc/meminfo', 'utf8');
  } catch {
    return 'huge pages: unknown (no /proc/meminfo)';
  }
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0);
  const total = field('HugePages_Total');
  return total === 0
    ? 'huge pages: none reserved (vm.nr_hugepages = 0)'
    : `huge pages: ${total} of ${field('Hugepagesize')} kB reserved, ${field('HugePages_Free')} free, ${field('HugePages_Rsvd')} promised (PostgreSQL's shared memory)`;
}

/**
 * The URL with every connection's search_path set to `schema` (libpq `options`, honoured by pg)
 * and an application_name that lets the bench find the server's backends to measure their CPU.
 */
function withSchema(url: string, schema: string, applicationName: string): string {
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  u.searchParams.set('application_name', applicationName);
  return u.toString();
}

/** The URL without user and password, to print. */
function printable(url: string): string {
  if (!url.startsWith('postgres')) return url;
  const u = new URL(url);
  u.username = u.username ? '…' : '';
  u.password = '';
  return u.toString();
}

// ---- the run --------------------------------------------------------------------------------

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const workloads = selected(options.only);
  const databaseUrl = process.env.DATABASE_URL || 'pglite://memory';
  const isPostgres = databaseUrl.startsWith('postgres://') || databaseUrl.startsWith('postgresql://');
  const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  // The server's pool as large as the largest concurrency, like the raw side's, unless set.
  const poolSize = Number(process.env.DATABASE_POOL_SIZE || 16);

  console.log(machine());
  let serverUrl = databaseUrl;
  let schema = 'public';
  let admin: Pool | undefined;
  if (isPostgres) {
    schema = `bench_${runId}`;
    admin = new Pool({ connectionString: databaseUrl, max: 1 });
    await admin.query(`CREATE SCHEMA ${schema}`);
    serverUrl = withSchema(databaseUrl, schema, applicationName(runId, 'server'));
  }

  let raw: RawDb | undefined;
  let server: ServerChild | undefined;
  const rows: ResultRow[] = [];
  const failures: string[] = [];
  const figures: string[] = [];
  let before: TableSize[] = [];
  let after: TableSize[] = [];
  try {
    const started = Date.now();
    server = await startServer(serverUrl, poolSize);
    console.log(`server    ${server.fhirBase} (pid ${server.process.pid}, up in ${Date.now() - started} ms, DATABASE_POOL_SIZE=${poolSize}, LOG_LEVEL=warn)`);
    if (benchAuthOn()) {
      await startBenchAuth(server.fhirBase);
      console.log('auth      ON: every request carries a SMART backend-services access token (system/*.cruds)');
    } else {
      console.log('auth      off (AUTH_DISABLED=true); BENCH_AUTH=on measures with tokens');
    }
    raw = isPostgres ? await openRawPostgres(withSchema(databaseUrl, schema, applicationName(runId, 'raw')), poolSize, runId) : await openRawPglite();
    console.log(`database  ${printable(databaseUrl)}${isPostgres ? ` schema ${schema}` : ''}: ${raw.version}`);
    console.log(`raw SQL   ${raw.where}`);
    console.log(`run       ${runId}; warm-up ${options.warmup} requests per phase (excluded); phases capped at ${options.maxSeconds} s`);
    console.log(`workloads ${workloads.map((w) => w.name).join(', ')}\n`);

    before = await tableSizes(raw, schema);
    const ctx: BenchContext = {
      fhirBase: server.fhirBase,
      raw,
      runId,
      identifierSystem: `urn:bench:run:${runId}`,
      n: (defaultN) => options.n ?? defaultN,
      warmup: options.warmup,
      maxSeconds: options.maxSeconds,
      serverPid: server.process.pid!,
      shared: new Map(),
      log: (line) => console.log(`  … ${line}`),
      figure: (line) => {
        figures.push(line);
        console.log(`  = ${line}`);
      },
      startServer: async (env) => {
        const child = await startServer(serverUrl, poolSize, env);
        return { fhirBase: child.fhirBase, pid: child.process.pid!, stop: () => child.stop() };
      },
    };
    for (const w of workloads) {
      try {
        rows.push(...(await w.run(ctx)));
      } catch (err) {
        const message = err instanceof Error ? err.stack ?? err.message : String(err);
        failures.push(`${w.name}: ${message}`);
        console.log(`  ✗ ${w.name} failed: ${message}`);
      }
    }
    after = await tableSizes(raw, schema);
  } finally {
    if (server) {
      const { code, ms } = await server.stop();
      console.log(`\nserver stopped by SIGTERM in ${ms} ms, exit code ${code}`);
      if (server.output.length) {
        console.log(`server logged ${server.output.length} warning/error lines; the first:\n${server.output.slice(0, 3).map((l) => `  ${l.slice(0, 400)}`).join('\n')}`);
      }
    }
    await raw?.close();
    if (admin) {
      if (options.keepSchema) console.log(`schema ${schema} kept (--keep-schema)`);
      else await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    }
  }

  console.log('\nresults (latency over every measured request, nearest rank; * = cut short by --max-seconds)');
  console.log(resultsTable(rows));
  for (const r of rows) {
    if (r.stats.errors) console.log(`errors in ${r.group} ${r.target}: ${r.stats.errors}, e.g. ${r.stats.errorSamples.join(' | ')}`);
  }
  if (figures.length) console.log(`\nfigures\n${figures.map((f) => `  ${f}`).join('\n')}`);
  console.log('\nwhat each line does');
  for (const r of rows) if (r.note) console.log(`  ${r.group.padEnd(14)} ${r.target.padEnd(8)} ${r.note}`);

  if (isPostgres) {
    console.log(`\ndata size: schema ${schema}, server and raw rows together (rows before = after migrations)`);
  } else {
    console.log('\ndata size: the raw-side PGlite only. The server\'s in-memory PGlite is inside its process and cannot be measured from here;');
    const created = rows.filter((r) => r.target === 'server' && r.workload === 'create').reduce((s, r) => s + r.stats.count + options.warmup, 0);
    console.log(`it received ${created} Observation creates (measured + warm-up) plus the bench Patients.`);
  }
  console.log(sizesTable(before, after));

  if (failures.length) console.log(`\n${failures.length} workload(s) failed:\n${failures.join('\n')}`);
  return failures.length > 0 || rows.some((r) => r.stats.errors > 0) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
