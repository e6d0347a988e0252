import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { migrateAll } from '../../src/schema';
import { until } from '../helpers/hook';
import { testDb } from '../helpers/server';
import { FakeWithings } from './fake-withings';
import { linkAccount, newPatient, observationsOf, startConnectedServer, synced } from './connector';

export const lab = Lab.script();
const { describe, it, before } = lab;

const now = () => Math.floor(Date.now() / 1000);
const getmeasServed = (fake: FakeWithings, since: number) => fake.log.filter((l) => l.action === 'getmeas' && l.status === 0 && l.at >= since).length;

describe('Withings connector: restarts and downtime', () => {
  // The first migration of the shared test database takes long on a busy machine: not in a test's time.
  before(async () => {
    await migrateAll(await testDb());
  });

  it('a restart during a paged sync loses and doubles nothing, and a dead node\'s lease is taken over when it runs out', async () => {
    const fake = await new FakeWithings({ pageSize: 2 }).start();
    const first = await startConnectedServer(fake);
    try {
      const patient = await newPatient(first);
      const weights = Array.from({ length: 9 }, (_, i) => 70 + i / 10);
      weights.forEach((kg, i) => fake.addGroup(8001, [{ value: Math.round(kg * 1000), type: 1, unit: -3 }], now() - 3600 + i * 60));
      fake.getmeasDelayMs = 100;
      const start = Date.now();
      const account = await linkAccount(first, fake, patient, 8001);
      // Stopped in the middle of the five pages (more/offset).
      await until('two pages served', () => getmeasServed(fake, start) >= 2);
      await first.stop();
      expect(getmeasServed(fake, start)).to.be.below(5);
      const partial = (await first.ctx.db.query<{ cursor_lastupdate: string | null }>('SELECT cursor_lastupdate FROM withings_account WHERE id = $1', [account])).rows[0]!;
      expect(partial.cursor_lastupdate).to.equal(null); // the cursor moves only when the last page is in

      // As if the stopped node had crashed holding the account: its lease must run out first.
      await first.ctx.db.query(`UPDATE withings_account SET lease_owner = 'crashed-node', lease_until = now() + interval '1 second' WHERE id = $1`, [account]);
      const second = await startConnectedServer(fake);
      try {
        const state = await synced(second, account, start);
        expect(Date.parse(state.lastSuccess) - start).to.be.at.least(1000);
        const observations = await observationsOf(second, patient);
        expect(observations.map((o) => o.valueQuantity.value).sort()).to.equal(weights);
        expect(new Set(observations.map((o) => o.id)).size).to.equal(9);
        expect(getmeasServed(fake, start)).to.be.at.least(6); // the first pages were fetched again, and written as the same resources
      } finally {
        await second.stop();
      }
    } finally {
      await fake.stop();
    }
  });

  it('after a downtime, the backlog of due accounts drains within the shared budget: no 601', async () => {
    const fake = await new FakeWithings({ rateLimit: 6, rateWindowMs: 1000, pageSize: 1 }).start();
    try {
      // The downtime: accounts linked while no worker ran, readings piling up at Withings.
      const down = await startConnectedServer(fake, { WITHINGS_WORKER_INTERVAL: '0' });
      const accounts: Array<{ patient: string; account: string }> = [];
      for (const userid of [9001, 9002, 9003]) {
        const patient = await newPatient(down);
        accounts.push({ patient, account: await linkAccount(down, fake, patient, userid) });
        fake.addGroup(userid, [{ value: 65000, type: 1, unit: -3 }], now() - 600);
        fake.addGroup(userid, [{ value: 65500, type: 1, unit: -3 }], now() - 300);
      }
      await down.stop();
      await new Promise((r) => setTimeout(r, 1000)); // the linking's token requests leave the window

      const since = Date.now();
      // One request of headroom below the fake's limit, for the jitter between our count and its arrival.
      const up = await startConnectedServer(fake, { WITHINGS_RATE_LIMIT: '5', WITHINGS_RATE_WINDOW: '1s', WITHINGS_CONCURRENCY: '3' });
      try {
        for (const { patient, account } of accounts) {
          await synced(up, account, since);
          expect((await observationsOf(up, patient)).length).to.equal(2);
        }
        const sent = fake.log.filter((l) => l.at >= since).map((l) => l.at);
        expect(sent.length).to.be.at.least(12); // 2 subscriptions and 2 pages (at least) per account
        expect(fake.count(601)).to.equal(0);
        // No 1 s window of the fake's saw more than the budget.
        expect(Math.max(...sent.map((t) => sent.filter((u) => u >= t && u < t + 1000).length))).to.be.at.most(6);
      } finally {
        await up.stop();
      }
    } finally {
      await fake.stop();
    }
  });
});
