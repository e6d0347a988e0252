import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { unique } from '../helpers/server';
import { type SecuredServer, startSecuredServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const OTHER = 'http://other.org/fhir';

/**
 * A patient token for Patient/P must not see, nor write, another server's patient's data that
 * names a Patient with P's id (decision 034): an absolute reference on another base puts a
 * resource in no compartment of this server.
 */
describe('a patient token and references to another server\'s patient', () => {
  let app: SecuredServer;
  let patient: string;
  let foreign: string;
  let own: string;
  const marker = unique('ext');
  const observation = (reference: string) => ({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'urn:test:ext', code: marker }] }, subject: { reference },
  });

  before(async () => {
    app = await startSecuredServer();
    patient = await app.create({ resourceType: 'Patient', gender: 'female' });
    foreign = await app.create(observation(`${OTHER}/Patient/${patient}`));
    own = await app.create(observation(`${app.ctx.baseUrl}/Patient/${patient}`));
  });
  after(() => app?.stop());

  const get = async (url: string, headers: Record<string, string>) => app.request({ method: 'GET', url, headers });

  it('searches and reads only the resource on this server\'s base', async () => {
    const token = await app.as('patient/Observation.rs', { patient });
    const found = await get(`/fhir/Observation?code=urn:test:ext|${marker}`, token);
    expect(found.statusCode, found.payload).to.equal(200);
    expect((found.json.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id)).to.equal([own]);
    const byUrl = await get(`/fhir/Observation?subject=${encodeURIComponent(`${OTHER}/Patient/${patient}`)}`, token);
    expect(byUrl.json.entry ?? []).to.equal([]);
    expect((await get(`/fhir/Observation/${own}`, token)).statusCode).to.equal(200);
    expect((await get(`/fhir/Observation/${foreign}`, token)).statusCode).to.equal(404);
    expect((await get(`/fhir/Observation/${foreign}/_history/1`, token)).statusCode).to.equal(404);
  });

  it('may not create one that names only the other server\'s patient', async () => {
    const token = await app.as('patient/Observation.crus', { patient });
    const refused = await app.request({ method: 'POST', url: '/fhir/Observation', payload: observation(`${OTHER}/Patient/${patient}`), headers: token });
    expect(refused.statusCode, refused.payload).to.equal(403);
    const accepted = await app.request({ method: 'POST', url: '/fhir/Observation', payload: observation(`${app.ctx.baseUrl}/Patient/${patient}`), headers: token });
    expect(accepted.statusCode, accepted.payload).to.equal(201);
  });
});
