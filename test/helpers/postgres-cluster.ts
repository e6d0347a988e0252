import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './port';

/**
 * A throwaway PostgreSQL primary with a streaming replica, for the read-routing test (issue 20):
 * a cluster of its own (initdb in a temporary folder, loopback only, trust auth), so the test needs
 * neither a replication entry in the machine's pg_hba.conf nor a base backup of its databases.
 * Run as the `postgres` user when this process is root (initdb refuses root), else as this user.
 */
const run = promisify(execFile);

export interface ReplicatedCluster {
  primaryUrl: string;
  replicaUrl: string;
  /** Stops the replica at once (a failed standby). */
  stopReplica(): Promise<void>;
  close(): Promise<void>;
}

/** The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin), if any. */
export function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(root, majors[0], 'bin') : undefined;
}

export async function startReplicatedCluster(): Promise<ReplicatedCluster> {
  const bin = postgresBin();
  if (!bin) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)');
  const asRoot = userInfo().uid === 0;
  const as = (cmd: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]) : run(join(bin, cmd), args));
  const dir = mkdtempSync(join(tmpdir(), 'rpm-pg-'));
  if (asRoot) chownSync(dir, Number((await run('id', ['-u', 'postgres'])).stdout.trim()), Number((await run('id', ['-g', 'postgres'])).stdout.trim()));
  const primary = join(dir, 'primary');
  const replica = join(dir, 'replica');
  const [primaryPort, replicaPort] = [await freePort(), await freePort()];
  const settings = (port: number) => ['-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB -c max_connections=40`];
  const started: string[] = [];
  const stop = async (data: string, mode = 'fast') => {
    await as('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']).catch(() => undefined);
  };
  const close = async () => {
    for (const data of started.reverse()) await stop(data, 'immediate');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await as('initdb', ['-D', primary, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    // initdb's pg_hba.conf already trusts replication connections from 127.0.0.1.
    await as('pg_ctl', ['-D', primary, ...settings(primaryPort), '-w', '-l', join(dir, 'primary.log'), 'start']);
    started.push(primary);
    await as('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', replica, '-R', '-X', 'stream', '-c', 'fast', '--no-sync']);
    await as('pg_ctl', ['-D', replica, ...settings(replicaPort), '-w', '-l', join(dir, 'replica.log'), 'start']);
    started.push(replica);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    primaryUrl: `postgres://postgres@127.0.0.1:${primaryPort}/postgres`,
    replicaUrl: `postgres://postgres@127.0.0.1:${replicaPort}/postgres`,
    stopReplica: () => stop(replica, 'immediate'),
    close,
  };
}
