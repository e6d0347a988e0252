import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { planWithHighSystolic, systolic } from '../helpers/monitoring-plan';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';

/** A weight reading as JSON text, so that a test can choose how its decimal is written. */
const weight = (id: string, patient: string, value: string) =>
  `{"resourceType":"Observation","id":"${id}","status":"final","code":{"coding":[{"system":"${LOINC}","code":"29463-7"}]},` +
  `"subject":{"reference":"Patient/${patient}"},"effectiveDateTime":"2026-12-01T10:00:00Z",` +
  `"valueQuantity":{"value":${value},"unit":"kg","system":"${UCUM}","code":"kg"}}`;

/**
 * An update or patch that changes nothing makes no version (unit-of-work.ts, unchangedVersion):
 * it is answered with the stored version, leaves history, Flags and notifications alone, and is
 * still audited. The comparison is of what would be stored, after the stages, with key order,
 * the server's meta and nothing else set aside.
 */
describe('updates that change nothing', () => {
  let app: SecuredServer;
  let writer: Record<string, string>;
  let auditor: Record<string, string>;
  let patient: string;

  before(async () => {
    app = await startSecuredServer();
    writer = await app.as('system/Observation.cruds system/Flag.rs system/CarePlan.cruds system/Patient.cruds', { clientId: 'gateway' });
    auditor = await app.as('system/AuditEvent.rs', { clientId: 'auditor' });
    patient = await app.create({ resourceType: 'Patient', name: [{ family: 'Unchanged' }] });
  });
  after(() => app.stop());

  const put = (url: string, body: string, headers: Record<string, string> = writer) =>
    app.request({ method: 'PUT', url, payload: body, headers: { ...headers, 'content-type': 'application/fhir+json' } });
  const history = async (url: string) => {
    const res = await app.request({ method: 'GET', url: `${url}/_history`, headers: writer });
    expect(res.statusCode, res.payload).to.equal(200);
    return (res.json as fhir4.Bundle).entry!.map((e) => e.resource!.meta!.versionId);
  };

  it('answers a PUT of the stored content with the stored version, whatever its key order or meta', async () => {
    const url = '/fhir/Observation/unchanged-1';
    const first = await put(url, weight('unchanged-1', patient, '70.80'));
    expect(first.statusCode, first.payload).to.equal(201);

    // The same resource, keys in another order, a stale meta.versionId the server ignores.
    const reordered = JSON.parse(weight('unchanged-1', patient, '70.80').replace('70.80', '"X"'));
    const shuffled = `{"meta":{"versionId":"9"},${Object.keys(reordered).reverse().map((k) => `${JSON.stringify(k)}:${JSON.stringify(reordered[k])}`).join(',')}}`.replace('"X"', '70.80');
    const again = await put(url, shuffled);
    expect(again.statusCode, again.payload).to.equal(200);
    expect(again.headers.etag).to.equal('W/"1"');
    expect(again.headers['last-modified']).to.equal(first.headers['last-modified']);
    expect(again.json.meta.versionId).to.equal('1');
    expect(again.json.meta.lastUpdated).to.equal(first.json.meta.lastUpdated);
    expect(again.payload).to.contain('"value":70.80');
    expect(await history(url)).to.equal(['1']);
    const told = await put(url, weight('unchanged-1', patient, '70.80'), { ...writer, prefer: 'return=OperationOutcome' });
    expect(told.statusCode).to.equal(200);
    expect(told.json.issue[0].diagnostics).to.equal('Observation/unchanged-1 version 1 is current; nothing was written');

    // The same number written with another precision is another value (R4 datatypes.html#decimal).
    const shorter = await put(url, weight('unchanged-1', patient, '70.8'));
    expect(shorter.headers.etag).to.equal('W/"2"');
    // If-Match of the current version is met by the answer that writes nothing.
    const matched = await put(url, weight('unchanged-1', patient, '70.8'), { ...writer, 'if-match': 'W/"2"' });
    expect(matched.statusCode, matched.payload).to.equal(200);
    expect(matched.headers.etag).to.equal('W/"2"');
    const stale = await put(url, weight('unchanged-1', patient, '70.8'), { ...writer, 'if-match': 'W/"1"' });
    expect(stale.statusCode).to.equal(412);
    expect(await history(url)).to.equal(['2', '1']);
  });

  it('writes no version for a JSON Patch or FHIRPath Patch that leaves the resource as it was', async () => {
    const url = '/fhir/Observation/unchanged-2';
    expect((await put(url, weight('unchanged-2', patient, '71'))).statusCode).to.equal(201);
    const json = await app.request({
      method: 'PATCH', url, headers: { ...writer, 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'replace', path: '/status', value: 'final' }, { op: 'test', path: '/valueQuantity/value', value: 71 }]),
    });
    expect(json.statusCode, json.payload).to.equal(200);
    expect(json.headers.etag).to.equal('W/"1"');
    const fhirpath = await app.request({
      method: 'PATCH', url, headers: { ...writer, 'content-type': 'application/fhir+json' },
      payload: { resourceType: 'Parameters', parameter: [{ name: 'operation', part: [{ name: 'type', valueCode: 'delete' }, { name: 'path', valueString: 'Observation.note' }] }] },
    });
    expect(fhirpath.statusCode, fhirpath.payload).to.equal(200);
    expect(fhirpath.headers.etag).to.equal('W/"1"');
    const changing = await app.request({
      method: 'PATCH', url, headers: { ...writer, 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'replace', path: '/status', value: 'amended' }]),
    });
    expect(changing.headers.etag).to.equal('W/"2"');
    expect(await history(url)).to.equal(['2', '1']);
  });

  it('answers a transaction entry that changes nothing with the stored version, beside entries that write', async () => {
    const url = '/fhir/Observation/unchanged-3';
    expect((await put(url, weight('unchanged-3', patient, '72'))).statusCode).to.equal(201);
    const res = await app.request({
      method: 'POST', url: '/fhir', headers: { ...writer, 'content-type': 'application/fhir+json' },
      payload: {
        resourceType: 'Bundle', type: 'transaction',
        entry: [
          { resource: JSON.parse(weight('unchanged-3', patient, '72')), request: { method: 'PUT', url: 'Observation/unchanged-3' } },
          { resource: JSON.parse(weight('unchanged-4', patient, '73')), request: { method: 'PUT', url: 'Observation/unchanged-4' } },
        ],
      },
    });
    expect(res.statusCode, res.payload).to.equal(200);
    const [same, fresh] = (res.json as fhir4.Bundle).entry!;
    expect(same!.response!.status).to.startWith('200');
    expect(same!.response!.etag).to.equal('W/"1"');
    expect(fresh!.response!.status).to.startWith('201');
    expect(await history(url)).to.equal(['1']);
  });

  it('judges a re-sent reading as it judged the stored one: no version, no second Flag', async () => {
    const plan = await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighSystolic(patient), headers: writer });
    expect(plan.statusCode, plan.payload).to.equal(201);
    const reading = { ...systolic(patient, 170), id: 'unchanged-bp', effectiveDateTime: '2026-12-01T08:00:00Z' };
    const url = '/fhir/Observation/unchanged-bp';
    const first = await put(url, JSON.stringify(reading));
    expect(first.statusCode, first.payload).to.equal(201);
    // The server added its interpretation; the gateway sends the reading again without it.
    expect(first.json.component[0].interpretation).to.exist();
    const again = await put(url, JSON.stringify(reading));
    expect(again.statusCode, again.payload).to.equal(200);
    expect(again.headers.etag).to.equal('W/"1"');
    const flags = await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${patient}`, headers: writer });
    expect((flags.json as fhir4.Bundle).entry ?? []).to.have.length(1);
    expect(await history(url)).to.equal(['1']);
  });

  it('makes a version when another author sends the same content: who wrote a version is part of it', async () => {
    const url = '/fhir/Observation/unchanged-5';
    expect((await put(url, weight('unchanged-5', patient, '74'))).statusCode).to.equal(201);
    const other = await app.as('system/Observation.cruds', { clientId: 'other-gateway' });
    const res = await put(url, weight('unchanged-5', patient, '74'), other);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.headers.etag).to.equal('W/"2"');
  });

  it('refuses the stored content to a token that may not write it, before comparing it', async () => {
    const url = '/fhir/Observation/unchanged-7';
    const body = weight('unchanged-7', patient, '76');
    expect((await put(url, body)).statusCode).to.equal(201);
    const other = await app.create({ resourceType: 'Patient', name: [{ family: 'Elsewhere' }] });
    const refusals = [
      await put(url, body, await app.as('patient/Observation.cruds', { patient: other })),
      await put(url, body, await app.as('system/Observation.rs', { clientId: 'reader' })),
    ];
    for (const res of refusals) {
      expect([403, 404]).to.include(res.statusCode);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.payload).to.not.contain('"value":76');
      expect(res.headers.etag).to.not.exist();
    }
  });

  it('audits an update that wrote nothing, naming the version it was answered with', async () => {
    const url = '/fhir/Observation/unchanged-6';
    expect((await put(url, weight('unchanged-6', patient, '75'))).statusCode).to.equal(201);
    expect((await put(url, weight('unchanged-6', patient, '75'))).statusCode).to.equal(200);
    await app.audit.flush();
    const res = await app.request({ method: 'GET', url: '/fhir/AuditEvent?entity=Observation/unchanged-6&_count=50', headers: auditor });
    expect(res.statusCode, res.payload).to.equal(200);
    const events = ((res.json as fhir4.Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent);
    const updates = events.filter((e) => e.subtype?.some((s) => s.code === 'update'));
    expect(updates).to.have.length(2);
    for (const e of updates) {
      expect(e.action).to.equal('U');
      expect(e.outcome).to.equal('0');
      expect(e.entity!.some((x) => x.what?.reference?.endsWith('Observation/unchanged-6/_history/1'))).to.be.true();
      expect(e.entity!.some((x) => x.what?.reference === `Patient/${patient}`)).to.be.true();
    }
  });
});
