import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { assertion, backendToken, clientCredentials, keyPair, postForm, startAuthServer, systemCreator } from '../auth/helpers';
import type { TestServer } from '../helpers/server';
import { observation } from './helpers';
import { unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * The checks of Inferno's bulk-data test kit v2.0.0 (lib/bulk_data_test_kit: the SMART backend
 * services group, export_operation_tests, bulk_export_validation_tester, export_parameters_tests,
 * export_cancel_tests), made over HTTP on a real port with a token from the client_credentials
 * grant (private_key_jwt), as Inferno would. The worker runs in the server as in production.
 */
describe('Bulk Data export: the Inferno bulk-data checks over HTTP', () => {
  let app: TestServer & { base: string; origin: string; tokenUrl: string };
  let bearer: Record<string, string>;
  let groupId: string;
  const patients: string[] = [];

  before(async () => {
    app = await startAuthServer({ BULK_POLL_INTERVAL: '100' });
    const create = await systemCreator(app);
    const system = `urn:test:inferno:${unique()}`;
    for (let i = 0; i < 2; i++) {
      const id = await create({ resourceType: 'Patient', identifier: [{ system, value: `p${i}` }], name: [{ family: `Inferno${i}` }] });
      patients.push(id);
      await create(observation(system, id, '8867-4', 70 + i));
    }
    groupId = await create({ resourceType: 'Group', type: 'person', actual: true, member: patients.map((id) => ({ entity: { reference: `Patient/${id}` } })) });
    bearer = { authorization: `Bearer ${(await backendToken(app, 'system/*.rs')).token}` };
  });
  after(() => app.stop());

  const kickOff = (path: string, headers: Record<string, string> = bearer) =>
    fetch(`${app.base}${path}`, { headers: { accept: 'application/fhir+json', prefer: 'respond-async', ...headers } });

  /** Polls the status URL, waiting as Retry-After says, until it is no longer 202. */
  async function poll(url: string): Promise<Response> {
    for (let i = 0; i < 60; i++) {
      const res = await fetch(url, { headers: bearer });
      if (res.status !== 202) return res;
      expect(res.headers.get('x-progress')!.length).to.be.below(100);
      const wait = Number(res.headers.get('retry-after'));
      expect(wait).to.be.above(0);
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 1) * 1000));
    }
    throw new Error('the export did not complete');
  }

  it('SMART backend services: a bad grant_type, assertion type or JWT is refused (400/401)', async () => {
    const key = await keyPair();
    const clientId = (await backendToken(app, 'system/*.rs')).clientId;
    const badGrant = await postForm(app.tokenUrl, { grant_type: 'not_a_grant', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(key, clientId, app.tokenUrl), scope: 'system/*.rs' });
    expect(badGrant.status).to.equal(400);
    const badType = await postForm(app.tokenUrl, { grant_type: 'client_credentials', client_assertion_type: 'not_an_assertion_type', client_assertion: await assertion(key, clientId, app.tokenUrl), scope: 'system/*.rs' });
    expect([400, 401]).to.include(badType.status);
    // Signed by a key the client never registered.
    const badJwt = await clientCredentials(app.tokenUrl, await assertion(key, clientId, app.tokenUrl), 'system/*.rs');
    expect([400, 401]).to.include(badJwt.status);
  });

  it('declares the export operations in the CapabilityStatement', async () => {
    const cs = (await (await fetch(`${app.base}/metadata`)).json()) as fhir4.CapabilityStatement;
    expect(cs.instantiates).to.include('http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data');
    expect(cs.rest![0]!.operation!.find((o) => o.name === 'export')!.definition).to.equal('http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export');
    const operation = (type: string) => cs.rest![0]!.resource!.find((r) => r.type === type)!.operation!.find((o) => o.name === 'export')?.definition;
    expect(operation('Patient')).to.equal('http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export');
    expect(operation('Group')).to.equal('http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export');
  });

  it('refuses a kick-off without a token (401)', async () => {
    for (const path of ['/$export', '/Patient/$export', `/Group/${groupId}/$export`]) {
      const res = await kickOff(path, {});
      expect(res.status).to.equal(401);
      expect(((await res.json()) as fhir4.OperationOutcome).resourceType).to.equal('OperationOutcome');
    }
  });

  it('exports a Group: 202 + Content-Location, polls until a complete manifest, NDJSON files that match it', async () => {
    const res = await kickOff(`/Group/${groupId}/$export`);
    expect(res.status).to.equal(202);
    const status = res.headers.get('content-location')!;
    expect(status).to.startWith(`${app.base}/`);

    const done = await poll(status);
    expect(done.status).to.equal(200);
    expect(String(done.headers.get('content-type'))).to.startWith('application/json');
    expect(done.headers.get('expires')).to.exist();
    const manifest = (await done.json()) as any;
    for (const field of ['transactionTime', 'request', 'requiresAccessToken', 'output', 'error']) expect(manifest).to.include(field);
    expect(manifest.requiresAccessToken).to.equal(true);
    expect(manifest.request).to.equal(`${app.base}/Group/${groupId}/$export`);
    expect(manifest.output.map((o: any) => o.type)).to.include(['Patient', 'Observation', 'Group']);

    let patientsSeen = 0;
    for (const output of manifest.output) {
      expect(output.type).to.exist();
      expect(String(output.url)).to.startWith(`${app.base}/`);
      const file = await fetch(output.url, { headers: bearer });
      expect(file.status).to.equal(200);
      expect(String(file.headers.get('content-type'))).to.startWith('application/fhir+ndjson');
      const lines = (await file.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as fhir4.FhirResource);
      expect(lines.length).to.equal(output.count);
      for (const resource of lines) {
        expect(resource.resourceType).to.equal(output.type);
        const validation = await fetch(`${app.base}/${resource.resourceType}/$validate`, { method: 'POST', headers: { ...bearer, 'content-type': 'application/fhir+json' }, body: JSON.stringify(resource) });
        expect(validation.status, await validation.clone().text()).to.equal(200);
      }
      if (output.type === 'Patient') patientsSeen += lines.length;
      const anonymous = await fetch(output.url);
      expect(anonymous.status).to.equal(401);
    }
    expect(patientsSeen).to.be.at.least(2);
  });

  it('accepts each _outputFormat spelling and _since (202); a bad one is 400', async () => {
    for (const format of ['application/fhir+ndjson', 'application/ndjson', 'ndjson']) {
      const res = await kickOff(`/Patient/$export?_outputFormat=${encodeURIComponent(format)}&_type=Patient`);
      expect(res.status, format).to.equal(202);
      expect((await poll(res.headers.get('content-location')!)).status).to.equal(200);
    }
    const since = await kickOff(`/$export?_type=Patient&_since=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}`);
    expect(since.status).to.equal(202);
    const manifest = (await (await poll(since.headers.get('content-location')!)).json()) as any;
    expect(manifest.output.map((o: any) => o.type)).to.equal(['Patient']);
    expect((await kickOff('/$export?_outputFormat=application/fhir+json')).status).to.equal(400);
  });

  it('cancels: DELETE is 202, then the status URL is 404 with an OperationOutcome', async () => {
    const res = await kickOff(`/Group/${groupId}/$export`);
    const status = res.headers.get('content-location')!;
    const cancel = await fetch(status, { method: 'DELETE', headers: bearer });
    expect(cancel.status).to.equal(202);
    const after = await fetch(status, { headers: bearer });
    expect(after.status).to.equal(404);
    expect(((await after.json()) as fhir4.OperationOutcome).resourceType).to.equal('OperationOutcome');
  });
});
