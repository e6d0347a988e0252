import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';

/** What the doors refuse or tell apart that a probe found them accepting. */
describe('device ingest refusals', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const newPatient = async () => (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: unique('p') }] } })).json.id as string;
  const status = (bundle: any) => bundle.entry.map((e: any) => Number(e.response.status.split(' ')[0]));
  const diagnostics = (bundle: any, i: number) => bundle.entry[i].response.outcome?.issue[0].diagnostics ?? '';
  /** The Bluetooth door, for `patient`, from a new device. */
  const postBle = (patient: string, readings: object[]) =>
    app.request({
      method: 'POST', url: '/ingest/ble',
      payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: unique('mac') }, create: true }, patient: { reference: `Patient/${patient}` }, readings },
    });
  /** The generic readings door, for `patient`, from a new device unless `serial` names one. */
  const postReadings = (patient: string, readings: object[], options: { serial?: string; server?: TestServer } = {}) =>
    (options.server ?? app).request({
      method: 'POST', url: '/ingest/readings',
      payload: { device: { identifier: { system: 'urn:test:serial', value: options.serial ?? unique('sn') }, create: true }, patient: { reference: `Patient/${patient}` }, readings },
    });

  it('refuses a decimal exponent beyond ±30 per entry, at once, without building its digits', async () => {
    const pid = await newPatient();
    const withings = await app.request({
      method: 'POST',
      url: `/ingest/withings?patient=Patient/${pid}`,
      payload: { status: 0, body: { measuregrps: [{ grpid: unique('g'), date: 1735800000, category: 1, measures: [{ value: 1, type: 1, unit: 600000000 }, { value: 1, type: 1, unit: -100000000 }, { value: 72, type: 11, unit: 0 }] }] } },
    });
    expect(withings.statusCode).to.equal(200);
    expect(status(withings.json)).to.equal([400, 400, 201]);
    expect(diagnostics(withings.json, 0)).to.contain('unit 600000000');
    const readings = await postReadings(pid, [
      { code: { system: LOINC, code: '8867-4' }, value: '1e600000000', unit: '/min', time: '2026-01-02T08:00:00Z' },
      { code: { system: LOINC, code: '8867-4' }, value: '1e-100000000', unit: '/min', time: '2026-01-02T08:01:00Z' },
      { code: { system: LOINC, code: '8867-4' }, value: '0.72e2', unit: '/min', time: '2026-01-02T08:02:00Z' },
    ]);
    expect(readings.statusCode).to.equal(200);
    expect(status(readings.json)).to.equal([400, 400, 201]);
    expect(diagnostics(readings.json, 0)).to.contain('exponent');
  });

  it('refuses a reading time whose zone is beyond ±14:00 as the reading\'s own error (R4 dateTime)', async () => {
    const pid = await newPatient();
    const res = await postReadings(pid, [
      { code: { system: LOINC, code: '8867-4' }, value: 70, unit: '/min', time: '2026-01-02T08:00:00+14:30' },
      { code: { system: LOINC, code: '8867-4' }, value: 71, unit: '/min', time: '2026-01-02T08:00:00+14:00' },
    ]);
    expect(status(res.json)).to.equal([400, 201]);
    expect(diagnostics(res.json, 0)).to.contain('is not a FHIR dateTime with a time zone');
  });

  it('answers a re-sent reading 200 only when it is the same reading, and 409 when another is stored under its identity', async () => {
    const a = await newPatient();
    const b = await newPatient();
    const serial = unique('sn');
    const send = (patient: string, readings: object[]) => postReadings(patient, readings, { serial });
    const hr = (value: number, time = '2026-01-02T08:00:00Z') => ({ code: { system: LOINC, code: '8867-4' }, value, unit: '/min', time });
    // Two values for one device, code and time in one payload: the second is not lost silently.
    const first = await send(a, [hr(72), hr(140), hr(72)]);
    expect(status(first.json)).to.equal([201, 409, 200]);
    expect(diagnostics(first.json, 1)).to.contain('a different reading is stored for device');
    expect(diagnostics(first.json, 1)).to.contain('8867-4');
    expect(first.json.entry[2].response.location).to.equal(first.json.entry[0].response.location);
    // The same reading again: 200 with the stored one; another value, or another patient: 409.
    const again = await send(a, [hr(72), hr(72.0 + 1)]);
    expect(status(again.json)).to.equal([200, 409]);
    const otherPatient = await send(b, [hr(72)]);
    expect(status(otherPatient.json)).to.equal([409]);
    const stored = (await app.request({ method: 'GET', url: `/fhir/${first.json.entry[0].response.location.split('/_history')[0]}` })).json;
    expect(stored.subject.reference).to.equal(`Patient/${a}`);
    expect(stored.valueQuantity.value).to.equal(72);
    // A reading whose Observation was deleted is not created again behind the deletion.
    await app.request({ method: 'DELETE', url: `/fhir/Observation/${stored.id}` });
    const afterDelete = await send(a, [hr(72)]);
    expect(status(afterDelete.json)).to.equal([410]);
    expect(diagnostics(afterDelete.json, 0)).to.contain('deleted');
  });

  it('answers a re-sent reading 200 after the physician changed the limits it was judged by', async () => {
    const patient = await newPatient();
    const serial = unique('sn');
    const planWithHighPulse = (high: number) => ({
      resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` },
      contained: [{
        resourceType: 'Goal', id: 'g', lifecycleStatus: 'active', description: { text: 'pulse' }, subject: { reference: `Patient/${patient}` },
        target: [{ measure: { coding: [{ system: LOINC, code: '8867-4' }] }, detailRange: { high: { value: high, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } } }],
      }],
      goal: [{ reference: '#g' }],
    });
    const plan = await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighPulse(100) });
    expect(plan.statusCode, plan.payload).to.equal(201);
    const reading = [{ code: { system: LOINC, code: '8867-4' }, value: 120, unit: '/min', time: '2026-01-03T08:00:00Z' }];
    const first = await postReadings(patient, reading, { serial });
    expect(status(first.json)).to.equal([201]);
    const location = first.json.entry[0].response.location as string;
    const stored = (await app.request({ method: 'GET', url: `/fhir/${location.split('/_history')[0]}` })).json;
    expect(stored.interpretation[0].coding[0].code).to.equal('H');
    expect(stored.referenceRange[0].high.value).to.equal(100);
    // The limit moves (still broken), then goes above the reading: each retry is the same reading.
    for (const high of [110, 150]) {
      const put = await app.request({ method: 'PUT', url: `/fhir/CarePlan/${plan.json.id}`, payload: { ...planWithHighPulse(high), id: plan.json.id } });
      expect(put.statusCode, put.payload).to.equal(200);
      const again = await postReadings(patient, reading, { serial });
      expect(status(again.json), `limit ${high}: ${diagnostics(again.json, 0)}`).to.equal([200]);
      expect(again.json.entry[0].response.location).to.equal(location);
    }
    // Answered by the version stored, judged as it was; nothing was written again.
    const after = (await app.request({ method: 'GET', url: `/fhir/${location.split('/_history')[0]}` })).json;
    expect(after.meta.versionId).to.equal('1');
    expect(after.referenceRange).to.equal(stored.referenceRange);
    // Another value under the same identity is still another reading.
    const other = await postReadings(patient, [{ ...reading[0], value: 121 }], { serial });
    expect(status(other.json)).to.equal([409]);
  });

  it('refuses a Withings group corrected under the same grpid with 409, keeping the stored value', async () => {
    const pid = await newPatient();
    const grpid = unique('g');
    const group = (value: number) => ({ status: 0, body: { measuregrps: [{ grpid, date: 1735800000, category: 1, measures: [{ value, type: 1, unit: -3 }] }] } });
    const url = `/ingest/withings?patient=Patient/${pid}`;
    expect(status((await app.request({ method: 'POST', url, payload: group(70500) })).json)).to.equal([201]);
    expect(status((await app.request({ method: 'POST', url, payload: group(70500) })).json)).to.equal([200]);
    const corrected = await app.request({ method: 'POST', url, payload: group(71500) });
    expect(status(corrected.json)).to.equal([409]);
    expect(corrected.json.entry[0].response.outcome.issue[0].code).to.equal('conflict');
  });

  it('refuses pulse-oximetry readings the device marks invalid, for testing or for demonstration, and files questionable ones as preliminary', async () => {
    const pid = await newPatient();
    const at = '2026-01-02T08:00:00Z';
    const plx = (data: string, characteristic = '2A5E') => ({ characteristic, data, receivedAt: at });
    const res = await postBle(pid, [
      plx('02610044000080'), // Measurement Status bit 15: invalid
      plx('02610044000008'), // bit 11: data for testing
      plx('02610044000004'), // bit 10: data for demonstration
      plx('04620046000080', '2A5F'), // continuous, invalid
      plx('02600045000040'), // bit 14: questionable
    ]);
    // One entry per characteristic refused; the questionable one is two readings (SpO2, PR).
    expect(status(res.json)).to.equal([422, 422, 422, 422, 201, 201]);
    expect(diagnostics(res.json, 0)).to.contain('invalid-measurement');
    expect(diagnostics(res.json, 1)).to.contain('data-for-testing');
    expect(diagnostics(res.json, 2)).to.contain('data-for-demonstration');
    expect(diagnostics(res.json, 3)).to.contain('2A5F');
    const questionable = (await app.request({ method: 'GET', url: `/fhir/${res.json.entry[4].response.location.split('/_history')[0]}` })).json;
    expect(questionable.status).to.equal('preliminary');
    expect(questionable.valueQuantity.value).to.equal(96);
  });

  it('files a PLX spot-check at the gateway\'s receive time when the device says its clock is not set', async () => {
    const pid = await newPatient();
    const receivedAt = '2026-01-02T09:15:00Z';
    // Flags 0x11: timestamp present, Device Clock Is Not Set; the timestamp is 2000-01-01 00:00:00.
    const res = await postBle(pid, [{ characteristic: '2A5E', data: '11' + '6100' + '4400' + 'd0070101000000', receivedAt }]);
    expect(status(res.json)).to.equal([201, 201]);
    const obs = (await app.request({ method: 'GET', url: `/fhir/${res.json.entry[0].response.location.split('/_history')[0]}` })).json;
    expect(obs.effectiveDateTime).to.equal(receivedAt);
  });

  it('files a reading on the last day of an assignment whose end is a date, and from the first of one whose start is a month', async () => {
    const [alice, bob] = [await newPatient(), await newPatient()];
    const identifier = { system: 'urn:test:serial', value: unique('cuff') };
    const deviceId = (await app.request({ method: 'POST', url: '/fhir/Device', payload: { resourceType: 'Device', identifier: [identifier] } })).json.id;
    const use = (patient: string, timingPeriod: object) =>
      app.request({ method: 'POST', url: '/fhir/DeviceUseStatement', payload: { resourceType: 'DeviceUseStatement', status: 'active', subject: { reference: `Patient/${patient}` }, device: { reference: `Device/${deviceId}` }, timingPeriod } });
    expect((await use(alice, { start: '2026-01-01', end: '2026-10-31' })).statusCode).to.equal(201);
    expect((await use(bob, { start: '2026-11' })).statusCode).to.equal(201);
    const reading = (time: string) => ({ code: { system: LOINC, code: '8867-4' }, value: 70, unit: '/min', time });
    const res = await app.request({ method: 'POST', url: '/ingest/readings', payload: { device: { identifier }, readings: [reading('2026-10-31T18:00:00Z'), reading('2026-11-01T00:00:00Z'), reading('2026-01-01T00:00:00Z')] } });
    expect(status(res.json)).to.equal([201, 201, 201]);
    const subjects = [];
    for (const e of res.json.entry) subjects.push((await app.request({ method: 'GET', url: `/fhir/${e.response.location.split('/_history')[0]}` })).json.subject.reference);
    expect(subjects).to.equal([`Patient/${alice}`, `Patient/${bob}`, `Patient/${alice}`]);
  });

  it('writes no LOINC code as its own display: keeps the sender\'s, or none', async () => {
    const pid = await newPatient();
    const res = await postReadings(pid, [
      { code: { system: LOINC, code: '40443-4' }, value: 58, unit: '/min', time: '2026-01-02T08:00:00Z' },
      { code: { system: LOINC, code: '40443-4', display: 'Heart rate --resting' }, value: 59, unit: '/min', time: '2026-01-02T09:00:00Z' },
    ]);
    expect(status(res.json)).to.equal([201, 201]);
    const read = async (i: number) => (await app.request({ method: 'GET', url: `/fhir/${res.json.entry[i].response.location.split('/_history')[0]}` })).json;
    const bare = await read(0);
    const named = await read(1);
    const loinc = (o: any) => o.code.coding.find((c: any) => c.system === LOINC);
    expect(loinc(bare).display).to.not.exist();
    expect(bare.code.text).to.not.exist();
    expect(loinc(named).display).to.equal('Heart rate --resting');
  });

  it('refuses more readings in one request than MAX_INGEST_READINGS with 413, before writing any', async () => {
    const pid = await newPatient();
    const before = await countRows(app, 'Observation');
    const readings = Array.from({ length: 1001 }, (_, i) => ({ code: { system: LOINC, code: '8867-4' }, value: 60, unit: '/min', time: new Date(Date.UTC(2026, 0, 1) + i * 60_000).toISOString() }));
    const res = await postReadings(pid, readings);
    expect(res.statusCode).to.equal(413);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue[0].diagnostics).to.contain('MAX_INGEST_READINGS');
    expect(await countRows(app, 'Observation')).to.equal(before);
    const small = await startTestServer({ MAX_INGEST_READINGS: '2' });
    try {
      const capped = await postReadings(pid, readings.slice(0, 3), { server: small });
      expect(capped.statusCode).to.equal(413);
    } finally {
      await small.stop();
    }
  });
});
