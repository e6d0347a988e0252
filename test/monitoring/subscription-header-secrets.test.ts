import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { subscriber, until } from '../helpers/hook';
import { type SecuredServer, startSecuredServer } from '../security/helpers';
import { tableOf } from '../../src/store/tables';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const SECRET = 'EHR-WEBHOOK-SECRET-123';
const MASKED = /^Authorization: <hidden; fingerprint [0-9a-f]{16}>$/;

/** Decision 033: Subscription.channel.header values are write-only; only delivery sends them. */
describe('subscription headers are write-only secrets', () => {
  let app: SecuredServer;
  before(async () => {
    app = await startSecuredServer({ SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
  });
  after(() => app.stop());

  const reading = (patient: string, value: number) => ({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(), valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });

  it('no reader sees the secret, the webhook receives it, a masked re-PUT keeps it without a version, a new one is a version, a forged mask is 422', async () => {
    const hook = await subscriber();
    const ehr = await app.as('system/Subscription.cruds system/Observation.rs', { clientId: 'ehr-backend' });
    // Another client that reads every Subscription: the operator's backend service (decision 032;
    // other users no longer find another subscriber's at all).
    const clinician = await app.as('system/Subscription.rs', { clientId: 'ops-reader' });
    const patient = await app.create({ resourceType: 'Patient', name: [{ family: 'Secret' }] });
    const created = await app.request({
      method: 'POST', url: '/fhir/Subscription', headers: ehr,
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'EHR inbound', criteria: `Observation?patient=Patient/${patient}`, channel: { type: 'rest-hook', endpoint: hook.url, header: [`Authorization: Bearer ${SECRET}`, 'X-Trace: 1'] } },
    });
    expect(created.statusCode, created.payload).to.equal(201);
    const id = created.json.id as string;
    expect(created.payload).to.not.contain(SECRET);
    try {
      // Every read path serves the stored resource, which holds masks only.
      for (const url of [`/fhir/Subscription/${id}`, `/fhir/Subscription?_id=${id}`, `/fhir/Subscription/${id}/_history`, `/fhir/Subscription/${id}/_history/1`, '/fhir/Subscription/_history', '/fhir/Subscription']) {
        const res = await app.request({ method: 'GET', url, headers: clinician });
        expect(res.statusCode, url).to.equal(200);
        expect(res.payload, url).to.contain(id);
        expect(res.payload, url).to.not.contain(SECRET);
      }
      const read = (await app.request({ method: 'GET', url: `/fhir/Subscription/${id}`, headers: ehr })).json;
      expect(read.channel.header[0]).to.match(MASKED);
      expect(read.channel.header[1]).to.match(/^X-Trace: <hidden; fingerprint [0-9a-f]{16}>$/);

      await app.create(reading(patient, 70));
      await until('the first notification', () => hook.received.length >= 1);
      expect(hook.received[0]!.headers.authorization).to.equal(`Bearer ${SECRET}`);
      expect(hook.received[0]!.headers['x-trace']).to.equal('1');

      // Read-modify-write: the masked resource sent back changes nothing and keeps the secret.
      const again = await app.request({ method: 'PUT', url: `/fhir/Subscription/${id}`, headers: ehr, payload: read });
      expect(again.statusCode, again.payload).to.equal(200);
      expect(again.json.meta.versionId).to.equal('1');
      await app.create(reading(patient, 71));
      await until('the second notification', () => hook.received.length >= 2);
      expect(hook.received[1]!.headers.authorization).to.equal(`Bearer ${SECRET}`);

      // Rotating only the secret is a new version, and delivery sends the new one.
      const rotated = await app.request({ method: 'PUT', url: `/fhir/Subscription/${id}`, headers: ehr, payload: { ...read, channel: { ...read.channel, header: ['Authorization: Bearer ROTATED-456', read.channel.header[1]] } } });
      expect(rotated.statusCode, rotated.payload).to.equal(200);
      expect(rotated.json.meta.versionId).to.equal('2');
      expect(rotated.payload).to.not.contain('ROTATED-456');
      expect(rotated.json.channel.header[0]).to.match(MASKED);
      expect(rotated.json.channel.header[0]).to.not.equal(read.channel.header[0]);
      expect(rotated.json.channel.header[1]).to.equal(read.channel.header[1]);
      await app.create(reading(patient, 72));
      await until('the third notification', () => hook.received.length >= 3);
      expect(hook.received[2]!.headers.authorization).to.equal('Bearer ROTATED-456');
      expect(hook.received[2]!.headers['x-trace']).to.equal('1');
      const history = await app.request({ method: 'GET', url: `/fhir/Subscription/${id}/_history`, headers: clinician });
      expect(history.payload).to.not.contain('ROTATED-456');

      // A mask of no stored secret (forged, or the one rotated away) is refused, naming the line.
      for (const header of ['Authorization: <hidden; fingerprint 0123456789abcdef>', read.channel.header[0], 'Authorization: <hidden>']) {
        const forged = await app.request({ method: 'PUT', url: `/fhir/Subscription/${id}`, headers: ehr, payload: { ...read, channel: { ...read.channel, header: [header] } } });
        expect(forged.statusCode, header).to.equal(422);
        expect(forged.json.resourceType).to.equal('OperationOutcome');
        expect(forged.json.issue[0].expression).to.equal(['Subscription.channel.header[0]']);
      }
      // A removed line is gone from delivery too.
      const current = (await app.request({ method: 'GET', url: `/fhir/Subscription/${id}`, headers: ehr })).json;
      const fewer = await app.request({ method: 'PUT', url: `/fhir/Subscription/${id}`, headers: ehr, payload: { ...current, channel: { ...current.channel, header: [current.channel.header[0]] } } });
      expect(fewer.statusCode, fewer.payload).to.equal(200);
      expect(fewer.json.meta.versionId).to.equal('3');
      await app.create(reading(patient, 73));
      await until('the fourth notification', () => hook.received.length >= 4);
      expect(hook.received[3]!.headers.authorization).to.equal('Bearer ROTATED-456');
      expect(hook.received[3]!.headers['x-trace']).to.not.exist();
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: ehr });
      await hook.close();
    }
    // The secrets go with the Subscription.
    const left = await app.ctx.db.query('SELECT 1 FROM monitoring_subscription_header WHERE subscription_id = $1', [id]);
    expect(left.rows).to.have.length(0);
  });

  it('a Subscription stored before headers were secrets still delivers its plain values, and its next write masks them', async () => {
    const hook = await subscriber();
    const ehr = await app.as('system/Subscription.cruds system/Observation.rs', { clientId: 'ehr-backend' });
    const patient = await app.create({ resourceType: 'Patient', name: [{ family: 'Legacy' }] });
    const created = await app.request({
      method: 'POST', url: '/fhir/Subscription', headers: ehr,
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'legacy', criteria: `Observation?patient=Patient/${patient}`, channel: { type: 'rest-hook', endpoint: hook.url } },
    });
    expect(created.statusCode, created.payload).to.equal(201);
    const id = created.json.id as string;
    try {
      // As it was stored before migration 016: the value in the content, nothing beside it.
      await app.ctx.db.query(`UPDATE ${tableOf('Subscription')} SET content = jsonb_set(content, '{channel,header}', $2::jsonb) WHERE id = $1`, [id, JSON.stringify(['Authorization: Bearer OLD-789'])]);
      await app.create(reading(patient, 80));
      await until('the notification', () => hook.received.length >= 1);
      expect(hook.received[0]!.headers.authorization).to.equal('Bearer OLD-789');

      const read = (await app.request({ method: 'GET', url: `/fhir/Subscription/${id}`, headers: ehr })).json;
      const rewritten = await app.request({ method: 'PUT', url: `/fhir/Subscription/${id}`, headers: ehr, payload: read });
      expect(rewritten.statusCode, rewritten.payload).to.equal(200);
      expect(rewritten.json.meta.versionId).to.equal('2');
      expect(rewritten.json.channel.header[0]).to.match(MASKED);
      await app.create(reading(patient, 81));
      await until('the second notification', () => hook.received.length >= 2);
      expect(hook.received[1]!.headers.authorization).to.equal('Bearer OLD-789');
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: ehr });
      await hook.close();
    }
  });

  it('a mask copied from another Subscription matches nothing', async () => {
    const ehr = await app.as('system/Subscription.cruds system/Observation.rs', { clientId: 'ehr-backend' });
    const payload = (header: string) => ({ resourceType: 'Subscription', status: 'requested', reason: 'copy', criteria: 'Observation?code=8867-4', channel: { type: 'rest-hook', endpoint: 'https://example.org/hook', header: [header] } });
    const first = await app.request({ method: 'POST', url: '/fhir/Subscription', headers: ehr, payload: payload(`Authorization: Bearer ${SECRET}`) });
    expect(first.statusCode, first.payload).to.equal(201);
    try {
      const copy = await app.request({ method: 'POST', url: '/fhir/Subscription', headers: ehr, payload: payload(first.json.channel.header[0]) });
      expect(copy.statusCode, copy.payload).to.equal(422);
      expect(copy.json.issue[0].expression).to.equal(['Subscription.channel.header[0]']);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${first.json.id}`, headers: ehr });
    }
  });
});
