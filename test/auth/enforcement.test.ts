import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';
import { assertion, backendClient, keyPair, postForm, startAuthServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const VITALS = 'http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';

function observation(patient: string, code: string, category: 'vital-signs' | 'laboratory', extra: Record<string, unknown> = {}) {
  return {
    resourceType: 'Observation', status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: '2026-11-02T08:00:00Z', valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    ...extra,
  };
}

describe('SMART scopes are enforced on every interaction', () => {
  let app: TestServer;
  let state: AuthState;
  const ids: Record<string, string> = {};
  const token = async (scopes: string, patient?: string) =>
    (await issueAccessToken(state, { clientId: 'test-client', scopes: scopes.split(' '), ...(patient ? { patient } : {}) })).accessToken;
  const as = (bearer: string) => ({ authorization: `Bearer ${bearer}` });
  let system: Record<string, string>;

  before(async () => {
    app = await startTestServer({ AUTH_DISABLED: 'false' });
    state = (app.server.plugins as any)['smart-auth'].state;
    system = as(await token('system/*.cruds'));
    const create = async (body: object) => {
      const res = await app.request({ method: 'POST', url: `/fhir/${(body as any).resourceType}`, payload: body, headers: system });
      if (res.statusCode !== 201) throw new Error(res.payload);
      return res.json.id as string;
    };
    ids.alice = await create({ resourceType: 'Patient', name: [{ family: `Alice${unique()}` }] });
    ids.bobName = `Bob${unique()}`.replace(/[^A-Za-z0-9]/g, '');
    ids.bob = await create({ resourceType: 'Patient', name: [{ family: ids.bobName }] });
    ids.aliceHr = await create(observation(ids.alice, '8867-4', 'vital-signs'));
    ids.aliceLab = await create(observation(ids.alice, '2339-0', 'laboratory'));
    ids.bobHr = await create(observation(ids.bob, '8867-4', 'vital-signs', { identifier: [{ system: 'urn:test:obs', value: `bob-${ids.bob}` }] }));
    ids.bobRare = await create(observation(ids.bob, '59408-5', 'vital-signs'));
    ids.bobFlag = await create({ resourceType: 'Flag', status: 'active', code: { text: 'fall risk' }, subject: { reference: `Patient/${ids.bob}` } });
  });
  after(() => app.stop());

  it('refuses requests without a token (401, WWW-Authenticate: Bearer) but serves metadata and the OperationDefinitions and SearchParameters it names (decisions 041, 043)', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Patient/${ids.alice}` });
    expect(res.statusCode).to.equal(401);
    expect(String(res.headers['www-authenticate'])).to.startWith('Bearer');
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect((await app.request({ method: 'GET', url: '/fhir/metadata' })).statusCode).to.equal(200);
    expect((await app.request({ method: 'GET', url: '/fhir/OperationDefinition/Patient-erase' })).statusCode).to.equal(200);
    expect((await app.request({ method: 'GET', url: '/fhir/OperationDefinition?code=due' })).json.total).to.equal(1);
    expect((await app.request({ method: 'GET', url: '/fhir/SearchParameter?url=http://rpm.example.org/fhir/SearchParameter/Flag-status' })).json.total).to.equal(1);
    expect((await app.request({ method: 'DELETE', url: '/fhir/OperationDefinition/Patient-erase' })).statusCode).to.equal(405);
  });

  describe('a read-only system token', () => {
    let headers: Record<string, string>;
    before(async () => {
      headers = as(await token('system/*.rs'));
    });

    it('reads and searches, and every write is 403 with nothing written', async () => {
      expect((await app.request({ method: 'GET', url: `/fhir/Patient/${ids.alice}`, headers })).statusCode).to.equal(200);
      expect((await app.request({ method: 'GET', url: '/fhir/Observation?code=8867-4', headers })).statusCode).to.equal(200);
      const before = await countRows(app, 'Observation');
      const post = await app.request({ method: 'POST', url: '/fhir/Observation', payload: observation(ids.alice, '8867-4', 'vital-signs'), headers });
      expect(post.statusCode).to.equal(403);
      expect(post.json.issue[0].code).to.equal('forbidden');
      expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${ids.aliceHr}`, headers })).statusCode).to.equal(403);
      expect((await app.request({ method: 'DELETE', url: '/fhir/Observation/never-was', headers })).statusCode).to.equal(403);
      const tx = await app.request({ method: 'POST', url: '/fhir', headers, payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: observation(ids.alice, '8867-4', 'vital-signs'), request: { method: 'POST', url: 'Observation' } }] } });
      expect(tx.statusCode).to.equal(403);
      expect(tx.json.issue[0].diagnostics).to.contain('Bundle.entry[0]');
      const readings = await app.request({ method: 'POST', url: '/ingest/readings', headers, payload: { device: { identifier: { system: 'urn:test:serial', value: unique('dev') } }, patient: { reference: `Patient/${ids.alice}` }, readings: [{ code: { system: 'http://loinc.org', code: '8867-4' }, value: 72, unit: '/min', time: '2026-11-02T08:00:00Z' }] } });
      expect(readings.statusCode).to.equal(200);
      expect(String(readings.json.entry[0].response.status)).to.startWith('403');
      expect(await countRows(app, 'Observation')).to.equal(before);
    });
  });

  describe("a patient-scoped token never reaches another patient's data", () => {
    let headers: Record<string, string>;
    before(async () => {
      headers = as(await token('patient/*.rs', ids.alice));
    });
    const get = (url: string) => app.request({ method: 'GET', url, headers });
    const entryIds = (bundle: any) => (bundle.entry ?? []).map((e: any) => `${e.resource.resourceType}/${e.resource.id}`);

    it('read and vread: its own patient 200, the other patient and their data 404', async () => {
      expect((await get(`/fhir/Patient/${ids.alice}`)).statusCode).to.equal(200);
      expect((await get(`/fhir/Observation/${ids.aliceHr}/_history/1`)).statusCode).to.equal(200);
      expect((await get(`/fhir/Patient/${ids.bob}`)).statusCode).to.equal(404);
      expect((await get(`/fhir/Observation/${ids.bobHr}`)).statusCode).to.equal(404);
      expect((await get(`/fhir/Observation/${ids.bobHr}/_history/1`)).statusCode).to.equal(404);
      expect((await get(`/fhir/Flag/${ids.bobFlag}`)).statusCode).to.equal(404);
    });

    it('search is confined to the compartment, whatever the parameters say', async () => {
      const all = await get('/fhir/Observation?_count=100');
      expect(entryIds(all.json).sort()).to.equal([`Observation/${ids.aliceHr}`, `Observation/${ids.aliceLab}`].sort());
      expect(entryIds((await get(`/fhir/Observation?subject=Patient/${ids.bob}`)).json)).to.equal([]);
      expect(entryIds((await get('/fhir/Patient?_count=100')).json)).to.equal([`Patient/${ids.alice}`]);
      expect(entryIds((await get(`/fhir/Flag?patient=${ids.bob}`)).json)).to.equal([]);
      expect((await get(`/fhir/Patient/${ids.bob}/Observation`)).statusCode).to.equal(404);
      expect(entryIds((await get(`/fhir/Patient/${ids.alice}/Observation?code=8867-4`)).json)).to.equal([`Observation/${ids.aliceHr}`]);
    });

    it('includes, chains and _has do not leak', async () => {
      const included = await get('/fhir/Observation?_include=Observation:subject&_count=100');
      expect(entryIds(included.json)).to.not.include(`Patient/${ids.bob}`);
      expect(entryIds(included.json)).to.include(`Patient/${ids.alice}`);
      const revincluded = await get(`/fhir/Patient?_revinclude=Observation:subject&_count=100`);
      expect(entryIds(revincluded.json)).to.not.include(`Observation/${ids.bobHr}`);
      expect(entryIds((await get(`/fhir/Observation?subject.name=${ids.bobName}`)).json)).to.equal([]);
      expect(entryIds((await get('/fhir/Patient?_has:Observation:subject:code=59408-5')).json)).to.equal([]);
    });

    it('history: another patient’s resource is 404, type and system history are refused', async () => {
      expect((await get(`/fhir/Observation/${ids.bobHr}/_history`)).statusCode).to.equal(404);
      expect((await get(`/fhir/Observation/${ids.aliceHr}/_history`)).statusCode).to.equal(200);
      expect((await get('/fhir/Observation/_history')).statusCode).to.equal(403);
      expect((await get('/fhir/_history')).statusCode).to.equal(403);
    });

    it('bundles: GET entries answer within the compartment, write entries need write scopes', async () => {
      const batch = await app.request({
        method: 'POST', url: '/fhir', headers,
        payload: { resourceType: 'Bundle', type: 'batch', entry: [
          { request: { method: 'GET', url: `Observation/${ids.bobHr}` } },
          { request: { method: 'GET', url: 'Observation?code=8867-4' } },
          { resource: observation(ids.alice, '8867-4', 'vital-signs'), request: { method: 'POST', url: 'Observation' } },
        ] },
      });
      expect(batch.statusCode).to.equal(200);
      expect(batch.json.entry[0].response.status).to.equal('404 Not Found');
      expect(entryIds(batch.json.entry[1].resource)).to.equal([`Observation/${ids.aliceHr}`]);
      expect(batch.json.entry[2].response.status).to.equal('403 Forbidden');
    });
  });

  describe('a patient-scoped writer', () => {
    let headers: Record<string, string>;
    before(async () => {
      headers = as(await token('patient/Observation.cruds patient/Patient.rs', ids.alice));
    });

    it("writes its own patient's data and nobody else's", async () => {
      const mine = await app.request({ method: 'POST', url: '/fhir/Observation', headers, payload: observation(ids.alice, '8867-4', 'vital-signs') });
      expect(mine.statusCode).to.equal(201);
      expect((await app.request({ method: 'POST', url: '/fhir/Observation', headers, payload: observation(ids.bob, '8867-4', 'vital-signs') })).statusCode).to.equal(403);
      const moved = await app.request({ method: 'PUT', url: `/fhir/Observation/${mine.json.id}`, headers, payload: { ...mine.json, subject: { reference: `Patient/${ids.bob}` } } });
      expect(moved.statusCode).to.equal(403);
      expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${ids.bobHr}`, headers })).statusCode).to.equal(403);
      const tx = await app.request({ method: 'POST', url: '/fhir', headers, payload: { resourceType: 'Bundle', type: 'transaction', entry: [
        { resource: observation(ids.alice, '8867-4', 'vital-signs'), request: { method: 'POST', url: 'Observation' } },
        { resource: observation(ids.bob, '8867-4', 'vital-signs'), request: { method: 'POST', url: 'Observation' } },
      ] } });
      expect(tx.statusCode).to.equal(403);
      expect(tx.json.issue[0].diagnostics).to.contain('Bundle.entry[1]');
    });

    it("a conditional create does not reveal that another patient's identifier exists", async () => {
      const res = await app.request({
        method: 'POST', url: '/fhir/Observation', payload: observation(ids.alice, '8867-4', 'vital-signs'),
        headers: { ...headers, 'if-none-exist': `identifier=urn:test:obs|bob-${ids.bob}` },
      });
      expect(res.statusCode).to.equal(201);
    });
  });

  describe('granular scopes', () => {
    it('a category-restricted scope sees only that category, in search and in reads', async () => {
      const headers = as(await token(`patient/Observation.rs?category=${VITALS}`, ids.alice));
      const found = await app.request({ method: 'GET', url: '/fhir/Observation?_count=100', headers });
      expect(found.statusCode).to.equal(200);
      expect(found.json.entry.map((e: any) => e.resource.id)).to.not.include(ids.aliceLab);
      expect(found.json.entry.map((e: any) => e.resource.id)).to.include(ids.aliceHr);
      expect((await app.request({ method: 'GET', url: `/fhir/Observation/${ids.aliceLab}`, headers })).statusCode).to.equal(404);
      expect((await app.request({ method: 'GET', url: `/fhir/Observation/${ids.aliceHr}`, headers })).statusCode).to.equal(200);
      expect((await app.request({ method: 'GET', url: `/fhir/Patient/${ids.alice}`, headers })).statusCode).to.equal(403);
    });
  });
});

describe('a backend-services client built only with jose and fhir-kit-client', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  before(async () => {
    app = await startAuthServer();
  });
  after(() => app.stop());

  it('registers, gets a token, submits a transaction; a read-only token is refused a write with 403', async () => {
    const key = await keyPair('ES384');
    const writer = await backendClient(app.origin, 'system/*.cruds', [key]);
    const reader = await backendClient(app.origin, 'system/*.rs', [key]);
    const tokenFor = async (clientId: string, scope: string) => {
      const res = await postForm(app.tokenUrl, {
        grant_type: 'client_credentials', scope,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await assertion(key, clientId, app.tokenUrl),
      });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      return res.body.access_token as string;
    };
    const { Client } = await import('fhir-kit-client');
    const client = new Client({ baseUrl: app.base, customHeaders: { Authorization: `Bearer ${await tokenFor(writer, 'system/*.cruds')}` } });
    const response = (await client.transaction({
      body: {
        resourceType: 'Bundle', type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:1b0f8a60-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', name: [{ family: 'Backend' }] }, request: { method: 'POST', url: 'Patient' } },
          { resource: observation('placeholder', '8867-4', 'vital-signs', { subject: { reference: 'urn:uuid:1b0f8a60-0000-4000-8000-000000000001' } }), request: { method: 'POST', url: 'Observation' } },
        ],
      } as any,
    })) as unknown as fhir4.Bundle;
    expect(response.entry!.map((e) => e.response!.status)).to.equal(['201 Created', '201 Created']);

    const readOnly = new Client({ baseUrl: app.base, customHeaders: { Authorization: `Bearer ${await tokenFor(reader, 'system/*.rs')}` } });
    const read = (await readOnly.read({ resourceType: 'Observation', id: response.entry![1]!.response!.location!.split('/')[1]! })) as unknown as fhir4.Observation;
    expect(read.subject!.reference).to.equal(response.entry![0]!.response!.location!.split('/_history')[0]);
    const refused = await readOnly.create({ resourceType: 'Patient', body: { resourceType: 'Patient' } as any }).catch((e: { response: { status: number } }) => e);
    expect((refused as { response: { status: number } }).response.status).to.equal(403);
  });
});
