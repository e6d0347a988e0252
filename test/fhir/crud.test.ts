import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { supportedTypes } from '../../src/kernel/resource-types';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { officialDefinitionsDir, projectRoot } from '../../src/kernel/paths';
import { countRows, startTestServer, type TestServer, unique, withoutServerMeta } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * A valid resource of each type: the project's own small one (fixtures/resources) where it has
 * one, else the smallest of the type's examples in the official R4 package, or a bare resource
 * for the five Substance* types the package has no example of (none of their elements is required).
 */
function fixture(type: string): any {
  const own = join(projectRoot, 'fixtures', 'resources', `${type}.json`);
  if (existsSync(own)) return JSON.parse(readFileSync(own, 'utf8'));
  const examples = readdirSync(officialDefinitionsDir()).filter((f) => f.startsWith(`${type}-`) && f.endsWith('.json'));
  const smallest = examples.map((f) => join(officialDefinitionsDir(), f)).sort((a, b) => statSync(a).size - statSync(b).size)[0];
  const example = smallest ? JSON.parse(readFileSync(smallest, 'utf8')) : { resourceType: type };
  delete example.id;
  delete example.meta;
  return example;
}

const withoutMeta = (r: any) => withoutServerMeta(r);

describe('FHIR REST interactions', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  it('serves a CapabilityStatement listing every supported type with its interactions', async () => {
    const res = await app.request({ method: 'GET', url: '/fhir/metadata' });
    expect(res.statusCode).to.equal(200);
    expect(String(res.headers['content-type'])).to.startWith('application/fhir+json');
    expect(res.json.resourceType).to.equal('CapabilityStatement');
    expect(res.json.fhirVersion).to.equal('4.0.1');
    const types = res.json.rest[0].resource.map((r: any) => r.type);
    // Each type once: ConceptMap is stored like any other, its $translate joins that entry; then
    // OperationDefinition and SearchParameter, the server's own definitions, served read-only from its code;
    // AuditEvent, which the audit trail serves (read and search) from its own table.
    expect(types).to.equal([...supportedTypes, 'OperationDefinition', 'SearchParameter', 'AuditEvent']);
    const observation = res.json.rest[0].resource.find((r: any) => r.type === 'Observation');
    expect(observation.interaction.map((i: any) => i.code)).to.include(['read', 'vread', 'update', 'patch', 'delete', 'create', 'history-instance']);
    expect(res.json.rest[0].interaction.map((i: any) => i.code)).to.equal(['transaction', 'batch', 'history-system', 'search-system']);
  });

  it('lists the _include and _revinclude values it takes, each of which a search takes, and conditional reads', async () => {
    const res = await app.request({ method: 'GET', url: '/fhir/metadata' });
    const resource = (type: string) => res.json.rest[0].resource.find((r: any) => r.type === type);
    expect(resource('Observation').searchInclude).to.include(['Observation:subject', 'Observation:patient', 'Observation:performer', '*']);
    expect(resource('Patient').searchRevInclude).to.include(['Observation:subject', 'Observation:patient', 'Flag:patient', 'CarePlan:subject', '*']);
    expect(resource('Patient').searchRevInclude).to.not.include('Observation:device');
    for (const type of ['Observation', 'Patient', 'CarePlan']) {
      for (const [param, values] of [['_include', resource(type).searchInclude], ['_revinclude', resource(type).searchRevInclude]] as const) {
        for (const value of values) {
          const search = await app.request({ method: 'GET', url: `/fhir/${type}?_count=1&${param}=${encodeURIComponent(value)}` });
          expect(search.statusCode, `${type}?${param}=${value}`).to.equal(200);
        }
      }
    }
    // conditionalRead full-support: both If-None-Match and If-Modified-Since answer 304.
    expect(resource('Patient').conditionalRead).to.equal('full-support');
    const created = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', active: true } });
    const url = `/fhir/Patient/${created.json.id}`;
    const read = await app.request({ method: 'GET', url });
    expect((await app.request({ method: 'GET', url, headers: { 'if-none-match': String(read.headers.etag) } })).statusCode).to.equal(304);
    expect((await app.request({ method: 'GET', url, headers: { 'if-modified-since': String(read.headers['last-modified']) } })).statusCode).to.equal(304);
    expect((await app.request({ method: 'GET', url, headers: { 'if-modified-since': new Date(Date.parse(read.json.meta.lastUpdated) - 5000).toUTCString() } })).statusCode).to.equal(200);
  });

  it('lists every operation it serves, and each one listed answers (not 404)', async () => {
    const res = await app.request({ method: 'GET', url: '/fhir/metadata' });
    const operations = (type: string) => res.json.rest[0].resource.find((r: any) => r.type === type).operation.map((o: any) => o.name);
    for (const type of supportedTypes) expect(operations(type), type).to.include('validate');
    expect(operations('CarePlan')).to.include(['validate', 'evaluate', 'check-adherence']);
    expect(operations('ConceptMap')).to.equal(['validate', 'translate']);
    const calls = [
      { method: 'POST', url: '/fhir/Patient/$validate', payload: { resourceType: 'Patient' } },
      { method: 'POST', url: '/fhir/CarePlan/$check-adherence', payload: { resourceType: 'Parameters' } },
      { method: 'GET', url: '/fhir/ConceptMap/$translate?system=https://withings.com/meastype&code=1' },
    ];
    for (const call of calls) {
      const answer = await app.request(call);
      expect(answer.statusCode, `${call.url}: ${answer.payload.slice(0, 200)}`).to.equal(200);
    }
  });

  for (const type of supportedTypes) {
    it(`runs the create, read, update, patch, vread, history and delete cycle for ${type}`, async () => {
      const example = fixture(type);

      const created = await app.request({ method: 'POST', url: `/fhir/${type}`, payload: example });
      expect(created.statusCode).to.equal(201);
      const id = created.json.id;
      expect(id).to.match(/^[A-Za-z0-9\-.]{1,64}$/);
      expect(created.headers.etag).to.equal('W/"1"');
      expect(created.headers.location).to.equal(`http://localhost:8080/fhir/${type}/${id}/_history/1`);
      expect(new Date(created.headers['last-modified'] as string).getTime()).to.be.within(Date.now() - 60_000, Date.now() + 1000);
      expect(created.json.meta.versionId).to.equal('1');
      expect(withoutMeta(created.json)).to.equal({ ...withoutMeta(example), id });

      const read = await app.request({ method: 'GET', url: `/fhir/${type}/${id}` });
      expect(read.statusCode).to.equal(200);
      expect(read.headers.etag).to.equal('W/"1"');
      expect(read.headers['last-modified']).to.equal(created.headers['last-modified']);
      expect(read.json).to.equal(created.json);

      const changed = { ...read.json, language: 'en' };
      const updated = await app.request({ method: 'PUT', url: `/fhir/${type}/${id}`, payload: changed, headers: { 'if-match': 'W/"1"' } });
      expect(updated.statusCode).to.equal(200);
      expect(updated.headers.etag).to.equal('W/"2"');
      expect(updated.json.language).to.equal('en');
      expect(updated.json.meta.versionId).to.equal('2');

      const patched = await app.request({
        method: 'PATCH',
        url: `/fhir/${type}/${id}`,
        headers: { 'content-type': 'application/json-patch+json', 'if-match': 'W/"2"' },
        payload: JSON.stringify([{ op: 'replace', path: '/language', value: 'de' }]),
      });
      expect(patched.statusCode).to.equal(200);
      expect(patched.headers.etag).to.equal('W/"3"');
      expect(patched.json.language).to.equal('de');

      for (const [vid, language] of [[1, example.language], [2, 'en'], [3, 'de']] as const) {
        const v = await app.request({ method: 'GET', url: `/fhir/${type}/${id}/_history/${vid}` });
        expect(v.statusCode).to.equal(200);
        expect(v.headers.etag).to.equal(`W/"${vid}"`);
        expect(v.json.meta.versionId).to.equal(String(vid));
        expect(v.json.language).to.equal(language);
      }

      const deleted = await app.request({ method: 'DELETE', url: `/fhir/${type}/${id}` });
      expect(deleted.statusCode).to.equal(204);
      expect(deleted.headers.etag).to.equal('W/"4"');
      const gone = await app.request({ method: 'GET', url: `/fhir/${type}/${id}` });
      expect(gone.statusCode).to.equal(410);
      expect(gone.json.resourceType).to.equal('OperationOutcome');
      expect((await app.request({ method: 'GET', url: `/fhir/${type}/${id}/_history/4` })).statusCode).to.equal(410);
      expect((await app.request({ method: 'GET', url: `/fhir/${type}/${id}/_history/3` })).statusCode).to.equal(200);

      const history = await app.request({ method: 'GET', url: `/fhir/${type}/${id}/_history` });
      expect(history.statusCode).to.equal(200);
      expect(history.json.type).to.equal('history');
      expect(history.json.total).to.equal(4);
      expect(history.json.entry.map((e: any) => e.response.etag)).to.equal(['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']);
      expect(history.json.entry.map((e: any) => e.request.method)).to.equal(['DELETE', 'PATCH', 'PUT', 'POST']);
      expect(history.json.entry[0].resource).to.not.exist();
      expect(history.json.entry[3].resource.meta.versionId).to.equal('1');

      // Deleting again writes nothing; an update brings the resource back as the next version.
      const again = await app.request({ method: 'DELETE', url: `/fhir/${type}/${id}` });
      expect(again.statusCode).to.equal(204);
      const revived = await app.request({ method: 'PUT', url: `/fhir/${type}/${id}`, payload: { ...changed, meta: undefined } });
      expect(revived.statusCode).to.equal(201);
      expect(revived.headers.etag).to.equal('W/"5"');
    });
  }

  it('creates with PUT at a new client-chosen id', async () => {
    const id = unique('put');
    const res = await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id, active: true } });
    expect(res.statusCode).to.equal(201);
    expect(res.headers.etag).to.equal('W/"1"');
    expect(res.headers.location).to.equal(`http://localhost:8080/fhir/Patient/${id}/_history/1`);
  });

  it('assigns time-ordered ids (UUID version 7, decision 025) by POST and in a transaction, in creation order', async () => {
    const before = Date.now();
    const posted = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', active: true } });
    const bundle = await app.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [1, 2, 3].map((n) => ({ fullUrl: `urn:uuid:${unique('v7')}`, resource: { resourceType: 'Patient', birthDate: `200${n}-01-01` }, request: { method: 'POST', url: 'Patient' } })),
      },
    });
    expect(bundle.statusCode, bundle.payload.slice(0, 300)).to.equal(200);
    const ids = [posted.json.id, ...bundle.json.entry.map((e: any) => e.response.location.split('/')[1])];
    for (const id of ids) {
      expect(id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      // The leading 48 bits are the creation time in milliseconds.
      const ms = parseInt(id.replace(/-/g, '').slice(0, 12), 16);
      expect(ms).to.be.within(before, Date.now());
    }
    expect([...ids].sort()).to.equal(ids);
  });

  it('overwrites client-sent meta.versionId and meta.lastUpdated, keeps the rest of meta', async () => {
    const res = await app.request({
      method: 'POST',
      url: '/fhir/Patient',
      payload: { resourceType: 'Patient', id: 'ignored', meta: { versionId: '99', lastUpdated: '2001-01-01T00:00:00Z', tag: [{ code: 'x' }] } },
    });
    expect(res.statusCode).to.equal(201);
    expect(res.json.id).to.not.equal('ignored');
    expect(res.json.meta.versionId).to.equal('1');
    expect(res.json.meta.lastUpdated).to.not.equal('2001-01-01T00:00:00Z');
    expect(res.json.meta.tag).to.equal([{ code: 'x' }]);
  });

  describe('Prefer: return', () => {
    it('answers minimal with no body and the headers', async () => {
      const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' }, headers: { prefer: 'return=minimal' } });
      expect(res.statusCode).to.equal(201);
      expect(res.payload).to.equal('');
      expect(res.headers.location).to.exist();
      expect(res.headers.etag).to.equal('W/"1"');
    });

    it('answers OperationOutcome with an informational outcome', async () => {
      const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' }, headers: { prefer: 'return=OperationOutcome' } });
      expect(res.statusCode).to.equal(201);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue[0].severity).to.equal('information');
    });

    it('answers a delete with 200 and an informational outcome when asked for one, 204 otherwise (R4 http.html#delete)', async () => {
      const id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
      const res = await app.request({ method: 'DELETE', url: `/fhir/Patient/${id}`, headers: { prefer: 'return=OperationOutcome' } });
      expect(res.statusCode).to.equal(200);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue[0].severity).to.equal('information');
      expect(res.json.issue[0].diagnostics).to.contain(`Patient/${id}`);
      // Deleting it again deletes nothing, and says so.
      const again = await app.request({ method: 'DELETE', url: `/fhir/Patient/${id}`, headers: { prefer: 'return=OperationOutcome' } });
      expect(again.statusCode).to.equal(200);
      expect(again.json.issue[0].diagnostics).to.contain('nothing');
      const other = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
      for (const prefer of ['return=minimal', 'return=representation']) {
        const plain = await app.request({ method: 'DELETE', url: `/fhir/Patient/${other}`, headers: { prefer } });
        expect(plain.statusCode).to.equal(204);
        expect(plain.payload).to.equal('');
      }
    });
  });

  describe('_summary and _elements on read and vread', () => {
    const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' };
    let id: string;
    before(async () => {
      const payload = { resourceType: 'Patient', active: true, gender: 'female', birthDate: '1941-03-04', name: [{ family: 'Subset' }], text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Subset</div>' }, maritalStatus: { text: 'widowed' } };
      id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload })).json.id;
      expect((await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { ...payload, id, birthDate: '1941-03-05' } })).statusCode).to.equal(200);
    });

    it('answers the named elements, marked SUBSETTED, with the version headers', async () => {
      const res = await app.request({ method: 'GET', url: `/fhir/Patient/${id}?_elements=birthDate,gender` });
      expect(res.statusCode).to.equal(200);
      expect(res.headers.etag).to.equal('W/"2"');
      expect(Object.keys(res.json).sort()).to.equal(['birthDate', 'gender', 'id', 'meta', 'resourceType']);
      expect(res.json.birthDate).to.equal('1941-03-05');
      expect(res.json.meta.tag).to.equal([SUBSETTED]);
      expect(res.json.meta.versionId).to.equal('2');
      const old = await app.request({ method: 'GET', url: `/fhir/Patient/${id}/_history/1?_elements=birthDate` });
      expect(old.statusCode).to.equal(200);
      expect(old.json.birthDate).to.equal('1941-03-04');
      expect(old.json.gender).to.not.exist();
      expect(old.json.meta.tag).to.equal([SUBSETTED]);
    });

    it('keeps the mandatory elements of the official definitions with the named ones, on a read and in a search Bundle', async () => {
      const observation = await app.request({
        method: 'POST', url: '/fhir/Observation',
        payload: { resourceType: 'Observation', status: 'final', code: { text: 'pulse' }, subject: { reference: `Patient/${id}` }, valueQuantity: { value: 64, unit: '/min' }, note: [{ text: 'resting' }] },
      });
      const oid = observation.json.id;
      // R4 Observation: status and code have min 1; subject, value[x] and note do not.
      const read = await app.request({ method: 'GET', url: `/fhir/Observation/${oid}?_elements=subject` });
      expect(read.statusCode).to.equal(200);
      expect(Object.keys(read.json).sort()).to.equal(['code', 'id', 'meta', 'resourceType', 'status', 'subject']);
      expect(read.json.status).to.equal('final');
      expect(read.json.code).to.equal({ text: 'pulse' });
      expect(read.json.meta.tag).to.equal([SUBSETTED]);
      const searched = await app.request({ method: 'GET', url: `/fhir/Observation?_id=${oid}&_elements=subject` });
      expect(searched.statusCode).to.equal(200);
      const resource = searched.json.entry[0].resource;
      expect(Object.keys(resource).sort()).to.equal(['code', 'id', 'meta', 'resourceType', 'status', 'subject']);
      expect(resource.meta.tag).to.equal([SUBSETTED]);
    });

    it('answers the summary elements of the official definitions for _summary=true, the text for _summary=text, all but the text for _summary=data', async () => {
      const summary = (await app.request({ method: 'GET', url: `/fhir/Patient/${id}?_summary=true` })).json;
      expect(summary.birthDate).to.equal('1941-03-05');
      expect(summary.name).to.exist();
      expect(summary.maritalStatus).to.not.exist();
      expect(summary.text).to.not.exist();
      const text = (await app.request({ method: 'GET', url: `/fhir/Patient/${id}?_summary=text` })).json;
      expect(Object.keys(text).sort()).to.equal(['id', 'meta', 'resourceType', 'text']);
      const data = (await app.request({ method: 'GET', url: `/fhir/Patient/${id}?_summary=data` })).json;
      expect(data.text).to.not.exist();
      expect(data.maritalStatus).to.equal({ text: 'widowed' });
      const whole = await app.request({ method: 'GET', url: `/fhir/Patient/${id}?_summary=false` });
      expect(whole.json.text).to.exist();
      expect(whole.json.meta.tag).to.not.exist();
    });

    it('keeps a choice element whose name has a capital of its own (multipleBirth[x], asNeeded[x]) with its typed key', async () => {
      const twin = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', gender: 'female', multipleBirthInteger: 2, _multipleBirthInteger: { id: 'mb' } } })).json.id;
      const named = (await app.request({ method: 'GET', url: `/fhir/Patient/${twin}?_elements=multipleBirth` })).json;
      expect(named.multipleBirthInteger).to.equal(2);
      expect(named._multipleBirthInteger).to.equal({ id: 'mb' });
      expect(named.gender).to.not.exist();
      // R4 ServiceRequest.asNeeded[x] is a summary element.
      const request = await app.request({
        method: 'POST', url: '/fhir/ServiceRequest',
        payload: { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${twin}` }, asNeededBoolean: true, note: [{ text: 'not summary' }] },
      });
      const summary = (await app.request({ method: 'GET', url: `/fhir/ServiceRequest/${request.json.id}?_summary=true` })).json;
      expect(summary.asNeededBoolean).to.equal(true);
      expect(summary.note).to.not.exist();
    });

    it('refuses _summary=count and an unknown _summary with a 400 OperationOutcome', async () => {
      for (const url of [`/fhir/Patient/${id}?_summary=count`, `/fhir/Patient/${id}?_summary=bogus`, `/fhir/Patient/${id}/_history/1?_summary=count`]) {
        const res = await app.request({ method: 'GET', url });
        expect(res.statusCode, url).to.equal(400);
        expect(res.json.resourceType).to.equal('OperationOutcome');
        expect(res.json.issue[0].expression).to.equal(['_summary']);
      }
    });
  });

  describe('content negotiation', () => {
    let id: string;
    before(async () => {
      id = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', active: true } })).json.id;
    });

    it('answers a request for plain JSON (Accept, _format=json) as application/fhir+json, the type R4 http.html#mime says servers SHALL use', async () => {
      const byAccept = await app.request({ method: 'GET', url: `/fhir/Patient/${id}`, headers: { accept: 'application/json' } });
      expect(byAccept.statusCode).to.equal(200);
      expect(String(byAccept.headers['content-type'])).to.startWith('application/fhir+json');
      for (const format of ['json', 'application/json', 'application/fhir+json']) {
        const byFormat = await app.request({ method: 'GET', url: `/fhir/Patient/${id}?_format=${encodeURIComponent(format)}`, headers: { accept: 'application/fhir+xml' } });
        expect(byFormat.statusCode, format).to.equal(200);
        expect(String(byFormat.headers['content-type']), format).to.startWith('application/fhir+json');
      }
      const search = await app.request({ method: 'GET', url: `/fhir/Patient?_id=${id}&_format=json` });
      expect(String(search.headers['content-type'])).to.startWith('application/fhir+json');
      const missing = await app.request({ method: 'GET', url: '/fhir/Patient/not-there', headers: { accept: 'application/json' } });
      expect([missing.statusCode, String(missing.headers['content-type']).split(';')[0]]).to.equal([404, 'application/fhir+json']);
    });

    it('accepts a plain application/json body', async () => {
      const res = await app.server.inject({ method: 'POST', url: '/fhir/Patient', headers: { 'content-type': 'application/json; charset=utf-8' }, payload: '{"resourceType":"Patient"}' });
      expect(res.statusCode).to.equal(201);
    });

    it('pretty-prints with _pretty=true', async () => {
      const res = await app.request({ method: 'GET', url: `/fhir/Patient/${id}?_pretty=true` });
      expect(res.statusCode).to.equal(200);
      expect(res.payload).to.contain('\n  "resourceType": "Patient"');
    });

    it('answers 406 for XML by Accept or _format', async () => {
      for (const req of [
        { url: `/fhir/Patient/${id}`, headers: { accept: 'application/fhir+xml' } },
        { url: `/fhir/Patient/${id}?_format=xml`, headers: {} },
        { url: '/fhir/metadata?_format=application/fhir+xml', headers: {} },
      ]) {
        const res = await app.request({ method: 'GET', ...req });
        expect(res.statusCode).to.equal(406);
        expect(res.json.resourceType).to.equal('OperationOutcome');
      }
    });

    it('answers 415 for an XML body and writes nothing', async () => {
      const before = await countRows(app, 'Patient');
      const res = await app.server.inject({ method: 'POST', url: '/fhir/Patient', headers: { 'content-type': 'application/fhir+xml' }, payload: '<Patient xmlns="http://hl7.org/fhir"/>' });
      expect(res.statusCode).to.equal(415);
      expect(JSON.parse(res.payload).resourceType).to.equal('OperationOutcome');
      expect(await countRows(app, 'Patient')).to.equal(before);
    });

    it('serves R4 to fhirVersion=4.0, answers 406 to another fhirVersion and 415 to a body of one', async () => {
      const r4 = await app.request({ method: 'GET', url: `/fhir/Patient/${id}`, headers: { accept: 'application/fhir+json; fhirVersion=4.0' } });
      expect(r4.statusCode).to.equal(200);
      const stu3 = await app.request({ method: 'GET', url: `/fhir/Patient/${id}`, headers: { accept: 'application/fhir+json; fhirVersion=3.0' } });
      expect(stu3.statusCode).to.equal(406);
      expect(stu3.json.resourceType).to.equal('OperationOutcome');
      const either = await app.request({ method: 'GET', url: `/fhir/Patient/${id}`, headers: { accept: 'application/fhir+json; fhirVersion=3.0, application/fhir+json; fhirVersion=4.0; q=0.5' } });
      expect(either.statusCode).to.equal(200);
      const before = await countRows(app, 'Patient');
      const body = await app.request({ method: 'POST', url: '/fhir/Patient', headers: { 'content-type': 'application/fhir+json; fhirVersion=5.0' }, payload: JSON.stringify({ resourceType: 'Patient' }) });
      expect(body.statusCode).to.equal(415);
      expect(body.json.issue[0].diagnostics).to.include('FHIR 5.0');
      expect(await countRows(app, 'Patient')).to.equal(before);
      const accepted = await app.request({ method: 'POST', url: '/fhir/Patient', headers: { 'content-type': 'application/fhir+json; fhirVersion=4.0' }, payload: JSON.stringify({ resourceType: 'Patient' }) });
      expect(accepted.statusCode).to.equal(201);
    });

    it('answers 304 to If-None-Match with the current version', async () => {
      const res = await app.request({ method: 'GET', url: `/fhir/Patient/${id}`, headers: { 'if-none-match': 'W/"1"' } });
      expect(res.statusCode).to.equal(304);
    });

    it('answers 304 to If-None-Match: * and to a list naming the current version, over REST and in a batch (RFC 9110 13.1.2)', async () => {
      for (const tag of ['*', 'W/"7", W/"1"']) {
        expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id}`, headers: { 'if-none-match': tag } })).statusCode, tag).to.equal(304);
      }
      const batch = await app.request({
        method: 'POST', url: '/fhir',
        payload: { resourceType: 'Bundle', type: 'batch', entry: ['*', 'W/"7", W/"1"', 'W/"7"'].map((ifNoneMatch) => ({ request: { method: 'GET', url: `Patient/${id}`, ifNoneMatch } })) },
      });
      expect(batch.json.entry.map((e: fhir4.BundleEntry) => e.response!.status.slice(0, 3))).to.equal(['304', '304', '200']);
    });
  });
});
