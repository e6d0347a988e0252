import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * How a transaction resolves references between its entries beyond `urn:uuid:` placeholders
 * (R4 bundle.html#references, http.html#trules).
 */
describe('references between the entries of a transaction', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const heartRate = (subject: string) => ({
    resourceType: 'Observation', status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: subject },
    valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });

  it('reads a relative reference against the base of its entry\'s fullUrl: Patient/123 of an export from another server is the Patient posted as that server\'s Patient/123', async () => {
    // A local Patient with the exporting server's id: the reading must not land on it.
    const id = unique('p');
    expect((await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id } })).statusCode).to.equal(201);
    const base = 'http://ehr.example.org/fhir';
    const res = await app.request({
      method: 'POST', url: '/fhir', headers: { prefer: 'return=representation' },
      payload: {
        resourceType: 'Bundle', type: 'transaction', entry: [
          { fullUrl: `${base}/Observation/o1`, resource: { ...heartRate(`Patient/${id}`), id: 'o1' }, request: { method: 'POST', url: 'Observation' } },
          { fullUrl: `${base}/Patient/${id}`, resource: { resourceType: 'Patient', id, name: [{ family: 'Exported' }] }, request: { method: 'POST', url: 'Patient' } },
        ],
      },
    });
    expect(res.statusCode).to.equal(200);
    const [observation, patient] = res.json.entry.map((e: any) => e.resource);
    expect(patient.id).to.not.equal(id);
    expect(observation.subject.reference).to.equal(`Patient/${patient.id}`);
    const stored = (await app.request({ method: 'GET', url: `/fhir/Observation/${observation.id}` })).json;
    expect(stored.subject.reference).to.equal(`Patient/${patient.id}`);
    const onLocal = await app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${id}` });
    expect(onLocal.json.total).to.equal(0);
  });

  it('leaves a relative reference that names no entry as it was sent, and one in an entry whose fullUrl is a placeholder', async () => {
    const id = unique('p');
    await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id } });
    const res = await app.request({
      method: 'POST', url: '/fhir', headers: { prefer: 'return=representation' },
      payload: {
        resourceType: 'Bundle', type: 'transaction', entry: [
          { fullUrl: 'http://ehr.example.org/fhir/Observation/o2', resource: heartRate(`Patient/${id}`), request: { method: 'POST', url: 'Observation' } },
          { fullUrl: 'urn:uuid:6f1d0a52-7a1e-4d38-9a7e-3b1f8c2d9e01', resource: heartRate(`Patient/${id}`), request: { method: 'POST', url: 'Observation' } },
          { fullUrl: `http://ehr.example.org/fhir/Patient/not-${id}`, resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
        ],
      },
    });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry[0].resource.subject.reference).to.equal(`Patient/${id}`);
    expect(res.json.entry[1].resource.subject.reference).to.equal(`Patient/${id}`);
  });

  it('resolves a relative reference to an entry updated at its own id, and feeds a condition judged within the transaction', async () => {
    const base = 'http://ehr.example.org/fhir';
    const id = unique('p');
    const system = `http://example.org/mrn/${unique('s')}`;
    const res = await app.request({
      method: 'POST', url: '/fhir', headers: { prefer: 'return=representation' },
      payload: {
        resourceType: 'Bundle', type: 'transaction', entry: [
          { fullUrl: `${base}/Patient/${id}`, resource: { resourceType: 'Patient', id, identifier: [{ system, value: '1' }] }, request: { method: 'PUT', url: `Patient/${id}` } },
          { fullUrl: `${base}/Observation/o3`, resource: heartRate(`Patient/${id}`), request: { method: 'POST', url: 'Observation', ifNoneExist: `subject:Patient.identifier=${system}|1` } },
        ],
      },
    });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry[1].response.status).to.equal('201 Created');
    expect(res.json.entry[1].resource.subject.reference).to.equal(`Patient/${id}`);
  });

  it('rewrites a placeholder in elements of type uri, url, oid and uuid, and leaves it in other strings (R4 http.html#trules)', async () => {
    const binary = 'urn:uuid:0b1e5c2a-3f4d-4e6a-8b7c-9d0e1f2a3b4c';
    const patient = 'urn:uuid:1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f';
    const res = await app.request({
      method: 'POST', url: '/fhir', headers: { prefer: 'return=representation' },
      payload: {
        resourceType: 'Bundle', type: 'transaction', entry: [
          { fullUrl: binary, resource: { resourceType: 'Binary', contentType: 'text/plain', data: 'aGVsbG8=' }, request: { method: 'POST', url: 'Binary' } },
          // An identifier naming the resource by its placeholder is a string: it keeps what was sent.
          { fullUrl: patient, resource: { resourceType: 'Patient', identifier: [{ system: 'urn:ietf:rfc:3986', value: patient }] }, request: { method: 'POST', url: 'Patient' } },
          {
            fullUrl: 'urn:uuid:2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a',
            resource: {
              resourceType: 'DocumentReference', status: 'current', subject: { reference: patient },
              extension: [{ url: 'http://example.org/fhir/StructureDefinition/source', valueUri: binary }],
              content: [{ attachment: { contentType: 'text/plain', url: binary } }],
              contained: [{ resourceType: 'Media', id: 'm1', status: 'completed', content: { url: binary } }],
              context: { related: [{ reference: '#m1' }] },
            },
            request: { method: 'POST', url: 'DocumentReference' },
          },
        ],
      },
    });
    expect(res.statusCode, res.payload).to.equal(200);
    const [storedBinary, storedPatient, document] = res.json.entry.map((e: any) => e.resource);
    const binaryRef = `Binary/${storedBinary.id}`;
    expect(document.content[0].attachment.url).to.equal(binaryRef);
    expect(document.extension[0].valueUri).to.equal(binaryRef);
    expect(document.contained[0].content.url).to.equal(binaryRef);
    expect(document.subject.reference).to.equal(`Patient/${storedPatient.id}`);
    expect(storedPatient.identifier[0].value).to.equal(patient);
    const stored = (await app.request({ method: 'GET', url: `/fhir/DocumentReference/${document.id}` })).json;
    expect(stored.content[0].attachment.url).to.equal(binaryRef);
  });
});
