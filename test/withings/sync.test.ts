import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { until } from '../helpers/hook';
import { examplePlanFor } from '../helpers/monitoring-plan';
import type { TestServer } from '../helpers/server';
import { FakeWithings } from './fake-withings';
import { accountState, flagsOf, linkAccount, newPatient, observationsOf, startConnectedServer, synced } from './connector';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LIMIT_HIGH = 'limit-high';
const codeOf = (flag: any) => flag.code.coding[0].code;
const countOf = (flag: any) => flag.extension.find((e: any) => e.url.endsWith('flag-event-count')).valueInteger;
const now = () => Math.floor(Date.now() / 1000);

describe('Withings connector: link, notify, sync', () => {
  let fake: FakeWithings;
  let app: TestServer & { origin: string };

  before(async () => {
    fake = await new FakeWithings().start();
    app = await startConnectedServer(fake);
  });
  after(async () => {
    await app.stop();
    await fake.stop();
  });

  it('a blood pressure notified by Withings raises one Flag past the CarePlan limit, after a token refresh and a 601 in the middle', async () => {
    const patient = await newPatient(app);
    const plan = await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: examplePlanFor(patient, '2020-01-01') });
    expect(plan.statusCode).to.equal(201);
    const userid = 7001;
    fake.bloodPressure(userid, 128, 82, 66, now() - 3600); // within limits, already at Withings before the link
    const linkedAt = Date.now();
    const account = await linkAccount(app, fake, patient, userid);
    let state = await synced(app, account, linkedAt);
    expect(state.status).to.equal('active');
    expect(state.subscribed).to.be.true();
    expect((await observationsOf(app, patient)).length).to.equal(2); // the backfill: the panel and the pulse
    // Subscribed for weight (1) and blood pressure (4), each callback checked by Withings with a HEAD first.
    expect([...fake.subscriptions.values()].filter((s) => s.userid === userid).map((s) => s.appli).sort()).to.equal([1, 4]);

    // The access token expires (Withings answers 401), and the first getmeas after the refresh is a 601.
    fake.expireAccessTokens(userid);
    fake.inject({ status: 601, waitSeconds: 1, action: 'getmeas' });
    const refreshesBefore = fake.log.filter((l) => l.params.grant_type === 'refresh_token').length;
    const group = fake.bloodPressure(userid, 152, 85, 71);
    const notifiedAt = Date.now();
    const answered = await fake.notify(userid, 4, group.date - 1, group.date + 1);
    expect(answered).to.equal([200]);
    expect(Date.now() - notifiedAt).to.be.below(2000); // Withings wants its answer within 2 s

    state = await synced(app, account, notifiedAt);
    expect(state.lastError).to.not.exist();
    expect(fake.log.filter((l) => l.params.grant_type === 'refresh_token').length).to.equal(refreshesBefore + 1);
    expect(fake.count(601, 'getmeas')).to.equal(1);
    const flags = (await flagsOf(app, patient)).filter((f) => codeOf(f) === LIMIT_HIGH);
    expect(flags.length).to.equal(1);
    expect(countOf(flags[0])).to.equal(1);
    expect(flags[0].code.coding[1].code).to.equal('8480-6');
    // The 601 wait (1 s) was honoured: no getmeas within it.
    const limited = fake.log.find((l) => l.status === 601)!;
    const after601 = fake.log.find((l) => l.at > limited.at && l.action === 'getmeas')!;
    expect(after601.at - limited.at).to.be.at.least(900);

    // Notified again (Withings retries, or a second device): nothing new, nothing doubled.
    const again = Date.now();
    expect(await fake.notify(userid, 4, group.date - 1, group.date + 1)).to.equal([200]);
    await synced(app, account, again);
    expect((await observationsOf(app, patient)).length).to.equal(4);
    const flagsAfter = (await flagsOf(app, patient)).filter((f) => codeOf(f) === LIMIT_HIGH);
    expect(flagsAfter.length).to.equal(1);
    expect(countOf(flagsAfter[0])).to.equal(1);
    // The readings are the Withings door's: mapped to LOINC, the panel carrying systolic 152.
    const panel = (await observationsOf(app, patient)).find((o) => o.code.coding[0].code === '85354-9' && o.component[0].valueQuantity.value === 152);
    expect(panel.component[0].code.coding[0].code).to.equal('8480-6');
    expect(panel.meta.source).to.equal('urn:rpm:ingest:withings');
  });

  it('keeps tokens encrypted at rest and shows the operator each account\'s sync state', async () => {
    const patient = await newPatient(app);
    const account = await linkAccount(app, fake, patient, 7002);
    await synced(app, account, 0);
    const { rows } = await app.ctx.db.query<{ access_token: string; refresh_token: string }>('SELECT access_token, refresh_token FROM withings_account WHERE id = $1', [account]);
    const issued = [...fake.accessTokens.keys(), ...fake.refreshTokens.keys()];
    expect(rows[0]!.access_token.startsWith('v1.')).to.be.true();
    expect(issued.some((t) => rows[0]!.access_token.includes(t) || rows[0]!.refresh_token.includes(t))).to.be.false();

    const list = await app.request({ method: 'GET', url: '/withings/accounts' });
    expect(list.statusCode).to.equal(200);
    const mine = list.json.accounts.find((a: any) => a.id === account);
    expect(mine.patient.reference).to.equal(`Patient/${patient}`);
    expect(mine.withingsUserId).to.equal('7002');
    expect(Date.parse(mine.lastSuccess)).to.be.above(0);
    expect(Date.parse(mine.nextAttempt)).to.be.above(Date.now()); // the fallback poll, an hour away
    expect(mine).to.not.include(['access_token', 'refresh_token', 'accessToken']);

    // The operator asks for a sync now: due at once, and done.
    const asked = Date.now();
    const sync = await app.request({ method: 'POST', url: `/withings/accounts/${account}/sync` });
    expect(sync.statusCode).to.equal(202);
    await synced(app, account, asked);
  });

  it('retries a 522 with backoff within the run', async () => {
    const patient = await newPatient(app);
    const account = await linkAccount(app, fake, patient, 7003);
    await synced(app, account, 0);
    fake.inject({ status: 522, action: 'getmeas' }, { status: 522, action: 'getmeas' });
    fake.addGroup(7003, [{ value: 72500, type: 1, unit: -3 }]);
    const asked = Date.now();
    await app.request({ method: 'POST', url: `/withings/accounts/${account}/sync` });
    const state = await synced(app, account, asked);
    expect(state.lastError).to.not.exist();
    expect(state.consecutiveFailures).to.equal(0);
    const weights = (await observationsOf(app, patient)).filter((o) => o.code.coding[0].code === '29463-7');
    expect(weights.map((o) => o.valueQuantity.value)).to.equal([72.5]);
  });

  it('asks for a new link with one Flag when Withings refuses the refresh token (503), and a new link resumes', async () => {
    const patient = await newPatient(app);
    const account = await linkAccount(app, fake, patient, 7004);
    await synced(app, account, 0);
    fake.expireAccessTokens(7004);
    fake.revokeRefreshTokens(7004);
    await app.request({ method: 'POST', url: `/withings/accounts/${account}/sync` });
    const state = await until('re-link needed', async () => {
      const s = await accountState(app, account);
      return s.status === 'relink-needed' ? s : undefined;
    });
    expect(state.lastError).to.contain('re-link');
    expect(state.nextAttempt).to.not.exist();
    const relink = (await flagsOf(app, patient)).filter((f) => codeOf(f) === 'relink-needed');
    expect(relink.length).to.equal(1);
    expect(relink[0].status).to.equal('active');
    // A sync asked for now does nothing: the account waits for its new link. Five worker
    // intervals later no request has reached Withings (a refresh or getmeas for an account
    // without working tokens would) and it still waits.
    const asked = Date.now();
    expect((await app.request({ method: 'POST', url: `/withings/accounts/${account}/sync` })).statusCode).to.equal(202);
    await new Promise((r) => setTimeout(r, 500));
    expect(fake.log.filter((l) => l.at >= asked).map((l) => `${l.path} ${l.action}`)).to.equal([]);
    expect((await accountState(app, account)).status).to.equal('relink-needed');

    fake.addGroup(7004, [{ value: 80100, type: 1, unit: -3 }]);
    const relinked = Date.now();
    expect(await linkAccount(app, fake, patient, 7004)).to.equal(account);
    const after = await synced(app, account, relinked);
    expect(after.status).to.equal('active');
    const flags = (await flagsOf(app, patient)).filter((f) => codeOf(f) === 'relink-needed');
    expect(flags.map((f) => f.status)).to.equal(['inactive']);
    expect((await observationsOf(app, patient)).some((o) => o.valueQuantity?.value === 80.1)).to.be.true();
  });

  it('unlinking revokes the subscriptions and forgets the tokens', async () => {
    const patient = await newPatient(app);
    const account = await linkAccount(app, fake, patient, 7005);
    await synced(app, account, 0);
    expect([...fake.subscriptions.values()].filter((s) => s.userid === 7005).length).to.equal(2);
    const res = await app.request({ method: 'DELETE', url: `/withings/accounts/${account}` });
    expect(res.statusCode).to.equal(204);
    expect([...fake.subscriptions.values()].filter((s) => s.userid === 7005).length).to.equal(0);
    const { rows } = await app.ctx.db.query('SELECT 1 FROM withings_account WHERE id = $1', [account]);
    expect(rows.length).to.equal(0);
    expect((await app.request({ method: 'GET', url: `/withings/accounts/${account}` })).statusCode).to.equal(404);
  });
});
