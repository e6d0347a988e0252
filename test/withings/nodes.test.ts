import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import pino from 'pino';
import { migrateAll } from '../../src/schema';
import { WithingsApi } from '../../src/withings/api';
import { BUDGET_LOCK, RequestBudget } from '../../src/withings/budget';
import { TokenCipher } from '../../src/withings/cipher';
import { TokenKeeper } from '../../src/withings/tokens';
import { testDb } from '../helpers/server';
import { FakeWithings } from './fake-withings';
import { linkAccount, newPatient, observationsOf, startConnectedServer, synced } from './connector';

export const lab = Lab.script();
const { describe, it, before } = lab;

const now = () => Math.floor(Date.now() / 1000);

describe('Withings connector: several nodes', () => {
  before(async () => {
    await migrateAll(await testDb());
  });

  const onPostgres = (process.env.DATABASE_URL ?? '').startsWith('postgres');
  const counted = onPostgres
    ? 'the shared budget counts a request when its node got the budget, not when it began to wait for it'
    : 'the shared budget counts a request when its node got the budget — declared for PostgreSQL only: PGlite has one connection, so no take can wait for another';
  it(counted, { skip: !onPostgres }, async () => {
    const db = await testDb();
    const budget = new RequestBudget(db, 1_000, 60_000, 10_000);
    let released = 0;
    // Another node taking from the budget: it holds the budget's lock for 300 ms.
    const other = db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [BUDGET_LOCK]);
      await new Promise((r) => setTimeout(r, 300));
      released = Date.now();
    });
    await new Promise((r) => setTimeout(r, 50));
    await budget.take();
    await other;
    const { rows } = await db.query<{ at: number }>('SELECT (extract(epoch FROM max(at)) * 1000)::float8 AS at FROM withings_request_log');
    // Logged when the lock was ours (the database's clock and ours are this machine's), not 250 ms before.
    expect(rows[0]!.at).to.be.at.least(released - 25);
  });

  it('two nodes share the due accounts: each account synced by one of them, once', async () => {
    const fake = await new FakeWithings({ pageSize: 1 }).start();
    const nodes = [await startConnectedServer(fake), await startConnectedServer(fake)];
    try {
      const since = Date.now();
      const accounts: Array<{ patient: string; account: string; userid: number }> = [];
      for (const userid of [9101, 9102, 9103, 9104]) {
        for (let i = 0; i < 3; i++) fake.addGroup(userid, [{ value: 60000 + i * 500, type: 1, unit: -3 }], now() - 900 + i * 60);
        // Linked through either node; both workers race for the new account.
        const via = nodes[userid % 2]!;
        const patient = await newPatient(via);
        accounts.push({ patient, account: await linkAccount(via, fake, patient, userid), userid });
      }
      for (const { patient, account, userid } of accounts) {
        await synced(nodes[0]!, account, since);
        expect((await observationsOf(nodes[1]!, patient)).length).to.equal(3);
        // One run: pages at offsets 0, 1, 2, each fetched once (no node ran the account beside another).
        const pages = fake.log.filter((l) => l.userid === userid && l.action === 'getmeas').map((l) => Number(l.params.offset ?? 0));
        expect(pages).to.equal([0, 1, 2]);
      }
    } finally {
      for (const node of nodes) await node.stop();
      await fake.stop();
    }
  });

  it('two nodes refreshing one account at once make one refresh, and both use the rotated token', async () => {
    const fake = await new FakeWithings().start();
    const app = await startConnectedServer(fake, { WITHINGS_WORKER_INTERVAL: '0' });
    try {
      const account = await linkAccount(app, fake, await newPatient(app), 9201);
      const config = app.ctx.config.withings!;
      // Two nodes: each its own keeper, client and budget, one database.
      const node = () => {
        const api = new WithingsApi(config, new RequestBudget(app.ctx.db, config.rateLimit, config.rateWindowMs, 10_000), pino({ level: 'silent' }));
        return { api, keeper: new TokenKeeper(app.ctx.db, new TokenCipher(config.tokenKey), api, config.refreshMarginMs) };
      };
      const [a, b] = [node(), node()];
      await app.ctx.db.query('UPDATE withings_account SET access_expires_at = now() WHERE id = $1', [account]);
      const [ta, tb] = await Promise.all([a.keeper.accessToken(account), b.keeper.accessToken(account)]);
      expect(fake.log.filter((l) => l.params.grant_type === 'refresh_token').length).to.equal(1);
      expect(ta.token).to.equal(tb.token);
      const body = await b.api.call('/measure', { action: 'getmeas', category: 1, lastupdate: 0 }, tb.token);
      expect(body.measuregrps).to.equal([]);
    } finally {
      await app.stop();
      await fake.stop();
    }
  });
});
