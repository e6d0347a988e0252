import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { countRows, startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('$validate', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  it('reports a valid resource with an informational outcome and stores nothing', async () => {
    const before = await countRows(app, 'Observation');
    const res = await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: { resourceType: 'Observation', status: 'final', code: { text: 'pulse' } } });
    expect(res.statusCode).to.equal(200);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue.map((i: any) => i.severity)).to.equal(['information']);
    expect(await countRows(app, 'Observation')).to.equal(before);
  });

  it('lists every error of an invalid resource with its location', async () => {
    const res = await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: { resourceType: 'Observation', status: 'done', valueQuantity: { value: '72' } } });
    expect(res.statusCode).to.equal(200);
    const expressions = res.json.issue.flatMap((i: any) => i.expression ?? []);
    expect(expressions).to.include(['Observation.status', 'Observation.code', 'Observation.valueQuantity.value']);
    expect(res.json.issue.every((i: any) => i.severity === 'error')).to.be.true();
  });

  it('names every way a resource breaks a profile it claims, and a create of it is refused with the same issues', async () => {
    // A heart rate without its vital-signs category slice or effective[x], in kilograms. A create's
    // issues also name the resource (`Observation/<id>: `) before the path.
    const body = {
      resourceType: 'Observation', meta: { profile: ['http://hl7.org/fhir/StructureDefinition/heartrate'] }, status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: 'Patient/p' },
      valueQuantity: { value: 60, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: 'kg' },
      category: [{ coding: [{ system: 'http://example.org', code: 'x' }] }],
    };
    const expected = [
      ['required', 'Observation.category:VSCat', 'minimum cardinality is 1, found 0'],
      ['required', 'Observation.effective[x]', 'minimum cardinality is 1, found 0'],
      ['value', 'Observation.valueQuantity.code', 'must be exactly "/min", found "kg"'],
    ];
    const issues = (res: { json: { issue: Array<{ code: string; expression: string[]; diagnostics: string }> } }) =>
      res.json.issue.filter((i) => i.diagnostics.includes('(profile ')).map((i) => [i.code, i.expression[0], i.diagnostics.slice(i.diagnostics.indexOf(`${i.expression[0]}: `) + i.expression[0].length + 2).replace(/ \(profile .*$/, '')]);
    const validated = await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: body });
    expect(issues(validated)).to.equal(expected);
    const before = await countRows(app, 'Observation');
    const created = await app.request({ method: 'POST', url: '/fhir/Observation', payload: body });
    expect(created.statusCode).to.equal(422);
    expect(issues(created)).to.equal(expected);
    expect(await countRows(app, 'Observation')).to.equal(before);
  });

  it('holds the resource to the profile the profile parameter names, in the query or the Parameters body, as if it declared it', async () => {
    const vitalsigns = 'http://hl7.org/fhir/StructureDefinition/vitalsigns';
    const observation = { resourceType: 'Observation', status: 'final', code: { text: 'x' } };
    const errors = (res: { json: { issue: Array<{ severity: string; expression?: string[]; diagnostics: string }> } }) =>
      res.json.issue.filter((i) => i.severity === 'error').map((i) => `${i.expression?.[0]}: ${i.diagnostics.replace(/^[^ ]+: /, '')}`).sort();
    const declared = await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: { ...observation, meta: { profile: [vitalsigns] } } });
    const expected = errors(declared);
    expect(expected.length).to.be.above(2);
    expect(expected.join('\n')).to.contain(`(profile ${vitalsigns})`);

    const byQuery = await app.request({ method: 'POST', url: `/fhir/Observation/$validate?profile=${encodeURIComponent(vitalsigns)}`, payload: observation });
    expect(byQuery.statusCode).to.equal(200);
    expect(errors(byQuery)).to.equal(expected);
    const byParameter = await app.request({
      method: 'POST', url: '/fhir/Observation/$validate',
      payload: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: observation }, { name: 'profile', valueUri: vitalsigns }] },
    });
    expect(byParameter.statusCode).to.equal(200);
    expect(errors(byParameter)).to.equal(expected);
    // Without the parameter the same Observation is valid.
    const plain = await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: observation });
    expect(plain.json.issue.map((i: any) => i.severity)).to.equal(['information']);
  });

  it('reports a profile it does not know as an error, never as conformance', async () => {
    const unknown = 'http://example.org/StructureDefinition/no-such-profile';
    const observation = { resourceType: 'Observation', status: 'final', code: { text: 'x' } };
    for (const res of [
      await app.request({ method: 'POST', url: `/fhir/Observation/$validate?profile=${encodeURIComponent(unknown)}`, payload: observation }),
      await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: observation }, { name: 'profile', valueUri: unknown }] } }),
    ]) {
      expect(res.statusCode).to.equal(200);
      expect(res.json.issue).to.have.length(1);
      expect(res.json.issue[0]).to.include({ severity: 'error', code: 'not-supported' });
      expect(res.json.issue[0].diagnostics).to.contain(unknown);
    }
  });

  it('takes a Parameters body and validates at instance level', async () => {
    const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
    const res = await app.request({
      method: 'POST',
      url: `/fhir/Patient/${id}/$validate`,
      payload: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient', id: 'other' } }, { name: 'mode', valueCode: 'update' }] },
    });
    expect(res.statusCode).to.equal(200);
    expect(res.json.issue[0].expression).to.equal(['id']);
  });

  it('is 404 for an unknown instance and for unknown operations', async () => {
    expect((await app.request({ method: 'POST', url: '/fhir/Patient/nope/$validate', payload: { resourceType: 'Patient' } })).statusCode).to.equal(404);
    expect((await app.request({ method: 'POST', url: '/fhir/Patient/$frobnicate', payload: { resourceType: 'Patient' } })).statusCode).to.equal(404);
  });
});

