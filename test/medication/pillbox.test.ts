import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';
import { create, dosesOf, GRACE, patient, request, summaryOf } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const METFORMIN = { system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '860975' };
const grace = { url: GRACE, valueDuration: { value: 60, unit: 'min', system: 'http://unitsofmeasure.org', code: 'min' } };

/**
 * The smart pill box's door (POST /ingest/doses): doses reported by the box become
 * MedicationAdministrations through the one write pipeline, linked to the order, and judged by the
 * medication capability like any other administration.
 */
describe('pill box doses through the device door', () => {
  let app: TestServer;
  let state: AuthState;
  let system: Record<string, string>;
  const token = async (scopes: string) => ({ authorization: `Bearer ${(await issueAccessToken(state, { clientId: 'pillbox-gateway', scopes: scopes.split(' ') })).accessToken}` });

  // Three days ago, UTC: doses in the past, as a box reports them.
  const base = new Date(Date.now() - 3 * 86_400_000).toISOString().slice(0, 10);
  const at = (n: number, time: string) => new Date(Date.parse(`${base}T${time}:00Z`) + n * 86_400_000).toISOString();
  const due = (n: number, time: string) => at(n, time).replace('.000Z', '+00:00');

  /** A patient with a twice-daily order and a pill box assigned to them. */
  async function setUp(headers = system) {
    const p = (await create(app, patient('UTC'), headers)).id;
    const rx = (await create(app, request(p, { repeat: { frequency: 2, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00', '20:00:00'], boundsPeriod: { start: base } } }, { extension: [grace] }), headers)).id;
    const serial = unique('box');
    await create(app, { resourceType: 'Device', identifier: [{ system: 'urn:test:pillbox', value: serial }], status: 'active', patient: { reference: `Patient/${p}` } }, headers);
    return { p, rx, device: { identifier: { system: 'urn:test:pillbox', value: serial } } };
  }
  const ingest = (payload: object | string, headers = system) => app.request({ method: 'POST', url: '/ingest/doses', payload, headers });

  before(async () => {
    app = await startTestServer({ AUTH_DISABLED: 'false', ALLOW_CLOCK_OVERRIDE: 'true' });
    state = (app.server.plugins as any)['smart-auth'].state;
    system = await token('system/*.cruds');
  });
  after(() => app?.stop());

  it('records doses found by medication code or named request, linked to the order, judged on time and late, idempotent on retry', async () => {
    const { p, rx, device } = await setUp();
    const body = {
      device,
      doses: [
        { id: 'evt-1', time: at(0, '08:10'), medication: METFORMIN },
        { id: 'evt-2', time: at(0, '21:30'), request: { reference: `MedicationRequest/${rx}` } },
        { id: 'evt-3', time: at(1, '08:00'), medication: METFORMIN, status: 'not-done', note: 'declined' },
      ],
    };
    const res = await ingest(body);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.type).to.equal('batch-response');
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '201 Created', '201 Created']);
    const ids = res.json.entry.map((e: any) => e.response.location.split('/')[1]);

    const first = (await app.request({ method: 'GET', url: `/fhir/MedicationAdministration/${ids[0]}`, headers: system })).json;
    expect(first.status).to.equal('completed');
    expect(first.request.reference).to.equal(`MedicationRequest/${rx}`);
    expect(first.subject.reference).to.equal(`Patient/${p}`);
    expect(first.medicationCodeableConcept.coding[0]).to.include(METFORMIN);
    expect(String(first.device[0].reference)).to.startWith('Device/');
    expect(first.meta.source).to.equal('urn:rpm:ingest:doses');
    const declined = (await app.request({ method: 'GET', url: `/fhir/MedicationAdministration/${ids[2]}`, headers: system })).json;
    expect(declined.status).to.equal('not-done');
    expect(declined.note[0].text).to.equal('declined');

    const report = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?patient=${p}&start=${at(0, '00:00')}&end=${at(1, '12:00')}&now=${at(1, '10:00')}`, headers: system });
    expect(report.statusCode, report.payload).to.equal(200);
    expect(dosesOf(report.json)).to.equal([
      { request: `MedicationRequest/${rx}`, due: due(0, '08:00'), status: 'on-time', administration: `MedicationAdministration/${ids[0]}` },
      { request: `MedicationRequest/${rx}`, due: due(0, '20:00'), status: 'late', administration: `MedicationAdministration/${ids[1]}` },
      // Declined is not taken.
      { request: `MedicationRequest/${rx}`, due: due(1, '08:00'), status: 'missed' },
    ]);
    expect(summaryOf(report.json)).to.include({ 'on-time': 1, late: 1, missed: 1, adherence: 0.667 });

    // The gateway retries the same upload: the same resources, nothing new.
    const before = await countRows(app, 'MedicationAdministration');
    const again = await ingest(body);
    expect(again.json.entry.map((e: any) => e.response.status)).to.equal(['200 OK', '200 OK', '200 OK']);
    expect(await countRows(app, 'MedicationAdministration')).to.equal(before);
  });

  it('a dose from the box catches up a missed dose and closes its Flag in the same write', async () => {
    const { p, rx, device } = await setUp();
    // The order was entered before the missed dose (doses due before an order is stored are not judged).
    await app.ctx.db.query('UPDATE medication_schedule SET stored_at = $2 WHERE request_id = $1', [rx, `${base}T00:00:00Z`]);
    const judged = await app.request({ method: 'POST', url: `/fhir/MedicationRequest/${rx}/$check-adherence`, headers: system, payload: { resourceType: 'Parameters', parameter: [{ name: 'now', valueDateTime: at(0, '10:00') }] } });
    expect(judged.statusCode, judged.payload).to.equal(200);
    const flags = async () => (await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${p}`, headers: system })).json.entry?.map((e: any) => e.resource) ?? [];
    expect((await flags()).map((f: any) => f.status)).to.equal(['active']);

    const res = await ingest({ device, doses: [{ id: 'evt-9', time: at(0, '19:30'), medication: METFORMIN }] });
    expect(res.json.entry[0].response.status, res.payload).to.equal('201 Created');
    const after = await flags();
    expect(after).to.have.length(1);
    expect(after[0].status).to.equal('inactive');
  });

  it('records two medicines taken at the same minute, reported without ids of their own, as two administrations', async () => {
    const { device } = await setUp();
    const LISINOPRIL = { system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '314076' };
    const body = { device, doses: [{ time: at(0, '08:05'), medication: METFORMIN }, { time: at(0, '08:05'), medication: LISINOPRIL }] };
    const res = await ingest(body);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '201 Created']);
    const [metformin, lisinopril] = res.json.entry.map((e: any) => e.response.location.split('/')[1]);
    expect(metformin).to.not.equal(lisinopril);
    // Sent again, both are the same two resources.
    const again = await ingest(body);
    expect(again.json.entry.map((e: any) => e.response.location.split('/')[1])).to.equal([metformin, lisinopril]);
  });

  it('refuses what it cannot file, entry by entry, with an OperationOutcome, and writes nothing for it', async () => {
    const { device } = await setUp();
    const other = await setUp();
    // A second active order for the same medicine: a code alone no longer says which.
    const ambiguous = await setUp();
    await create(app, request(ambiguous.p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: ['12:00:00'] } }), system);

    for (const body of [{}, { device }, { device, doses: [] }, { device, doses: 'x' }, { doses: [{ time: at(0, '08:00'), medication: METFORMIN }] }]) {
      const res = await ingest(body);
      expect(res.statusCode, JSON.stringify(body)).to.equal(400);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }

    const before = await countRows(app, 'MedicationAdministration');
    const res = await ingest({
      device,
      doses: [
        { time: at(0, '08:00') },
        { time: at(0, '08:00'), medication: METFORMIN, status: 'taken' },
        { time: at(0, '08:00'), request: 'MedicationRequest/x' },
        { time: at(0, '08:00'), request: { reference: `MedicationRequest/${other.rx}` } },
        { time: at(0, '08:00'), request: { reference: 'MedicationRequest/does-not-exist' } },
        { time: new Date(Date.now() + 86_400_000).toISOString(), medication: METFORMIN },
        { time: 'yesterday', medication: METFORMIN },
        'not an object',
      ],
    });
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status.split(' ')[0])).to.equal(['400', '400', '400', '422', '422', '422', '400', '400']);
    for (const e of res.json.entry) expect(e.response.outcome.resourceType).to.equal('OperationOutcome');
    expect(await countRows(app, 'MedicationAdministration')).to.equal(before);

    const dup = await ingest({ device: ambiguous.device, doses: [{ time: at(0, '08:00'), medication: METFORMIN }] });
    expect(String(dup.json.entry[0].response.status)).to.startWith('422');
    expect(dup.json.entry[0].response.outcome.issue[0].diagnostics).to.contain('several active orders');
    // The other patient's order, named in a refused dose, has no administration.
    const given = await app.request({ method: 'GET', url: `/fhir/MedicationAdministration?request=MedicationRequest/${other.rx}`, headers: system });
    expect(given.statusCode).to.equal(200);
    expect(given.json.entry ?? []).to.equal([]);
  });

  it('writes with the gateway\'s own rights: no MedicationAdministration scope, no dose; no token, 401', async () => {
    const { device } = await setUp();
    const observationsOnly = await token('system/Device.rs system/DeviceUseStatement.rs system/Patient.rs system/MedicationRequest.rs system/Observation.c');
    const res = await ingest({ device, doses: [{ time: at(0, '08:10'), medication: METFORMIN }] }, observationsOnly);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(String(res.json.entry[0].response.status)).to.startWith('403');

    // A gateway that may not read the orders cannot find one by code: refused, not guessed.
    const noOrders = await token('system/Device.rs system/DeviceUseStatement.rs system/Patient.rs system/MedicationAdministration.c');
    const blind = await ingest({ device, doses: [{ time: at(0, '08:10'), medication: METFORMIN }] }, noOrders);
    expect(String(blind.json.entry[0].response.status)).to.startWith('403');

    const anonymous = await app.request({ method: 'POST', url: '/ingest/doses', payload: { device, doses: [{ time: at(0, '08:10'), medication: METFORMIN }] } });
    expect(anonymous.statusCode).to.equal(401);
    expect(anonymous.json.resourceType).to.equal('OperationOutcome');
  });
});
