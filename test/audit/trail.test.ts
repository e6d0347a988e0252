import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { randomUUID } from 'node:crypto';
import { verifyChain } from '../../src/audit';
import { onPostgres } from '../helpers/pass';
import type { Db, Queryable, Transaction } from '../../src/store/db';
import { link } from '../../src/audit/chain';
import { AuditRecorder } from '../../src/audit/recorder';
import { QuerySealer } from '../../src/audit/sealed-query';
import type { AuditRecord } from '../../src/audit/event';
import { VERSION_AUTHOR_URL, authorOf } from '../../src/audit/authorship';
import { unrestricted } from '../../src/access/policy';
import { validationIssues } from '../../src/validation/resource';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const BALP = 'https://profiles.ihe.net/ITI/BALP';
const CLIENT_ID = 'urn:ietf:params:oauth:client-id';

type Agent = fhir4.AuditEventAgent;
type Entity = fhir4.AuditEventEntity;

const agentOfType = (e: fhir4.AuditEvent, code: string): Agent | undefined => e.agent.find((a) => a.type?.coding?.some((c) => c.code === code));
const entityOfRole = (e: fhir4.AuditEvent, role: string): Entity[] => (e.entity ?? []).filter((x) => x.role?.code === role);
const transactionId = (e: fhir4.AuditEvent) => e.entity?.find((x) => x.type?.code === 'XrequestId')?.what?.identifier?.value;
const decodedQuery = (e: fhir4.AuditEvent) => Buffer.from(entityOfRole(e, '24')[0]?.query ?? '', 'base64').toString();

/**
 * Issue 14: every interaction leaves an AuditEvent per IHE BALP, read back through FHIR and
 * checked field by field: type/subtype/action/outcome, the client, server and user agents in
 * the roles BALP gives them, and the patient, data, query and X-Request-Id entities.
 */
