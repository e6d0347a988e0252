import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Issue 14, right of access: Patient/$everything answers a patient's whole record within the
 * caller's grant, and nothing of anyone else's, on every page.
 */
describe('Patient/$everything', () => {
  let app: SecuredServer;
  const id: Record<string, string> = {};
  const mine = new Set<string>();
  const theirs = new Set<string>();

  const observation = (patient: string, when: string) => ({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patient}` }, effectiveDateTime: when,
    valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });
  const refs = (bundle: fhir4.Bundle) => (bundle.entry ?? []).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`);

  /** Every page, following next links. */
  const allPages = async (url: string, headers: Record<string, string>) => {
    const seen: string[] = [];
    let pages = 0;
    for (let next: string | undefined = url; next; pages++) {
      const res = await app.request({ method: 'GET', url: next, headers });
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.type).to.equal('searchset');
      seen.push(...refs(res.json));
      next = (res.json.link as fhir4.BundleLink[]).find((l) => l.relation === 'next')?.url.replace(/^.*\/fhir/, '/fhir');
      expect(pages).to.be.below(50);
    }
    return { seen, pages };
  };

  before(async () => {
    app = await startSecuredServer();
    id.alice = await app.create({ resourceType: 'Patient', name: [{ family: 'Everythingalice' }] });
    id.bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Everythingbob' }] });
    mine.add(`Patient/${id.alice}`);
    theirs.add(`Patient/${id.bob}`);
    for (const when of ['2026-01-05T08:00:00Z', '2026-02-05T08:00:00Z', '2026-03-05T08:00:00Z']) {
      mine.add(`Observation/${await app.create(observation(id.alice, when))}`);
      theirs.add(`Observation/${await app.create(observation(id.bob, when))}`);
    }
    mine.add(`Flag/${await app.create({ resourceType: 'Flag', status: 'active', code: { text: 'alice' }, subject: { reference: `Patient/${id.alice}` } })}`);
    theirs.add(`Flag/${await app.create({ resourceType: 'Flag', status: 'active', code: { text: 'bob' }, subject: { reference: `Patient/${id.bob}` } })}`);
    mine.add(`Goal/${await app.create({ resourceType: 'Goal', lifecycleStatus: 'active', description: { text: 'walk' }, subject: { reference: `Patient/${id.alice}` } })}`);
  });

  after(async () => {
    await app.stop();
  });

  it('returns the patient and their whole compartment, and nothing of another patient', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$everything`, headers: app.system });
    expect(res.statusCode, res.payload).to.equal(200);
    const got = refs(res.json);
    expect(got[0]).to.equal(`Patient/${id.alice}`);
    expect(new Set(got)).to.equal(mine);
    expect(got.filter((r) => theirs.has(r))).to.equal([]);
  });

  it('pages with _count through every type, each resource once', async () => {
    const { seen, pages } = await allPages(`/fhir/Patient/${id.alice}/$everything?_count=2`, app.system);
    expect(pages).to.be.at.least(3);
    expect(seen).to.have.length(mine.size);
    expect(new Set(seen)).to.equal(mine);
  });

  it('filters by _type, care dates (start, end) and _since', async () => {
    const obs = await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$everything?_type=Observation&start=2026-02-01&end=2026-02-28`, headers: app.system });
    expect(refs(obs.json)).to.have.length(1);
    expect(refs(obs.json)[0]).to.startWith('Observation/');
    const future = await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$everything?_since=2999-01-01`, headers: app.system });
    expect(refs(future.json)).to.equal([]);
    const post = await app.request({
      method: 'POST', url: `/fhir/Patient/${id.alice}/$everything`, headers: app.system,
      payload: { resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'Flag,Goal' }] },
    });
    expect(post.statusCode, post.payload).to.equal(200);
    expect(refs(post.json).map((r) => r.split('/')[0]).sort()).to.equal(['Flag', 'Goal']);
  });

  it('stays within the grant: a patient token gets its own record only; unlisted types are left out', async () => {
    const bob = await app.as('patient/*.rs', { patient: id.bob });
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$everything`, headers: bob })).statusCode).to.equal(404);
    const own = await allPages(`/fhir/Patient/${id.bob}/$everything?_count=3`, bob);
    expect(new Set(own.seen)).to.equal(theirs);
    const narrow = await app.as('system/Patient.rs system/Observation.rs');
    const partial = await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$everything`, headers: narrow });
    expect(new Set(refs(partial.json))).to.equal(new Set([...mine].filter((r) => /^(Patient|Observation)\//.test(r))));
    const none = await app.as('system/Observation.rs');
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$everything`, headers: none })).statusCode).to.equal(403);
  });

  it('answers a page with nothing on it without an empty entry array (R4 json.html: arrays are never empty)', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$everything?_type=Group`, headers: app.system });
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.type).to.equal('searchset');
    expect(res.payload).to.not.contain('"entry"');
  });

  it('refuses bad parameters with a 400 OperationOutcome', async () => {
    for (const q of ['start=soon', '_since=x', '_type=Nonsense', '_count=-1']) {
      const res = await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$everything?${q}`, headers: app.system });
      expect(res.statusCode, q).to.equal(400);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
  });
});
