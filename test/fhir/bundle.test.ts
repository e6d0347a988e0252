import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { randomUUID } from 'node:crypto';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const urn = () => `urn:uuid:${randomUUID()}`;

function observation(patientRef: string, i: number, extra: Record<string, unknown> = {}) {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: patientRef },
    effectiveDateTime: new Date(Date.UTC(2026, 10, 1, 8, i)).toISOString(),
    valueQuantity: { value: 60 + (i % 30), unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
    ...extra,
  };
}

/** A new patient with a care plan, a prescription and 50 readings, all linked by urn:uuid. */
function clinicalPicture() {
  const patient = urn();
  const plan = urn();
  const entries: any[] = [
    { fullUrl: patient, resource: { resourceType: 'Patient', name: [{ family: 'Lindqvist' }], birthDate: '1938-04-02' }, request: { method: 'POST', url: 'Patient' } },
    {
      fullUrl: plan,
      resource: {
        resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: patient },
        text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">Plan for <a href="${patient}">the patient</a></div>` },
      },
      request: { method: 'POST', url: 'CarePlan' },
    },
    {
      fullUrl: urn(),
      resource: {
        resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: patient },
        medicationCodeableConcept: { text: 'ramipril 5 mg' }, basedOn: [{ reference: plan }],
        extension: [{ url: 'http://example.org/plan', valueReference: { reference: plan } }],
      },
      request: { method: 'POST', url: 'MedicationRequest' },
    },
  ];
  for (let i = 0; i < 50; i++) {
    entries.push({ fullUrl: urn(), resource: observation(patient, i, { basedOn: [{ reference: plan }] }), request: { method: 'POST', url: 'Observation' } });
  }
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}

