import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { officialDefinitionsDir } from '../../src/kernel/paths';
import { supportedTypes } from '../../src/kernel/resource-types';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('every R4 resource type', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  it('stores every concrete resource type of the official package but the two interaction messages, the audit trail\'s and the server\'s own definitions', () => {
    const dir = officialDefinitionsDir();
    const concrete = readdirSync(dir)
      .filter((f) => f.startsWith('StructureDefinition-'))
      .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')))
      .filter((sd) => sd.kind === 'resource' && sd.derivation === 'specialization' && !sd.abstract)
      .map((sd) => sd.type as string);
    expect(concrete).to.have.length(146);
    expect([...supportedTypes].sort()).to.equal(concrete.filter((t) => !['Parameters', 'OperationOutcome', 'AuditEvent', 'OperationDefinition', 'SearchParameter'].includes(t)).sort());
  });

  it('searches a type outside monitoring by its official parameters, in the patient compartment', async () => {
    const tag = unique('enc');
    const patient = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', identifier: [{ system: 'urn:test', value: tag }] } });
    const subject = { reference: `Patient/${patient.json.id}` };
    const made = await app.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:6b1c7b8e-0000-4000-8000-000000000001', resource: { resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'HH' }, subject, period: { start: '2026-03-01T10:00:00Z', end: '2026-03-01T11:00:00Z' } }, request: { method: 'POST', url: 'Encounter' } },
          { resource: { resourceType: 'Condition', subject, encounter: { reference: 'urn:uuid:6b1c7b8e-0000-4000-8000-000000000001' }, code: { coding: [{ system: 'http://snomed.info/sct', code: '38341003' }] }, onsetDateTime: '2026-03-01' }, request: { method: 'POST', url: 'Condition' } },
          { resource: { resourceType: 'AllergyIntolerance', patient: subject, code: { coding: [{ system: 'http://snomed.info/sct', code: '91936005' }] } }, request: { method: 'POST', url: 'AllergyIntolerance' } },
        ],
      },
    });
    expect(made.statusCode).to.equal(200);
    const encounterId = made.json.entry[0].response.location.split('/')[1];

    const conditions = await app.request({ method: 'GET', url: `/fhir/Condition?patient=${patient.json.id}&code=http://snomed.info/sct|38341003&encounter=Encounter/${encounterId}` });
    expect(conditions.statusCode).to.equal(200);
    expect(conditions.json.entry).to.have.length(1);
    const encounters = await app.request({ method: 'GET', url: `/fhir/Encounter?subject=Patient/${patient.json.id}&date=ge2026-03-01&class=HH` });
    expect(encounters.json.entry.map((e: any) => e.resource.id)).to.equal([encounterId]);
    const revinclude = await app.request({ method: 'GET', url: `/fhir/Encounter?_id=${encounterId}&_revinclude=Condition:encounter` });
    expect(revinclude.json.entry.map((e: any) => e.resource.resourceType)).to.equal(['Encounter', 'Condition']);
    const allergies = await app.request({ method: 'GET', url: `/fhir/Patient/${patient.json.id}/AllergyIntolerance` });
    expect(allergies.json.entry).to.have.length(1);
    const unknownParam = await app.request({ method: 'GET', url: `/fhir/Encounter?colour=blue`, headers: { prefer: 'handling=strict' } });
    expect(unknownParam.statusCode).to.equal(400);
  });

  it('refuses an invalid resource of a new type with every issue, and writes nothing', async () => {
    const res = await app.request({ method: 'POST', url: '/fhir/Encounter', payload: { resourceType: 'Encounter', status: 42, colour: 'blue' } });
    expect(res.statusCode).to.equal(400);
    expect(res.json.issue.map((i: any) => i.expression[0])).to.include(['Encounter.status', 'Encounter.colour']);
  });
});
