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
