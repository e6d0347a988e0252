import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { migrateAll } from '../../src/schema';
import { onPostgres } from '../helpers/pass';
import { freePort } from '../helpers/port';
import { exited, killStarted, startProcess } from '../helpers/process';
import { testDatabaseUrl, testDb } from '../helpers/server';

export const lab = Lab.script();
const { after, describe, it } = lab;

const pidsListening = (output: string) => new Set([...output.matchAll(/"pid":(\d+)[^\n]*"msg":"FHIR server listening"/g)].map((m) => Number(m[1])));

async function until<T>(what: string, probe: () => T | undefined, ms = 60_000): Promise<T> {
  const at = Date.now();
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() - at > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('WORKERS: several server processes on one port', () => {
  after(killStarted);

  it('refuses WORKERS above 1 on the embedded database, saying why', async () => {
    const child = startProcess({ WORKERS: '2', DATABASE_URL: '' });
    const error = await child.then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(error).to.contain('WORKERS above 1 needs PostgreSQL');
  });

  it(onPostgres ? 'serves from every worker, replaces one that dies, and stops them all on SIGTERM' : 'serves from every worker … — declared for PostgreSQL only: workers share the database, which the embedded one cannot (run with DATABASE_URL=postgres://…)', { skip: !onPostgres, timeout: 240_000 }, async () => {
    await migrateAll(await testDb());
    const port = await freePort();
    const server = await startProcess({ WORKERS: '2', DATABASE_URL: await testDatabaseUrl(), PORT: String(port) });
    const workers = await until('two workers listening', () => (pidsListening(server.output()).size === 2 ? [...pidsListening(server.output())] : undefined));
    expect(workers).to.not.include(server.child.pid);

    // Each worker answers: a write on one is read on the other, through the database alone.
    const created = await fetch(`${server.base}/Patient`, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify({ resourceType: 'Patient', gender: 'female' }) });
    expect(created.status).to.equal(201);
    const id = ((await created.json()) as { id: string }).id;
    const reads = await Promise.all(Array.from({ length: 20 }, () => fetch(`${server.base}/Patient/${id}`, { headers: { connection: 'close' } })));
    expect(reads.map((r) => r.status)).to.only.include(200);

    // A worker that dies is replaced, and the port keeps answering meanwhile.
    process.kill(workers[0]!, 'SIGKILL');
    const replaced = await until('a replacement worker', () => [...pidsListening(server.output())].find((pid) => !workers.includes(pid)));
    expect(server.output()).to.contain('a worker died; starting another');
    expect((await fetch(`${server.base}/Patient/${id}`, { headers: { connection: 'close' } })).status).to.equal(200);

    // SIGTERM to the primary stops every worker, and the primary exits 0 after them.
    server.child.kill('SIGTERM');
    expect(await exited(server.child)).to.equal(0);
    for (const pid of [workers[1]!, replaced]) expect(() => process.kill(pid, 0)).to.throw();
  });
});
