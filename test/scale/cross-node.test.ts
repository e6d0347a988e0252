import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { runAudit } from '../../scripts/audit';
import { migrateAll } from '../../src/schema';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { TOKEN_CACHE_MS } from '../../src/auth/token-cache';
import { assertion, backendToken, postForm, REGISTRATION_TOKEN, startAuthServer } from '../auth/helpers';
import { actor, consent, observation, VITAL_SIGNS } from '../helpers/consent';
import { subscriber, until } from '../helpers/hook';
import { planWithHighSystolic, systolic } from '../helpers/monitoring-plan';
import { request, TIMEZONE } from '../medication/helpers';
import { onPostgres } from '../helpers/pass';
import { freePort } from '../helpers/port';
import { killStarted, type ServerProcess, startProcess } from '../helpers/process';
import { testDatabaseUrl, testDb, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Decision 019: what one node writes, another node judges, notifies, authorises and forgets by.
 * Node A is a server in this process, node B a server process (`dist/src/main.js`), both on one
 * PostgreSQL schema: the module-level caches (Consents, Subscriptions) of A and B are apart, as
 * on two machines. Revocations, Consents and Subscriptions written on one node reach the other's
 * caches at the writer's commit (NOTIFY); the caches' own bounds (1 s, 2 s) hold only when a
 * node's listening connection is down.
 */
/** The bound of src/access/consent.ts (a module constant there). */
const CONSENT_CACHE_MS = 1000;
/**
 * A revocation, Consent or erasure on A reaches B's caches at A's commit (NOTIFY,
 * src/auth/cache-notices.ts): refused by B's first requests, not after the caches' second.
 * Measured against the caches alone: 561–655 ms, as B had just verified the token.
 */
const AT_ONCE_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(onPostgres ? 'two nodes on one database' : 'two nodes on one database — declared for PostgreSQL only: PGlite is an embedded database inside one process, two nodes cannot share it (run with DATABASE_URL=postgres://…)', { skip: !onPostgres }, () => {
  let a: TestServer & { base: string; origin: string; tokenUrl: string };
  let b: ServerProcess;
  let system: Record<string, string>;
  let hook: Awaited<ReturnType<typeof subscriber>>;
  // Both nodes run the reminder job every 200 ms, reminding 10 minutes ahead.
  const env = { ALLOW_CLOCK_OVERRIDE: 'true', MEDICATION_REMINDER_INTERVAL: '200ms', MEDICATION_REMINDER_LEAD: '10m', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true', SUBSCRIPTION_RETRY_BASE: '100ms', REGISTRATION_TOKEN, TOKEN_FAILURES_PER_CLIENT: '100000', TOKEN_REQUESTS_PER_ADDRESS: '100000' };

  /** A request to node A (in process) or B (its port), with the system token unless `headers` say otherwise. */
  const on = async (node: 'A' | 'B', method: string, path: string, body?: unknown, headers: Record<string, string> = system): Promise<{ status: number; json: any }> => {
    const base = node === 'A' ? a.base : b.base;
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/fhir+json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };
  const create = async (node: 'A' | 'B', resource: object): Promise<any> => {
    const type = (resource as { resourceType: string }).resourceType;
    const res = await on(node, 'POST', `/${type}`, resource);
    if (res.status !== 201) throw new Error(`POST ${type} on ${node}: ${res.status} ${JSON.stringify(res.json)}`);
    return res.json;
  };
  /** Polls `refused` every 20 ms for up to three times `bound`; how many ms after the start it first held (-1: never). */
  const refusedWithin = async (what: string, bound: number, refused: () => Promise<boolean>): Promise<number> => {
    const at = Date.now();
    while (Date.now() - at < bound * 3) {
      if (await refused()) {
        const after = Date.now() - at;
        console.log(`\n  ${what} reached B after ${after} ms (the cache alone: ${bound} ms)`);
        return after;
      }
      await sleep(20);
    }
    return -1;
  };
  const activeFlags = async (patient: string) => (await on('A', 'GET', `/Flag?subject=Patient/${patient}&status=active`)).json.entry ?? [];

  before({ timeout: 240_000 }, async () => {
    await migrateAll(await testDb());
    a = await startAuthServer(env);
    // Same issuer and audience as A: a token either node issued is any node's token.
    b = await startProcess({ ...env, DATABASE_URL: await testDatabaseUrl(), AUTH_DISABLED: 'false', BASE_URL: a.origin, LOG_LEVEL: 'warn', PORT: String(await freePort()) });
    system = { authorization: `Bearer ${(await backendToken(a, 'system/*.cruds')).token}` };
    hook = await subscriber();
  });

  after(async () => {
    await killStarted();
    await a?.stop();
    await hook?.close();
  });

  it('the limits of a plan changed, or the plan completed, on A: the next reading on B is judged by the new limits, or not at all', { timeout: 60_000 }, async () => {
    const patient = (await create('A', { resourceType: 'Patient', name: [{ family: unique('plan') }] })).id;
    const plan = await create('A', planWithHighSystolic(patient));
    // B judges a reading by 140 and keeps the plan in its cache.
    await create('B', systolic(patient, 150));
    expect(await activeFlags(patient)).to.have.length(1);
    // A raises the limit to 160 and closes the Flag: 150 on B is no breach any more.
    plan.contained[0].target[0].detailRange.high.value = 160;
    expect((await on('A', 'PUT', `/CarePlan/${plan.id}`, plan)).status).to.equal(200);
    const [first] = await activeFlags(patient);
    expect((await on('A', 'PUT', `/Flag/${first.resource.id}`, { ...first.resource, status: 'inactive' })).status).to.equal(200);
    const judged = await create('B', systolic(patient, 150));
    expect(judged.component[0].interpretation?.[0]?.coding?.[0]?.code ?? 'N').to.equal('N');
    expect(await activeFlags(patient)).to.have.length(0);
    // 170 still breaches 160, on B.
    await create('B', systolic(patient, 170));
    expect(await activeFlags(patient)).to.have.length(1);
    const flag = (await activeFlags(patient))[0].resource;
    expect((await on('A', 'PUT', `/Flag/${flag.id}`, { ...flag, status: 'inactive' })).status).to.equal(200);
    // A completes the plan: B judges nothing by it.
    expect((await on('A', 'PUT', `/CarePlan/${plan.id}`, { ...plan, status: 'completed' })).status).to.equal(200);
    const unjudged = await create('B', systolic(patient, 200));
    expect(unjudged.component[0].interpretation).to.not.exist();
    expect(await activeFlags(patient)).to.have.length(0);
  });

  it('a stored Goal edited on A: the next reading on B is judged by its new limit', { timeout: 60_000 }, async () => {
    const patient = (await create('A', { resourceType: 'Patient', name: [{ family: unique('goal') }] })).id;
    const { contained, ...plan } = planWithHighSystolic(patient) as { contained: any[] } & Record<string, unknown>;
    const goal = await create('A', { ...contained[0], id: undefined });
    await create('A', { ...plan, goal: [{ reference: `Goal/${goal.id}` }] });
    await create('B', systolic(patient, 150));
    const [flag] = await activeFlags(patient);
    expect(flag).to.exist();
    expect((await on('A', 'PUT', `/Flag/${flag.resource.id}`, { ...flag.resource, status: 'inactive' })).status).to.equal(200);
    goal.target[0].detailRange.high.value = 160;
    expect((await on('A', 'PUT', `/Goal/${goal.id}`, goal)).status).to.equal(200);
    const judged = await create('B', systolic(patient, 150));
    expect(judged.component[0].interpretation?.[0]?.coding?.[0]?.code ?? 'N').to.equal('N');
    expect(await activeFlags(patient)).to.have.length(0);
  });

  it('a Subscription made on A notifies of a write on B exactly once, and once turned off on A, at once not at all', { timeout: 60_000 }, async () => {
    const patient = (await create('A', { resourceType: 'Patient', name: [{ family: unique('sub') }] })).id;
    await create('A', planWithHighSystolic(patient));
    // B's Subscription cache is filled before the Subscription exists.
    await create('B', systolic(patient, 120));
    const marker = unique('hook');
    const subscription = await create('A', {
      resourceType: 'Subscription', status: 'requested', reason: marker, criteria: `Flag?subject=Patient/${patient}`,
      channel: { type: 'rest-hook', endpoint: `${hook.url}?${marker}`, payload: 'application/fhir+json' },
    });
    await until('the Subscription active', async () => (await on('A', 'GET', `/Subscription/${subscription.id}`)).json.status === 'active');
    // No wait for B's cache: A's commit told B to forget it (NOTIFY), so B's next write matches
    // the new Subscription at once.
    const mine = () => hook.received.filter((r) => r.url.includes(marker) && r.body.length > 0 && r.body.includes('"Flag"'));
    await create('B', systolic(patient, 171));
    await until('the notification', () => mine().length > 0);
    await sleep(1500); // a second delivery (by the other node's worker) would arrive by now
    expect(mine()).to.have.length(1);
    const sub = (await on('A', 'GET', `/Subscription/${subscription.id}`)).json;
    expect((await on('A', 'PUT', `/Subscription/${sub.id}`, { ...sub, status: 'off' })).status).to.equal(200);
    // At once: B forgot its cache at A's commit; and had B queued the notification (its listening
    // connection down, the cache up to 2 s old), the sender reads the Subscription again and drops it.
    await create('B', systolic(patient, 185));
    await sleep(1500);
    expect(mine()).to.have.length(1);
  });

  it(`a token revoked on A (RFC 7009) is refused by B at once, not after its cache's ${TOKEN_CACHE_MS} ms`, { timeout: 30_000 }, async () => {
    const { token, clientId, key } = await backendToken(a, 'system/*.rs');
    const bearer = { authorization: `Bearer ${token}` };
    expect((await on('B', 'GET', '/Patient?_count=1', undefined, bearer)).status).to.equal(200);
    const revoked = await postForm(`${a.origin}/auth/revoke`, {
      token, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(key, clientId, a.tokenUrl),
    });
    expect(revoked.status).to.equal(200);
    const refusedAfter = await refusedWithin('a revocation on A', TOKEN_CACHE_MS, async () => (await on('B', 'GET', '/Patient?_count=1', undefined, bearer)).status === 401);
    expect(refusedAfter).to.be.within(0, AT_ONCE_MS);
  });

  it(`a Consent deny written on A is enforced on B at once, not after its cache's ${CONSENT_CACHE_MS} ms`, { timeout: 30_000 }, async () => {
    const patient = (await create('A', { resourceType: 'Patient', name: [{ family: unique('consent') }] })).id;
    const dr = (await create('A', { resourceType: 'Practitioner', name: [{ family: 'X' }] })).id;
    const reading = (await create('A', observation(patient, '8867-4', 'vital-signs'))).id;
    const state = (a.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
    const doctor = { authorization: `Bearer ${(await issueAccessToken(state, { clientId: 'cross-node', scopes: ['user/*.rs'], fhirUser: `Practitioner/${dr}` })).accessToken}` };
    expect((await on('B', 'GET', `/Observation/${reading}`, undefined, doctor)).status).to.equal(200);
    await create('A', consent(patient, { type: 'deny', actor: [actor(`Practitioner/${dr}`)], class: [VITAL_SIGNS] }));
    const refusedAfter = await refusedWithin('a Consent deny on A', CONSENT_CACHE_MS, async () => (await on('B', 'GET', `/Observation/${reading}`, undefined, doctor)).status === 404);
    expect(refusedAfter).to.be.within(0, AT_ONCE_MS);
  });

  it('a patient erased on A: B serves none of their data and judges no reading by their erased plan', { timeout: 60_000 }, async () => {
    const patient = (await create('A', { resourceType: 'Patient', name: [{ family: unique('erase') }] })).id;
    await create('A', planWithHighSystolic(patient));
    const reading = await create('B', systolic(patient, 171)); // B caches the plan and a token's verification
    const { token } = await backendToken(a, 'system/*.cruds');
    const bearer = { authorization: `Bearer ${token}` };
    expect((await on('B', 'GET', `/Observation/${reading.id}`, undefined, bearer)).status).to.equal(200);
    const eraser = { authorization: `Bearer ${(await backendToken(a, 'system/Patient.d')).token}` };
    // The patient's own token, verified (and cached) by B just before the erasure.
    const state = (a.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
    const own = { authorization: `Bearer ${(await issueAccessToken(state, { clientId: 'cross-node', scopes: ['patient/*.rs'], patient })).accessToken}` };
    expect((await on('B', 'GET', `/Observation/${reading.id}`, undefined, own)).status).to.equal(200);
    const erased = await on('A', 'POST', `/Patient/${patient}/$erase`, { resourceType: 'Parameters' }, eraser);
    expect(erased.status, JSON.stringify(erased.json)).to.equal(200);
    const ownRefused = await refusedWithin('the erased patient\'s token revocation', TOKEN_CACHE_MS, async () => (await on('B', 'GET', `/Observation?_count=1`, undefined, own)).status === 401);
    expect(ownRefused).to.be.within(0, AT_ONCE_MS);
    for (const path of [`/Observation/${reading.id}`, `/Patient/${patient}`]) expect((await on('B', 'GET', path, undefined, bearer)).status, path).to.be.within(404, 410);
    expect((await on('B', 'GET', `/Observation?subject=Patient/${patient}`, undefined, bearer)).json.entry ?? []).to.equal([]);
    expect((await on('B', 'GET', `/Flag?subject=Patient/${patient}`, undefined, bearer)).json.entry ?? []).to.equal([]);
    // A reading for the erased patient, on B whose plan cache knew them: not judged by the erased plan.
    const late = await on('B', 'POST', '/Observation', systolic(patient, 200), bearer);
    if (late.status === 201) {
      expect(late.json.component[0].interpretation).to.not.exist();
      expect((await on('B', 'GET', `/Flag?subject=Patient/${patient}`, undefined, bearer)).json.entry ?? []).to.equal([]);
    } else expect(late.status).to.be.within(400, 499);
  });

  it('a medication reminder is sent once when both nodes run the reminder job', { timeout: 60_000 }, async () => {
    const patient = (await create('A', { resourceType: 'Patient', name: [{ family: unique('dose') }], extension: [{ url: TIMEZONE, valueCode: 'UTC' }] })).id;
    const marker = unique('reminder');
    await create('A', {
      resourceType: 'Subscription', status: 'requested', reason: marker, criteria: `Communication?category=reminder&patient=Patient/${patient}`,
      channel: { type: 'rest-hook', endpoint: `${hook.url}?${marker}`, payload: 'application/fhir+json' },
    });
    const dueAt = new Date(Math.ceil((Date.now() + 5 * 60_000) / 60_000) * 60_000);
    await create('B', request(patient, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: [dueAt.toISOString().slice(11, 19)] } }));
    const mine = () => hook.received.filter((r) => r.url.includes(marker) && r.body.includes('"Communication"'));
    await until('the reminder', () => mine().length > 0);
    await sleep(2000); // ten job runs of each node later
    expect(mine()).to.have.length(1);
    expect((await on('B', 'GET', `/Communication?patient=Patient/${patient}`)).json.entry).to.have.length(1);
  });

  it('a missed dose judged by both nodes at once raises one Flag, counted once', { timeout: 60_000 }, async () => {
    const patient = (await create('A', { resourceType: 'Patient', name: [{ family: unique('missed') }], extension: [{ url: TIMEZONE, valueCode: 'UTC' }] })).id;
    const start = new Date(Date.now() + 3 * 86_400_000).toISOString().slice(0, 10);
    const rx = (await create('A', request(patient, { repeat: { frequency: 2, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00', '20:00:00'], boundsPeriod: { start } } }))).id;
    const now = new Date(Date.parse(`${start}T10:00:00Z`) + 86_400_000).toISOString();
    const checks = Array.from({ length: 6 }, (_, i) =>
      on(i % 2 ? 'A' : 'B', 'POST', `/MedicationRequest/${rx}/$check-adherence`, { resourceType: 'Parameters', parameter: [{ name: 'now', valueDateTime: now }] }));
    for (const res of await Promise.all(checks)) expect(res.status, JSON.stringify(res.json)).to.equal(200);
    const flags = (await on('B', 'GET', `/Flag?patient=Patient/${patient}`)).json.entry ?? [];
    expect(flags).to.have.length(1);
    // Three doses missed by day 2, 10:00 (08:00 and 20:00 of day 1, 08:00 of day 2), each counted once.
    expect(flags[0].resource.extension.find((e: any) => e.url.endsWith('flag-event-count')).valueInteger).to.equal(3);
  });

  it('a missed measurement judged by both nodes at once raises one Flag, each window counted once', { timeout: 60_000 }, async () => {
    const patient = (await create('A', { resourceType: 'Patient', name: [{ family: unique('measure') }] })).id;
    const start = Date.now() - 3_600_000;
    const weight = { coding: [{ system: 'http://loinc.org', code: '29463-7' }] };
    const plan = await create('A', {
      ...planWithHighSystolic(patient), period: { start: new Date(start).toISOString() },
      activity: [{ detail: { status: 'in-progress', code: weight, scheduledTiming: { repeat: { frequency: 1, period: 1, periodUnit: 'd' } } } }],
    });
    const now = new Date(start + 49 * 3_600_000).toISOString();
    const checks = Array.from({ length: 6 }, (_, i) =>
      on(i % 2 ? 'A' : 'B', 'POST', `/CarePlan/${plan.id}/$check-adherence`, { resourceType: 'Parameters', parameter: [{ name: 'now', valueDateTime: now }] }));
    for (const res of await Promise.all(checks)) expect(res.status, JSON.stringify(res.json)).to.equal(200);
    const flags = (await on('B', 'GET', `/Flag?patient=Patient/${patient}`)).json.entry ?? [];
    expect(flags).to.have.length(1);
    // Two daily windows ended without a weight, each counted once.
    expect(flags[0].resource.extension.find((e: any) => e.url.endsWith('flag-event-count')).valueInteger).to.equal(2);
  });

  it('the audit chain stays one valid chain when both nodes write at once', { timeout: 120_000 }, async () => {
    const writes = [];
    for (let i = 0; i < 20; i++) writes.push(create(i % 2 ? 'A' : 'B', { resourceType: 'Patient', name: [{ family: unique(`chain${i}`) }] }));
    await Promise.all(writes);
    await a.audit.flush();
    let out = '';
    const code = await runAudit(await testDb(), ['verify'], (t) => (out += t));
    expect(code, out).to.equal(0);
  });
});
