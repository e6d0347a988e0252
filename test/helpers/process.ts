import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/paths';

/**
 * Server processes (`node dist/src/main.js`, as `npm start` runs it) for the tests that need a
 * real process: a restart, a SIGKILL, several nodes behind a proxy.
 */
export interface ServerProcess {
  child: ChildProcess;
  port: number;
  base: string;
  output: () => string;
}

export const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(child.exitCode) : child.on('exit', (code) => resolve(code))));

/** Children still running: a failed test kills them before removing what they use. */
const started = new Set<ChildProcess>();
export async function killStarted(): Promise<void> {
  await Promise.all(
    [...started].map((child) => {
      const gone = exited(child);
      child.kill('SIGKILL');
      return gone;
    }),
  );
}

/**
 * Starts a server process (auth off, PORT 0 unless `env` says otherwise) and waits until it
 * listens: it logs its port at LOG_LEVEL info; with a fixed PORT it is polled instead, so that a
 * test under load can run it at LOG_LEVEL warn (a log line per request costs CPU).
 */
export async function startProcess(env: Record<string, string>): Promise<ServerProcess> {
  const fixedPort = Number(env.PORT ?? 0);
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'src', 'main.js')], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', AUTH_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  child.on('exit', () => started.delete(child));
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 90 s: ${output}`)), 90_000);
    const done = (p: number) => {
      clearTimeout(timer);
      resolve(p);
    };
    child.on('exit', () => reject(new Error(`server exited: ${output}`)));
    if (fixedPort) {
      const poll = () =>
        fetch(`http://127.0.0.1:${fixedPort}/fhir/metadata`).then(
          (res) => (res.ok ? done(fixedPort) : setTimeout(poll, 100)),
          () => child.exitCode === null && setTimeout(poll, 100),
        );
      poll();
      return;
    }
    child.stdout!.on('data', () => {
      const m = /"port":(\d+),"protocol"/.exec(output);
      if (m) done(Number(m[1]));
    });
  });
  return { child, port, base: `http://127.0.0.1:${port}/fhir`, output: () => output };
}
