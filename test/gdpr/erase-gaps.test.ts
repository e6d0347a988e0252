import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const KEY = 'erase-gaps-suite-pseudonym-key-0123456789abcdef';

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
    app = await startSecuredServer({ PSEUDONYM_KEY: KEY });
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
});
