import { randomBytes } from 'node:crypto';
import { expect } from '@hapi/code';
import { until } from '../helpers/hook';
import { freePort } from '../helpers/port';
import { startTestServer, type TestServer } from '../helpers/server';
import type { FakeWithings } from './fake-withings';

/** One token key for every server of a test file: a restarted server must read what the last one sealed. */
export const TOKEN_KEY = randomBytes(32).toString('hex');

/**
 * A server connected to `fake`, listening on a real port (Withings calls it back), with short
 * timings: the worker looks every 100 ms, backoffs start at 50 ms.
 */
export async function startConnectedServer(fake: FakeWithings, env: Record<string, string> = {}): Promise<TestServer & { origin: string }> {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  fake.redirectUris.push(`${origin}/withings/connect`);
  const app = await startTestServer(
    {
      PORT: String(port),
      BASE_URL: origin,
      WITHINGS_CLIENT_ID: fake.clientId,
      WITHINGS_CLIENT_SECRET: fake.clientSecret,
      WITHINGS_TOKEN_KEY: TOKEN_KEY,
      WITHINGS_API_URL: fake.url,
      WITHINGS_AUTHORIZE_URL: `${fake.url}/oauth2_user/authorize2`,
      WITHINGS_WORKER_INTERVAL: '100ms',
      WITHINGS_POLL_INTERVAL: '1h',
      WITHINGS_RETRY_BASE: '50ms',
      WITHINGS_LEASE: '5s',
      ...env,
    },
    { listen: true },
  );
  return Object.assign(app, { origin });
}

export async function newPatient(app: TestServer): Promise<string> {
  const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Withings' }] } });
  expect(res.statusCode).to.equal(201);
  return res.json.id as string;
}

/**
 * The whole link as a browser does it: ask the server for the link, open it (bell redirects to
 * Withings with its state cookie), Withings approves `userid` and redirects back with a code,
 * which the server trades for tokens. Answers the account id.
 */
export async function linkAccount(app: TestServer & { origin: string }, fake: FakeWithings, patientId: string, userid: number): Promise<string> {
  fake.approveAs = userid;
  const asked = await app.request({ method: 'POST', url: '/withings/links', payload: { patient: { reference: `Patient/${patientId}` } } });
  expect(asked.statusCode).to.equal(201);
  const toWithings = await fetch(asked.json.authorizeUrl, { redirect: 'manual' });
  expect(toWithings.status).to.equal(302);
  const cookie = toWithings.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const approved = await fetch(toWithings.headers.get('location')!, { redirect: 'manual' });
  expect(approved.status).to.equal(302);
  const back = await fetch(approved.headers.get('location')!, { redirect: 'manual', headers: { cookie } });
  expect(back.status).to.equal(200);
  const accounts = await app.request({ method: 'GET', url: `/withings/accounts?patient=Patient/${patientId}` });
  return accounts.json.accounts[0].id as string;
}

export async function accountState(app: TestServer, id: string): Promise<any> {
  const res = await app.request({ method: 'GET', url: `/withings/accounts/${id}` });
  expect(res.statusCode).to.equal(200);
  return res.json;
}

/** Waits until the account's last run succeeded after `since` and no run holds it. */
export function synced(app: TestServer, id: string, since: number): Promise<any> {
  return until(`account ${id} synced`, async () => {
    const state = await accountState(app, id);
    return state.lastSuccess && Date.parse(state.lastSuccess) >= since && !state.syncing ? state : undefined;
  });
}

export async function observationsOf(app: TestServer, patientId: string): Promise<any[]> {
  const res = await app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${patientId}&_count=200` });
  expect(res.statusCode).to.equal(200);
  return (res.json.entry ?? []).map((e: any) => e.resource);
}

export async function flagsOf(app: TestServer, patientId: string): Promise<any[]> {
  const res = await app.request({ method: 'GET', url: `/fhir/Flag?subject=Patient/${patientId}&_count=200` });
  expect(res.statusCode).to.equal(200);
  return (res.json.entry ?? []).map((e: any) => e.resource);
}
