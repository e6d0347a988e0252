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
});
