import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { subscriber, until } from '../helpers/hook';
import { startTestServer } from '../helpers/server';
import { type SecuredServer, startSecuredServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';

/** Issue 11: Subscriptions notify under their subscriber's rights, and call only addresses the server may call. */
describe('subscriptions under the subscriber\'s grant', () => {
  let app: SecuredServer;
  let alice: string;
  let bob: string;
  before(async () => {
    app = await startSecuredServer({ SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
    alice = await app.create({ resourceType: 'Patient', name: [{ family: 'Alice' }] });
    bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Bob' }] });
  });
  after(() => app.stop());

  const subscription = (endpoint: string, criteria: string, payload: string | undefined = 'application/fhir+json') => ({
    resourceType: 'Subscription', status: 'requested', reason: 'security suite', criteria,
    channel: { type: 'rest-hook', endpoint, ...(payload ? { payload } : {}) },
  });
  const heartRate = (patient: string, value: number) => ({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '8867-4' }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(), valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });

  it('refuses a subscription whose criteria its writer may not search (Subscription rights alone read nothing)', async () => {
    const hook = await subscriber();
    try {
      const onlySubscriptions = await app.as('system/Subscription.cruds');
      const res = await app.request({ method: 'POST', url: '/fhir/Subscription', headers: onlySubscriptions, payload: subscription(hook.url, 'Observation?code=8867-4') });
      expect(res.statusCode).to.equal(403);
    } finally {
      await hook.close();
    }
  });

  it("notifies a subscriber confined to one patient of that patient's resources only", async () => {
    const hook = await subscriber();
    // A clinician's app launched for Alice: Subscriptions are in no patient's compartment.
    const aliceApp = await app.as('user/Subscription.cruds patient/Observation.rs', { patient: alice, fhirUser: 'Practitioner/dr-who' });
    const sub = await app.request({ method: 'POST', url: '/fhir/Subscription', headers: aliceApp, payload: subscription(hook.url, 'Observation?code=8867-4') });
    expect(sub.statusCode, sub.payload).to.equal(201);
    try {
      await app.create(heartRate(bob, 91));
      const mine = await app.create(heartRate(alice, 72));
      await until('the notification', () => hook.received.length >= 1);
      await new Promise((r) => setTimeout(r, 400));
      expect(hook.received.map((r) => JSON.parse(r.body).id)).to.equal([mine]);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.json.id}`, headers: app.system });
      await hook.close();
    }
  });

  it('a granular scope limits what its subscriber is notified of, whether the criteria are judged in memory or by a search', async () => {
    const hook = await subscriber();
    const VITALS = 'http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';
    const vitalsOnly = await app.as(`system/Subscription.cruds system/Observation.rs?category=${VITALS}`);
    const reading = (patient: string, category: string, value: number) => ({
      ...heartRate(patient, value),
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
    });
    const subs: string[] = [];
    try {
      // Plain criteria (judged in memory), and criteria with a date (judged by a search).
      for (const [name, criteria] of [['plain', `Observation?subject=Patient/${bob}`], ['dated', `Observation?subject=Patient/${bob}&date=ge2020-01-01`]] as const) {
        const sub = await app.request({ method: 'POST', url: '/fhir/Subscription', headers: vitalsOnly, payload: { ...subscription(hook.url, criteria), channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json', header: [`X-Sub: ${name}`] } } });
        expect(sub.statusCode, sub.payload).to.equal(201);
        subs.push(sub.json.id);
      }
      const lab = await app.create(reading(bob, 'laboratory', 60));
      const vital = await app.create(reading(bob, 'vital-signs', 61));
      await until('both subscribers told of the vital sign', () => hook.received.length >= 2);
      await new Promise((r) => setTimeout(r, 400));
      expect(hook.received.map((r) => [r.headers['x-sub'], JSON.parse(r.body).id]).sort()).to.equal([['dated', vital], ['plain', vital]]);
      expect(hook.received.some((r) => r.body.includes(lab))).to.be.false();
    } finally {
      for (const id of subs) await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: app.system });
      await hook.close();
    }
  });

  it('sends no resource to a subscriber that may search but not read it, and no version per failed attempt', async () => {
    let failing = true;
    const hook = await subscriber(() => (failing ? 503 : 200));
    const searchOnly = await app.as('system/Subscription.cruds system/Observation.s');
    const sub = await app.request({ method: 'POST', url: '/fhir/Subscription', headers: searchOnly, payload: subscription(hook.url, `Observation?subject=Patient/${bob}`) });
    expect(sub.statusCode, sub.payload).to.equal(201);
    try {
      for (const v of [80, 81, 82]) await app.create(heartRate(bob, v));
      await until('three failed attempts', () => hook.attempts >= 4);
      const versions = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.json.id}/_history`, headers: app.system })).json;
      // requested→active on create, then active→error once: two versions, however many attempts failed.
      expect(versions.entry.map((e: any) => e.resource?.status)).to.equal(['error', 'active']);
      failing = false;
      await until('all three delivered', () => hook.received.length >= 3);
      expect(hook.received.every((r) => r.body === '')).to.be.true();
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.json.id}`, headers: app.system });
      await hook.close();
    }
  });
});

describe('subscription endpoints', () => {
  it('refuses loopback, private, link-local and credentialed endpoints, and http when https is required', async () => {
    const app = await startSecuredServer({ SUBSCRIPTION_REQUIRE_HTTPS: 'true' });
    try {
      for (const endpoint of [
        'https://127.0.0.1/hook', 'https://localhost:8443/hook', 'https://10.1.2.3/hook', 'https://192.168.0.9/hook', 'https://172.20.0.1/hook',
        'https://169.254.169.254/latest/meta-data', 'https://[::1]/hook', 'https://[fe80::1]/hook', 'https://[::ffff:127.0.0.1]/hook', 'https://0.0.0.0/hook',
        'http://example.org/hook', 'https://user:pass@example.org/hook',
      ]) {
        const res = await app.request({
          method: 'POST', url: '/fhir/Subscription', headers: app.system,
          payload: { resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Flag?status=active', channel: { type: 'rest-hook', endpoint } },
        });
        expect(res.statusCode, endpoint).to.equal(422);
        expect(res.json.issue[0].expression).to.equal(['Subscription.channel.endpoint']);
      }
    } finally {
      await app.stop();
    }
  });

  it('never connects to a private address at delivery time, whatever the Subscription says', async () => {
    const hook = await subscriber();
    // Written while private networks were allowed (or by DNS that answered otherwise then)…
    const permissive = await startTestServer({ SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true', SUBSCRIPTION_RETRY_BASE: '100ms' });
    const port = new URL(hook.url).port;
    const subs: string[] = [];
    for (const endpoint of [hook.url, `http://localhost:${port}/notify`]) {
      const res = await permissive.request({ method: 'POST', url: '/fhir/Subscription', payload: { resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Flag?status=active', channel: { type: 'rest-hook', endpoint } } });
      expect(res.statusCode).to.equal(201);
      subs.push(res.json.id);
    }
    await permissive.stop();
    // …a server that does not allow them delivers nothing there.
    const strict = await startTestServer({ SUBSCRIPTION_RETRY_BASE: '100ms' });
    try {
      await strict.request({ method: 'POST', url: '/fhir/Flag', payload: { resourceType: 'Flag', status: 'active', code: { text: 'x' }, subject: { reference: 'Patient/x' } } });
      await until('both failures recorded', async () => {
        const statuses = await Promise.all(subs.map(async (id) => (await strict.request({ method: 'GET', url: `/fhir/Subscription/${id}` })).json));
        return statuses.every((s) => s.status === 'error') ? statuses : undefined;
      });
      expect(hook.attempts).to.equal(0);
    } finally {
      for (const id of subs) await strict.request({ method: 'DELETE', url: `/fhir/Subscription/${id}` });
      await strict.stop();
      await hook.close();
    }
  });
});
