import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { actor, consent } from '../helpers/consent';
import { countRows, startTestServer, type TestServer } from '../helpers/server';
import { startSecuredServer, type SecuredServer } from '../security/helpers';
import { administration, create, dosesOf, GRACE, patient, request, TIMEZONE } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const BID = (start: string): fhir4.Timing => ({ repeat: { frequency: 2, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00', '20:00:00'], boundsPeriod: { start } } });
const Q8H = (start: string): fhir4.Timing => ({ repeat: { frequency: 1, period: 8, periodUnit: 'h', timeOfDay: ['06:00:00'], boundsPeriod: { start } } });

describe('medication schedules: due doses in the patient\'s time zone', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app?.stop());

  const due = (query: string) => app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?${query}` });
  const enc = encodeURIComponent;

  it('twice daily stays at 08:00 and 20:00 local and every 8 hours stays 8 hours apart across the spring change in Berlin (last Sunday of March)', async () => {
    const p = (await create(app, patient('Europe/Berlin'))).id;
    const bid = (await create(app, request(p, BID('2027-03-26')))).id;
    const q8h = (await create(app, request(p, Q8H('2027-03-26')))).id;
    const res = await due(`patient=${p}&start=${enc('2027-03-27T00:00:00+01:00')}&end=${enc('2027-03-30T00:00:00+02:00')}`);
    expect(res.statusCode, res.payload).to.equal(200);
    const doses = dosesOf(res.json);
    expect(doses.filter((d) => d.request === `MedicationRequest/${bid}`).map((d) => d.due)).to.equal([
      '2027-03-27T08:00:00+01:00', '2027-03-27T20:00:00+01:00',
      '2027-03-28T08:00:00+02:00', '2027-03-28T20:00:00+02:00',
      '2027-03-29T08:00:00+02:00', '2027-03-29T20:00:00+02:00',
    ]);
    const q8 = doses.filter((d) => d.request === `MedicationRequest/${q8h}`).map((d) => d.due);
    expect(q8).to.equal([
      '2027-03-27T06:00:00+01:00', '2027-03-27T14:00:00+01:00', '2027-03-27T22:00:00+01:00',
      '2027-03-28T07:00:00+02:00', '2027-03-28T15:00:00+02:00', '2027-03-28T23:00:00+02:00',
      '2027-03-29T07:00:00+02:00', '2027-03-29T15:00:00+02:00', '2027-03-29T23:00:00+02:00',
    ]);
    for (let i = 1; i < q8.length; i++) expect(Date.parse(q8[i]!) - Date.parse(q8[i - 1]!)).to.equal(8 * 3_600_000);
    // Each dose's part names the zone it was placed in.
    const first = res.json.parameter.find((x: any) => x.name === 'dose');
    expect(first.part.find((x: any) => x.name === 'timeZone').valueCode).to.equal('Europe/Berlin');
  });

  it('and across the autumn change (last Sunday of October), the twice-daily doses are not doubled or lost in the repeated hour', async () => {
    const p = (await create(app, patient('Europe/Berlin'))).id;
    const bid = (await create(app, request(p, BID('2026-10-22')))).id;
    const q8h = (await create(app, request(p, Q8H('2026-10-23')))).id;
    const res = await due(`patient=Patient/${p}&start=${enc('2026-10-24T00:00:00+02:00')}&end=${enc('2026-10-26T00:00:00+01:00')}`);
    expect(res.statusCode, res.payload).to.equal(200);
    const doses = dosesOf(res.json);
    expect(doses.filter((d) => d.request === `MedicationRequest/${bid}`).map((d) => d.due)).to.equal([
      '2026-10-24T08:00:00+02:00', '2026-10-24T20:00:00+02:00', '2026-10-25T08:00:00+01:00', '2026-10-25T20:00:00+01:00',
    ]);
    expect(doses.filter((d) => d.request === `MedicationRequest/${q8h}`).map((d) => d.due)).to.equal([
      '2026-10-24T06:00:00+02:00', '2026-10-24T14:00:00+02:00', '2026-10-24T22:00:00+02:00',
      '2026-10-25T05:00:00+01:00', '2026-10-25T13:00:00+01:00', '2026-10-25T21:00:00+01:00',
    ]);
  });

  it('reads when with offsets, boundsPeriod and count, leaves as-needed doses out, and places a dose in the skipped hour after the gap', async () => {
    const p = (await create(app, patient('Europe/Berlin'))).id;
    // 30 min before breakfast (08:00) and 30 min after bedtime (22:00; the offset applies to each
    // event, after it unless the code says before), three doses only.
    const meals = (await create(app, request(p, { repeat: { frequency: 2, period: 1, periodUnit: 'd', when: ['ACM', 'HS'], offset: 30, count: 3, boundsPeriod: { start: '2027-01-10' } } }))).id;
    // Ends after the 11th: the 12th has none.
    const bounded = (await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: ['12:00:00'], boundsPeriod: { start: '2027-01-10', end: '2027-01-11' } } }))).id;
    await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd' } }, { dosageInstruction: [{ asNeededBoolean: true, timing: { repeat: { frequency: 4, period: 1, periodUnit: 'd' } } }] }));
    const gap = (await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: ['02:30:00'], boundsPeriod: { start: '2027-03-27' } } }))).id;

    const jan = dosesOf((await due(`patient=${p}&start=2027-01-10T00:00:00Z&end=2027-01-13T00:00:00Z`)).json);
    expect(jan.filter((d) => d.request === `MedicationRequest/${meals}`).map((d) => d.due)).to.equal(['2027-01-10T07:30:00+01:00', '2027-01-10T22:30:00+01:00', '2027-01-11T07:30:00+01:00']);
    expect(jan.filter((d) => d.request === `MedicationRequest/${bounded}`).map((d) => d.due)).to.equal(['2027-01-10T12:00:00+01:00', '2027-01-11T12:00:00+01:00']);
    // Only the three requests with a timing have doses (the as-needed one has none).
    expect(new Set(jan.map((d) => d.request)).size).to.equal(2);
    // A date-only start is the patient's local day: a New York patient's first evening dose is on
    // the 10th at 20:00 local, not at midnight UTC (the 9th, 19:00 local).
    const ny = (await create(app, patient('America/New_York'))).id;
    const nyRx = (await create(app, request(ny, { repeat: { frequency: 2, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00', '19:00:00'], boundsPeriod: { start: '2027-01-10', end: '2027-01-10' } } }))).id;
    const nyDoses = dosesOf((await due(`patient=${ny}&start=2027-01-09T00:00:00Z&end=2027-01-12T00:00:00Z`)).json);
    expect(nyDoses.filter((d) => d.request === `MedicationRequest/${nyRx}`).map((d) => d.due)).to.equal(['2027-01-10T08:00:00-05:00', '2027-01-10T19:00:00-05:00']);
    const spring = dosesOf((await due(`patient=${p}&start=2027-03-27T00:00:00Z&end=2027-03-30T00:00:00Z`)).json);
    expect(spring.filter((d) => d.request === `MedicationRequest/${gap}`).map((d) => d.due)).to.equal(['2027-03-27T02:30:00+01:00', '2027-03-28T03:30:00+02:00', '2027-03-29T02:30:00+02:00']);
  });

  it("places doses given by meal and day events at the patient's own routine, follows a changed routine, and refuses a malformed one", async () => {
    const ROUTINE = 'http://rpm.example.org/fhir/StructureDefinition/patient-event-time';
    const at = (event: string, time: string) => ({ url: ROUTINE, extension: [{ url: 'event', valueCode: event }, { url: 'time', valueTime: time }] });
    const early = { ...patient('Europe/Berlin', 'Early'), extension: [...patient('Europe/Berlin').extension, at('CM', '06:30:00'), at('HS', '21:00:00')] };
    const created = await create(app, early);
    const p = created.id;
    // 30 min before breakfast and 30 min after bedtime; an explicit time stays where it is.
    const meals = (await create(app, request(p, { repeat: { frequency: 2, period: 1, periodUnit: 'd', when: ['ACM', 'HS'], offset: 30, boundsPeriod: { start: '2027-01-10' } } }))).id;
    const noon = (await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: ['12:00:00'], boundsPeriod: { start: '2027-01-10' } } }))).id;
    const window = `patient=${p}&start=2027-01-10T00:00:00Z&end=2027-01-11T00:00:00Z`;
    let doses = dosesOf((await due(window)).json);
    expect(doses.filter((d) => d.request === `MedicationRequest/${meals}`).map((d) => d.due)).to.equal(['2027-01-10T06:00:00+01:00', '2027-01-10T21:30:00+01:00']);
    expect(doses.filter((d) => d.request === `MedicationRequest/${noon}`).map((d) => d.due)).to.equal(['2027-01-10T12:00:00+01:00']);

    // Breakfast moves later: the doses follow without rewriting the order.
    const later = { ...created, extension: [...patient('Europe/Berlin').extension, at('CM', '09:15:00'), at('HS', '21:00:00')] };
    const put = await app.request({ method: 'PUT', url: `/fhir/Patient/${p}`, payload: later });
    expect(put.statusCode, put.payload).to.equal(200);
    doses = dosesOf((await due(window)).json);
    expect(doses.filter((d) => d.request === `MedicationRequest/${meals}`).map((d) => d.due)).to.equal(['2027-01-10T08:45:00+01:00', '2027-01-10T21:30:00+01:00']);

    const before = await countRows(app, 'Patient');
    for (const bad of [[at('LUNCHTIME', '12:00:00')], [at('CM', '07:00:00'), at('CM', '08:00:00')], [{ url: ROUTINE, extension: [{ url: 'event', valueCode: 'CM' }] }]]) {
      const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { ...patient('Europe/Berlin'), extension: bad } });
      expect(res.statusCode, res.payload).to.equal(422);
      expect(String(res.json.issue[0].expression[0])).to.startWith('Patient.extension[');
    }
    expect(await countRows(app, 'Patient')).to.equal(before);
  });

  it('refuses invalid values with a 422 naming the element and writes nothing; stores what it cannot place, scheduling nothing', async () => {
    const p = (await create(app, patient('Europe/Berlin'))).id;
    const before = await countRows(app, 'MedicationRequest');
    const cases: Array<[any, string]> = [
      [request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd' } }, { extension: [{ url: GRACE, valueDuration: { value: 30, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } }] }), 'MedicationRequest.extension'],
      [request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', count: 1_000_000 } }), 'MedicationRequest.dosageInstruction[0].timing.repeat.count'],
      [request(p, { repeat: { frequency: 10, period: 5, periodUnit: 's' } }), 'MedicationRequest.dosageInstruction[0].timing.repeat'],
    ];
    for (const [body, expression] of cases) {
      const res = await app.request({ method: 'POST', url: '/fhir/MedicationRequest', payload: body });
      expect(res.statusCode, res.payload).to.equal(422);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue.flatMap((i: any) => i.expression ?? [])).to.include(expression);
    }
    expect(await countRows(app, 'MedicationRequest')).to.equal(before);
    // Valid R4 the server cannot place on a calendar (three times a month, free-text timing), and
    // a draft: stored as sent, no dose due.
    await create(app, request(p, { repeat: { frequency: 3, period: 1, periodUnit: 'mo' } }));
    await create(app, request(p, { code: { text: 'when I feel like it' } }));
    await create(app, { ...request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd' } }), status: 'draft', extension: [{ url: GRACE, valueString: 'drafts are not checked' }] });
    expect(dosesOf((await due(`patient=${p}&start=2027-01-01T00:00:00Z&end=2027-01-31T00:00:00Z`)).json)).to.equal([]);

    const badZone = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', extension: [{ url: TIMEZONE, valueCode: 'Mars/Olympus' }] } });
    expect(badZone.statusCode).to.equal(422);
    expect(badZone.json.issue[0].expression).to.equal(['Patient.extension']);
  });

  it('links an administration to a stored request of the same patient only', async () => {
    const p = (await create(app, patient('UTC'))).id;
    const other = (await create(app, patient('UTC'))).id;
    const r = (await create(app, request(p, BID('2027-01-01')))).id;
    const before = await countRows(app, 'MedicationAdministration');
    const stranger = await app.request({ method: 'POST', url: '/fhir/MedicationAdministration', payload: administration(other, r, '2027-01-01T08:00:00Z') });
    expect(stranger.statusCode).to.equal(422);
    expect(stranger.json.issue[0].expression).to.equal(['MedicationAdministration.subject']);
    expect(await countRows(app, 'MedicationAdministration')).to.equal(before);
    await create(app, administration(p, r, '2027-01-01T08:00:00Z'));
    // A request this server does not hold (data from another system) counts nothing, and is kept.
    await create(app, administration(p, 'no-such-request', '2027-01-01T08:00:00Z'));
    // MedicationStatement and Medication are stored and searchable like any supported type.
    const med = await create(app, { resourceType: 'Medication', code: { text: 'Metformin 500 mg' } });
    await create(app, { resourceType: 'MedicationStatement', status: 'active', subject: { reference: `Patient/${p}` }, medicationReference: { reference: `Medication/${med.id}` }, basedOn: [{ reference: `MedicationRequest/${r}` }] });
    const statements = await app.request({ method: 'GET', url: `/fhir/MedicationStatement?subject=Patient/${p}` });
    expect(statements.json.total ?? statements.json.entry.length).to.equal(1);
  });

  it('offers $due and $check-adherence on MedicationRequest beside CarePlan\'s $check-adherence, and refuses a second definition on one type', async () => {
    const metadata = (await app.request({ method: 'GET', url: '/fhir/metadata' })).json;
    const ops = (type: string) => metadata.rest[0].resource.find((r: any) => r.type === type).operation.map((o: any) => o.name);
    expect(ops('MedicationRequest')).to.include(['due', 'check-adherence']);
    expect(ops('CarePlan')).to.include(['check-adherence']);
    for (const type of ['MedicationAdministration', 'MedicationStatement', 'Medication', 'Communication']) expect(metadata.rest[0].resource.some((r: any) => r.type === type), type).to.be.true();
    expect(() => app.ctx.operations.register({ name: 'check-adherence', types: ['CarePlan'], type: true, instance: false, affectsState: true, handler: async () => ({ status: 200 }) })).to.throw(/already defined/);
  });

  it('answers bad windows and parameters with a 400 OperationOutcome', async () => {
    for (const [query, expression] of [
      ['start=2027-01-02T00:00:00Z&end=2027-01-01T00:00:00Z', 'end'],
      ['start=2027-01-01T00:00:00Z&end=2027-03-01T00:00:00Z', 'end'],
      ['start=yesterday', 'start'],
      ['patient=a%20b', 'patient'],
    ] as const) {
      const res = await due(query);
      expect(res.statusCode, query).to.equal(400);
      expect(res.json.issue[0].expression).to.equal([expression]);
    }
    // A future `now` is for servers started with ALLOW_CLOCK_OVERRIDE (this one is not).
    const future = await due(`start=2027-01-01T00:00:00Z&now=${enc(new Date(Date.now() + 86_400_000).toISOString())}`);
    expect(future.statusCode).to.equal(403);
    const get = await app.request({ method: 'GET', url: '/fhir/MedicationRequest/$check-adherence' });
    expect(get.statusCode).to.equal(405);
  });
});

describe('$due under the access policy', () => {
  let app: SecuredServer;
  const id: Record<string, string> = {};
  before(async () => {
    app = await startSecuredServer();
    id.alice = await app.create(patient('Europe/Berlin', 'Alice'));
    id.bob = await app.create(patient('Europe/Berlin', 'Bob'));
    id.aliceRx = await app.create(request(id.alice, BID('2027-01-01')));
    id.bobRx = await app.create(request(id.bob, BID('2027-01-01')));
    id.drX = await app.create({ resourceType: 'Practitioner', name: [{ family: 'X' }] });
  });
  after(() => app?.stop());

  const window = 'start=2027-01-05T00:00:00Z&end=2027-01-06T00:00:00Z';
  const requestsIn = (res: any) => [...new Set(dosesOf(res.json).map((d) => d.request))];

  it('a patient token sees its own doses only, whatever it asks for', async () => {
    const alice = await app.as('patient/MedicationRequest.rs patient/MedicationAdministration.rs', { patient: id.alice });
    const mine = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?${window}`, headers: alice });
    expect(mine.statusCode, mine.payload).to.equal(200);
    expect(new Set(dosesOf(mine.json).map((d) => d.request))).to.equal(new Set([`MedicationRequest/${id.aliceRx}`]));
    const bobs = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?${window}&patient=${id.bob}`, headers: alice });
    expect(bobs.statusCode).to.equal(200);
    expect(dosesOf(bobs.json)).to.equal([]);
    const instance = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${id.bobRx}/$due?${window}`, headers: alice });
    expect(instance.statusCode).to.equal(404);
  });

  it("a clinician named by Alice's deny Consent sees Bob's doses, not hers", async () => {
    const drX = await app.as('user/MedicationRequest.rs user/MedicationAdministration.rs', { fhirUser: `Practitioner/${id.drX}` });
    expect(requestsIn(await app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?${window}`, headers: drX }))).to.include(`MedicationRequest/${id.aliceRx}`);
    const deny = await app.create(consent(id.alice, { type: 'deny', actor: [actor(`Practitioner/${id.drX}`)] }));
    try {
      const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?${window}`, headers: drX });
      expect(res.statusCode, res.payload).to.equal(200);
      expect(requestsIn(res)).to.not.include(`MedicationRequest/${id.aliceRx}`);
      expect(requestsIn(res)).to.include(`MedicationRequest/${id.bobRx}`);
      const instance = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${id.aliceRx}/$due?${window}`, headers: drX });
      expect(instance.statusCode).to.equal(404);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: app.system });
    }
  });

  it("shows a patient's time zone and routine only to whom the policy lets read the Patient; the others get the same doses in UTC", async () => {
    const ROUTINE = 'http://rpm.example.org/fhir/StructureDefinition/patient-event-time';
    const berlin = patient('Europe/Berlin', 'Carol');
    const carol = await app.create({ ...berlin, gender: 'male', extension: [...berlin.extension, { url: ROUTINE, extension: [{ url: 'event', valueCode: 'CM' }, { url: 'time', valueTime: '07:15:00' }] }] });
    // Before breakfast, which Carol has at 07:15 in Berlin (+01:00 in January).
    const rx = await app.create(request(carol, { repeat: { when: ['ACM'], boundsPeriod: { start: '2027-01-01' } } }));
    const doseAs = async (headers: Record<string, string>) => {
      const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx}/$due?${window}`, headers });
      expect(res.statusCode, res.payload).to.equal(200);
      const parts: any[] = res.json.parameter.find((p: any) => p.name === 'dose').part;
      const value = (name: string) => { const p = parts.find((x) => x.name === name); return p && (p.valueDateTime ?? p.valueCode); };
      return { due: value('due'), timeZone: value('timeZone'), timeSource: value('timeSource') };
    };
    const meds = (context: string) => `${context}/MedicationRequest.rs ${context}/MedicationAdministration.rs`;
    const local = { due: '2027-01-05T07:15:00+01:00', timeZone: 'Europe/Berlin', timeSource: 'patient-routine' };
    const utc = { due: '2027-01-05T06:15:00.000Z', timeZone: undefined, timeSource: undefined };
    expect(await doseAs(await app.as(`${meds('user')} user/Patient.r`))).to.equal(local);
    expect(await doseAs(await app.as(`${meds('patient')} patient/Patient.r`, { patient: carol }))).to.equal(local);
    expect(await doseAs(await app.as(`${meds('user')} user/Patient.rs?gender=male`))).to.equal(local);
    // MedicationRequest rights alone, or a Patient scope that does not reach Carol: the instant only.
    expect(await doseAs(await app.as(meds('user')))).to.equal(utc);
    expect(await doseAs(await app.as(meds('patient'), { patient: carol }))).to.equal(utc);
    expect(await doseAs(await app.as(`${meds('user')} user/Patient.rs?gender=female`))).to.equal(utc);
  });

  it('a token without MedicationRequest rights is refused before anything is read', async () => {
    const observer = await app.as('patient/Observation.rs', { patient: id.alice });
    const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?${window}`, headers: observer });
    expect(res.statusCode).to.equal(403);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    const system = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/$due?${window}`, headers: app.system });
    expect([...new Set(dosesOf(system.json).map((d) => d.request))]).to.include([`MedicationRequest/${id.aliceRx}`, `MedicationRequest/${id.bobRx}`]);
  });
});
