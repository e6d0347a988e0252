import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { mkdtempSync, rmSync } from 'node:fs';
import { migratedDataDir } from '../helpers/data-dir';
import { exited, killStarted, startProcess } from '../helpers/process';
import { embeddedPassOnly } from '../helpers/pass';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const lab = Lab.script();
const { describe, it } = lab;

describe('the server process', () => {
  it('keeps data in the embedded on-disk database across a graceful SIGTERM restart', { ...embeddedPassOnly, timeout: 240_000 }, async () => {
    const dataDir = await migratedDataDir(join(mkdtempSync(join(tmpdir(), 'rpm-fhir-')), 'data'));
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
