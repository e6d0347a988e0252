import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/paths';

export const lab = Lab.script();
const { describe, it } = lab;

const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

/** Children still running: a failed test kills them before removing their data folder. */
const started = new Set<ChildProcess>();
async function killStarted(): Promise<void> {
  await Promise.all([...started].map((child) => {
    const gone = exited(child);
    child.kill('SIGKILL');
    return gone;
  }));
}

/** Starts `node dist/src/main.js` as `npm start` does and waits until it listens. */
async function startProcess(env: Record<string, string>): Promise<{ child: ChildProcess; base: string; output: () => string }> {
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
    child.stdout!.on('data', () => {
      const m = /"port":(\d+),"protocol"/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on('exit', () => reject(new Error(`server exited: ${output}`)));
  });
  return { child, base: `http://127.0.0.1:${port}/fhir`, output: () => output };
}


describe('the server process', () => {
  it('keeps data in the embedded on-disk database across a graceful SIGTERM restart', { timeout: 240_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'rpm-fhir-'));
    try {
      const env = { DATA_DIR: dataDir, DATABASE_URL: '' };
      const first = await startProcess(env);
      const created = await fetch(`${first.base}/Patient`, {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json' },
        body: JSON.stringify({ resourceType: 'Patient', gender: 'female' }),
      });
      expect(created.status).to.equal(201);
      const id = ((await created.json()) as { id: string }).id;

      // A request in flight when SIGTERM arrives still completes: its body is still being sent
      // when the signal comes.
      const body = JSON.stringify({ resourceType: 'Patient', gender: 'male' });
      let push!: ReadableStreamDefaultController<Uint8Array>;
      const stream = new ReadableStream<Uint8Array>({ start: (c) => void (push = c) });
      push.enqueue(new TextEncoder().encode(body.slice(0, 10)));
      const inFlight = fetch(`${first.base}/Patient`, {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json' },
        body: stream,
        duplex: 'half',
      } as RequestInit);
      await new Promise((r) => setTimeout(r, 300));
      first.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      push.enqueue(new TextEncoder().encode(body.slice(10)));
      push.close();
      const late = await inFlight;
      expect(late.status).to.equal(201);
      const lateId = ((await late.json()) as { id: string }).id;
      expect(await exited(first.child)).to.equal(0);
      expect(first.output()).to.contain('"signal":"SIGTERM"');

      const second = await startProcess(env);
      const read = await fetch(`${second.base}/Patient/${id}`);
      expect(read.status).to.equal(200);
      expect(((await read.json()) as { gender: string }).gender).to.equal('female');
      expect((await fetch(`${second.base}/Patient/${lateId}`)).status).to.equal(200);
      second.child.kill('SIGINT');
      expect(await exited(second.child)).to.equal(0);
    } finally {
      await killStarted();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
