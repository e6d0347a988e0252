import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { planWithHighSystolic, systolic } from '../helpers/monitoring-plan';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Each server keeps its patients' plans in memory and judges a new Observation by that copy,
 * checked inside the write (src/monitoring/plan-cache.ts). Two servers on one database are two
 * nodes: a plan written, changed or removed through one must govern the next reading written
 * through the other, whatever the other had cached.
 */
describe('plans cached by another node', () => {
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    a = await startTestServer();
    b = await startTestServer();
  });
  after(async () => {
    await a.stop();
    await b.stop();
  });

  const newPatient = async () => (await a.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id as string;
  const flagsOf = async (patient: string) => ((await a.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${patient}` })).json.entry ?? []).map((e: { resource: fhir4.Flag }) => e.resource);
  const interpreted = (obs: fhir4.Observation) => (obs.component ?? []).some((c) => (c.interpretation ?? []).length > 0);

  it('raises the Flag for a plan another node wrote after this one cached the patient without plans', async () => {
    const patient = await newPatient();
    const before = await a.request({ method: 'POST', url: '/fhir/Observation', payload: systolic(patient, 170) });
    expect(before.statusCode).to.equal(201);
    expect(interpreted(before.json)).to.be.false();
    expect(await flagsOf(patient)).to.have.length(0);

    expect((await b.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighSystolic(patient) })).statusCode).to.equal(201);

    const after = await a.request({ method: 'POST', url: '/fhir/Observation', payload: systolic(patient, 171) });
    expect(after.statusCode).to.equal(201);
    expect(interpreted(after.json)).to.be.true();
    const flags = await flagsOf(patient);
    expect(flags).to.have.length(1);
    expect(flags[0].status).to.equal('active');
  });

  it('judges the entries of a batch by the plan another node wrote, entry by entry', async () => {
    const patient = await newPatient();
    expect((await a.request({ method: 'POST', url: '/fhir/Observation', payload: systolic(patient, 120) })).statusCode).to.equal(201);
    expect((await b.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighSystolic(patient) })).statusCode).to.equal(201);
    const batch = await a.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [systolic(patient, 172), systolic(patient, 130)].map((resource) => ({ resource, request: { method: 'POST', url: 'Observation' } })),
      },
    });
    expect(batch.statusCode).to.equal(200);
    expect(batch.json.entry.map((e: { response: { status: string } }) => e.response.status)).to.equal(['201 Created', '201 Created']);
    expect(await flagsOf(patient)).to.have.length(1);
  });

  it('replays a transaction whose references between entries were rewritten by the first attempt', async () => {
    const patient = await newPatient();
    expect((await a.request({ method: 'POST', url: '/fhir/Observation', payload: systolic(patient, 121) })).statusCode).to.equal(201);
    expect((await b.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighSystolic(patient) })).statusCode).to.equal(201);
    const device = 'urn:uuid:0b6f5f7e-3c2a-4d1e-9a7b-2f6c1d0e8a91';
    const tx = await a.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: device, resource: { resourceType: 'Device', serialNumber: 'cuff-1' }, request: { method: 'POST', url: 'Device' } },
          { resource: { ...systolic(patient, 176), device: { reference: device } }, request: { method: 'POST', url: 'Observation' } },
        ],
      },
    });
    expect(tx.statusCode, tx.payload).to.equal(200);
    const [deviceAt, observationAt] = tx.json.entry.map((e: { response: { location: string } }) => e.response.location.split('/_history')[0]);
    const stored = await a.request({ method: 'GET', url: `/fhir/${observationAt}` });
    expect(stored.json.device.reference).to.equal(deviceAt);
    expect((await a.request({ method: 'GET', url: `/fhir/${deviceAt}` })).statusCode).to.equal(200);
    expect(interpreted(stored.json)).to.be.true();
    expect(await flagsOf(patient)).to.have.length(1);
  });

  it('stops judging by a plan another node removed after this one cached it', async () => {
    const patient = await newPatient();
    const plan = await a.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighSystolic(patient) });
    expect(plan.statusCode).to.equal(201);
    const judged = await a.request({ method: 'POST', url: '/fhir/Observation', payload: systolic(patient, 173) });
    expect(interpreted(judged.json)).to.be.true();
    const events = async () => (await flagsOf(patient)).map((f: fhir4.Flag) => f.extension!.find((x) => x.url.endsWith('flag-event-count'))!.valueInteger);
    expect(await events()).to.equal([1]);

    expect((await b.request({ method: 'DELETE', url: `/fhir/CarePlan/${plan.json.id}` })).statusCode).to.equal(204);

    const unjudged = await a.request({ method: 'POST', url: '/fhir/Observation', payload: systolic(patient, 174) });
    expect(unjudged.statusCode).to.equal(201);
    expect(interpreted(unjudged.json)).to.be.false();
    // No breach of the removed plan was counted, not even by the attempt that judged by the stale copy.
    expect(await events()).to.equal([1]);

    // The reading judged under the plan, sent back as it was stored: our annotation goes with the plan.
    const resent = await a.request({ method: 'PUT', url: `/fhir/Observation/${judged.json.id}`, payload: judged.json });
    expect(resent.statusCode).to.equal(200);
    expect(interpreted(resent.json)).to.be.false();
  });
});
