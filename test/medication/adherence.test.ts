import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer } from '../helpers/server';
import { administration, create, dosesOf, GRACE, patient, request, summaryOf } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const FLAG_COUNT = 'http://rpm.example.org/fhir/StructureDefinition/flag-event-count';
const FLAG_REQUEST = 'http://rpm.example.org/fhir/StructureDefinition/flag-medication-request';
const ext = (r: any, url: string) => (r.extension ?? []).filter((e: any) => e.url === url);

describe('medication adherence: on time, late, missed', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ ALLOW_CLOCK_OVERRIDE: 'true' });
  });
  after(() => app?.stop());

  /** Day `n` from a day three days ahead (UTC), at `time`: doses the server has not seen pass. */
  const base = new Date(Date.now() + 3 * 86_400_000).toISOString().slice(0, 10);
  const at = (n: number, time: string) => new Date(Date.parse(`${base}T${time}:00Z`) + n * 86_400_000).toISOString();
  const flagsOf = async (p: string) => (await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${p}` })).json.entry?.map((e: any) => e.resource) ?? [];
  const check = (requestId: string, now: string) =>
    app.request({ method: 'POST', url: `/fhir/MedicationRequest/${requestId}/$check-adherence`, payload: { resourceType: 'Parameters', parameter: [{ name: 'now', valueDateTime: now }] } });

  it('a dose taken on time, one late and one missing give 2 of 3 taken and exactly one Flag, counted on while active and closed when the patient catches up', async () => {
    const p = (await create(app, patient('UTC'))).id;
    const grace = { url: GRACE, valueDuration: { value: 60, unit: 'min', system: 'http://unitsofmeasure.org', code: 'min' } };
    const rx = (await create(app, request(p, { repeat: { frequency: 2, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00', '20:00:00'], boundsPeriod: { start: base } } }, { extension: [grace] }))).id;
    const onTime = (await create(app, administration(p, rx, at(0, '08:20')))).id;
    const late = (await create(app, administration(p, rx, at(0, '21:30')))).id;
    // A dose recorded as not given does not count as taken.
    await create(app, administration(p, rx, at(1, '08:05'), 'not-done'));

    const report = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?patient=${p}&start=${at(0, '00:00')}&end=${at(1, '12:00')}&now=${at(1, '10:00')}` });
    expect(report.statusCode, report.payload).to.equal(200);
    expect(dosesOf(report.json)).to.equal([
      { request: `MedicationRequest/${rx}`, due: at(0, '08:00').replace('.000Z', '+00:00'), status: 'on-time', administration: `MedicationAdministration/${onTime}` },
      { request: `MedicationRequest/${rx}`, due: at(0, '20:00').replace('.000Z', '+00:00'), status: 'late', administration: `MedicationAdministration/${late}` },
      { request: `MedicationRequest/${rx}`, due: at(1, '08:00').replace('.000Z', '+00:00'), status: 'missed' },
    ]);
    expect(summaryOf(report.json)).to.equal({ 'on-time': 1, late: 1, missed: 1, due: 0, upcoming: 0, adherence: 0.667 });

    // Before the grace of the morning dose has passed: nothing is missed yet.
    const early = await check(rx, at(1, '08:59'));
    expect(early.statusCode, early.payload).to.equal(200);
    expect(await flagsOf(p)).to.have.length(0);

    const judged = await check(rx, at(1, '10:00'));
    expect(judged.json.parameter.find((x: any) => x.name === 'missed').valueInteger).to.equal(1);
    let flags = await flagsOf(p);
    expect(flags).to.have.length(1);
    const flag = flags[0];
    expect(flag.status).to.equal('active');
    expect(flag.code.coding[0]).to.include({ system: 'http://rpm.example.org/fhir/CodeSystem/monitoring-flag', code: 'missed-dose' });
    expect(flag.code.coding[1]).to.include({ code: '860975' });
    expect(ext(flag, FLAG_REQUEST)[0].valueReference.reference).to.equal(`MedicationRequest/${rx}`);
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(1);

    // Judged once: the same check again changes nothing.
    await check(rx, at(1, '10:00'));
    flags = await flagsOf(p);
    expect(flags).to.have.length(1);
    expect(flags[0].meta.versionId).to.equal('1');

    // The evening dose missed too: the same Flag counts it (no storm).
    const type = await app.request({ method: 'POST', url: `/fhir/MedicationRequest/$check-adherence?now=${at(1, '22:00')}`, payload: { resourceType: 'Parameters' } });
    expect(type.statusCode).to.equal(200);
    flags = await flagsOf(p);
    expect(flags).to.have.length(1);
    expect(ext(flags[0], FLAG_COUNT)[0].valueInteger).to.equal(2);

    // Caught up: the next morning's dose is taken; the Flag closes in that write.
    await create(app, administration(p, rx, at(2, '08:05')));
    flags = await flagsOf(p);
    expect(flags).to.have.length(1);
    expect(flags[0].status).to.equal('inactive');
    expect(flags[0].period.end).to.equal(at(2, '08:05'));
    const active = await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${p}&status=active` });
    expect(active.json.entry ?? []).to.have.length(0);

    // A dose missed after that opens a new Flag, not the closed one.
    await check(rx, at(3, '10:00'));
    flags = await flagsOf(p);
    expect(flags).to.have.length(2);
    expect(flags.filter((f: any) => f.status === 'active')).to.have.length(1);
  });

  it('a request stopped while doses are missed closes its Flag; a transaction Bundle may create a request and its administration together', async () => {
    const p = (await create(app, patient('UTC'))).id;
    const rx = await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00'], boundsPeriod: { start: base } } }));
    await check(rx.id, at(1, '12:00'));
    expect((await flagsOf(p)).map((f: any) => f.status)).to.equal(['active']);
    const stopped = await app.request({ method: 'PUT', url: `/fhir/MedicationRequest/${rx.id}`, payload: { ...rx, status: 'stopped' } });
    expect(stopped.statusCode, stopped.payload).to.equal(200);
    expect((await flagsOf(p)).map((f: any) => f.status)).to.equal(['inactive']);

    const bundle = await app.request({
      method: 'POST', url: '/fhir', payload: {
        resourceType: 'Bundle', type: 'transaction', entry: [
          { fullUrl: 'urn:uuid:0b9a2f5e-1c1d-4d63-9d0a-3f1f3c1d0001', resource: request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00'] } }), request: { method: 'POST', url: 'MedicationRequest' } },
          { resource: { ...administration(p, 'x', at(0, '08:00')), request: { reference: 'urn:uuid:0b9a2f5e-1c1d-4d63-9d0a-3f1f3c1d0001' } }, request: { method: 'POST', url: 'MedicationAdministration' } },
        ],
      },
    });
    expect(bundle.statusCode, bundle.payload).to.equal(200);
    expect(bundle.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '201 Created']);
  });

  it('takes the grace window from the CarePlan the request is based on when the request has none', async () => {
    const p = (await create(app, patient('UTC'))).id;
    const plan = (await create(app, {
      resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${p}` },
      extension: [{ url: GRACE, valueDuration: { value: 3, unit: 'h', system: 'http://unitsofmeasure.org', code: 'h' } }],
    })).id;
    const rx = (await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00'], boundsPeriod: { start: base } } }, { basedOn: [{ reference: `CarePlan/${plan}` }] }))).id;
    await create(app, administration(p, rx, at(0, '10:30')));
    const report = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx}/$due?start=${at(0, '00:00')}&end=${at(1, '00:00')}&now=${at(0, '12:00')}` });
    expect(dosesOf(report.json).map((d) => d.status)).to.equal(['on-time']);
    const badPlan = await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: { resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${p}` }, extension: [{ url: GRACE, valueString: 'a while' }] } });
    expect(badPlan.statusCode).to.equal(422);
  });
});
