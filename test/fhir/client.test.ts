import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
// fhir-kit-client 2 is ESM with an import-only export map: CommonJS reaches it through import().
type Client = import('fhir-kit-client', { with: { 'resolution-mode': 'import' } }).Client;
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('a real FHIR client over a real port (fhir-kit-client)', () => {
  let app: TestServer;
  let client: Client;
  before(async () => {
    app = await startTestServer({}, { listen: true });
    const { Client } = await import('fhir-kit-client');
    client = new Client({ baseUrl: app.ctx.baseUrl });
  });
  after(() => app.stop());

  it('creates, reads, updates, reads history and deletes an Observation', async () => {
    const created = (await client.create({
      resourceType: 'Observation',
      body: {
        resourceType: 'Observation',
        status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
        subject: { reference: 'Patient/example' },
        effectiveDateTime: '2026-11-02T08:00:00Z',
        valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
      },
    })) as unknown as fhir4.Observation;
    expect(created.meta!.versionId).to.equal('1');

    const read = (await client.read({ resourceType: 'Observation', id: created.id! })) as unknown as fhir4.Observation;
    expect(read.valueQuantity!.value).to.equal(72);

    const updated = (await client.update({ resourceType: 'Observation', id: created.id!, body: { ...read, status: 'amended' } })) as unknown as fhir4.Observation;
    expect(updated.meta!.versionId).to.equal('2');

    const history = (await client.history({ resourceType: 'Observation', id: created.id! })) as unknown as fhir4.Bundle;
    expect(history.entry!.map((e) => (e.resource as fhir4.Observation).status)).to.equal(['amended', 'final']);

    await client.delete({ resourceType: 'Observation', id: created.id! });
    const err = await client.read({ resourceType: 'Observation', id: created.id! }).catch((e: { response: { status: number } }) => e);
    expect((err as { response: { status: number } }).response.status).to.equal(410);
  });

  it('reads the CapabilityStatement', async () => {
    const statement = (await client.capabilityStatement()) as unknown as fhir4.CapabilityStatement;
    expect(statement.fhirVersion).to.equal('4.0.1');
  });
});
