import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const SYSTEM = 'urn:test:mrn';

describe('conditional create, update and delete', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const patient = (mrn: string, extra: Record<string, unknown> = {}) => ({ resourceType: 'Patient', identifier: [{ system: SYSTEM, value: mrn }], ...extra });
  const post = (body: object, ifNoneExist: string) => app.request({ method: 'POST', url: '/fhir/Patient', payload: body, headers: { 'if-none-exist': ifNoneExist } });

  it('If-None-Exist: creates with no match, returns the match with 200, refuses two matches with 412', async () => {
    const mrn = unique('mrn');
    const first = await post(patient(mrn), `identifier=${SYSTEM}|${mrn}`);
    expect(first.statusCode).to.equal(201);
    const second = await post(patient(mrn, { active: true }), `identifier=${SYSTEM}|${mrn}`);
    expect(second.statusCode).to.equal(200);
    expect(second.json.id).to.equal(first.json.id);
    expect(second.json.active).to.not.exist();
    expect(second.headers.etag).to.equal('W/"1"');

    await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn) });
    const before = await countRows(app, 'Patient');
    const third = await post(patient(mrn), `identifier=${SYSTEM}|${mrn}`);
    expect(third.statusCode).to.equal(412);
    expect(third.json.resourceType).to.equal('OperationOutcome');
    expect(await countRows(app, 'Patient')).to.equal(before);
  });

  it('If-None-Exist: the match is named by Location, so a client asking return=minimal learns its id', async () => {
    const mrn = unique('mrn');
    const first = await post(patient(mrn), `identifier=${SYSTEM}|${mrn}`);
    const again = await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn), headers: { 'if-none-exist': `identifier=${SYSTEM}|${mrn}`, prefer: 'return=minimal' } });
    expect(again.statusCode).to.equal(200);
    expect(again.payload).to.equal('');
    expect(again.headers.location).to.equal(first.headers.location);
    expect(again.headers.location).to.match(new RegExp(`/fhir/Patient/${first.json.id}/_history/1$`));
    expect(again.headers.etag).to.equal('W/"1"');
  });

  it('If-None-Exist accepts a full search URL form and refuses unknown parameters', async () => {
    const mrn = unique('mrn');
    expect((await post(patient(mrn), `Patient?identifier=${SYSTEM}|${mrn}`)).statusCode).to.equal(201);
    const bad = await post(patient(mrn), `identifer=${SYSTEM}|${mrn}`);
    expect(bad.statusCode).to.equal(400);
    expect(bad.json.issue[0].diagnostics).to.contain('identifer');
  });

  it('20 identical conditional creates at once create exactly one resource', async () => {
    const mrn = unique('race');
    const results = await Promise.all(Array.from({ length: 20 }, () => post(patient(mrn), `identifier=${SYSTEM}|${mrn}`)));
    expect(results.filter((r) => r.statusCode === 201)).to.have.length(1);
    expect(results.filter((r) => r.statusCode === 200)).to.have.length(19);
    expect(new Set(results.map((r) => r.json.id)).size).to.equal(1);
  });

  it('conditional update: creates with no match, updates the one match, 412 on several', async () => {
    const mrn = unique('cu');
    const url = `/fhir/Patient?identifier=${encodeURIComponent(`${SYSTEM}|${mrn}`)}`;
    const created = await app.request({ method: 'PUT', url, payload: patient(mrn, { gender: 'female' }) });
    expect(created.statusCode).to.equal(201);
    const updated = await app.request({ method: 'PUT', url, payload: patient(mrn, { gender: 'male' }) });
    expect(updated.statusCode).to.equal(200);
    expect(updated.json.id).to.equal(created.json.id);
    expect(updated.headers.etag).to.equal('W/"2"');

    const wrongId = await app.request({ method: 'PUT', url, payload: patient(mrn, { id: 'someone-else' }) });
    expect(wrongId.statusCode).to.equal(400);

    await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn) });
    const several = await app.request({ method: 'PUT', url, payload: patient(mrn) });
    expect(several.statusCode).to.equal(412);
  });

  it('conditional update with no match creates at the body id only if no resource lives there: it never overwrites one the condition did not match', async () => {
    const mrn = unique('cu-id');
    const other = unique('other');
    const stored = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(other, { gender: 'female' }) })).json;
    const url = `/fhir/Patient?identifier=${encodeURIComponent(`${SYSTEM}|${mrn}`)}`;
    const res = await app.request({ method: 'PUT', url, payload: patient(mrn, { id: stored.id }) });
    expect(res.statusCode).to.equal(400);
    expect(res.json.issue[0].diagnostics).to.contain(`Patient/${stored.id}, which it does not match`);
    const now = await app.request({ method: 'GET', url: `/fhir/Patient/${stored.id}` });
    expect([now.headers.etag, now.json.identifier[0].value, now.json.gender]).to.equal(['W/"1"', other, 'female']);
    // A free id is created (update as create), and a deleted one brought back, as a PUT at it would.
    const free = `cu-${mrn}`;
    expect((await app.request({ method: 'PUT', url, payload: patient(mrn, { id: free }) })).statusCode).to.equal(201);
    expect((await app.request({ method: 'DELETE', url: `/fhir/Patient/${free}` })).statusCode).to.equal(204);
    const back = await app.request({ method: 'PUT', url, payload: patient(mrn, { id: free }) });
    expect([back.statusCode, back.headers.etag]).to.equal([201, 'W/"3"']);
  });

  it('a matched conditional create answers Prefer: return=OperationOutcome with an OperationOutcome, and the version headers', async () => {
    const mrn = unique('oo');
    const first = await post(patient(mrn), `identifier=${SYSTEM}|${mrn}`);
    const again = await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn), headers: { 'if-none-exist': `identifier=${SYSTEM}|${mrn}`, prefer: 'return=OperationOutcome' } });
    expect(again.statusCode).to.equal(200);
    expect(again.json.resourceType).to.equal('OperationOutcome');
    expect(again.json.issue[0].severity).to.equal('information');
    expect([again.headers.location, again.headers.etag, again.headers['last-modified']]).to.equal([first.headers.location, 'W/"1"', first.headers['last-modified']]);
  });

  it('conditional delete: deletes the one match, 204 with none, 412 on several', async () => {
    const mrn = unique('cd');
    const url = `/fhir/Patient?identifier=${encodeURIComponent(`${SYSTEM}|${mrn}`)}`;
    const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn) })).json.id;
    expect((await app.request({ method: 'DELETE', url })).statusCode).to.equal(204);
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id}` })).statusCode).to.equal(410);
    expect((await app.request({ method: 'DELETE', url })).statusCode).to.equal(204);

    await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn) });
    await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn) });
    expect((await app.request({ method: 'DELETE', url })).statusCode).to.equal(412);
  });

  it('conditional patch: patches the one match, 404 naming the condition with none, 412 on several', async () => {
    const mrn = unique('cp');
    const url = `/fhir/Patient?identifier=${encodeURIComponent(`${SYSTEM}|${mrn}`)}`;
    const patch = (to: string) => app.request({ method: 'PATCH', url, payload: JSON.stringify([{ op: 'add', path: '/gender', value: to }]), headers: { 'content-type': 'application/json-patch+json' } });
    const none = await patch('female');
    expect(none.statusCode).to.equal(404);
    expect(none.json.issue[0].diagnostics).to.equal(`the condition Patient?identifier=${encodeURIComponent(`${SYSTEM}|${mrn}`)} matches no resource`);
    const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn) })).json.id;
    const one = await patch('female');
    expect(one.statusCode).to.equal(200);
    expect(one.json.id).to.equal(id);
    expect(one.json.gender).to.equal('female');
    await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn) });
    expect((await patch('male')).statusCode).to.equal(412);
  });

  it('a conditional create inside a transaction is idempotent when the bundle is posted twice', async () => {
    const mrn = unique('tx');
    const bundle = () => ({
      resourceType: 'Bundle', type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:7f0c2b1e-5d1a-4a49-9f59-1f4f3c2f0001', resource: patient(mrn), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYSTEM}|${mrn}` } },
        { fullUrl: 'urn:uuid:7f0c2b1e-5d1a-4a49-9f59-1f4f3c2f0002', resource: { resourceType: 'Flag', status: 'active', code: { text: 'fall risk' }, subject: { reference: 'urn:uuid:7f0c2b1e-5d1a-4a49-9f59-1f4f3c2f0001' } }, request: { method: 'POST', url: 'Flag' } },
      ],
    });
    const first = await app.request({ method: 'POST', url: '/fhir', payload: bundle() });
    expect(first.statusCode).to.equal(200);
    const patients = await countRows(app, 'Patient');
    const second = await app.request({ method: 'POST', url: '/fhir', payload: bundle() });
    expect(second.statusCode).to.equal(200);
    expect(second.json.entry[0].response.status).to.equal('200 OK');
    expect(second.json.entry[0].response.location).to.equal(first.json.entry[0].response.location);
    // The match is answered with its version's instant, as the create was.
    expect(second.json.entry[0].response.lastModified).to.equal(first.json.entry[0].response.lastModified);
    expect(await countRows(app, 'Patient')).to.equal(patients);
    const flag = (await app.request({ method: 'GET', url: `/fhir/${second.json.entry[1].response.location.split('/_history')[0]}` })).json;
    expect(flag.subject.reference).to.equal(first.json.entry[0].response.location.split('/_history')[0]);
  });

  it('with return=representation, a conditional create that matched carries the matched resource, in a transaction and a batch', async () => {
    const mrn = unique('rep');
    const stored = (await post(patient(mrn, { active: true }), `identifier=${SYSTEM}|${mrn}`)).json;
    for (const type of ['transaction', 'batch']) {
      const res = await app.request({
        method: 'POST', url: '/fhir', headers: { prefer: 'return=representation' },
        payload: { resourceType: 'Bundle', type, entry: [{ resource: patient(mrn), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYSTEM}|${mrn}` } }] },
      });
      expect(res.statusCode, res.payload).to.equal(200);
      const [entry] = res.json.entry;
      expect(entry.response.status).to.equal('200 OK');
      expect(entry.resource, type).to.exist();
      expect(entry.resource.id).to.equal(stored.id);
      expect(entry.resource.active).to.equal(true);
      expect(entry.resource.meta.versionId).to.equal('1');
    }
  });

  it('a conditional reference in a transaction resolves to its one match, and fails the transaction otherwise', async () => {
    const mrn = unique('ref');
    const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(mrn) })).json.id;
    const flag = (ref: string) => ({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Flag', status: 'active', code: { text: 'x' }, subject: { reference: ref } }, request: { method: 'POST', url: 'Flag' } }] });
    const ok = await app.request({ method: 'POST', url: '/fhir', payload: flag(`Patient?identifier=${SYSTEM}|${mrn}`), headers: { prefer: 'return=representation' } });
    expect(ok.statusCode).to.equal(200);
    expect(ok.json.entry[0].resource.subject.reference).to.equal(`Patient/${id}`);
    const before = await countRows(app, 'Flag');
    const none = await app.request({ method: 'POST', url: '/fhir', payload: flag(`Patient?identifier=${SYSTEM}|nobody-${mrn}`) });
    expect(none.statusCode).to.equal(412);
    expect(none.json.issue[0].diagnostics).to.match(/Bundle\.entry\[0\].*matches no resource/);
    expect(await countRows(app, 'Flag')).to.equal(before);
  });

  it('a conditional reference also matches what the same transaction creates: new, already stored, or twice (412)', async () => {
    const mrn = unique('own');
    const upload = (patients: number) => ({
      resourceType: 'Bundle', type: 'transaction',
      entry: [
        ...Array.from({ length: patients }, () => ({ resource: patient(mrn), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYSTEM}|${mrn}` } })),
        { resource: { resourceType: 'Flag', status: 'active', code: { text: 'fall risk' }, subject: { reference: `Patient?identifier=${SYSTEM}|${mrn}` } }, request: { method: 'POST', url: 'Flag' } },
      ],
    });
    const first = await app.request({ method: 'POST', url: '/fhir', payload: upload(1), headers: { prefer: 'return=representation' } });
    expect(first.statusCode, first.payload).to.equal(200);
    const created = `Patient/${first.json.entry[0].resource.id}`;
    expect(first.json.entry[0].response.status).to.equal('201 Created');
    expect(first.json.entry[1].resource.subject.reference).to.equal(created);
    // Posted again: the Patient exists, the conditional create writes nothing, the reference finds it stored.
    const again = await app.request({ method: 'POST', url: '/fhir', payload: upload(1), headers: { prefer: 'return=representation' } });
    expect(again.statusCode, again.payload).to.equal(200);
    expect(again.json.entry[0].response.status).to.equal('200 OK');
    expect(again.json.entry[1].resource.subject.reference).to.equal(created);
    // Two new Patients of one identifier in one transaction: the reference is ambiguous.
    const other = unique('two');
    const flags = await countRows(app, 'Flag');
    const two = await app.request({
      method: 'POST', url: '/fhir',
      payload: { ...upload(0), entry: [{ resource: patient(other), request: { method: 'POST', url: 'Patient' } }, { resource: patient(other), request: { method: 'POST', url: 'Patient' } }, { ...upload(1).entry[1], resource: { ...upload(1).entry[1]!.resource, subject: { reference: `Patient?identifier=${SYSTEM}|${other}` } } }] },
    });
    expect(two.statusCode).to.equal(412);
    expect(two.json.issue[0].diagnostics).to.match(/matches more than one resource/);
    expect(await countRows(app, 'Flag')).to.equal(flags);
  });
});