describe('audit trail (BALP)', () => {
  let app: SecuredServer;
  let auditor: Record<string, string>;
  const id: Record<string, string> = {};

  const observation = (patient: string) => ({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patient}` }, effectiveDateTime: '2026-10-02T08:00:00Z',
    valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });

  /** The AuditEvents matching `query`, once the read audits waiting have been stored. */
  const events = async (query: string): Promise<fhir4.AuditEvent[]> => {
    await app.audit.flush();
    const res = await app.request({ method: 'GET', url: `/fhir/AuditEvent?${query}&_count=100`, headers: auditor });
    expect(res.statusCode, res.payload).to.equal(200);
    return ((res.json as fhir4.Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent);
  };

  before(async () => {
    app = await startSecuredServer();
    auditor = await app.as('system/AuditEvent.rs', { clientId: 'auditor' });
    id.alice = await app.create({ resourceType: 'Patient', name: [{ family: 'Auditalice' }] });
    id.bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Auditbob' }] });
    id.aliceObs = await app.create(observation(id.alice));
    id.bobObs = await app.create(observation(id.bob));
  });

  after(async () => {
    await app.stop();
  });

  it('records a read: PatientRead with user, client, server, patient, data and transaction', async () => {
    const doctor = await app.as('user/Observation.rs', { fhirUser: 'Practitioner/audit-doc', clientId: 'ehr-app' });
    const res = await app.request({ method: 'GET', url: `/fhir/Observation/${id.aliceObs}`, headers: doctor });
    expect(res.statusCode).to.equal(200);
    const found = (await events(`entity=Observation/${id.aliceObs}&subtype=read`)).filter((e) => transactionId(e) === res.headers['x-request-id']);
    expect(found).to.have.length(1);
    const e = found[0]!;
    expect(e.meta?.profile).to.equal([`${BALP}/StructureDefinition/IHE.BasicAudit.PatientRead`]);
    expect(e.type).to.equal({ system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' });
    expect(e.subtype).to.equal([{ system: 'http://hl7.org/fhir/restful-interaction', code: 'read' }]);
    expect(e.action).to.equal('R');
    expect(e.outcome).to.equal('0');
    expect(Date.parse(e.recorded)).to.be.within(Date.now() - 60_000, Date.now() + 1000);
    expect(e.source.observer.display).to.equal(app.ctx.baseUrl);
    // BALP Read: the user is the information recipient and the requestor; the client is the destination (110152), the server the source (110153).
    const user = agentOfType(e, 'IRCP')!;
    expect(user.who).to.equal({ reference: 'Practitioner/audit-doc' });
    expect(user.requestor).to.equal(true);
    const client = agentOfType(e, '110152')!;
    expect(client.who?.identifier).to.equal({ system: CLIENT_ID, value: 'ehr-app' });
    expect(client.requestor).to.equal(false);
    expect(client.network).to.equal({ address: '127.0.0.1', type: '2' });
    expect(client.type?.coding?.[0]?.system).to.equal(DCM);
    const server = agentOfType(e, '110153')!;
    expect(server.who?.identifier?.value).to.equal(app.ctx.baseUrl);
    // Entities: the patient (type 1, role 1), the data read with its version (type 2, role 4), the query, the X-Request-Id.
    expect(entityOfRole(e, '1')).to.equal([{ what: { reference: `Patient/${id.alice}` }, type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' }, role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' } }]);
    expect(entityOfRole(e, '4').map((x) => x.what?.reference)).to.equal([`Observation/${id.aliceObs}/_history/1`]);
    expect(decodedQuery(e)).to.match(new RegExp(`^GET http://[^/]+/fhir/Observation/${id.aliceObs}$`));
    // Identifiers only: nothing of the Observation's content is in the event.
    expect(JSON.stringify(e)).to.not.include('8867-4');
  });

  it('records a search as one PatientQuery per patient in the results, with the raw query', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Observation?code=http://loinc.org|8867-4&_id=${id.aliceObs},${id.bobObs}`, headers: app.system });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry).to.have.length(2);
    const found = (await events('subtype=search-type&date=ge2020-01-01')).filter((e) => transactionId(e) === res.headers['x-request-id']);
    expect(found.map((e) => entityOfRole(e, '1')[0]?.what?.reference).sort()).to.equal([`Patient/${id.alice}`, `Patient/${id.bob}`].sort());
    for (const e of found) {
      expect(e.action).to.equal('E');
      expect(e.meta?.profile).to.equal([`${BALP}/StructureDefinition/IHE.BasicAudit.PatientQuery`]);
      expect(decodedQuery(e)).to.endWith(`/fhir/Observation?code=http://loinc.org|8867-4&_id=${id.aliceObs},${id.bobObs}`);
      expect(entityOfRole(e, '24')[0]!.what).to.not.exist();
      // Query: client is the source (110153), server the destination (110152); no user on a system token.
      expect(agentOfType(e, '110153')!.who?.identifier?.value).to.equal('security-suite');
      expect(agentOfType(e, '110153')!.requestor).to.equal(true);
      expect(agentOfType(e, '110152')!.who?.identifier?.value).to.equal(app.ctx.baseUrl);
    }
    // Searchable by patient: Alice's record of disclosures names this search.
    expect((await events(`patient=Patient/${id.alice}&subtype=search-type`)).some((e) => transactionId(e) === res.headers['x-request-id'])).to.equal(true);
  });

  it('records a compartment search by POST _search as a search, its form body in the raw query', async () => {
    const searches: Array<[string, string]> = [
      [`/fhir/Patient/${id.alice}/_search`, `_type=Observation&_id=${id.aliceObs}`],
      [`/fhir/Patient/${id.alice}/Observation/_search`, `_id=${id.aliceObs}`],
    ];
    for (const [url, payload] of searches) {
      const res = await app.request({ method: 'POST', url, payload, headers: { ...app.system, 'content-type': 'application/x-www-form-urlencoded' } });
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.entry).to.have.length(1);
      const [found] = (await events('subtype=search-type&date=ge2020-01-01')).filter((e) => transactionId(e) === res.headers['x-request-id']);
      expect(found, url).to.exist();
      expect(entityOfRole(found!, '1')[0]?.what?.reference).to.equal(`Patient/${id.alice}`);
      expect(decodedQuery(found!)).to.startWith(`POST `).and.to.endWith(`_id=${id.aliceObs}`);
    }
  });

  it('records the patients of a subsetted answer (_elements, _summary) though the subset omits the subject', async () => {
    // `_elements=code` and `_summary=text` drop Observation.subject from what is sent, but what
    // was disclosed is still Alice's and Bob's data: the audit must name both, as for the whole.
    const requests = [
      `/fhir/Observation?_id=${id.aliceObs},${id.bobObs}&_elements=code`,
      `/fhir/Observation?_id=${id.aliceObs},${id.bobObs}&_summary=text`,
      `/fhir/Observation/${id.aliceObs}?_elements=code`,
      `/fhir/Observation/${id.aliceObs}/_history/1?_summary=text`,
    ];
    const expected = [[id.alice, id.bob], [id.alice, id.bob], [id.alice], [id.alice]];
    const sent: string[] = [];
    for (const url of requests) {
      const res = await app.request({ method: 'GET', url, headers: app.system });
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.payload).to.not.include('"subject"');
      sent.push(String(res.headers['x-request-id']));
    }
    // The same reads as entries of a batch.
    const batch = await app.request({
      method: 'POST', url: '/fhir', headers: app.system,
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Observation/${id.bobObs}?_elements=code` } }, { request: { method: 'GET', url: `Observation?_id=${id.aliceObs}&_summary=text` } }] },
    });
    expect(batch.statusCode, batch.payload).to.equal(200);
    expect(batch.json.entry.map((e: fhir4.BundleEntry) => e.response?.status)).to.equal(['200 OK', '200 OK']);
    expect(batch.payload).to.not.include('"subject"');
    requests.push('a batch of both');
    expected.push([id.alice, id.bob]);
    sent.push(String(batch.headers['x-request-id']));
    const all = await events('date=ge2020-01-01');
    for (const [i, requestId] of sent.entries()) {
      const named = all.filter((e) => transactionId(e) === requestId).map((e) => entityOfRole(e, '1')[0]?.what?.reference);
      expect(named.sort(), requests[i]).to.equal(expected[i]!.map((p) => `Patient/${p}`).sort());
    }
  });

  it('gives a subset of another patient\'s reading to no token that may not read it, and audits one it may', async () => {
    const alice = await app.as('patient/Observation.rs', { patient: id.alice, clientId: 'alice-app' });
    for (const url of [`/fhir/Observation/${id.bobObs}?_elements=code`, `/fhir/Observation/${id.bobObs}/_history/1?_summary=text`]) {
      const res = await app.request({ method: 'GET', url, headers: alice });
      expect(res.statusCode, url).to.be.within(403, 404);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.payload).to.not.include('8867-4');
    }
    const searched = await app.request({ method: 'GET', url: `/fhir/Observation?_id=${id.aliceObs},${id.bobObs}&_elements=code`, headers: alice });
    expect(searched.statusCode).to.equal(200);
    expect(searched.json.entry.map((e: fhir4.BundleEntry) => e.resource!.id)).to.equal([id.aliceObs]);
    const found = (await events('date=ge2020-01-01')).filter((e) => transactionId(e) === searched.headers['x-request-id']);
    expect(found.map((e) => entityOfRole(e, '1')[0]?.what?.reference)).to.equal([`Patient/${id.alice}`]);
  });

  it('names every patient the disclosed content is about, whether or not a Patient is included beside it', async () => {
    const reader = await app.as('system/Observation.rs system/Patient.rs', { clientId: 'focus-reader' });
    const mother = await app.create({ resourceType: 'Patient', name: [{ family: 'Auditmother' }] });
    const child = await app.create({ resourceType: 'Patient', name: [{ family: 'Auditchild' }] });
    await app.create({ ...observation(mother), focus: [{ reference: `Patient/${child}` }] });
    for (const include of ['', '&_include=Observation:subject']) {
      const res = await app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${mother}${include}`, headers: reader });
      expect(res.statusCode).to.equal(200);
      const disclosedTo = (await events(`subtype=search-type&agent:identifier=${CLIENT_ID}|focus-reader`))
        .filter((e) => transactionId(e) === res.headers['x-request-id'])
        .flatMap((e) => entityOfRole(e, '1').map((x) => x.what!.reference));
      expect(disclosedTo.sort(), include || 'no include').to.equal([`Patient/${child}`, `Patient/${mother}`].sort());
    }
  });

  it('records a denied request with its reason, and an unauthenticated one with its address', async () => {
    const narrow = await app.as('system/Patient.rs', { clientId: 'narrow-client' });
    const denied = await app.request({ method: 'GET', url: `/fhir/Observation/${id.aliceObs}`, headers: narrow });
    expect(denied.statusCode).to.equal(403);
    const [refusal] = (await events('outcome=4&agent:identifier=urn:ietf:params:oauth:client-id|narrow-client')).filter((e) => transactionId(e) === denied.headers['x-request-id']);
    expect(refusal!.outcome).to.equal('4');
    expect(refusal!.outcomeDesc).to.include('HTTP 403').and.to.include('read of Observation');
    expect(refusal!.subtype?.[0]?.code).to.equal('read');
    expect(decodedQuery(refusal!)).to.match(new RegExp(`^GET http://[^/]+/fhir/Observation/${id.aliceObs}$`));
    // Nothing was disclosed: no patient, no data entity.
    expect(entityOfRole(refusal!, '1')).to.equal([]);
    expect(entityOfRole(refusal!, '4')).to.equal([]);

    const anonymous = await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}` });
    expect(anonymous.statusCode).to.equal(401);
    const [unauthenticated] = (await events('outcome=4&subtype=read')).filter((e) => transactionId(e) === anonymous.headers['x-request-id']);
    expect(unauthenticated!.outcomeDesc).to.include('HTTP 401');
    expect(unauthenticated!.agent.find((a) => a.requestor)!.network).to.equal({ address: '127.0.0.1', type: '2' });
  });

  it('links a refused or empty look at a patient\'s data to the patient the request names, its request sealed', async () => {
    const carol = await app.create({ resourceType: 'Patient', name: [{ family: 'Auditcarol' }] });
    // Alice's own app: Carol's record is not hers to see.
    const alicesApp = await app.as('patient/Observation.rs patient/Patient.rs', { patient: id.alice, clientId: 'alices-app' });
    const search = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${carol}&code=http://loinc.org|8867-4`, headers: alicesApp });
    const read = await app.request({ method: 'GET', url: `/fhir/Patient/${carol}`, headers: alicesApp });
    const compartment = await app.request({ method: 'GET', url: `/fhir/Patient/${carol}/Observation`, headers: alicesApp });
    const batch = await app.request({
      method: 'POST', url: '/fhir', headers: alicesApp,
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient/${carol}` } }] },
    });
    expect(read.statusCode).to.equal(404);
    expect(String(batch.json.entry[0].response.status)).to.startWith('404');
    const requests = [search, read, compartment, batch].map((r) => String(r.headers['x-request-id']));
    const carols = (await events(`patient=Patient/${carol}`)).filter((e) => requests.includes(transactionId(e)!));
    // One event each, all Carol's (the batch's: its failed entry; the batch's own event names no patient).
    expect(carols.map((e) => transactionId(e)).sort()).to.equal([...requests].sort());
    for (const e of carols) expect(entityOfRole(e, '1')[0]!.what?.reference).to.equal(`Patient/${carol}`);
    // The search named Carol in its query: sealed under her key, opened for the auditor.
    const searched = carols.find((e) => transactionId(e) === search.headers['x-request-id'])!;
    expect(decodedQuery(searched)).to.endWith(`/fhir/Observation?patient=${carol}&code=http://loinc.org|8867-4`);
    expect((await app.ctx.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_patient_key WHERE patient = $1`, [carol])).rows[0]!.n).to.equal(1);

    // A request naming many patients links at most MAX_NAMED_PATIENTS of them.
    const many = Array.from({ length: 12 }, (_, i) => `${carol}-${i}`);
    const wide = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${many.join(',')}`, headers: alicesApp });
    await app.audit.flush();
    const { rows } = await app.ctx.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_event WHERE record LIKE $1`, [`%${wide.headers['x-request-id']}%`]);
    expect(rows[0]!.n).to.equal(10);
  });

  it('refuses a Host that is not a host with a 400, audited with the request as received', async () => {
    const doctor = await app.as('user/Observation.rs', { fhirUser: 'Practitioner/audit-doc', clientId: 'odd-host-app' });
    const res = await app.request({ method: 'GET', url: `/fhir/Observation/${id.aliceObs}`, headers: { ...doctor, host: 'bad host' } });
    expect(res.statusCode).to.equal(400);
    expect(res.json.issue[0].diagnostics).to.include('Host');
    const [e] = (await events('outcome=4&subtype=read')).filter((x) => transactionId(x) === res.headers['x-request-id']);
    expect(e!.outcomeDesc).to.include('HTTP 400');
    expect(decodedQuery(e!)).to.equal(`GET http://bad host/fhir/Observation/${id.aliceObs}`);
    // Nothing was disclosed.
    expect(entityOfRole(e!, '1')).to.equal([]);
  });

  it('records each write of a transaction in its own transaction, and nothing of a rolled-back one', async () => {
    const writer = await app.as('user/Observation.cruds user/Patient.cruds', { fhirUser: 'Practitioner/audit-nurse', clientId: 'nurse-app' });
    const res = await app.request({
      method: 'POST', url: '/fhir', headers: writer,
      payload: { resourceType: 'Bundle', type: 'transaction', entry: [
        { fullUrl: 'urn:uuid:6f1c4a52-1b0e-4c39-9a0e-3a1f2f7c0a01', resource: { resourceType: 'Patient', name: [{ family: 'Audittx' }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: { ...observation('x'), subject: { reference: 'urn:uuid:6f1c4a52-1b0e-4c39-9a0e-3a1f2f7c0a01' } }, request: { method: 'POST', url: 'Observation' } },
      ] },
    });
    expect(res.statusCode, res.payload).to.equal(200);
    const [patientRef, obsRef] = (res.json.entry as fhir4.BundleEntry[]).map((e) => e.response!.location!.replace(/^.*\/fhir\//, ''));
    const patient = patientRef!.split('/')[1]!;
    const writes = (await events(`patient=${patient}&action=C`)).filter((e) => transactionId(e) === res.headers['x-request-id']);
    expect(writes.map((e) => entityOfRole(e, '4')[0]!.what!.reference).sort()).to.equal([patientRef, obsRef].sort());
    for (const e of writes) {
      expect(e.meta?.profile).to.equal([`${BALP}/StructureDefinition/IHE.BasicAudit.PatientCreate`]);
      expect(e.subtype?.[0]?.code).to.equal('create');
      expect(e.outcome).to.equal('0');
      // BALP Create: the user is the author (AUT), the client the source (110153) at its address.
      expect(agentOfType(e, 'AUT')!.who).to.equal({ reference: 'Practitioner/audit-nurse' });
      expect(agentOfType(e, '110153')!.who?.identifier?.value).to.equal('nurse-app');
      expect(agentOfType(e, '110153')!.network?.address).to.equal('127.0.0.1');
      expect(entityOfRole(e, '1')[0]!.what!.reference).to.equal(`Patient/${patient}`);
    }
    const bundleEvent = (await events('subtype=transaction')).filter((e) => transactionId(e) === res.headers['x-request-id']);
    expect(bundleEvent).to.have.length(1);

    // A transaction that fails as a whole writes nothing, and so audits no write: only its refusal.
    const failed = await app.request({
      method: 'POST', url: '/fhir', headers: writer,
      payload: { resourceType: 'Bundle', type: 'transaction', entry: [
        { resource: { resourceType: 'Patient', name: [{ family: 'Auditrollback' }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Observation', status: 'not-a-status', code: { text: 'x' } }, request: { method: 'POST', url: 'Observation' } },
      ] },
    });
    expect(failed.statusCode).to.be.within(400, 499);
    const ofFailed = (await events('date=ge2020-01-01')).filter((e) => transactionId(e) === failed.headers['x-request-id']);
    expect(ofFailed).to.have.length(1);
    expect(ofFailed[0]!.outcome).to.equal('4');
    expect(ofFailed[0]!.action).to.equal('E');
  });

  it('records a write that wrote nothing: a matched conditional create, an unchanged update, a delete of nothing', async () => {
    const writer = await app.as('user/Observation.cruds user/Patient.cruds', { fhirUser: 'Practitioner/audit-nurse', clientId: 'nurse-app' });
    const obs = { ...observation(id.alice!), identifier: [{ system: 'urn:audit-test', value: 'matched-1' }] };
    const created = await app.request({ method: 'POST', url: '/fhir/Observation', payload: obs, headers: writer });
    expect(created.statusCode, created.payload).to.equal(201);
    const obsId = created.json.id as string;
    // Only this test's events: on a database shared by the whole run, a first page of events
    // since 2020 could be filled by others (seen once under load on PostgreSQL).
    const since = encodeURIComponent(new Date(Date.now() - 1_000).toISOString());
    const ofRequest = async (res: { headers: Record<string, unknown> }) =>
      (await events(`date=ge${since}`)).filter((e) => transactionId(e) === res.headers['x-request-id']);

    const matched = await app.request({ method: 'POST', url: '/fhir/Observation', payload: obs, headers: { ...writer, 'if-none-exist': 'identifier=urn:audit-test|matched-1' } });
    expect(matched.statusCode, matched.payload).to.equal(200);
    const unchanged = await app.request({ method: 'PUT', url: `/fhir/Observation/${obsId}`, payload: { ...obs, id: obsId }, headers: writer });
    expect(unchanged.statusCode, unchanged.payload).to.equal(200);
    expect(unchanged.headers.etag).to.equal('W/"1"');
    const nothing = await app.request({ method: 'DELETE', url: '/fhir/Observation/never-stored-audit', headers: writer });
    expect(nothing.statusCode).to.equal(204);

    for (const [res, subtype, action, what] of [
      [matched, 'create', 'C', `Observation/${obsId}/_history/1`],
      [unchanged, 'update', 'U', `Observation/${obsId}/_history/1`],
      [nothing, 'delete', 'D', 'Observation/never-stored-audit'],
    ] as const) {
      const [e, ...more] = await ofRequest(res);
      expect(more, subtype).to.have.length(0);
      expect(e!.subtype?.[0]?.code).to.equal(subtype);
      expect(e!.action).to.equal(action);
      expect(e!.outcome).to.equal('0');
      // BALP: the client is the source of a create or update, the application of a delete.
      expect(agentOfType(e!, action === 'D' ? '110150' : '110153')!.who?.identifier?.value).to.equal('nurse-app');
      expect(entityOfRole(e!, '4')[0]!.what!.reference).to.equal(what);
      // The patient of what was disclosed or named; a delete of nothing names none.
      expect(entityOfRole(e!, '1').map((x) => x.what?.reference)).to.equal(subtype === 'delete' ? [] : [`Patient/${id.alice}`]);
    }
  });

  it('serves AuditEvents only to tokens that hold AuditEvent scopes, and never takes one', async () => {
    const clinician = await app.as('user/*.cruds', { fhirUser: 'Practitioner/audit-doc' });
    expect((await app.request({ method: 'GET', url: '/fhir/AuditEvent', headers: clinician })).statusCode).to.equal(403);
    expect((await app.request({ method: 'GET', url: '/fhir/AuditEvent' })).statusCode).to.equal(401);
    const [any] = await events(`patient=${id.alice}`);
    // An event's id is its position in the chain (migration 053).
    expect(any!.id).to.match(/^\d+$/);
    expect((await app.request({ method: 'GET', url: `/fhir/AuditEvent/${any!.id}`, headers: auditor })).json.id).to.equal(any!.id);
    expect((await app.request({ method: 'GET', url: '/fhir/AuditEvent/999999999999', headers: auditor })).statusCode).to.equal(404);
    for (const method of ['POST', 'PUT', 'DELETE'] as const) {
      const url = method === 'POST' ? '/fhir/AuditEvent' : `/fhir/AuditEvent/${any!.id}`;
      const res = await app.request({ method, url, headers: app.system, payload: method === 'DELETE' ? undefined : { resourceType: 'AuditEvent' } });
      expect(res.statusCode).to.equal(405);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
    // A patient sees who accessed their own record, and nothing about anyone else's.
    const alice = await app.as('patient/AuditEvent.rs', { patient: id.alice });
    const own = await app.request({ method: 'GET', url: '/fhir/AuditEvent?_count=1000', headers: alice });
    expect(own.statusCode).to.equal(200);
    const mentioned = new Set((own.json.entry as fhir4.BundleEntry[]).flatMap((e) => entityOfRole(e.resource as fhir4.AuditEvent, '1').map((x) => x.what!.reference)));
    expect([...mentioned]).to.equal([`Patient/${id.alice}`]);
    const bobs = await app.request({ method: 'GET', url: `/fhir/AuditEvent?patient=${id.bob}`, headers: alice });
    expect(bobs.statusCode).to.equal(200);
    expect(bobs.payload).to.not.contain('"entry"'); // R4 json.html: arrays are never empty
    // One search that disclosed both is an event in each trail; Alice's shows not the query, which names Bob.
    const both = await app.request({ method: 'GET', url: `/fhir/Patient?_id=${id.alice},${id.bob}`, headers: app.system });
    expect(both.json.entry).to.have.length(2);
    await app.audit.flush();
    const isQuery = (e: fhir4.AuditEventEntity) => e.query !== undefined;
    const searchedAs = (headers: Record<string, string>) => app.request({ method: 'GET', url: `/fhir/AuditEvent?patient=${id.alice}&subtype=search-type&_count=1`, headers });
    const seenByAlice = (await searchedAs(alice)).json.entry[0].resource as fhir4.AuditEvent;
    expect(JSON.stringify(seenByAlice)).to.not.include(id.bob);
    expect((seenByAlice.entity ?? []).some(isQuery)).to.be.false();
    const seenByAuditor = (await searchedAs(auditor)).json.entry[0].resource as fhir4.AuditEvent;
    expect(seenByAuditor.id).to.equal(seenByAlice.id);
    expect(Buffer.from(seenByAuditor.entity!.find(isQuery)!.query!, 'base64').toString()).to.include(id.bob);
    expect(JSON.stringify((await app.request({ method: 'GET', url: `/fhir/AuditEvent/${seenByAlice.id}`, headers: alice })).json)).to.not.include(id.bob);
    // Bad input is a 400 OperationOutcome.
    for (const q of ['date=yesterday', 'nonsense=1', '_count=many', '_cursor=abc']) {
      const bad = await app.request({ method: 'GET', url: `/fhir/AuditEvent?${q}`, headers: auditor });
      expect(bad.statusCode, q).to.equal(400);
      expect(bad.json.resourceType).to.equal('OperationOutcome');
    }
  });

  it('pages newest first', async () => {
    const first = await app.request({ method: 'GET', url: `/fhir/AuditEvent?patient=${id.alice}&_count=2`, headers: auditor });
    expect(first.json.entry).to.have.length(2);
    const next = (first.json.link as fhir4.BundleLink[]).find((l) => l.relation === 'next')!.url.replace(/^.*\/fhir/, '/fhir');
    const second = await app.request({ method: 'GET', url: next, headers: auditor });
    expect(second.statusCode).to.equal(200);
    const times = [...first.json.entry, ...second.json.entry].map((e: fhir4.BundleEntry) => (e.resource as fhir4.AuditEvent).id);
    expect(new Set(times).size).to.equal(times.length);
  });

  it('names the author of every version in meta, replacing a client\'s own claim', async () => {
    const AUTHOR = 'http://rpm.example.org/fhir/StructureDefinition/version-author';
    const nurse = await app.as('user/Observation.cruds', { fhirUser: 'Practitioner/audit-nurse', clientId: 'nurse-app' });
    const forged = { ...observation(id.alice), meta: { extension: [{ url: AUTHOR, valueReference: { reference: 'Practitioner/someone-else' } }] } };
    const created = await app.request({ method: 'POST', url: '/fhir/Observation', payload: forged, headers: nurse });
    expect(created.statusCode).to.equal(201);
    const authorOf = (r: fhir4.Resource) => r.meta?.extension?.filter((e) => e.url === AUTHOR).map((e) => e.valueReference);
    expect(authorOf(created.json)).to.equal([{ reference: 'Practitioner/audit-nurse' }]);
    const updated = await app.request({ method: 'PUT', url: `/fhir/Observation/${created.json.id}`, payload: { ...created.json, status: 'amended' }, headers: app.system });
    expect(updated.statusCode).to.equal(200);
    expect(authorOf(updated.json)).to.equal([{ identifier: { system: CLIENT_ID, value: 'security-suite' }, display: 'security-suite' }]);
    // Each version keeps its own author.
    const v1 = await app.request({ method: 'GET', url: `/fhir/Observation/${created.json.id}/_history/1`, headers: app.system });
    expect(authorOf(v1.json)).to.equal([{ reference: 'Practitioner/audit-nurse' }]);
  });

  it('stamps authors the R4 schema accepts, so that a stamped version needs no second validation', () => {
    // The stamp does not mark a write changed (src/audit/authorship.ts); each kind of author: a
    // user, a client, this server.
    const kinds = [{ ...unrestricted, fhirUser: 'Practitioner/audit-nurse' }, { ...unrestricted, clientId: 'nurse-app', origin: { requestId: 'r1', address: '10.0.0.1' } }, unrestricted];
    for (const policy of kinds) {
      const stamped = { resourceType: 'Observation', status: 'final', code: { text: 'x' }, meta: { extension: [{ url: VERSION_AUTHOR_URL, valueReference: authorOf(policy, 'http://rpm.example.org') }] } };
      expect(validationIssues(stamped), JSON.stringify(stamped.meta)).to.equal([]);
    }
    // And the schema would have refused a malformed one: the check can fail.
    expect(validationIssues({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, meta: { extension: [{ url: VERSION_AUTHOR_URL, valueReference: { reference: '' } }] } })).to.not.equal([]);
  });

  it('records a refused token request with the client it claimed and the OAuth error', async () => {
    const res = await app.request({
      method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'grant_type=client_credentials&client_id=no-such-client&client_secret=wrong&scope=system/*.rs',
    });
    expect(res.statusCode).to.be.within(400, 401);
    const [e] = (await events('type=110114&outcome=4')).filter((x) => transactionId(x) === res.headers['x-request-id']);
    expect(e!.subtype?.[0]?.code).to.equal('token');
    expect(e!.outcomeDesc).to.include(`HTTP ${res.statusCode}`).and.to.include(res.json.error);
    expect(e!.agent.find((a) => a.requestor)!.who?.identifier).to.equal({ system: CLIENT_ID, value: 'no-such-client' });
    expect(e!.agent.find((a) => a.requestor)!.network?.address).to.equal('127.0.0.1');
  });

  it('chains staged write audits in the order they were staged, also where the queue position gains a digit', async () => {
    // The chainer once ordered staged rows by their position as text ('100' before '98'), so the
    // writes of one transaction entered the chain out of order whenever the queue's numbers
    // gained a digit (and it scanned the whole queue table to sort it).
    const { rows } = await app.ctx.db.query<{ next: string }>(`SELECT (last_value + 1)::text AS next FROM audit_pending_queued_seq`);
    let boundary = 10n ** BigInt(rows[0]!.next.length);
    if (boundary - 3n < BigInt(rows[0]!.next)) boundary *= 10n;
    await app.ctx.db.query(`SELECT setval('audit_pending_queued_seq', $1::bigint)`, [String(boundary - 3n)]);
    const writer = await app.as('user/Patient.cruds', { fhirUser: 'Practitioner/audit-nurse', clientId: 'nurse-app' });
    const families = ['Order-a', 'Order-b', 'Order-c', 'Order-d', 'Order-e', 'Order-f'];
    const res = await app.request({
      method: 'POST', url: '/fhir', headers: writer,
      payload: { resourceType: 'Bundle', type: 'transaction', entry: families.map((family) => ({ resource: { resourceType: 'Patient', name: [{ family }] }, request: { method: 'POST', url: 'Patient' } })) },
    });
    expect(res.statusCode, res.payload).to.equal(200);
    const created = (res.json.entry as fhir4.BundleEntry[]).map((e) => e.response!.location!.replace(/^.*\/fhir\//, ''));
    // Events are served newest first: reversed, they are in chain order.
    const chained = (await events('action=C')).filter((e) => transactionId(e) === res.headers['x-request-id']).reverse();
    expect(chained.map((e) => entityOfRole(e, '4')[0]!.what!.reference)).to.equal(created);
    expect((await verifyChain(app.ctx.db)).problems).to.equal([]);
  });

  it(
    onPostgres
      ? 'verifies the chain as of one moment: rows chained while it reads are no broken chain'
      : 'verifies the chain as of one moment — declared for PostgreSQL only: PGlite runs one transaction at a time, so nothing can be chained during the verification',
    { skip: !onPostgres },
    async () => {
      // A database whose verification lets another connection write and chain events right after
      // the head was read, as a second node does while an operator verifies.
      const db = app.ctx.db;
      let wrote = false;
      const raceAfterHead = (q: Queryable) => async (sql: string, params?: unknown[]) => {
        const result = await q.query(sql, params);
        if (!wrote && sql.includes('audit_chain_head')) {
          wrote = true;
          const res = await app.request({ method: 'POST', url: '/fhir/Patient', headers: app.system, payload: { resourceType: 'Patient', name: [{ family: 'Racing' }] } });
          expect(res.statusCode).to.equal(201);
          await app.audit.flush();
        }
        return result;
      };
      const racing = {
        ...db,
        query: raceAfterHead(db),
        transaction: <T>(fn: (tx: Transaction) => Promise<T>) => db.transaction((tx) => fn({ ...tx, query: raceAfterHead(tx) } as Transaction)),
      } as Db;
      await app.audit.flush();
      const result = await verifyChain(racing);
      expect(wrote).to.be.true();
      expect(result.problems).to.equal([]);
      expect((await verifyChain(db)).rows).to.be.above(result.rows);
    },
  );

  it('stores what a caller claimed byte for byte, newlines, quotes and backslashes included, and the chain verifies', async () => {
    // Records travel to the database as newline-joined JSON texts (src/audit/chain.ts): a claimed
    // name that holds a newline must neither split its record nor shift the others in the batch.
    const claimed = 'evil\n"client"\\\u2028\u{1F600}';
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: claimed, client_secret: 'wrong', scope: 'system/*.rs' });
    const refused = await Promise.all([0, 1, 2].map(() => app.request({ method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: form.toString() })));
    const read = await app.request({ method: 'GET', url: `/fhir/Observation/${id.aliceObs}`, headers: app.system });
    expect(read.statusCode).to.equal(200);
    const found = await events('type=110114&outcome=4');
    for (const res of refused) {
      const e = found.find((x) => transactionId(x) === res.headers['x-request-id']);
      expect(e!.agent.find((a) => a.requestor)!.who?.identifier).to.equal({ system: CLIENT_ID, value: claimed });
    }
    const [readEvent] = (await events(`entity=Observation/${id.aliceObs}`)).filter((x) => transactionId(x) === read.headers['x-request-id']);
    expect(readEvent!.subtype?.[0]?.code).to.equal('read');
    expect((await verifyChain(app.ctx.db)).problems).to.equal([]);
  });

  it('serves, finds and verifies a row stored before records (migration 052) as it was stored', async () => {
    // As the server before migration 052 stored an event: the rendered AuditEvent is the chained text.
    const event = {
      resourceType: 'AuditEvent', id: randomUUID(),
      meta: { profile: [`${BALP}/StructureDefinition/IHE.BasicAudit.PatientRead`] },
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' },
      subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'read' }],
      action: 'R', recorded: new Date().toISOString(), outcome: '0',
      agent: [{ type: { coding: [{ system: DCM, code: '110152', display: 'Destination Role ID' }] }, who: { identifier: { system: CLIENT_ID, value: 'legacy-client' }, display: 'legacy-client' }, requestor: true }],
      source: { observer: { display: 'http://old.example/fhir' } },
      entity: [{ what: { reference: `Patient/${id.alice}` }, role: { code: '1' } }, { what: { reference: `Observation/${id.aliceObs}/_history/1` }, role: { code: '4' } }],
    };
    const json = JSON.stringify(event);
    await app.audit.flush();
    let seq = '';
    await app.ctx.db.transaction(async (tx) => {
      const head = (await tx.query<{ seq: string; hash: string }>('SELECT seq::text AS seq, hash FROM audit_chain_head WHERE one FOR UPDATE')).rows[0]!;
      seq = (BigInt(head.seq) + 1n).toString();
      const hash = link(head.hash, seq, json);
      await tx.query(
        `INSERT INTO audit_event (seq, id, recorded, type, subtype, action, outcome, patient, agent_client, entity, json, hash)
         VALUES ($1::bigint, $2, $3, 'rest', 'read', 'R', '0', $4, $5, $6, $7, $8)`,
        [seq, event.id, event.recorded, id.alice, `${CLIENT_ID}|legacy-client`, `Observation/${id.aliceObs}/_history/1`, json, hash],
      );
      await tx.query('UPDATE audit_chain_head SET seq = $1::bigint, hash = $2 WHERE one', [seq, hash]);
    });
    const read = await app.request({ method: 'GET', url: `/fhir/AuditEvent/${event.id}`, headers: auditor });
    expect(read.statusCode).to.equal(200);
    expect(read.payload).to.equal(json);
    // Its chain position is not its id: it keeps the one it was stored with.
    expect((await app.request({ method: 'GET', url: `/fhir/AuditEvent/${seq}`, headers: auditor })).statusCode).to.equal(404);
    for (const query of [`patient=${id.alice}`, `agent:identifier=${CLIENT_ID}|legacy-client`, `entity=Observation/${id.aliceObs}`, `entity=Observation/${id.aliceObs}/_history/1`]) {
      expect((await events(query)).map((e) => e.id), query).to.include(event.id);
    }
    expect((await events(`entity=Observation/${id.aliceObs}/_history/2`)).map((e) => e.id)).to.not.include(event.id);
    const chain = await verifyChain(app.ctx.db);
    expect(chain.problems).to.equal([]);
  });

  it('stores the rest of a batch when the database refuses one request\'s records, and goes on recording', async () => {
    const errors: string[] = [];
    const log = { error: (_o: unknown, msg: string) => errors.push(msg) } as never;
    const recorder = new AuditRecorder(app.ctx.db, log, { ...app.ctx.config.audit, flushSize: 1_000, flushIntervalMs: 60_000 }, new QuerySealer(app.ctx.db));
    const record = (client: string): AuditRecord => ({ recorded: new Date().toISOString(), kind: 'rest', subtype: 'read', action: 'R', outcome: '0', client, what: `Patient/${id.alice}`, server: 'http://recorder.test/fhir' });
    const marker = randomUUID();
    // A value no text column can hold, past every input guard: the database refuses the batch.
    const poison = { ...record(`${marker}-poison`), patient: `${marker}\u0000` };
    recorder.record([record(`${marker}-before`)]);
    recorder.record([poison]);
    recorder.record([record(`${marker}-after`)]);
    await recorder.flush();
    recorder.record([record(`${marker}-later`)]);
    await recorder.stop();
    const { rows } = await app.ctx.db.query<{ client: string }>("SELECT record::jsonb->>'client' AS client FROM audit_event WHERE record::jsonb->>'client' LIKE $1 ORDER BY seq", [`${marker}%`]);
    expect(rows.map((r) => r.client.slice(marker.length))).to.equal(['-before', '-after', '-later']);
    expect(errors).to.include('audit records not stored: the database refused their content');
    expect(errors).to.not.include('audit batch not stored; retrying with the next one');
    expect((await verifyChain(app.ctx.db)).problems).to.equal([]);
  });
});
