import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { randomUUID } from 'node:crypto';
import { countRows, searchAll, startTestServer, type TestServer, unique } from '../helpers/server';
import { executeWrites } from '../../src/pipeline';
import type { Db, Transaction } from '../../src/store/db';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * A transaction is processed as R4 http.html#trules orders it — deletes, then creates, then
 * updates and patches, then reads — and each conditional entry sees the entries processed before
 * it. Resolved identities that overlap fail the whole transaction, with nothing written.
 */
describe('transaction processing order', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const patient = (identifier: string) => {
    const [system, value] = identifier.split('|');
    return { resourceType: 'Patient', identifier: [{ system, value }], name: [{ family: 'Order' }] };
  };
  const transaction = (entry: unknown[]) => app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry } });
  const batch = (entry: unknown[]) => app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry } });
  const patientsWith = async (identifier: string) => searchAll(app, `/fhir/Patient?identifier=${encodeURIComponent(identifier)}`);
  const idOf = (location: string) => location.split('/')[1];

  it('answers its reads with the state it leaves, not what another writer commits right after it', async () => {
    const id = unique('raced');
    await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id } });
    // Another writer, whose update commits the moment this transaction has: a clinician's PUT
    // arriving then (its after-commit hook stands in for the race, deterministically).
    let raced = false;
    const unplug = app.ctx.stages.use('after-commit', 'test.other-writer', async (committed) => {
      if (raced || !committed.some((w) => w.id === id && w.resource && (w.resource as fhir4.Patient).gender === 'female')) return;
      raced = true;
      await executeWrites(app.ctx, [{ kind: 'update', type: 'Patient', id, resource: { resourceType: 'Patient', id, gender: 'male' } }]);
    });
    try {
      const res = await transaction([
        { request: { method: 'GET', url: `Patient/${id}` } },
        { request: { method: 'GET', url: `Patient?_id=${id}` } },
        { resource: { resourceType: 'Patient', id, gender: 'female' }, request: { method: 'PUT', url: `Patient/${id}` } },
      ]);
      expect(res.statusCode, res.payload).to.equal(200);
      expect(raced).to.be.true();
      expect(res.json.entry[2].response.etag).to.equal('W/"2"');
      // Both reads show version 2, the one this transaction wrote; version 3 is the other writer's.
      expect(res.json.entry[0].resource.gender).to.equal('female');
      expect(res.json.entry[0].response.etag).to.equal('W/"2"');
      expect(res.json.entry[1].resource.entry[0].resource.meta.versionId).to.equal('2');
      expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id}` })).json.meta.versionId).to.equal('3');
    } finally {
      unplug();
    }
  });

  it('fails whole when a read entry fails (R4 http.html#transaction: reject all): a resource not there is the transaction\'s 404, naming the entry\'s URL, nothing written', async () => {
    const id = unique('readfails');
    const missing = unique('missing');
    for (const [read, status] of [[`Patient/${missing}`, 404], ['Patient?unknown-parameter=1', 400]] as const) {
      const res = await transaction([
        { resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } },
        { request: { method: 'GET', url: read } },
      ]);
      expect(res.statusCode, res.payload).to.equal(status);
      expect(res.json.issue[0].expression).to.equal(['Bundle.entry[1].request.url']);
      expect(res.json.issue[0].diagnostics.startsWith('Bundle.entry[1]: '), res.payload).to.be.true();
      expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id}` })).statusCode).to.equal(404);
    }
    // The same read in a batch is its entry's answer, and the write beside it stands.
    const res = await batch([
      { resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } },
      { request: { method: 'GET', url: `Patient/${missing}` } },
    ]);
    expect(res.json.entry.map((e: { response: { status: string } }) => e.response.status)).to.equal(['201 Created', '404 Not Found']);
  });

  it('F2: a conditional create after a DELETE of its match creates; the new Observation refers to the new Patient', async () => {
    const identifier = `urn:t|${unique('dc1')}`;
    const old = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(identifier) })).json.id;
    const a = `urn:uuid:${randomUUID()}`;
    const res = await transaction([
      { fullUrl: a, resource: patient(identifier), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${identifier}` } },
      { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: a } }, request: { method: 'POST', url: 'Observation' } },
      { request: { method: 'DELETE', url: `Patient?identifier=${identifier}` } },
    ]);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '201 Created', '204 No Content']);
    const created = idOf(res.json.entry[0].response.location);
    expect(created).to.not.equal(old);
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${old}` })).statusCode).to.equal(410);
    const observation = (await app.request({ method: 'GET', url: `/fhir/${res.json.entry[1].response.location.split('/_history')[0]}` })).json;
    expect(observation.subject.reference).to.equal(`Patient/${created}`);
    expect((await patientsWith(identifier)).map((p) => p.id)).to.equal([created]);
  });

  it('F2: a conditional create matching what a later entry updates fails as an overlap, writing nothing', async () => {
    const identifier = `urn:t|${unique('dc2')}`;
    const old = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(identifier) })).json.id;
    const before = await countRows(app, 'Patient');
    const res = await transaction([
      { resource: patient(identifier), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${identifier}` } },
      { resource: { ...patient(identifier), id: old, active: false }, request: { method: 'PUT', url: `Patient/${old}` } },
    ]);
    expect(res.statusCode, res.payload).to.equal(400);
    expect(res.json.issue[0].diagnostics).to.contain(`Patient/${old}`);
    expect(await countRows(app, 'Patient')).to.equal(before);
  });

  it('F3: a second conditional create matches the first one\'s new resource: 200 naming it, one Patient', async () => {
    const identifier = `urn:dup|${unique('1')}`;
    const res = await transaction([
      { resource: patient(identifier), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${identifier}` } },
      { resource: patient(identifier), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${identifier}` } },
    ]);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '200 OK']);
    const created = idOf(res.json.entry[0].response.location);
    expect(idOf(res.json.entry[1].response.location)).to.equal(created);
    expect((await patientsWith(identifier)).map((p) => p.id)).to.equal([created]);
  });

  it('F3: a conditional PUT matching a resource POSTed in the same transaction fails as an overlap, writing nothing', async () => {
    const identifier = `urn:dup|${unique('2')}`;
    const before = await countRows(app, 'Patient');
    const res = await transaction([
      { resource: patient(identifier), request: { method: 'POST', url: 'Patient' } },
      { resource: { ...patient(identifier), active: true }, request: { method: 'PUT', url: `Patient?identifier=${identifier}` } },
    ]);
    expect(res.statusCode, res.payload).to.equal(400);
    expect(res.json.issue[0].diagnostics).to.match(/^Bundle\.entry\[1\].*written by Bundle\.entry\[0\]/);
    expect(await countRows(app, 'Patient')).to.equal(before);
    expect(await patientsWith(identifier)).to.equal([]);
  });

  it('F3: a condition matching a stored resource and one created earlier in the transaction is a multiple match (412)', async () => {
    const identifier = `urn:dup|${unique('3')}`;
    await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(identifier) });
    const before = await countRows(app, 'Patient');
    for (const second of [
      { resource: patient(identifier), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${identifier}` } },
      { resource: patient(identifier), request: { method: 'PUT', url: `Patient?identifier=${identifier}` } },
    ]) {
      const res = await transaction([{ resource: patient(identifier), request: { method: 'POST', url: 'Patient' } }, second]);
      expect(res.statusCode, res.payload).to.equal(412);
      expect(res.json.issue[0].diagnostics).to.contain('matches more than one resource');
    }
    expect(await countRows(app, 'Patient')).to.equal(before);
  });

  it('F3: where memory cannot judge an earlier entry, the database alone decides, as before: nothing is refused', async () => {
    const identifier = `urn:dup|${unique('4')}`;
    const family = unique('Doe');
    const before = await countRows(app, 'Patient');
    // `:missing` and names are judged only by the database; the earlier Patients, not stored yet, are not counted.
    const res = await transaction([
      { resource: patient(identifier), request: { method: 'POST', url: 'Patient' } },
      { resource: patient(identifier), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${identifier}&birthdate:missing=true` } },
      { resource: { resourceType: 'Patient', name: [{ family, given: ['Jane'] }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `family=${family}&given=Jane` } },
      { resource: { resourceType: 'Patient', name: [{ family, given: ['John'] }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `family=${family}&given=John` } },
    ]);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '201 Created', '201 Created', '201 Created']);
    expect((await countRows(app, 'Patient')).current).to.equal(before.current + 4);
  });

  it('F3: a condition matching a stored resource an earlier entry patches is refused; one that does not is answered', async () => {
    const identifier = `urn:dup|${unique('5')}`;
    const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(identifier) })).json.id;
    const other = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(`urn:dup|${unique('6')}`) })).json.id;
    const patchOf = (target: string) => ({
      resource: { resourceType: 'Parameters', parameter: [{ name: 'operation', part: [{ name: 'type', valueCode: 'add' }, { name: 'path', valueString: 'Patient' }, { name: 'name', valueString: 'active' }, { name: 'value', valueBoolean: true }] }] },
      request: { method: 'PATCH', url: `Patient/${target}` },
    });
    const matched = await transaction([patchOf(id), { resource: patient(identifier), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${identifier}` } }]);
    expect(matched.statusCode, matched.payload).to.equal(400);
    // A create runs before the patch (R4 order), so the overlap rule refuses it first.
    expect(matched.json.issue[0].diagnostics).to.match(/which Bundle\.entry\[0\] changes|cannot be judged/);
    const unrelated = await transaction([patchOf(other), { resource: patient(identifier), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${identifier}` } }]);
    expect(unrelated.statusCode, unrelated.payload).to.equal(200);
    expect(unrelated.json.entry[1].response.status).to.equal('200 OK');
  });

  describe('F4: request.ifNoneMatch on a PUT entry', () => {
    it('* refuses to overwrite an existing resource (412), in a transaction and in a batch, writing nothing', async () => {
      const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(`urn:t|${unique('abs')}`) })).json.id;
      const put = { resource: { resourceType: 'Patient', id, active: true }, request: { method: 'PUT', url: `Patient/${id}`, ifNoneMatch: '*' } };
      const tx = await transaction([put]);
      expect(tx.statusCode, tx.payload).to.equal(412);
      expect(tx.json.issue[0].diagnostics).to.contain('If-None-Match');
      const b = await batch([put]);
      expect(b.statusCode, b.payload).to.equal(200);
      expect(b.json.entry[0].response.status).to.equal('412 Precondition Failed');
      const current = (await app.request({ method: 'GET', url: `/fhir/Patient/${id}` })).json;
      expect(current.meta.versionId).to.equal('1');
      expect(current.active).to.not.exist();
    });

    it('* creates what does not exist yet', async () => {
      const id = `abs-${randomUUID()}`;
      const res = await transaction([{ resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}`, ifNoneMatch: '*' } }]);
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.entry[0].response.status).to.equal('201 Created');
    });

    it('any other value is 400, as on REST', async () => {
      const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(`urn:t|${unique('abs')}`) })).json.id;
      const res = await transaction([{ resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}`, ifNoneMatch: 'W/"1"' } }]);
      expect(res.statusCode, res.payload).to.equal(400);
      expect(res.json.issue[0].diagnostics).to.contain('Bundle.entry[0].request.ifNoneMatch on an update takes only *');
      const rest = await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id }, headers: { 'if-none-match': 'W/"1"' } });
      expect(rest.statusCode).to.equal(400);
    });
  });

  describe('F5: conditional reads in GET entries', () => {
    let id: string;
    let lastUpdated: string;
    before(async () => {
      id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient(`urn:t|${unique('abs')}`) })).json.id;
      const updated = await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id, active: true } });
      expect(updated.json.meta.versionId).to.equal('2');
      lastUpdated = updated.json.meta.lastUpdated;
    });

    for (const kind of ['batch', 'transaction'] as const) {
      it(`${kind}: ifNoneMatch of the current version and ifModifiedSince after lastUpdated answer 304 without the resource`, async () => {
        const later = new Date(Date.parse(lastUpdated) + 60_000).toISOString();
        const earlier = new Date(Date.parse(lastUpdated) - 60_000).toISOString();
        const res = await (kind === 'batch' ? batch : transaction)([
          { request: { method: 'GET', url: `Patient/${id}`, ifNoneMatch: 'W/"2"' } },
          { request: { method: 'GET', url: `Patient/${id}`, ifModifiedSince: later } },
          { request: { method: 'GET', url: `Patient/${id}`, ifNoneMatch: 'W/"1"' } },
          { request: { method: 'GET', url: `Patient/${id}`, ifModifiedSince: earlier } },
        ]);
        expect(res.statusCode, res.payload).to.equal(200);
        expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['304 Not Modified', '304 Not Modified', '200 OK', '200 OK']);
        for (const e of res.json.entry.slice(0, 2)) {
          expect(e.resource).to.not.exist();
          expect(e.response.etag).to.equal('W/"2"');
        }
        expect(res.json.entry[2].resource.id).to.equal(id);
        expect(res.json.entry[3].resource.id).to.equal(id);
        // The version's instant to the millisecond, as a write entry gives it, not the header's whole second.
        expect(res.json.entry[2].response.lastModified).to.equal(lastUpdated);
      });
    }
  });
});

describe('a transaction read whose SQL fails', () => {
  const MARK = 'sqlfailsmark';
  let app: TestServer;
  before(async () => {
    // Every statement of a unit carrying MARK runs `SELECT 1/0` instead: a real SQL error, which
    // aborts the database transaction the read shares with the writes.
    const failing = (tx: Transaction): Transaction => new Proxy(tx, {
      get: (target, key) => key === 'query'
        ? (sql: string, params?: readonly unknown[]) => `${sql} ${JSON.stringify(params ?? [])}`.toLowerCase().includes(MARK) ? target.query('SELECT 1/0') : target.query(sql, params)
        : (Reflect.get(target, key) as unknown),
    });
    // Requests run on `db.withSignal(…)`: the Db it answers fails the same way.
    const failingDb = (db: Db): Db => new Proxy(db, {
      get: (target, key) => {
        if (key === 'transaction') return <T>(fn: (tx: Transaction) => Promise<T>) => target.transaction((tx) => fn(failing(tx)));
        if (key === 'withSignal') return (signal: AbortSignal) => failingDb(target.withSignal(signal));
        return Reflect.get(target, key) as unknown;
      },
    });
    app = await startTestServer({}, { db: failingDb });
  });
  after(() => app.stop());

  it('fails the transaction whole with 500, its writes rolled back (R4: reject all)', async () => {
    const id = unique('sqlfail');
    const res = await app.request({
      method: 'POST', url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'transaction', entry: [
        { resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } },
        { request: { method: 'GET', url: `Patient?name=${MARK}` } },
        { request: { method: 'GET', url: `Patient/${id}` } },
      ] },
    });
    expect(res.statusCode, res.payload).to.equal(500);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id}` })).statusCode).to.equal(404);
  });
});
