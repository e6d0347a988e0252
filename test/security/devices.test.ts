import { createHash } from 'node:crypto';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { unique } from '../helpers/server';
import { type SecuredServer, startSecuredServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const MAC = 'urn:ietf:rfc:7042';

/** Issue 11, "device takeover": who may say which device is whose, and one identifier, one device. */
describe('device assignment is a clinical act, and an identifier names one device', () => {
  let app: SecuredServer;
  let alice: string;
  let bob: string;
  let cuff: string;
  let mac: string;
  let gateway: Record<string, string>;
  let bobApp: Record<string, string>;

  before(async () => {
    app = await startSecuredServer();
    alice = await app.create({ resourceType: 'Patient', name: [{ family: 'Alice' }] });
    bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Bob' }] });
    mac = unique('mac');
    cuff = await app.create({ resourceType: 'Device', identifier: [{ system: MAC, value: mac }], serialNumber: mac, manufacturer: 'Acme' });
    await app.create({ resourceType: 'DeviceUseStatement', status: 'active', subject: { reference: `Patient/${alice}` }, device: { reference: `Device/${cuff}` }, timingPeriod: { start: '2025-01-01T00:00:00Z' } });
    gateway = await app.as('system/Observation.c system/Device.rs system/DeviceUseStatement.rs system/Patient.r');
    // Bob's phone app after a standalone patient launch: create rights in his compartment.
    bobApp = await app.as('patient/*.cruds', { patient: bob, fhirUser: `Patient/${bob}` });
  });
  after(() => app.stop());

  const reading = (value: number, minute: number) => ({
    device: { identifier: { system: MAC, value: mac } },
    readings: [{ code: { system: 'http://loinc.org', code: '8867-4' }, value, unit: '/min', time: `2025-02-01T10:${String(minute).padStart(2, '0')}:00Z` }],
  });

  it('refuses a patient token that files a DeviceUseStatement for another patient\'s device', async () => {
    const res = await app.request({
      method: 'POST', url: '/fhir/DeviceUseStatement', headers: bobApp,
      payload: { resourceType: 'DeviceUseStatement', status: 'active', subject: { reference: `Patient/${bob}` }, device: { reference: `Device/${cuff}` }, timingPeriod: { start: '2025-02-01T00:00:00Z' } },
    });
    expect(res.statusCode).to.equal(403);
    expect(res.json.issue[0].diagnostics).to.contain('clinicians and systems');
  });

  it('refuses a second Device with the same identifier or serial number, whoever asks', async () => {
    // Bob's app cannot claim the cuff for himself: Device.patient is an assignment too.
    const claimed = await app.request({ method: 'POST', url: '/fhir/Device', headers: bobApp, payload: { resourceType: 'Device', identifier: [{ system: MAC, value: mac }], patient: { reference: `Patient/${bob}` } } });
    expect(claimed.statusCode).to.equal(403);
    // Nor can anyone make a second Device of it, by identifier or by serial number.
    const practitioner = await app.as('user/*.cruds', { fhirUser: 'Practitioner/dr-who' });
    const byIdentifier = await app.request({ method: 'POST', url: '/fhir/Device', headers: practitioner, payload: { resourceType: 'Device', identifier: [{ system: MAC, value: mac }] } });
    expect(byIdentifier.statusCode).to.equal(409);
    expect(byIdentifier.json.issue[0].diagnostics).to.contain(`already names Device/${cuff}`);
    const bySerial = await app.request({ method: 'POST', url: '/fhir/Device', headers: app.system, payload: { resourceType: 'Device', serialNumber: mac, manufacturer: 'Acme' } });
    expect(bySerial.statusCode).to.equal(409);
    // A clinician may assign (and reassign) devices.
    const other = await app.request({ method: 'POST', url: '/fhir/Device', headers: practitioner, payload: { resourceType: 'Device', identifier: [{ system: MAC, value: unique('mac') }], patient: { reference: `Patient/${bob}` } } });
    expect(other.statusCode).to.equal(201);
  });

  it("keeps filing the gateway's readings of the cuff under its patient after every attempt", async () => {
    const res = await app.request({ method: 'POST', url: '/ingest/readings', headers: gateway, payload: reading(71, 1) });
    expect(res.json.entry[0].response.status).to.equal('201 Created');
    const obs = await app.request({ method: 'GET', url: `/fhir/${res.json.entry[0].response.location.split('/_history')[0]}`, headers: app.system });
    expect(obs.json.subject.reference).to.equal(`Patient/${alice}`);
  });

  it("does not let a patient's app take another patient's readings, nor learn they exist: its readings have ids of their own", async () => {
    const idOf = (res: any) => res.json.entry[0].response.location.split('/')[1];
    const sent = await app.request({ method: 'POST', url: '/ingest/readings', headers: gateway, payload: reading(72, 2) });
    expect(sent.json.entry[0].response.status).to.equal('201 Created');
    // Bob's app claims the cuff's serial and that time for himself: stored as his own claim, with
    // the same answer whether or not the cuff reported then (minute 3: it did not).
    const replay = await app.request({ method: 'POST', url: '/ingest/readings', headers: bobApp, payload: { ...reading(72, 2), patient: { reference: `Patient/${bob}` } } });
    const unsent = await app.request({ method: 'POST', url: '/ingest/readings', headers: bobApp, payload: { ...reading(72, 3), patient: { reference: `Patient/${bob}` } } });
    expect([replay.json.entry[0].response.status, unsent.json.entry[0].response.status]).to.equal(['201 Created', '201 Created']);
    expect(idOf(replay)).to.not.equal(idOf(sent));
    expect(JSON.stringify(replay.json)).to.not.contain(idOf(sent));
    // Nor can it take the id of the cuff's next reading: the gateway's reading is still stored,
    // under Alice (the old ids were the same for both, and the gateway got 409: no reading, no Flag).
    const first = await app.request({ method: 'POST', url: '/ingest/readings', headers: bobApp, payload: { ...reading(150, 4), patient: { reference: `Patient/${bob}` } } });
    expect(first.json.entry[0].response.status).to.equal('201 Created');
    const real = await app.request({ method: 'POST', url: '/ingest/readings', headers: gateway, payload: reading(150, 4) });
    expect(real.json.entry[0].response.status).to.equal('201 Created');
    const stored = await app.request({ method: 'GET', url: `/fhir/Observation/${idOf(real)}`, headers: app.system });
    expect(stored.json.subject.reference).to.equal(`Patient/${alice}`);
    const claimed = await app.request({ method: 'GET', url: `/fhir/Observation/${idOf(first)}`, headers: bobApp });
    expect(claimed.json.subject.reference).to.equal(`Patient/${bob}`);
    expect(claimed.json.device).to.not.exist();
  });

  it('gives readings ids no client can compute, so none can be taken over REST before the device sends it', async () => {
    const time = '2025-02-01T10:05:00Z';
    // The unkeyed id the doors used to give: SHA-256 of device, code, time and reading id.
    const h = createHash('sha256').update(`${MAC}|${mac}\nhttp://loinc.org|8867-4\n${new Date(time).toISOString()}\n`).digest('hex');
    const guessed = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
    const squat = await app.request({
      method: 'PUT', url: `/fhir/Observation/${guessed}`, headers: bobApp,
      payload: { resourceType: 'Observation', id: guessed, status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${bob}` }, effectiveDateTime: time, valueQuantity: { value: 60, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } },
    });
    expect(squat.statusCode).to.equal(201);
    const real = await app.request({ method: 'POST', url: '/ingest/readings', headers: gateway, payload: reading(140, 5) });
    expect(real.json.entry[0].response.status).to.equal('201 Created');
    expect(real.json.entry[0].response.location).to.not.contain(guessed);
  });

  it("does not tell a patient's app whether another patient id exists: the same 403 for a known, a deleted and an unknown one", async () => {
    const gone = await app.create({ resourceType: 'Patient', name: [{ family: 'Gone' }] });
    expect((await app.request({ method: 'DELETE', url: `/fhir/Patient/${gone}`, headers: app.system })).statusCode).to.equal(204);
    // Bob's own phone, not a Device the server knows: the door files under the patient named.
    const phone = unique('phone');
    const answers = [];
    for (const other of [alice, gone, `${alice.slice(0, -4)}0000`]) {
      const res = await app.request({
        method: 'POST', url: '/ingest/readings', headers: bobApp,
        payload: { device: { identifier: { system: MAC, value: phone } }, patient: { reference: `Patient/${other}` }, readings: [{ code: { system: 'http://loinc.org', code: '8867-4' }, value: 70, unit: '/min', time: '2025-02-01T11:00:00Z' }] },
      });
      answers.push([res.statusCode, res.json.entry?.[0]?.response.status, res.json.entry?.[0]?.response.outcome?.issue?.[0]?.code]);
    }
    expect(answers[0]![1]).to.match(/^403/);
    expect(answers[1]).to.equal(answers[0]);
    expect(answers[2]).to.equal(answers[0]);
    // His own he files.
    const own = await app.request({
      method: 'POST', url: '/ingest/readings', headers: bobApp,
      payload: { device: { identifier: { system: MAC, value: phone } }, patient: { reference: `Patient/${bob}` }, readings: [{ code: { system: 'http://loinc.org', code: '8867-4' }, value: 70, unit: '/min', time: '2025-02-01T11:00:00Z' }] },
    });
    expect(own.json.entry[0].response.status).to.equal('201 Created');
    // A clinician's user/ token launched with Bob in context is not confined to him.
    const clinician = await app.as('user/Observation.c user/Patient.r user/Device.rs user/DeviceUseStatement.rs', { patient: bob, fhirUser: 'Practitioner/dr-launch' });
    const forAlice = await app.request({
      method: 'POST', url: '/ingest/readings', headers: clinician,
      payload: { device: { identifier: { system: MAC, value: phone } }, patient: { reference: `Patient/${alice}` }, readings: [{ code: { system: 'http://loinc.org', code: '8867-4' }, value: 71, unit: '/min', time: '2025-02-01T11:05:00Z' }] },
    });
    expect(forAlice.json.entry[0].response.status, JSON.stringify(forAlice.json.entry[0].response.outcome)).to.equal('201 Created');
  });
});
