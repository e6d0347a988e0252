import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('concurrent writes of one resource', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const newPatient = async () => (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', active: true } })).json.id as string;

  it('20 parallel PUTs with the same If-Match: exactly one succeeds, 19 get 412', async () => {
    const id = await newPatient();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, headers: { 'if-match': 'W/"1"' }, payload: { resourceType: 'Patient', id, birthDate: `19${String(i + 10)}-01-01` } }),
      ),
    );
    const statuses = results.map((r) => r.statusCode).sort();
    expect(statuses.filter((s) => s === 200)).to.have.length(1);
    expect(statuses.filter((s) => s === 412)).to.have.length(19);
    const winner = results.find((r) => r.statusCode === 200)!;
    const current = await app.request({ method: 'GET', url: `/fhir/Patient/${id}` });
    expect(current.headers.etag).to.equal('W/"2"');
    expect(current.json.birthDate).to.equal(winner.json.birthDate);
  });

  it('50 parallel unconditional updates leave versions 1…51 with no gap or duplicate, each readable', async () => {
    const id = await newPatient();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id, telecom: [{ system: 'phone', value: String(i) }] } }),
      ),
    );
    expect(results.every((r) => r.statusCode === 200)).to.be.true();
    const versions = results.map((r) => Number(r.json.meta.versionId)).sort((a, b) => a - b);
    expect(versions).to.equal(Array.from({ length: 50 }, (_, i) => i + 2));

    const history = await app.request({ method: 'GET', url: `/fhir/Patient/${id}/_history?_count=100` });
    expect(history.json.entry.map((e: any) => Number(e.resource.meta.versionId))).to.equal(Array.from({ length: 51 }, (_, i) => 51 - i));
    for (const r of results) {
      const v = await app.request({ method: 'GET', url: `/fhir/Patient/${id}/_history/${r.json.meta.versionId}` });
      expect(v.statusCode).to.equal(200);
      expect(v.json.telecom).to.equal(r.json.telecom);
    }
  });

  it('parallel creates at one new id via PUT: one creates version 1, the others update after it', async () => {
    const id = `race-${Date.now().toString(36)}`;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id, telecom: [{ system: 'phone', value: String(i) }] } })),
    );
    expect(results.filter((r) => r.statusCode === 201)).to.have.length(1);
    expect(results.filter((r) => r.statusCode === 200)).to.have.length(9);
    expect(results.map((r) => Number(r.json.meta.versionId)).sort((a, b) => a - b)).to.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('parallel PUTs of one body at one new id: one creates version 1, the others are answered with it', async () => {
    const id = `race-same-${Date.now().toString(36)}`;
    const results = await Promise.all(
      Array.from({ length: 10 }, () => app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id, gender: 'female' } })),
    );
    expect(results.filter((r) => r.statusCode === 201)).to.have.length(1);
    expect(results.filter((r) => r.statusCode === 200)).to.have.length(9);
    expect(results.map((r) => r.json.meta.versionId)).to.equal(Array(10).fill('1'));
    const history = await app.request({ method: 'GET', url: `/fhir/Patient/${id}/_history` });
    expect(history.json.total).to.equal(1);
  });
});
