import http from 'node:http';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { cancellable } from '../../src/fhir/request-lifetime';
import { OperationOutcomeError } from '../../src/kernel/outcome';
import { type Db, openDb } from '../../src/store/db';
import { startTestServer, testDb } from '../helpers/server';

export const lab = Lab.script();
const { describe, it } = lab;

const url = process.env.DATABASE_URL ?? '';
const onPostgres = url.startsWith('postgres');

/**
 * Issue 11, search denial of service: a statement cannot outlive its request, nor a statement
 * timeout, nor a shutdown. PostgreSQL only: the embedded database runs one statement at a time
 * in this process and has no backend to cancel (PGlite cannot interrupt a running statement).
 */
describe('statements end with their request', { skip: !onPostgres }, () => {
  const sleeping = async (db: Db, marker: string) =>
    (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`, [`%${marker}%`])).rows[0]!.n;

  it('answers a read that runs past STATEMENT_TIMEOUT with 400 too-costly, and frees its connection', async () => {
    const db = await openDb(url, '', { statementTimeoutMs: 300 });
    try {
      const started = Date.now();
      const err = await db.query('SELECT pg_sleep(5) /* timeout-probe */').catch((e: unknown) => e);
      expect(err).to.be.instanceOf(OperationOutcomeError);
      expect((err as OperationOutcomeError).status).to.equal(400);
      expect((err as OperationOutcomeError).issues[0]!.code).to.equal('too-costly');
      expect(Date.now() - started).to.be.below(3000);
    } finally {
      await db.close();
    }
  });

  it('cancels the statement of a request whose client disconnected', { timeout: 30_000 }, async () => {
    const app = await startTestServer({}, { listen: true });
    const marker = `disconnect-${process.pid}-${Date.now()}`;
    app.server.route({ method: 'GET', path: '/test/sleep', options: { auth: false }, handler: (request) => cancellable(request, (signal) => app.ctx.db.withSignal(signal).query(`SELECT pg_sleep(20) /* ${marker} */`)).then(() => 'done') });
    const admin = await testDb();
    try {
      const req = http.get(`http://127.0.0.1:${app.server.info.port}/test/sleep`);
      req.on('error', () => undefined);
      const deadline = Date.now() + 5000;
      while ((await sleeping(admin, marker)) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await sleeping(admin, marker)).to.equal(1);
      req.destroy();
      const gone = Date.now() + 5000;
      while ((await sleeping(admin, marker)) > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 50));
      expect(await sleeping(admin, marker)).to.equal(0);
    } finally {
      await app.stop();
    }
  });

  it('stops within its promised 10 s, cancelling what still runs', { timeout: 30_000 }, async () => {
    const app = await startTestServer({}, { listen: true });
    const marker = `shutdown-${process.pid}-${Date.now()}`;
    app.server.route({ method: 'GET', path: '/test/sleep', options: { auth: false }, handler: (request) => cancellable(request, (signal) => app.ctx.db.withSignal(signal).query(`SELECT pg_sleep(60) /* ${marker} */`)).then(() => 'done') });
    const admin = await testDb();
    const answer = new Promise<number>((resolve) => {
      http.get(`http://127.0.0.1:${app.server.info.port}/test/sleep`, (res) => resolve(res.statusCode ?? 0)).on('error', () => resolve(-1));
    });
    const deadline = Date.now() + 5000;
    while ((await sleeping(admin, marker)) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await app.stop();
    const took = Date.now() - started;
    expect(took).to.be.below(10_500);
    expect(await answer).to.equal(503);
    // The cancel request travels on its own connection: the backend notices it a moment later.
    const gone = Date.now() + 2000;
    while ((await sleeping(admin, marker)) > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 50));
    expect(await sleeping(admin, marker)).to.equal(0);
  });
});