describe('transaction bundles', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ MAX_BUNDLE_ENTRIES: '200' });
  });
  after(() => app.stop());

  const counts = async () => ({
    Patient: await countRows(app, 'Patient'),
    Observation: await countRows(app, 'Observation'),
    CarePlan: await countRows(app, 'CarePlan'),
    MedicationRequest: await countRows(app, 'MedicationRequest'),
  });

  it('creates a patient, care plan, prescription and 50 observations with every urn:uuid rewritten', async () => {
    const bundle = clinicalPicture();
    const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle, headers: { prefer: 'return=representation' } });
    expect(res.statusCode).to.equal(200);
    expect(res.json.type).to.equal('transaction-response');
    expect(res.json.entry).to.have.length(53);
    expect(res.json.entry.every((e: any) => e.response.status === '201 Created')).to.be.true();
    const [patient, plan, med, ...observations] = res.json.entry.map((e: any) => e.resource);
    expect(res.json.entry[0].response.location).to.equal(`Patient/${patient.id}/_history/1`);
    expect(res.json.entry[0].response.etag).to.equal('W/"1"');

    const storedPlan = (await app.request({ method: 'GET', url: `/fhir/CarePlan/${plan.id}` })).json;
    expect(storedPlan.subject.reference).to.equal(`Patient/${patient.id}`);
    expect(storedPlan.text.div).to.contain(`href="Patient/${patient.id}"`);
    const storedMed = (await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${med.id}` })).json;
    expect(storedMed.subject.reference).to.equal(`Patient/${patient.id}`);
    expect(storedMed.basedOn[0].reference).to.equal(`CarePlan/${plan.id}`);
    expect(storedMed.extension[0].valueReference.reference).to.equal(`CarePlan/${plan.id}`);
    for (const o of observations) {
      const stored = (await app.request({ method: 'GET', url: `/fhir/Observation/${o.id}` })).json;
      expect(stored.subject.reference).to.equal(`Patient/${patient.id}`);
      expect(stored.basedOn[0].reference).to.equal(`CarePlan/${plan.id}`);
    }
    expect(JSON.stringify(res.json)).to.not.contain('urn:uuid');
  });

  it('answers minimal entries by default: status, location, etag, no resource', async () => {
    const res = await app.request({ method: 'POST', url: '/fhir', payload: clinicalPicture() });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry[0].resource).to.not.exist();
    expect(res.json.entry[0].response.location).to.match(/^Patient\/[^/]+\/_history\/1$/);
  });

  it('leaves no trace when the 37th entry is invalid, and names it', async () => {
    const bundle = clinicalPicture();
    bundle.entry[36].resource.status = 'finalised';
    const before = await counts();
    const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle });
    expect(res.statusCode).to.equal(400);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue[0].diagnostics).to.contain('Bundle.entry[36]');
    expect(res.json.issue[0].expression).to.equal(['Bundle.entry[36].resource.status']);
    expect(await counts()).to.equal(before);
  });

  it('refuses a reference to an unknown urn:uuid, naming the entry', async () => {
    const bundle = clinicalPicture();
    bundle.entry[10].resource.subject.reference = urn();
    const before = await counts();
    const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle });
    expect(res.statusCode).to.equal(400);
    expect(res.json.issue[0].diagnostics).to.match(/Bundle\.entry\[10\].*names no entry/);
    expect(await counts()).to.equal(before);
  });

  it('refuses duplicate fullUrls and two entries writing one resource', async () => {
    const dupFull = clinicalPicture();
    dupFull.entry[5].fullUrl = dupFull.entry[4].fullUrl;
    const r1 = await app.request({ method: 'POST', url: '/fhir', payload: dupFull });
    expect(r1.statusCode).to.equal(400);
    expect(r1.json.issue[0].diagnostics).to.contain('Bundle.entry[5]');

    const id = unique('twice');
    const twice = {
      resourceType: 'Bundle', type: 'transaction',
      entry: [
        { resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } },
        { resource: { resourceType: 'Patient', id, active: true }, request: { method: 'PUT', url: `Patient/${id}` } },
      ],
    };
    const r2 = await app.request({ method: 'POST', url: '/fhir', payload: twice });
    expect(r2.statusCode).to.equal(400);
    expect(r2.json.issue[0].diagnostics).to.contain('Bundle.entry[1]: Patient/');
    expect(r2.json.issue[0].diagnostics).to.contain('also written by Bundle.entry[0]');
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id}` })).statusCode).to.equal(404);
  });

  it('names the other entry when a PUT and a later DELETE of one resource collide (the delete runs first)', async () => {
    const id = unique('putdel');
    const res = await app.request({
      method: 'POST', url: '/fhir',
      payload: {
        resourceType: 'Bundle', type: 'transaction',
        entry: [
          { resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } },
          { request: { method: 'DELETE', url: `Patient/${id}` } },
        ],
      },
    });
    expect(res.statusCode).to.equal(400);
    expect(res.json.issue[0].diagnostics).to.contain(`Bundle.entry[0]: Patient/${id} is also written by Bundle.entry[1]`);
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id}` })).statusCode).to.equal(404);
  });

  it('fails whole with 412 naming the entry when an ifMatch does not hold', async () => {
    const id = unique('im');
    await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id } });
    const before = await counts();
    const res = await app.request({
      method: 'POST', url: '/fhir',
      payload: {
        resourceType: 'Bundle', type: 'transaction',
        entry: [
          { fullUrl: urn(), resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Patient', id, active: false }, request: { method: 'PUT', url: `Patient/${id}`, ifMatch: 'W/"2"' } },
        ],
      },
    });
    expect(res.statusCode).to.equal(412);
    expect(res.json.issue[0].diagnostics).to.contain('Bundle.entry[1]');
    expect(await counts()).to.equal(before);
  });

  it('processes deletes, creates, updates, patches and reads in the spec order', async () => {
    const keep = unique('keep');
    const drop = unique('drop');
    await app.request({ method: 'PUT', url: `/fhir/Patient/${keep}`, payload: { resourceType: 'Patient', id: keep, active: true } });
    await app.request({ method: 'PUT', url: `/fhir/Patient/${drop}`, payload: { resourceType: 'Patient', id: drop } });
    const patch = Buffer.from(JSON.stringify([{ op: 'replace', path: '/active', value: false }])).toString('base64');
    const res = await app.request({
      method: 'POST', url: '/fhir',
      payload: {
        resourceType: 'Bundle', type: 'transaction',
        entry: [
          { request: { method: 'GET', url: `Patient/${keep}` } },
          { resource: { resourceType: 'Binary', contentType: 'application/json-patch+json', data: patch }, request: { method: 'PATCH', url: `Patient/${keep}` } },
          { request: { method: 'DELETE', url: `Patient/${drop}` } },
          { fullUrl: urn(), resource: { resourceType: 'Device', serialNumber: 'X1' }, request: { method: 'POST', url: 'Device' } },
        ],
      },
    });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['200 OK', '200 OK', '204 No Content', '201 Created']);
    // The read runs after the writes, so it sees the patch.
    expect(res.json.entry[0].resource.active).to.equal(false);
    expect(res.json.entry[0].resource.meta.versionId).to.equal('2');
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${drop}` })).statusCode).to.equal(410);
  });

  it('fails whole when a read fails after its writes (even a read of what it deleted: 410), writing nothing, and refuses a GET that is no read before writing', async () => {
    const drop = unique('drop');
    const system = `http://example.org/${unique('sys')}`;
    await app.request({ method: 'PUT', url: `/fhir/Patient/${drop}`, payload: { resourceType: 'Patient', id: drop } });
    const created = () => ({ resource: { resourceType: 'Patient', identifier: [{ system, value: '1' }] }, request: { method: 'POST', url: 'Patient' } });
    const stored = async () => (await app.request({ method: 'GET', url: `/fhir/Patient?identifier=${encodeURIComponent(`${system}|1`)}&_summary=count` })).json.total;
    for (const [read, status] of [[`Patient/${drop}`, 410], ['Patient?nonsense=1', 400]] as const) {
      const res = await app.request({
        method: 'POST', url: '/fhir',
        payload: { resourceType: 'Bundle', type: 'transaction', entry: [created(), { request: { method: 'DELETE', url: `Patient/${drop}` } }, { request: { method: 'GET', url: read } }] },
      });
      // R4 http.html#transaction: all or nothing. The read's own status, at its entry.
      expect(res.statusCode, res.payload).to.equal(status);
      expect(res.json.issue[0].diagnostics).to.contain('Bundle.entry[2]');
      expect(await stored()).to.equal(0);
      expect((await app.request({ method: 'GET', url: `/fhir/Patient/${drop}` })).statusCode).to.equal(200);
    }
    const written = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: [created()] } });
    expect(written.statusCode).to.equal(200);
    expect(await stored()).to.equal(1);

    // A GET of something that is no read is known before anything is written: the transaction fails whole.
    for (const url of ['Nonsense/1', 'Patient/a/b/c/d', 'Patient/bad$id']) {
      const refused = await app.request({
        method: 'POST', url: '/fhir',
        payload: { resourceType: 'Bundle', type: 'transaction', entry: [created(), { request: { method: 'GET', url } }] },
      });
      expect(refused.statusCode, url).to.equal(404);
      expect(refused.json.issue[0].diagnostics).to.contain('Bundle.entry[1]');
    }
    expect(await stored()).to.equal(1);
  });

  it('refuses bundles that are not transaction or batch, entries over the limit, and entries without a request', async () => {
    const notTx = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'collection', entry: [] } });
    expect(notTx.statusCode).to.equal(400);
    expect(notTx.json.issue[0].expression).to.equal(['Bundle.type']);

    const tooMany = { resourceType: 'Bundle', type: 'transaction', entry: Array.from({ length: 201 }, () => ({ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } })) };
    const big = await app.request({ method: 'POST', url: '/fhir', payload: tooMany });
    expect(big.statusCode).to.equal(413);
    expect(big.json.issue[0].diagnostics).to.contain('at most 200');

    const noRequest = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Patient' } }] } });
    expect(noRequest.statusCode).to.equal(400);
    expect(noRequest.json.issue[0].diagnostics).to.contain('Bundle.entry[0]');

    const notBundle = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Patient' } });
    expect(notBundle.statusCode).to.equal(400);

    const unknownType = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patients' } }] } });
    expect(unknownType.statusCode).to.equal(404);
    expect(unknownType.json.issue[0].diagnostics).to.contain('Patients');
  });
});

