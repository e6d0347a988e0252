import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { exited } from './process';

/**
 * Debian's PgBouncer in transaction pooling mode between server nodes and PostgreSQL (issue 20):
 * a server connection serves whichever client has a transaction to run, so nothing a node does
 * may rely on session state. `url` is a PostgreSQL URL with a `search_path` in its `options`
 * (test/helpers/server.ts freshSchemaUrl); PgBouncer refuses the `options` startup parameter, so
 * the schema is set on each server connection by `connect_query` instead. Runs as `postgres`
 * when this process is root (PgBouncer refuses root).
 */
export const PGBOUNCER = '/usr/sbin/pgbouncer';

export interface Bouncer {
  /** The URL nodes connect to: no `options` (set STATEMENT_TIMEOUT=0 on them). */
  url: string;
  close(): Promise<void>;
}

export async function startPgbouncer(url: string, port: number): Promise<Bouncer> {
  const target = new URL(url);
  const schema = /search_path=(\w+)/.exec(target.searchParams.get('options') ?? '')?.[1];
  const database = target.pathname.slice(1);
  const dir = mkdtempSync(join(tmpdir(), 'rpm-pgbouncer-'));
  chmodSync(dir, 0o755);
  const connectQuery = schema ? ` connect_query='SET search_path = ${schema}'` : '';
  const ini = join(dir, 'pgbouncer.ini');
  writeFileSync(join(dir, 'users.txt'), `"${target.username || 'postgres'}" ""\n`);
  writeFileSync(
    ini,
    [
      '[databases]',
      `rpm = host=${target.hostname} port=${target.port || 5432} dbname=${database} user=${target.username || 'postgres'}${connectQuery}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      'default_pool_size = 16',
      'max_client_conn = 200',
      '',
    ].join('\n'),
  );
  const asRoot = userInfo().uid === 0;
  const postgres = asRoot ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : {};
  const child: ChildProcess = spawn(PGBOUNCER, [ini], { stdio: ['ignore', 'pipe', 'pipe'], ...postgres });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const close = async () => {
    const gone = exited(child);
    child.kill('SIGTERM');
    await gone;
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited (apt-get install pgbouncer): ${output}`);
    if (/listening on/i.test(output)) break;
    if (i > 100) {
      await close();
      throw new Error(`pgbouncer did not start: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const user = target.username || 'postgres';
  return { url: `postgres://${user}@127.0.0.1:${port}/rpm`, close };
}
