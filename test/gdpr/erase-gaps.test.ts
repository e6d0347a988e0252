import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { pseudonym } from '../../src/kernel/pseudonym';
import { subscriber, until } from '../helpers/hook';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const KEY = 'erase-gaps-suite-pseudonym-key-0123456789abcdef';
/** Long enough for a notification that was going to come to have come (retries every 100 ms and up, polls every second). */
const QUIET_MS = 1500;

/**
 * What a privacy probe found `$erase` left behind (decision 014, "Erasure gaps closed"): deleted
 * resources that named the patient by a versioned or absolute reference, data written for the
 * patient after erasure, Subscriptions still watching the patient.
 */
describe('Patient/$erase gaps', () => {
  let app: SecuredServer;
  let eraser: Record<string, string>;

  const observation = (reference: string) => ({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference }, effectiveDateTime: '2026-11-02T08:00:00Z',
    valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });
  const erase = (patient: string) => app.request({ method: 'POST', url: `/fhir/Patient/${patient}/$erase`, headers: eraser, payload: { resourceType: 'Parameters' } });
  const get = (url: string) => app.request({ method: 'GET', url, headers: app.system });
  const remove = async (url: string) => expect([200, 204]).to.include((await app.request({ method: 'DELETE', url, headers: app.system })).statusCode);

  before(async () => {
    app = await startSecuredServer({ PSEUDONYM_KEY: KEY, SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
    eraser = await app.as('system/Patient.d', { clientId: 'dpo-console' });
  });

  after(async () => {
    await app.stop();
  });

  it('erases deleted resources that referenced the patient by a versioned or absolute reference on this server, not on another', async () => {
    const patient = await app.create({ resourceType: 'Patient', name: [{ family: 'Versioned' }] });
    const versioned = await app.create(observation(`Patient/${patient}/_history/1`));
    const absolute = await app.create(observation(`${app.ctx.baseUrl}/Patient/${patient}/_history/1`));
    const elsewhere = await app.create(observation(`http://elsewhere.example/fhir/Patient/${patient}`));
    for (const obs of [versioned, absolute, elsewhere]) await remove(`/fhir/Observation/${obs}`);

    const res = await erase(patient);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.issue[0].diagnostics).to.include('Observation 2');
    for (const obs of [versioned, absolute]) expect((await get(`/fhir/Observation/${obs}/_history/1`)).statusCode, obs).to.equal(404);
    // Another server's Patient with the same id is someone else.
    expect((await get(`/fhir/Observation/${elsewhere}/_history/1`)).statusCode).to.equal(200);
  });

  it('turns off Subscriptions naming the erased patient, and erases what was written for the patient after erasure', async () => {
    const hook = await subscriber();
    try {
      const ehr = await app.as('system/Subscription.cruds system/Observation.rs', { clientId: 'ehr-backend' });
      const patient = await app.create({ resourceType: 'Patient', name: [{ family: 'Afterwards' }] });
      const other = await app.create({ resourceType: 'Patient', name: [{ family: 'Bystander' }] });
      const subscribe = async (criteria: string) => {
        const res = await app.request({
          method: 'POST', url: '/fhir/Subscription', headers: ehr,
          payload: { resourceType: 'Subscription', status: 'requested', reason: 'EHR inbound', criteria, channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } },
        });
        expect(res.statusCode, res.payload).to.equal(201);
        return res.json.id as string;
      };
      const watching = [await subscribe(`Observation?subject=Patient/${patient}`), await subscribe(`Observation?patient=${patient}`)];
      const bystander = await subscribe(`Observation?subject=Patient/${other}`);
      await app.create(observation(`Patient/${patient}`));
      await until('the notification before erasure', () => hook.received.length >= 2);

      expect((await erase(patient)).statusCode).to.equal(200);
      for (const sub of watching) {
        const res = await get(`/fhir/Subscription/${sub}`);
        expect(res.json.status, sub).to.equal('off');
        expect(res.json.error).to.not.include(patient);
      }
      expect((await get(`/fhir/Subscription/${bystander}`)).json.status).to.equal('active');

      // Written after erasure (the server does not refuse a dangling reference): delivered to no one…
      const received = hook.received.length;
      const late = await app.create(observation(`Patient/${patient}`));
      await new Promise((r) => setTimeout(r, QUIET_MS));
      expect(hook.received.length).to.equal(received);
      // …and a second erasure removes it, though the Patient is gone.
      const again = await erase(patient);
      expect(again.statusCode, again.payload).to.equal(200);
      expect(again.json.issue[0].diagnostics).to.include('Observation 1');
      expect((await get(`/fhir/Observation/${late}`)).statusCode).to.equal(404);
      expect((await erase(patient)).statusCode).to.equal(404);
      expect((await erase('never-stored-patient')).statusCode).to.equal(404);
    } finally {
      await hook.close();
    }
  });

  it('erases a patient watched by a Subscription the server would no longer accept, and turns it off', async () => {
    // Set up where e-mail alerts were allowed; the erasing node no longer allows the domain.
    const mailing = await startSecuredServer({ SMTP_URL: 'smtp://127.0.0.1:9', ALERT_EMAIL_DOMAINS: 'clinic.example' });
    try {
      const patient = await mailing.create({ resourceType: 'Patient', name: [{ family: 'Mailed' }] });
      const sub = await mailing.create({
        resourceType: 'Subscription', status: 'requested', reason: 'alerts by mail', criteria: `Flag?subject=Patient/${patient}`,
        channel: { type: 'email', endpoint: 'mailto:ward@clinic.example', payload: 'text/plain' },
      });
      const res = await erase(patient);
      expect(res.statusCode, res.payload).to.equal(200);
      expect((await get(`/fhir/Patient/${patient}`)).statusCode).to.equal(404);
      const turnedOff = await get(`/fhir/Subscription/${sub}`);
      expect(turnedOff.json.status).to.equal('off');
      // Turned on again, it is judged as any other: refused here.
      const on = await app.request({ method: 'PUT', url: `/fhir/Subscription/${sub}`, headers: app.system, payload: { ...turnedOff.json, status: 'requested' } });
      expect(on.statusCode, on.payload).to.equal(422);
      expect(on.json.resourceType).to.equal('OperationOutcome');
    } finally {
      await mailing.stop();
    }
  });

  it('checks the endpoint of a rest-hook Subscription turned on again, though it was stored off', async () => {
    const strict = await startSecuredServer();
    try {
      const sub = await strict.create({ resourceType: 'Subscription', status: 'off', reason: 'later', criteria: 'Flag?status=active', channel: { type: 'rest-hook', endpoint: 'http://10.0.0.1/hook', payload: 'application/fhir+json' } });
      const stored = (await strict.request({ method: 'GET', url: `/fhir/Subscription/${sub}`, headers: strict.system })).json;
      const on = await strict.request({ method: 'PUT', url: `/fhir/Subscription/${sub}`, headers: strict.system, payload: { ...stored, status: 'requested' } });
      expect(on.statusCode, on.payload).to.equal(422);
      expect(on.json.issue[0].expression).to.equal(['Subscription.channel.endpoint']);
    } finally {
      await strict.stop();
    }
  });

  it('gives $anonymize ids that cannot be linked to the erasure record of the same patient', async () => {
    const patient = await app.create({ resourceType: 'Patient', name: [{ family: 'Unlinkable' }], identifier: [{ system: 'urn:mrn', value: 'MRN-unlinkable' }] });
    const copy = await app.request({ method: 'GET', url: `/fhir/Patient/${patient}/$anonymize`, headers: app.system });
    expect(copy.statusCode, copy.payload).to.equal(200);
    const anonymised = (copy.json as fhir4.Bundle).entry!.map((e) => e.resource!).find((r) => r.resourceType === 'Patient') as fhir4.Patient;

    expect((await erase(patient)).statusCode).to.equal(200);
    await app.audit.flush();
    const auditor = await app.as('system/AuditEvent.rs');
    const res = await app.request({ method: 'GET', url: `/fhir/AuditEvent?entity=urn:rpm-fhir-server:erased-patient|${pseudonym(KEY, `Patient/${patient}`)}`, headers: auditor });
    const records = ((res.json as fhir4.Bundle).entry ?? []).map((e) => JSON.stringify(e.resource));
    expect(records).to.have.length(1);
    expect(records[0]).to.not.include(anonymised.id!);
    expect(records[0]).to.not.include(anonymised.identifier![0]!.value!.slice(0, 16));
  });

  it('erases the Binaries whose securityContext is the patient, every version, and keeps those of another patient or server', async () => {
    const patient = await app.create({ resourceType: 'Patient', name: [{ family: 'Scanned' }] });
    const other = await app.create({ resourceType: 'Patient', name: [{ family: 'Untouched' }] });
    const binary = (reference: string) => ({ resourceType: 'Binary', contentType: 'text/plain', securityContext: { reference }, data: Buffer.from('discharge letter').toString('base64') });
    const live = await app.create(binary(`Patient/${patient}`));
    const updated = await app.request({ method: 'PUT', url: `/fhir/Binary/${live}`, headers: app.system, payload: { ...binary(`Patient/${patient}/_history/1`), id: live } });
    expect(updated.statusCode, updated.payload).to.equal(200);
    const deleted = await app.create(binary(`${app.ctx.baseUrl}/Patient/${patient}`));
    await remove(`/fhir/Binary/${deleted}`);
    const theirs = await app.create(binary(`Patient/${other}`));
    const elsewhere = await app.create(binary(`http://elsewhere.example/fhir/Patient/${patient}`));

    const res = await erase(patient);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.issue[0].diagnostics).to.include('Binary 2');
    for (const url of [`/fhir/Binary/${live}`, `/fhir/Binary/${live}/_history/1`, `/fhir/Binary/${deleted}/_history/1`]) expect((await get(url)).statusCode, url).to.equal(404);
    for (const kept of [theirs, elsewhere]) expect((await get(`/fhir/Binary/${kept}`)).statusCode, kept).to.equal(200);
  });
});
