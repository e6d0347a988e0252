import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { migrateAll } from '../../src/schema';
import { callbackUrl } from '../../src/withings/callback';
import { TokenCipher } from '../../src/withings/cipher';
import { backendToken, REGISTRATION_TOKEN } from '../auth/helpers';
import { testDb, type TestServer } from '../helpers/server';
import { FakeWithings } from './fake-withings';
import { linkAccount, newPatient, startConnectedServer, synced, TOKEN_KEY } from './connector';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const isOutcome = (res: { json: any }) => res.json?.resourceType === 'OperationOutcome';

describe('Withings connector: bad input, access', () => {
  let fake: FakeWithings;
  let app: TestServer & { origin: string };

  before(async () => {
    await migrateAll(await testDb());
    fake = await new FakeWithings().start();
    app = await startConnectedServer(fake);
  });
  after(async () => {
    await app.stop();
    await fake.stop();
  });

  const notify = (form: string, url = '/withings/notify', type = 'application/x-www-form-urlencoded') =>
    app.request({ method: 'POST', url, payload: form, headers: { 'content-type': type } });

  it('answers Withings\' HEAD and GET checks of the callback URL with 200', async () => {
    expect((await app.request({ method: 'HEAD', url: '/withings/notify?s=x' })).statusCode).to.equal(200);
    expect((await app.request({ method: 'GET', url: '/withings/notify' })).statusCode).to.equal(200);
  });

  it('refuses malformed, forged and unknown notifications with a 4xx OperationOutcome', async () => {
    const config = app.ctx.config.withings!;
    const path = (userid: string) => new URL(callbackUrl(config, userid)).pathname + new URL(callbackUrl(config, userid)).search;
    const cases: Array<[string, Awaited<ReturnType<typeof notify>>, number]> = [
      ['no userid', await notify('appli=4', path('1')), 400],
      ['userid not digits', await notify('userid=abc&appli=4', path('1')), 400],
      ['unknown appli', await notify('userid=1&appli=999', path('1')), 400],
      ['startdate not a time', await notify('userid=1&appli=4&startdate=yesterday', path('1')), 400],
      ['JSON instead of a form', await notify('{"userid":1}', path('1'), 'application/json'), 415],
      ['no MAC', await notify('userid=1&appli=4'), 403],
      ['MAC of another user', await notify('userid=2&appli=4', path('1')), 403],
      ['no such link', await notify('userid=424242&appli=4', path('424242')), 404],
      ['oversized', await notify(`userid=1&appli=4&x=${'a'.repeat(5000)}`, path('1')), 413],
    ];
    for (const [what, res, status] of cases) {
      expect(res.statusCode, what).to.equal(status);
      expect(isOutcome(res), what).to.be.true();
    }
  });

  it('refuses bad link requests and unknown accounts with a 4xx OperationOutcome', async () => {
    const link = (payload: unknown) => app.request({ method: 'POST', url: '/withings/links', payload: payload as object });
    expect((await link({})).statusCode).to.equal(400);
    expect((await link({ patient: { reference: 'Observation/1' } })).statusCode).to.equal(400);
    expect((await app.request({ method: 'POST', url: '/withings/links', payload: 'not json', headers: { 'content-type': 'application/json' } })).statusCode).to.equal(400);
    const unknown = await link({ patient: { reference: 'Patient/no-such-patient' } });
    expect(unknown.statusCode).to.equal(404);
    expect(isOutcome(unknown)).to.be.true();
    expect((await app.request({ method: 'GET', url: '/withings/accounts?patient=Patient/$$' })).statusCode).to.equal(400);
    for (const [method, url] of [['GET', '/withings/accounts/not-an-id'], ['POST', '/withings/accounts/00000000-0000-0000-0000-000000000000/sync'], ['DELETE', '/withings/accounts/00000000-0000-0000-0000-000000000000']]) {
      const res = await app.request({ method: method!, url: url! });
      expect(res.statusCode, url).to.equal(404);
      expect(isOutcome(res), url).to.be.true();
    }
    // A forged or missing ticket never reaches Withings.
    for (const url of ['/withings/connect?ticket=forged', '/withings/connect']) {
      const res = await fetch(`${app.origin}${url}`, { redirect: 'manual' });
      expect(res.status, url).to.equal(400);
    }
  });

  it('a code Withings refuses (503) ends the link with an error page and stores nothing; a code links once', async () => {
    const patient = await newPatient(app);
    const asked = await app.request({ method: 'POST', url: '/withings/links', payload: { patient: { reference: `Patient/${patient}` } } });
    fake.approveAs = 7100;
    fake.inject({ status: 503, action: 'requesttoken' });
    const toWithings = await fetch(asked.json.authorizeUrl, { redirect: 'manual' });
    const cookie = toWithings.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const approved = await fetch(toWithings.headers.get('location')!, { redirect: 'manual' });
    const back = await fetch(approved.headers.get('location')!, { redirect: 'manual', headers: { cookie } });
    expect(back.status).to.equal(400);
    expect((await app.request({ method: 'GET', url: `/withings/accounts?patient=Patient/${patient}` })).json.accounts).to.equal([]);
    // The injected 503 spent nothing: the same code (within its 30 s) now links; a third time it is refused, used once.
    const again = await fetch(approved.headers.get('location')!, { redirect: 'manual', headers: { cookie } });
    expect(again.status).to.equal(200);
    const replay = await fetch(approved.headers.get('location')!, { redirect: 'manual', headers: { cookie } });
    expect(replay.status).to.equal(400);
    expect((await app.request({ method: 'GET', url: `/withings/accounts?patient=Patient/${patient}` })).json.accounts.length).to.equal(1);
  });

  it('one Withings account never feeds two patients (409)', async () => {
    const first = await newPatient(app);
    const account = await linkAccount(app, fake, first, 7200);
    await synced(app, account, 0);
    const second = await newPatient(app);
    fake.approveAs = 7200;
    const asked = await app.request({ method: 'POST', url: '/withings/links', payload: { patient: { reference: `Patient/${second}` } } });
    const toWithings = await fetch(asked.json.authorizeUrl, { redirect: 'manual' });
    const cookie = toWithings.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const approved = await fetch(toWithings.headers.get('location')!, { redirect: 'manual' });
    const back = await fetch(approved.headers.get('location')!, { redirect: 'manual', headers: { cookie } });
    expect(back.status).to.equal(409);
    const state = await app.request({ method: 'GET', url: `/withings/accounts/${account}` });
    expect(state.json.patient.reference).to.equal(`Patient/${first}`);
  });

  it('seals tokens with AES-256-GCM bound to their account: tampered or moved ciphertext does not open', () => {
    const cipher = new TokenCipher(Buffer.from(TOKEN_KEY, 'hex'));
    const sealed = cipher.seal('secret-token', 'account-1');
    expect(cipher.open(sealed, 'account-1')).to.equal('secret-token');
    expect(sealed).to.not.contain('secret-token');
    expect(() => cipher.open(sealed, 'account-2')).to.throw();
    const parts = sealed.split('.');
    parts[2] = Buffer.from('x' + Buffer.from(parts[2]!, 'base64url').toString('latin1'), 'latin1').toString('base64url');
    expect(() => cipher.open(parts.join('.'), 'account-1')).to.throw();
  });
});

