import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Issue 11, oracles: a refusal must not depend on content the caller may not read. The
 * caller's right to act on a resource is decided before If-Match, before a JSON Patch `test`,
 * before any validation of what it sent.
 */
describe('authorization comes before any answer that depends on content', () => {
  let app: SecuredServer;
  let bobObs: string;
  let aliceApp: Record<string, string>;
  let readOnly: Record<string, string>;
  before(async () => {
    app = await startSecuredServer();
    const alice = await app.create({ resourceType: 'Patient' });
    const bob = await app.create({ resourceType: 'Patient' });
    bobObs = await app.create({ resourceType: 'Observation', status: 'final', code: { text: 'HIV test' }, subject: { reference: `Patient/${bob}` }, valueString: 'positive' });
    aliceApp = await app.as('patient/*.cruds', { patient: alice, fhirUser: `Patient/${alice}` });
    readOnly = await app.as('system/Observation.rs');
  });
  after(() => app.stop());

  const patch = (headers: Record<string, string>, value: string) =>
    app.request({
      method: 'PATCH', url: `/fhir/Observation/${bobObs}`, headers: { ...headers, 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'test', path: '/valueString', value }, { op: 'replace', path: '/status', value: 'amended' }]),
    });

  it('a JSON Patch test answers the same whether its guess is right or wrong', async () => {
    for (const headers of [aliceApp, readOnly]) {
      const right = await patch(headers, 'positive');
      const wrong = await patch(headers, 'negative');
      expect([right.statusCode, wrong.statusCode]).to.equal([403, 403]);
      expect(right.json.issue[0].diagnostics).to.equal(wrong.json.issue[0].diagnostics);
    }
  });

  it('If-Match answers 403, not 412, to a caller that may not write the resource', async () => {
    for (const headers of [aliceApp, readOnly]) {
      for (const version of ['1', '7']) {
        const res = await app.request({
          method: 'PUT', url: `/fhir/Observation/${bobObs}`, headers: { ...headers, 'if-match': `W/"${version}"` },
          payload: { resourceType: 'Observation', id: bobObs, status: 'final', code: { text: 'x' } },
        });
        expect(res.statusCode, `If-Match ${version}`).to.equal(403);
      }
      const del = await app.request({ method: 'DELETE', url: `/fhir/Observation/${bobObs}`, headers: { ...headers, 'if-match': 'W/"9"' } });
      expect(del.statusCode).to.equal(403);
    }
  });

  it('a body that fails validation is still a 403 for a caller that may not write there', async () => {
    const res = await app.request({ method: 'PUT', url: `/fhir/Observation/${bobObs}`, headers: aliceApp, payload: { resourceType: 'Observation', id: bobObs, status: 'not-a-status' } });
    expect(res.statusCode).to.equal(403);
  });
});