describe('operations', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
    app.ctx.operations.register({
      name: 'echo-count', types: ['Patient'], type: true, instance: true, affectsState: false, definition: 'urn:test:OperationDefinition/echo-count',
      handler: async (_ctx, req) => ({ status: 200, body: { resourceType: 'Parameters', parameter: [{ name: 'where', valueString: `${req.type}/${req.id ?? '*'}` }] } }),
    });
    app.ctx.operations.register({ name: 'mutate', types: ['Patient'], type: true, instance: false, affectsState: true, definition: 'urn:test:OperationDefinition/mutate', handler: async () => ({ status: 200 }) });
  });
  after(() => app.stop());

  it('dispatches registered operations at type and instance level, by GET and POST', async () => {
    const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
    const typeLevel = await app.request({ method: 'GET', url: '/fhir/Patient/$echo-count' });
    expect(typeLevel.statusCode).to.equal(200);
    expect(typeLevel.json.parameter[0].valueString).to.equal('Patient/*');
    const instance = await app.request({ method: 'GET', url: `/fhir/Patient/${id}/$echo-count` });
    expect(instance.json.parameter[0].valueString).to.equal(`Patient/${id}`);
    const posted = await app.request({ method: 'POST', url: `/fhir/Patient/${id}/$echo-count`, payload: { resourceType: 'Parameters' } });
    expect(posted.statusCode).to.equal(200);
    const metadata = await app.request({ method: 'GET', url: '/fhir/metadata' });
    const patient = metadata.json.rest[0].resource.find((r: any) => r.type === 'Patient');
    expect(patient.operation.map((o: any) => o.name)).to.include(['validate', 'echo-count']);
  });

  it('refuses GET of a state-changing operation (405), and operations of another type or level (404)', async () => {
    expect((await app.request({ method: 'GET', url: '/fhir/Patient/$mutate' })).statusCode).to.equal(405);
    expect((await app.request({ method: 'GET', url: '/fhir/Observation/$echo-count' })).statusCode).to.equal(404);
    expect((await app.request({ method: 'POST', url: '/fhir/Patient/x/$mutate', payload: { resourceType: 'Parameters' } })).statusCode).to.equal(404);
  });
});
