import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { planWithHighSystolic, systolic } from '../helpers/monitoring-plan';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Breaches of one limit written at the same time on several database connections (a pool, or
 * several server nodes) open one Flag and count every breach in it. On PostgreSQL the writes run
 * in parallel transactions; PGlite serialises them, where this holds trivially.
 */
describe('concurrent breaches of one limit', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app?.stop());

  it('open one Flag that counts them all', async () => {
    const patient = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: unique('race') }] } })).json.id;
    expect((await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighSystolic(patient) })).statusCode).to.equal(201);
    const writes = await Promise.all(
      Array.from({ length: 12 }, () => app.request({ method: 'POST', url: '/fhir/Observation', payload: systolic(patient, 175) })),
    );
    expect(writes.map((w) => w.statusCode)).to.equal(writes.map(() => 201));
    const flags = (await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${patient}` })).json.entry.map((e: any) => e.resource);
    expect(flags).to.have.length(1);
    expect(flags[0].extension.find((x: any) => x.url.endsWith('flag-event-count')).valueInteger).to.equal(12);
  });
});
