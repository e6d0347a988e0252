import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { countRows, startTestServer, type TestServer } from '../helpers/server';
import { create, dosesOf, patient, request } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * The R4 Timing datatype (datatypes.html#Timing) read element by element, each answer checked by
 * hand: $due over HTTP for a Europe/Berlin patient, whose clocks change on 2026-03-29 and
 * 2026-10-25. Decision record: docs/decisions/011-medication-schedules.md.
 */
describe('medication schedules: R4 Timing element by element', () => {
  let app: TestServer;
  let p: string;
  before(async () => {
    app = await startTestServer();
    p = (await create(app, patient('Europe/Berlin'))).id;
  });
  after(() => app?.stop());

  const UCUM = 'http://unitsofmeasure.org';
  const days = (value: number, code: string) => ({ value, unit: code, system: UCUM, code });
  /** The due times (local, with offset) of one new request in [start, end). */
  async function dueTimes(timing: fhir4.Timing, start: string, end: string, extra: Record<string, unknown> = {}): Promise<string[]> {
    const id = (await create(app, request(p, timing, extra))).id;
    const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${id}/$due?start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}` });
    expect(res.statusCode, res.payload).to.equal(200);
    return dosesOf(res.json).map((d) => d.due);
  }
  const week = ['2026-03-27T00:00:00+01:00', '2026-04-01T00:00:00+02:00'] as const;
  const from27 = { start: '2026-03-27' };

  it('twice a day without times is at the server\'s 08:00 and 20:00; explicit times keep their local clock across 2026-03-29', async () => {
    const daily = ['2026-03-27T08:00:00+01:00', '2026-03-27T20:00:00+01:00', '2026-03-28T08:00:00+01:00', '2026-03-28T20:00:00+01:00',
      '2026-03-29T08:00:00+02:00', '2026-03-29T20:00:00+02:00', '2026-03-30T08:00:00+02:00', '2026-03-30T20:00:00+02:00',
      '2026-03-31T08:00:00+02:00', '2026-03-31T20:00:00+02:00'];
    expect(await dueTimes({ repeat: { frequency: 2, period: 1, periodUnit: 'd', boundsPeriod: from27 } }, ...week)).to.equal(daily);
    expect(await dueTimes({ repeat: { timeOfDay: ['08:00:00', '20:00:00'], boundsPeriod: from27 } }, ...week)).to.equal(daily);
    expect(await dueTimes({ code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation', code: 'BID' }] } }, ...week, { authoredOn: '2026-03-27' })).to.equal(daily);
  });

  it('a time of day the order did not give is said to be the server\'s or the patient\'s routine: when [ACM] without offset, twice a day without times', async () => {
    const window = `start=${encodeURIComponent('2026-03-29T00:00:00+01:00')}&end=${encodeURIComponent('2026-03-30T00:00:00+02:00')}`;
    const dosesFor = async (patientId: string, timing: fhir4.Timing) => {
      const rx = (await create(app, request(patientId, timing, { authoredOn: '2026-03-27' }))).id;
      return dosesOf((await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx}/$due?${window}` })).json).map((d) => [d.due, d.timeSource]);
    };
    expect(await dosesFor(p, { repeat: { when: ['ACM'] } })).to.equal([['2026-03-29T08:00:00+02:00', 'server-default']]);
    expect(await dosesFor(p, { repeat: { frequency: 2, period: 1, periodUnit: 'd' } })).to.equal([['2026-03-29T08:00:00+02:00', 'server-default'], ['2026-03-29T20:00:00+02:00', 'server-default']]);
    expect(await dosesFor(p, { repeat: { timeOfDay: ['08:00:00'] } })).to.equal([['2026-03-29T08:00:00+02:00', undefined]]);
    // Breakfast at 07:15 on the Patient: before breakfast is then, and is said to be the routine.
    const ROUTINE = 'http://rpm.example.org/fhir/StructureDefinition/patient-event-time';
    const early = (await create(app, { ...patient('Europe/Berlin'), extension: [...patient('Europe/Berlin').extension, { url: ROUTINE, extension: [{ url: 'event', valueCode: 'CM' }, { url: 'time', valueTime: '07:15:00' }] }] })).id;
    expect(await dosesFor(early, { repeat: { when: ['ACM'] } })).to.equal([['2026-03-29T07:15:00+02:00', 'patient-routine']]);
  });

  it('dayOfWeek, count and the end of boundsPeriod', async () => {
    // 2026-03-27 is a Friday: Monday 30th and Thursday 2nd.
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', dayOfWeek: ['mon', 'thu'], timeOfDay: ['09:00:00'], boundsPeriod: from27 } }, '2026-03-27T00:00:00+01:00', '2026-04-06T00:00:00+02:00'))
      .to.equal(['2026-03-30T09:00:00+02:00', '2026-04-02T09:00:00+02:00']);
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', count: 5, boundsPeriod: from27 } }, '2026-03-27T00:00:00+01:00', '2026-04-10T00:00:00+02:00'))
      .to.equal(['2026-03-27T08:00:00+01:00', '2026-03-28T08:00:00+01:00', '2026-03-29T08:00:00+02:00', '2026-03-30T08:00:00+02:00', '2026-03-31T08:00:00+02:00']);
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsPeriod: { start: '2026-03-27', end: '2026-03-29T07:59:00+02:00' } } }, ...week))
      .to.equal(['2026-03-27T08:00:00+01:00', '2026-03-28T08:00:00+01:00']);
  });

  it('a Timing.code alone stands for its repeat: Q8H every 8 h from the start, BED at bedtime', async () => {
    const code = (c: string) => ({ code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation', code: c }] } });
    // 8 h of elapsed time across the spring change (02:00 → 03:00): midnight, then 09:00 summer time.
    expect(await dueTimes(code('Q8H'), '2026-03-28T00:00:00+01:00', '2026-03-29T12:00:00+02:00', { authoredOn: '2026-03-28' }))
      .to.equal(['2026-03-28T00:00:00+01:00', '2026-03-28T08:00:00+01:00', '2026-03-28T16:00:00+01:00', '2026-03-29T00:00:00+01:00', '2026-03-29T09:00:00+02:00']);
    expect(await dueTimes(code('BED'), '2026-03-28T00:00:00+01:00', '2026-03-30T00:00:00+02:00', { authoredOn: '2026-03-28' }))
      .to.equal(['2026-03-28T22:00:00+01:00', '2026-03-29T22:00:00+02:00']);
    // Bounds still apply over the code (R4 Timing.code): a repeat of bounds alone keeps the code's schedule.
    expect(await dueTimes({ ...code('BED'), repeat: { boundsPeriod: { start: '2026-03-29' } } }, '2026-03-28T00:00:00+01:00', '2026-03-30T00:00:00+02:00', { authoredOn: '2026-03-28' }))
      .to.equal(['2026-03-29T22:00:00+02:00']);
  });

  it('monthly and yearly doses fall on the month\'s last day when it has no such day', async () => {
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'mo', boundsPeriod: { start: '2026-01-31' } } }, '2026-01-01T00:00:00Z', '2026-01-31T23:00:00Z'))
      .to.equal(['2026-01-31T08:00:00+01:00']);
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'mo', boundsPeriod: { start: '2026-01-31' } } }, '2026-02-01T00:00:00Z', '2026-03-03T00:00:00Z'))
      .to.equal(['2026-02-28T08:00:00+01:00']);
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'mo', boundsPeriod: { start: '2026-01-31' } } }, '2026-03-03T00:00:00Z', '2026-04-02T00:00:00Z'))
      .to.equal(['2026-03-31T08:00:00+02:00']);
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'a', boundsPeriod: { start: '2024-02-29' } } }, '2026-02-01T00:00:00Z', '2026-03-03T00:00:00Z'))
      .to.equal(['2026-02-28T08:00:00+01:00']);
  });

  it('boundsDuration in months or years ends the schedule on the calendar, boundsRange at its longest', async () => {
    // "For 1 month" from 1 March: the last dose is on 31 March, none in April.
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsDuration: days(1, 'mo') } }, '2026-03-30T00:00:00+02:00', '2026-04-03T00:00:00+02:00', { authoredOn: '2026-03-01' }))
      .to.equal(['2026-03-30T08:00:00+02:00', '2026-03-31T08:00:00+02:00']);
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsDuration: days(1, 'a') } }, '2027-02-27T00:00:00+01:00', '2027-03-03T00:00:00+01:00', { authoredOn: '2026-03-01' }))
      .to.equal(['2027-02-27T08:00:00+01:00', '2027-02-28T08:00:00+01:00']);
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsRange: { low: days(2, 'd'), high: days(3, 'd') } } }, ...week, { authoredOn: '2026-03-27' }))
      .to.equal(['2026-03-27T08:00:00+01:00', '2026-03-28T08:00:00+01:00', '2026-03-29T08:00:00+02:00']);
  });

  it('an active order whose timing the server cannot place is stored, and $due says so instead of answering silence', async () => {
    const window = `start=${encodeURIComponent(week[0])}&end=${encodeURIComponent(week[1])}`;
    for (const timing of [{ repeat: { frequency: 3, period: 1, periodUnit: 'mo' } }, { repeat: { frequency: 1, period: 1.5, periodUnit: 'd' } }, { code: { text: 'when I feel like it' } }] as fhir4.Timing[]) {
      const rx = (await create(app, request(p, timing, { authoredOn: '2026-03-27' }))).id;
      const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx}/$due?${window}` });
      expect(res.statusCode, res.payload).to.equal(200);
      expect(dosesOf(res.json)).to.equal([]);
      const unscheduled = res.json.parameter.filter((x: any) => x.name === 'unscheduled');
      expect(unscheduled, JSON.stringify(timing)).to.have.length(1);
      const part = (name: string) => unscheduled[0].part.find((x: any) => x.name === name);
      expect(part('request').valueReference.reference).to.equal(`MedicationRequest/${rx}`);
      expect(part('instruction').valueInteger).to.equal(0);
      expect(String(part('reason').valueString)).to.startWith('MedicationRequest.dosageInstruction[0].timing');
    }
  });

  it('only an active order is due: stopped, cancelled, completed, entered-in-error, on-hold, draft, unknown and proposals are not', async () => {
    const daily = { repeat: { frequency: 1, period: 1, periodUnit: 'd' as const, boundsPeriod: from27 } };
    for (const status of ['stopped', 'cancelled', 'completed', 'entered-in-error', 'on-hold', 'draft', 'unknown']) {
      expect(await dueTimes(daily, ...week, { status }), status).to.equal([]);
    }
    expect(await dueTimes(daily, ...week, { intent: 'proposal' })).to.equal([]);
    // Put on hold after it was active: nothing more is due.
    const rx = await create(app, request(p, daily));
    const window = `start=${encodeURIComponent(week[0])}&end=${encodeURIComponent(week[1])}`;
    expect(dosesOf((await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx.id}/$due?${window}` })).json)).to.have.length(5);
    const held = await app.request({ method: 'PUT', url: `/fhir/MedicationRequest/${rx.id}`, payload: { ...rx, status: 'on-hold' } });
    expect(held.statusCode, held.payload).to.equal(200);
    expect(dosesOf((await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx.id}/$due?${window}` })).json)).to.equal([]);
  });

  it('refuses a malformed timing in an active order with a 4xx OperationOutcome naming it, and writes nothing', async () => {
    const before = await countRows(app, 'MedicationRequest');
    const at = 'MedicationRequest.dosageInstruction[0].timing.repeat';
    const cases: Array<[fhir4.TimingRepeat | Record<string, unknown>, string]> = [
      [{ frequency: 0, period: 1, periodUnit: 'd' }, `${at}.frequency`],
      [{ frequency: 1, period: -1, periodUnit: 'd' }, at],
      [{ frequency: 1, period: 0, periodUnit: 'd' }, at],
      [{ frequency: 1, period: 1, periodUnit: 'fortnight' }, `${at}.periodUnit`],
      [{ timeOfDay: ['8am'] }, `${at}.timeOfDay[0]`],
      [{ timeOfDay: ['25:00:00'] }, `${at}.timeOfDay[0]`],
      [{ frequency: 1, period: 1, periodUnit: 'd', dayOfWeek: ['monday'] }, `${at}.dayOfWeek`],
      [{ timeOfDay: ['09:00:00'], when: ['ACM'] }, at],
      [{ when: ['LUNCH'] }, `${at}.when[0]`],
      [{ frequency: 1, period: 1, periodUnit: 'd', count: 0 }, `${at}.count`],
      [{ frequency: 1, period: 1, periodUnit: 'd', boundsDuration: { value: 3, unit: 'fortnight' } }, `${at}.boundsDuration`],
      [{ frequency: 1, period: 1, periodUnit: 'd', boundsDuration: { value: -3, unit: 'd', system: UCUM, code: 'd' } }, `${at}.boundsDuration`],
    ];
    for (const [repeat, expression] of cases) {
      const res = await app.request({ method: 'POST', url: '/fhir/MedicationRequest', payload: request(p, { repeat } as fhir4.Timing) });
      expect(res.statusCode, `${JSON.stringify(repeat)}: ${res.payload}`).to.be.within(400, 422);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue.flatMap((i: any) => i.expression ?? []), JSON.stringify(repeat)).to.include(expression);
    }
    expect(await countRows(app, 'MedicationRequest')).to.equal(before);
  });
});
