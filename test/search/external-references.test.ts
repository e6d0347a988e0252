import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, searchAll, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const OTHER = 'http://other.org/fhir';

/**
 * An absolute reference on another server's base names that server's resource, even when its
 * type and id are those of one stored here (R4 references.html; decision 034). Only references
 * relative to this server or absolute on its own base are this server's patient's.
 */
describe('absolute references on another base are not local', () => {
  let app: TestServer;
  let patient: string;
  let foreignOnly: string;
  const obs: Record<'foreign' | 'own' | 'ownVersion' | 'onlyForeign', string> = { foreign: '', own: '', ownVersion: '', onlyForeign: '' };
  const marker = unique('ext');
  const code = `code=urn:test:ext|${marker}`;

  before(async () => {
    app = await startTestServer();
    patient = await createResource(app, { resourceType: 'Patient', gender: 'female', name: [{ family: marker }] });
    foreignOnly = await createResource(app, { resourceType: 'Patient', gender: 'female' });
    const observation = (reference: string) => createResource(app, {
      resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'urn:test:ext', code: marker }] }, subject: { reference },
    });
    obs.foreign = await observation(`${OTHER}/Patient/${patient}`);
    obs.own = await observation(`${app.ctx.baseUrl}/Patient/${patient}`);
    obs.ownVersion = await observation(`${app.ctx.baseUrl}/Patient/${patient}/_history/1`);
    obs.onlyForeign = await observation(`${OTHER}/Patient/${foreignOnly}`);
  });
  after(() => app?.stop());

  const ids = async (url: string, type = 'Observation') => (await searchAll(app, url)).filter((r) => r.resourceType === type).map((r) => r.id as string).sort();
  const ownOnes = () => [obs.own, obs.ownVersion].sort();

  it('a reference, id or patient search finds the ones on this server\'s base only', async () => {
    expect(await ids(`/fhir/Observation?subject=Patient/${patient}`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Observation?subject=${patient}`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Observation?patient=${patient}`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Observation?subject=${encodeURIComponent(`${app.ctx.baseUrl}/Patient/${patient}`)}`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Patient/${patient}/Observation`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Observation?patient=${foreignOnly}`)).to.equal([]);
  });

  it('the full URL of the other server finds the one that names it', async () => {
    expect(await ids(`/fhir/Observation?subject=${encodeURIComponent(`${OTHER}/Patient/${patient}`)}`)).to.equal([obs.foreign]);
    expect(await ids(`/fhir/Observation?${code}&subject:missing=false`)).to.equal([obs.foreign, obs.own, obs.ownVersion, obs.onlyForeign].sort());
  });

  it('in a transaction, a fullUrl on this server\'s base is the entry it names, and references on it stay local', async () => {
    const fullUrl = `${app.ctx.baseUrl}/Patient/${unique('new')}`;
    const stored = await createResource(app, { resourceType: 'Patient' });
    const reading = (reference: string) => ({ resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference } }, request: { method: 'POST', url: 'Observation' } });
    const res = await app.request({
      method: 'POST', url: '/fhir', payload: {
        resourceType: 'Bundle', type: 'transaction', entry: [
          { fullUrl, resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
          reading(fullUrl), reading(`${app.ctx.baseUrl}/Patient/${stored}`), reading(`${OTHER}/Patient/${stored}`),
        ],
      },
    });
    expect(res.statusCode, res.payload).to.equal(200);
    const [created, toNew, toOwn, toOther] = res.json.entry.map((e: { response: { location: string } }) => e.response.location.split('/')[1]);
    expect(await ids(`/fhir/Observation?patient=${created}`)).to.equal([toNew]);
    expect(await ids(`/fhir/Observation?patient=${stored}`)).to.equal([toOwn]);
    expect(await ids(`/fhir/Observation?subject=${encodeURIComponent(`${OTHER}/Patient/${stored}`)}`)).to.equal([toOther]);
  });

  it('chains, _has, _revinclude and $everything do not follow it', async () => {
    expect(await ids(`/fhir/Observation?${code}&subject.gender=female`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Observation?${code}&subject:Patient.family=${marker}`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Patient?_has:Observation:subject:${code}`, 'Patient')).to.equal([patient]);
    expect(await ids(`/fhir/Patient?_id=${foreignOnly}&_has:Observation:subject:${code}`, 'Patient')).to.equal([]);
    expect(await ids(`/fhir/Patient?_id=${patient}&_revinclude=Observation:subject`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Patient/${patient}/$everything`)).to.equal(ownOnes());
    expect(await ids(`/fhir/Patient/${foreignOnly}/$everything`)).to.equal([]);
  });
});