describe('Withings connector: with SMART auth on', () => {
  let fake: FakeWithings;
  let app: TestServer & { origin: string };

  before(async () => {
    fake = await new FakeWithings().start();
    app = await startConnectedServer(fake, { AUTH_DISABLED: 'false', REGISTRATION_TOKEN, TOKEN_REQUESTS_PER_ADDRESS: '100000' });
  });
  after(async () => {
    await app.stop();
    await fake.stop();
  });

  it('the operator API and linking need a token, and a link needs the right to file the patient\'s readings; the callback stays public', async () => {
    for (const [method, url] of [['GET', '/withings/accounts'], ['POST', '/withings/links'], ['GET', '/withings/accounts/00000000-0000-0000-0000-000000000000']]) {
      const res = await app.request({ method: method!, url: url!, payload: method === 'POST' ? { patient: 'Patient/x' } : undefined });
      expect(res.statusCode, url).to.equal(401);
      expect(isOutcome(res), url).to.be.true();
    }
    const tokenUrl = `${app.origin}/auth/token`;
    const reader = await backendToken({ origin: app.origin, tokenUrl }, 'system/Patient.rs');
    const list = await app.request({ method: 'GET', url: '/withings/accounts', headers: { authorization: `Bearer ${reader.token}` } });
    expect(list.statusCode).to.equal(200);
    expect(list.json.accounts).to.be.an.array();
    const writer = await backendToken({ origin: app.origin, tokenUrl }, 'system/Patient.crs');
    const patient = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' }, headers: { authorization: `Bearer ${writer.token}` } });
    expect(patient.statusCode).to.equal(201);
    const refused = await app.request({ method: 'POST', url: '/withings/links', payload: { patient: `Patient/${patient.json.id}` }, headers: { authorization: `Bearer ${reader.token}` } });
    expect(refused.statusCode).to.equal(403);
    const linker = await backendToken({ origin: app.origin, tokenUrl }, 'system/Patient.rs system/Observation.c');
    const allowed = await app.request({ method: 'POST', url: '/withings/links', payload: { patient: `Patient/${patient.json.id}` }, headers: { authorization: `Bearer ${linker.token}` } });
    expect(allowed.statusCode).to.equal(201);
    expect(allowed.json.authorizeUrl).to.match(/\/withings\/connect\?ticket=/);
    expect((await app.request({ method: 'HEAD', url: '/withings/notify' })).statusCode).to.equal(200);
  });
  it('lists, shows, syncs and unlinks only the accounts of patients the token may see', async () => {
    const tokenUrl = `${app.origin}/auth/token`;
    const bearer = async (scope: string) => ({ authorization: `Bearer ${(await backendToken({ origin: app.origin, tokenUrl }, scope)).token}` });
    const linker = await bearer('system/Patient.crs system/Observation.c');
    const system = 'urn:test:withings-access';
    const patients: string[] = [];
    for (const value of ['a', 'b', 'c']) {
      const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', identifier: [{ system, value }] }, headers: linker });
      expect(res.statusCode).to.equal(201);
      patients.push(res.json.id);
    }
    // The link as a browser does it, asked for with the linker's token.
    // Withings users of their own: the test database is shared, and a user links one patient only.
    const firstUser = 800_000 + Math.floor(Math.random() * 100_000) * 3;
    const accounts: string[] = [];
    for (const [k, patientId] of patients.entries()) {
      fake.approveAs = firstUser + k;
      const asked = await app.request({ method: 'POST', url: '/withings/links', payload: { patient: `Patient/${patientId}` }, headers: linker });
      expect(asked.statusCode).to.equal(201);
      const toWithings = await fetch(asked.json.authorizeUrl, { redirect: 'manual' });
      const cookie = toWithings.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
      const approved = await fetch(toWithings.headers.get('location')!, { redirect: 'manual' });
      expect((await fetch(approved.headers.get('location')!, { redirect: 'manual', headers: { cookie } })).status).to.equal(200);
      const mine = await app.request({ method: 'GET', url: `/withings/accounts?patient=Patient/${patientId}`, headers: linker });
      expect(mine.json.accounts).to.have.length(1);
      accounts.push(mine.json.accounts[0].id);
    }

    // More linked accounts than one search takes _id values (100): the list pages its policy
    // filter (it once sent every patient id in one search, a 400 past 100 accounts). Stand-ins
    // that are not due, so no sync worker on this shared database picks them up.
    const more = await app.request({
      method: 'POST', url: '/fhir', headers: linker,
      payload: { resourceType: 'Bundle', type: 'transaction', entry: Array.from({ length: 100 }, () => ({ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } })) },
    });
    expect(more.statusCode).to.equal(200);
    const standIns = more.json.entry.map((e: { response: { location: string } }, k: number) => ({ id: `standin-${firstUser}-${k}`, patient: e.response.location.split('/')[1] }));
    await app.ctx.db.query(
      `INSERT INTO withings_account (id, patient_id, withings_userid, status, access_token, refresh_token, access_expires_at)
       SELECT id, patient, id, 'relink-needed', 'ciphertext', 'ciphertext', now() FROM unnest($1::text[], $2::text[]) AS t(id, patient)`,
      [standIns.map((a: { id: string }) => a.id), standIns.map((a: { patient: string }) => a.patient)],
    );
    try {
      const all = await app.request({ method: 'GET', url: '/withings/accounts', headers: linker });
      expect(all.statusCode).to.equal(200);
      expect(all.json.accounts.map((a: { id: string }) => a.id)).to.include([...accounts, ...standIns.map((a: { id: string }) => a.id)]);
    } finally {
      await app.ctx.db.query(`DELETE FROM withings_account WHERE id LIKE $1`, [`standin-${firstUser}-%`]);
    }

    const onlyA = await bearer(`system/Patient.rs?identifier=${system}|a system/Observation.c`);
    const seen = await app.request({ method: 'GET', url: '/withings/accounts', headers: onlyA });
    expect(seen.statusCode).to.equal(200);
    expect(seen.json.accounts.map((a: { id: string }) => a.id)).to.equal([accounts[0]]);
    for (const [method, url] of [['GET', `/withings/accounts/${accounts[1]}`], ['POST', `/withings/accounts/${accounts[1]}/sync`], ['DELETE', `/withings/accounts/${accounts[2]}`]] as const) {
      const res = await app.request({ method, url, headers: onlyA });
      expect(res.statusCode, `${method} ${url}`).to.equal(404);
      expect(isOutcome(res), url).to.be.true();
    }
    expect((await app.request({ method: 'GET', url: `/withings/accounts/${accounts[1]}`, headers: linker })).statusCode).to.equal(200);

    // Seeing an account is not the right to act on the patient's readings.
    const reader = await bearer('system/Patient.rs');
    const sync = await app.request({ method: 'POST', url: `/withings/accounts/${accounts[0]}/sync`, headers: reader });
    expect(sync.statusCode).to.equal(403);
    expect(isOutcome(sync)).to.be.true();
  });
});