describe('batch bundles', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  it('stores exactly the 17 good entries of 20 and reports each bad one in its own entry', async () => {
    const patient = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
    const entries: any[] = Array.from({ length: 20 }, (_, i) => ({ resource: observation(`Patient/${patient}`, i), request: { method: 'POST', url: 'Observation' } }));
    entries[3].resource.status = 'bogus';
    entries[9].request.url = 'Spaceship';
    entries[15].resource.subject.reference = 'urn:uuid:00000000-0000-4000-8000-000000000000';
    const before = await countRows(app, 'Observation');
    const res = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry: entries } });
    expect(res.statusCode).to.equal(200);
    expect(res.json.type).to.equal('batch-response');
    const statuses = res.json.entry.map((e: any) => e.response.status);
    expect(statuses.filter((s: string) => s === '201 Created')).to.have.length(17);
    expect(statuses[3]).to.equal('400 Bad Request');
    expect(statuses[9]).to.equal('404 Not Found');
    expect(statuses[15]).to.equal('400 Bad Request');
    expect(res.json.entry[3].response.outcome.issue[0].expression).to.equal(['Bundle.entry[3].resource.status']);
    expect(res.json.entry[15].response.outcome.issue[0].diagnostics).to.contain('Bundle.entry[15]');
    const after = await countRows(app, 'Observation');
    expect(after.current - before.current).to.equal(17);
  });

  it('refuses a batch whose entries share a fullUrl (bdl-7) whole, before writing any; different meta.versionIds may share one', async () => {
    const fullUrl = `http://example.org/fhir/Patient/${unique('dup')}`;
    const tag = unique('bdl7');
    const entry = (extra: Record<string, unknown> = {}) => ({ fullUrl, resource: { resourceType: 'Patient', identifier: [{ system: 'urn:bdl7', value: tag }], ...extra }, request: { method: 'POST', url: 'Patient' } });
    const count = async () => (await app.request({ method: 'GET', url: `/fhir/Patient?identifier=urn:bdl7|${tag}&_summary=count` })).json.total;
    const refused = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry: [entry(), entry()] } });
    expect(refused.statusCode, refused.payload).to.equal(400);
    expect(refused.json.issue[0].diagnostics).to.contain('Bundle.entry[1]').and.to.contain('bdl-7');
    expect(await count()).to.equal(0);
    const versions = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry: [entry({ meta: { versionId: '1' } }), entry({ meta: { versionId: '2' } })] } });
    expect(versions.statusCode, versions.payload).to.equal(200);
    expect(await count()).to.equal(2);
  });

  it('answers a transaction or batch of no entries with a response Bundle without an empty entry array (R4 json.html)', async () => {
    for (const type of ['transaction', 'batch']) {
      const res = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type } });
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json).to.equal({ resourceType: 'Bundle', type: `${type}-response` });
    }
  });

  it('answers GET entries with their resources', async () => {
    const id = (await app.request({ method: 'POST', url: '/fhir/Device', payload: { resourceType: 'Device', serialNumber: 'B-1' } })).json.id;
    const res = await app.request({
      method: 'POST', url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [
        { request: { method: 'GET', url: `Device/${id}` } },
        { request: { method: 'GET', url: 'Device/nope' } },
        { request: { method: 'GET', url: `Device/${id}/_history/1` } },
        { request: { method: 'GET', url: 'metadata' } },
      ] },
    });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['200 OK', '404 Not Found', '200 OK', '200 OK']);
    expect(res.json.entry[0].resource.serialNumber).to.equal('B-1');
    expect(res.json.entry[0].response.etag).to.equal('W/"1"');
    expect(res.json.entry[3].resource.resourceType).to.equal('CapabilityStatement');
  });

  it("refuses an entry whose request.url is an absolute URL of another server, saying it is not on this server's base", async () => {
    const res = await app.request({
      method: 'POST', url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [
        { request: { method: 'GET', url: 'http://other.example/fhir/Patient/1' } },
        { request: { method: 'DELETE', url: 'https://other.example/fhir/Patient/1' } },
      ] },
    });
    expect(res.statusCode).to.equal(200);
    for (const [i, e] of res.json.entry.entries()) {
      expect(e.response.status).to.equal('400 Bad Request');
      expect(String(e.response.outcome.issue[0].diagnostics)).to.startWith(`Bundle.entry[${i}]: `);
      expect(e.response.outcome.issue[0].diagnostics).to.contain("is not on this server's base");
    }
  });

  it('answers a HEAD entry as its GET without the body (R4 http.html: HEAD returns the headers only)', async () => {
    // Serial numbers name one device (src/devices): a unique one, so no other suite's Device is matched.
    const created = await app.request({ method: 'POST', url: '/fhir/Device', payload: { resourceType: 'Device', serialNumber: unique('HEAD') } });
    expect(created.statusCode, created.payload).to.equal(201);
    const id = created.json.id;
    for (const type of ['batch', 'transaction']) {
      const res = await app.request({
        method: 'POST', url: '/fhir',
        payload: { resourceType: 'Bundle', type, entry: [{ request: { method: 'HEAD', url: `Device/${id}` } }, { request: { method: 'HEAD', url: `Device?_id=${id}` } }] },
      });
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['200 OK', '200 OK']);
      expect(res.json.entry[0].response.etag).to.equal('W/"1"');
      expect(res.json.entry[0].response.lastModified).to.exist();
      expect(res.json.entry.map((e: any) => e.resource)).to.equal([undefined, undefined]);
    }
  });
});
