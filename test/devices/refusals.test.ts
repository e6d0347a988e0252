import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer, unique } from '../helpers/server';

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

  it('refuses a decimal exponent beyond ±30 per entry, at once, without building its digits', async () => {
    const pid = await newPatient();
    const started = Date.now();
    const withings = await app.request({
      method: 'POST',
      url: `/ingest/withings?patient=Patient/${pid}`,
      payload: { status: 0, body: { measuregrps: [{ grpid: 1, date: 1735800000, category: 1, measures: [{ value: 1, type: 1, unit: 600000000 }, { value: 1, type: 1, unit: -100000000 }, { value: 72, type: 11, unit: 0 }] }] } },
    });
    expect(withings.statusCode).to.equal(200);
    expect(status(withings.json)).to.equal([400, 400, 201]);
    expect(diagnostics(withings.json, 0)).to.contain('unit 600000000');
    const readings = await app.request({
      method: 'POST',
      url: '/ingest/readings',
      payload: {
        device: { identifier: { system: 'urn:test:serial', value: unique('sn') }, create: true },
        patient: { reference: `Patient/${pid}` },
        readings: [
          { code: { system: LOINC, code: '8867-4' }, value: '1e600000000', unit: '/min', time: '2026-01-02T08:00:00Z' },
          { code: { system: LOINC, code: '8867-4' }, value: '1e-100000000', unit: '/min', time: '2026-01-02T08:01:00Z' },
          { code: { system: LOINC, code: '8867-4' }, value: '0.72e2', unit: '/min', time: '2026-01-02T08:02:00Z' },
        ],
      },
    });
    expect(readings.statusCode).to.equal(200);
    expect(status(readings.json)).to.equal([400, 400, 201]);
    expect(diagnostics(readings.json, 0)).to.contain('exponent');
    expect(Date.now() - started).to.be.below(5000);
  });

  it('answers a re-sent reading 200 only when it is the same reading, and 409 when another is stored under its identity', async () => {
    const a = await newPatient();
    const b = await newPatient();
    const serial = unique('sn');
    const send = (patient: string, readings: object[]) =>
      app.request({ method: 'POST', url: '/ingest/readings', payload: { device: { identifier: { system: 'urn:test:serial', value: serial }, create: true }, patient: { reference: `Patient/${patient}` }, readings } });
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

  it('refuses a Withings group corrected under the same grpid with 409, keeping the stored value', async () => {
    const pid = await newPatient();
    const group = (value: number) => ({ status: 0, body: { measuregrps: [{ grpid: 4242, date: 1735800000, category: 1, measures: [{ value, type: 1, unit: -3 }] }] } });
    const url = `/ingest/withings?patient=Patient/${pid}`;
    expect(status((await app.request({ method: 'POST', url, payload: group(70500) })).json)).to.equal([201]);
    expect(status((await app.request({ method: 'POST', url, payload: group(70500) })).json)).to.equal([200]);
    const corrected = await app.request({ method: 'POST', url, payload: group(71500) });
    expect(status(corrected.json)).to.equal([409]);
    expect(corrected.json.entry[0].response.outcome.issue[0].code).to.equal('conflict');
  });
});
