import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exited } from './process';

/**
 * Debian's HAProxy in front of server nodes, as the monitoring system deploys them (issue 20),
 * as a child process with a config generated into a temporary folder. One frontend per entry of
 * `frontends`, each balancing round-robin over its nodes, with health checks every 250 ms so that a
 * killed node (connection refused) leaves the rotation within half a second. The check reads the
 * small public SMART discovery document: the CapabilityStatement is large enough that a node busy
 * with ingest answered it too slowly and was taken out of rotation.
 * `retries` + `redispatch` re-send a request only when the connection to a node failed (nothing
 * reached it); a request a node received and then died on is answered 502 and never re-sent, so
 * the proxy cannot write anything twice.
 */
export interface Proxy {
  close(): Promise<void>;
  output: () => string;
}

export const HAPROXY = '/usr/sbin/haproxy';

export async function startHaproxy(frontends: ReadonlyArray<{ port: number; nodes: readonly number[] }>): Promise<Proxy> {
  const dir = mkdtempSync(join(tmpdir(), 'rpm-haproxy-'));
  const config = [
    'global',
    '  maxconn 2000',
    'defaults',
    '  mode http',
    '  timeout connect 1s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  retries 3',
    '  option redispatch',
    '  option http-keep-alive',
    ...frontends.flatMap((f, i) => [
      `frontend fe${i}`,
      `  bind 127.0.0.1:${f.port}`,
      `  default_backend be${i}`,
      `backend be${i}`,
      '  balance roundrobin',
      '  option httpchk GET /fhir/.well-known/smart-configuration',
      '  http-check expect status 200',
      '  timeout check 2s',
      '  default-server inter 250ms fall 2 rise 2',
      ...f.nodes.map((port, n) => `  server node${n} 127.0.0.1:${port} check`),
    ]),
    '',
  ].join('\n');
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, config);
  // -db: stay in the foreground, a child this process stops.
  const child: ChildProcess = spawn(HAPROXY, ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const failed = new Promise<never>((_, reject) => {
    child.on('error', (err) => reject(new Error(`${HAPROXY} could not start (apt-get install haproxy): ${err.message}`)));
    child.on('exit', (code) => reject(new Error(`haproxy exited with ${code}: ${output}`)));
  });
  failed.catch(() => undefined);
  const close = async () => {
    const gone = exited(child);
    child.kill('SIGTERM');
    await gone;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.race([Promise.all(frontends.map((f) => listening(f.port))), failed]);
  } catch (err) {
    await close();
    throw err;
  }
  return { close, output: () => output };
}

async function listening(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`haproxy does not listen on ${port}`);
}
