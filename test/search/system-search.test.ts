import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

type Bundle = fhir4.Bundle;

/**
 * Search at the base (R4 search.html#all): `GET /fhir?_type=…` and `POST /fhir/_search`, one page
 * over several types, each searched through the one access policy; and its refusals.
 */
describe('system-level search', () => {
  let app: SecuredServer;
  let system: Record<string, string>;
  const id: Record<string, string> = {};

  const observation = (patient: string, text: string) => ({
    resourceType: 'Observation', status: 'final', code: { text }, subject: { reference: `Patient/${patient}` }, effectiveDateTime: '2026-11-01T08:00:00Z',
  });
  const get = async (url: string, headers = system) => app.request({ method: 'GET', url, headers });
  const kinds = (b: Bundle) => (b.entry ?? []).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`);
  const nextOf = (b: Bundle) => b.link?.find((l) => l.relation === 'next')?.url.replace(/^https?:\/\/[^/]+/, '');

  before(async () => {
    app = await startSecuredServer();
    system = await app.as('system/*.rs');
    id.ann = await app.create({ resourceType: 'Patient', name: [{ family: 'Systemsearch' }] });
    id.bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Systemsearchbob' }] });
    for (const n of [1, 2, 3]) id[`annObs${n}`] = await app.create(observation(id.ann!, `ann ${n}`));
    id.bobObs = await app.create(observation(id.bob!, 'bob 1'));
    id.annCondition = await app.create({ resourceType: 'Condition', subject: { reference: `Patient/${id.ann}` }, code: { text: 'hypertension' } });
  });
  after(() => app.stop());

  it('walks the types named, in their order, a page of _count over them all, each match once', async () => {
    const url = `/fhir?_type=Observation,Condition&patient=${id.ann}&_count=2`;
    const seen: string[] = [];
    let next: string | undefined = url;
    let pages = 0;
    while (next) {
      const res = await get(next);
      expect(res.statusCode, res.payload).to.equal(200);
      const bundle = res.json as Bundle;
      expect(bundle.type).to.equal('searchset');
      expect(bundle.entry!.length).to.be.most(2);
      seen.push(...kinds(bundle));
      next = nextOf(bundle);
      pages++;
    }
    expect(pages).to.equal(2);
    expect(seen).to.have.length(4);
    expect(new Set(seen).size).to.equal(4);
    expect(seen.slice(0, 3).every((k) => k.startsWith('Observation/'))).to.be.true();
    expect(seen[3]).to.equal(`Condition/${id.annCondition}`);
    expect(seen).to.not.include(`Observation/${id.bobObs}`);

    // The whole answer on one page carries its total; _total=accurate and _summary=count count every type.
    const whole = (await get(`/fhir?_type=Observation,Condition&patient=${id.ann}`)).json as Bundle;
    expect(whole.total).to.equal(4);
    expect((await get(`/fhir?_type=Observation,Condition&patient=${id.ann}&_total=accurate&_count=1`)).json.total).to.equal(4);
    const counted = (await get(`/fhir?_type=Observation,Condition&patient=${id.ann}&_summary=count`)).json as Bundle;
    expect(counted.total).to.equal(4);
    expect(counted.entry ?? []).to.have.length(0);
  });

  it('takes the parameters as a form at POST /fhir/_search, and one type as that type\'s own search', async () => {
    const res = await app.request({
      method: 'POST', url: '/fhir/_search', headers: { ...system, 'content-type': 'application/x-www-form-urlencoded' },
      payload: `_type=Condition,Patient&_id=${id.ann}`,
    });
    expect(res.statusCode, res.payload).to.equal(200);
    expect(kinds(res.json)).to.equal([`Patient/${id.ann}`]);

    // A single type allows what only one type has: _sort and _include.
    const one = await get(`/fhir?_type=Observation&patient=${id.ann}&_sort=-_lastUpdated&_include=Observation:subject`);
    expect(one.statusCode, one.payload).to.equal(200);
    expect(kinds(one.json)).to.include(`Patient/${id.ann}`);
  });

  it('refuses what has no meaning across types, and what no type has, with a 400 OperationOutcome', async () => {
    for (const [query, expression] of [
      ['_type=Observation,Condition&_sort=_lastUpdated', '_sort'],
      ['_type=Observation,Condition&_include=Observation:subject', '_include'],
      ['_type=Observation,Condition&_revinclude=Provenance:target', '_revinclude'],
      ['_type=Observation,Nonsense', '_type'],
      ['_type=Observation,Condition&_count=many', '_count'],
      ['_type=Observation,Condition&_cursor=abc', '_cursor'],
      ['_type=Observation,Condition&_page-type=x', '_page-type'],
      ['_type=Observation,Condition&_page-type=9', '_page-type'],
    ] as const) {
      const res = await get(`/fhir?${query}`);
      expect(res.statusCode, query).to.equal(400);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue[0].expression, query).to.equal([expression]);
    }
    // A parameter one of the types does not have: that type's own refusal.
    const unknown = await get('/fhir?_type=Observation,Patient&code=x');
    expect(unknown.statusCode).to.equal(400);
    expect(unknown.json.issue[0].diagnostics).to.contain("'code'");
    // A garbled position of the type reached is that type's bad cursor.
    expect((await get('/fhir?_type=Observation,Condition&_page-type=0&_page-cursor=garbage')).statusCode).to.equal(400);
  });

  it('shows a token what its own searches of each type would, and refuses a type it may not search', async () => {
    const annOnly = await app.as('patient/Observation.rs patient/Condition.rs', { patient: id.ann });
    const res = await get('/fhir?_type=Observation,Condition', annOnly);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(kinds(res.json).sort()).to.equal([`Condition/${id.annCondition}`, `Observation/${id.annObs1}`, `Observation/${id.annObs2}`, `Observation/${id.annObs3}`].sort());
    // Without _type: only the types it may search, within its compartment.
    const all = await get('/fhir?_lastUpdated=ge2000-01-01', annOnly);
    expect(all.statusCode, all.payload).to.equal(200);
    expect(kinds(all.json).every((k) => k.startsWith('Observation/') || k.startsWith('Condition/'))).to.be.true();
    expect(kinds(all.json)).to.not.include(`Observation/${id.bobObs}`);
    // Naming a type it may not search is refused before anything is read, as that type's search is.
    const refused = await get('/fhir?_type=Observation,Patient', annOnly);
    expect(refused.statusCode).to.equal(403);
    expect(refused.json.resourceType).to.equal('OperationOutcome');
    const none = await app.as('patient/Condition.rs', { patient: id.bob });
    expect((await get(`/fhir?_type=Observation,Condition&patient=${id.ann}`, none)).statusCode).to.equal(403);
  });

  it('is audited as a search-system query naming each patient it disclosed, and listed in the CapabilityStatement', async () => {
    const res = await get(`/fhir?_type=Observation,Condition&patient=${id.ann}`);
    expect(res.statusCode).to.equal(200);
    await app.audit.flush();
    const auditor = await app.as('system/AuditEvent.rs', { clientId: 'auditor' });
    const events = await app.request({ method: 'GET', url: '/fhir/AuditEvent?subtype=search-system&_count=50', headers: auditor });
    expect(events.statusCode, events.payload).to.equal(200);
    const mine = ((events.json as Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent)
      .filter((e) => e.entity?.some((x) => x.type?.code === 'XrequestId' && x.what?.identifier?.value === res.headers['x-request-id']));
    expect(mine).to.have.length(1);
    expect(mine[0]!.entity!.filter((x) => x.role?.code === '1').map((x) => x.what?.reference)).to.equal([`Patient/${id.ann}`]);
    const query = Buffer.from(mine[0]!.entity!.find((x) => x.role?.code === '24')!.query!, 'base64').toString();
    expect(query).to.match(/^GET \S*\/fhir\?_type=Observation,Condition&patient=/);

    // A form search's parameters are in its body: the query entity holds them too.
    const form = await app.request({
      method: 'POST', url: '/fhir/_search', headers: { ...system, 'content-type': 'application/x-www-form-urlencoded' },
      payload: `_type=Observation,Condition&patient=${id.ann}`,
    });
    expect(form.statusCode, form.payload).to.equal(200);
    await app.audit.flush();
    const formEvents = await app.request({ method: 'GET', url: '/fhir/AuditEvent?subtype=search-system&_count=50', headers: auditor });
    const formEvent = ((formEvents.json as Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent)
      .find((e) => e.entity?.some((x) => x.type?.code === 'XrequestId' && x.what?.identifier?.value === form.headers['x-request-id']));
    const formQuery = Buffer.from(formEvent!.entity!.find((x) => x.role?.code === '24')!.query!, 'base64').toString();
    expect(formQuery).to.match(/^POST \S*\/fhir\/_search\n\n_type=Observation,Condition&patient=/);

    const statement = (await app.request({ method: 'GET', url: '/fhir/metadata' })).json as fhir4.CapabilityStatement;
    expect(statement.rest![0]!.interaction!.map((i) => i.code)).to.include('search-system');
  });
});
