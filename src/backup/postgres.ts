import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * pg_dump and pg_restore of the real PostgreSQL. The connection goes to them as libpq environment
 * variables, never as arguments: a password in argv is visible to every user of the machine (ps).
 */
export function libpqEnv(databaseUrl: string): NodeJS.ProcessEnv {
  const url = new URL(databaseUrl);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PGHOST: decodeURIComponent(url.hostname) || 'localhost',
    PGPORT: url.port || '5432',
    PGDATABASE: decodeURIComponent(url.pathname.replace(/^\//, '')),
  };
  if (url.username) env.PGUSER = decodeURIComponent(url.username);
  if (url.password) env.PGPASSWORD = decodeURIComponent(url.password);
  const options = url.searchParams.get('options');
  if (options) env.PGOPTIONS = options;
  const sslmode = url.searchParams.get('sslmode');
  if (sslmode) env.PGSSLMODE = sslmode;
  return env;
}

/** Runs `command`, with `input` as its stdin and/or `output` fed from its stdout; rejects with its stderr on a non-zero exit. */
async function run(command: string, args: string[], env: NodeJS.ProcessEnv, io: { input?: Readable; output?: (stdout: Readable) => Promise<unknown> }): Promise<void> {
  const child = spawn(command, args, { env, stdio: [io.input ? 'pipe' : 'ignore', io.output ? 'pipe' : 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString('utf8')).slice(-4000)));
  const exited = new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code ?? 1));
  });
  const work: Array<Promise<unknown>> = [];
  if (io.input) work.push(pipeline(io.input, child.stdin as Writable));
  if (io.output) work.push(io.output(child.stdout!));
  const [code] = await Promise.all([exited, ...work.map((w) => w.catch((err: unknown) => {
    child.kill();
    throw err;
  }))]);
  if (code !== 0) throw new Error(`${command} failed (exit ${code}): ${stderr.trim()}`);
}

/** The whole database in pg_dump's custom format (compressed, restorable table by table), handed to `sink` as a stream. */
export function pgDump(databaseUrl: string, sink: (dump: Readable) => Promise<unknown>): Promise<void> {
  return run('pg_dump', ['--format=custom', '--no-owner', '--no-privileges'], libpqEnv(databaseUrl), { output: sink });
}

/**
 * Restores a custom-format dump into the (empty) database of `databaseUrl`. Not in one
 * transaction: a thousand tables and their indexes need more locks than max_locks_per_transaction
 * allows by default. A failed restore leaves a partial database: drop it and restore into a new one.
 */
export function pgRestore(databaseUrl: string, dump: Readable): Promise<void> {
  const env = libpqEnv(databaseUrl);
  return run('pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', `--dbname=${env.PGDATABASE}`], env, { input: dump });
}
