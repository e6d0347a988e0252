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

  it('boundsDuration in months or years ends the schedule on the calendar', async () => {
    // "For 1 month" from 1 March: the last dose is on 31 March, none in April.
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsDuration: days(1, 'mo') } }, '2026-03-30T00:00:00+02:00', '2026-04-03T00:00:00+02:00', { authoredOn: '2026-03-01' }))
      .to.equal(['2026-03-30T08:00:00+02:00', '2026-03-31T08:00:00+02:00']);
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsDuration: days(1, 'a') } }, '2027-02-27T00:00:00+01:00', '2027-03-03T00:00:00+01:00', { authoredOn: '2026-03-01' }))
      .to.equal(['2027-02-27T08:00:00+01:00', '2027-02-28T08:00:00+01:00']);
    // A boundsRange with only a high lasts that long.
    expect(await dueTimes({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsRange: { high: days(3, 'd') } } }, ...week, { authoredOn: '2026-03-27' }))
      .to.equal(['2026-03-27T08:00:00+01:00', '2026-03-28T08:00:00+01:00', '2026-03-29T08:00:00+02:00']);
  });

  /** The doses and the assumptions of one new request's $due in [start, end). */
  async function dueWithAssumptions(timing: fhir4.Timing, start: string, end: string): Promise<{ due: string[]; assumed: string[] }> {
    const id = (await create(app, request(p, timing, { authoredOn: '2026-03-27' }))).id;
    const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${id}/$due?start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}` });
    expect(res.statusCode, res.payload).to.equal(200);
    const assumed = res.json.parameter.filter((x: any) => x.name === 'assumption').map((a: any) => {
      const part = (name: string) => a.part.find((x: any) => x.name === name);
      expect(part('request').valueReference.reference).to.equal(`MedicationRequest/${id}`);
      expect(part('instruction').valueInteger).to.equal(0);
      return `${part('element').valueString}: ${part('text').valueString}`;
    });
    return { due: dosesOf(res.json).map((d) => d.due), assumed };
  }

  it('a range (frequencyMax, periodMax, countMax, boundsRange) is scheduled by the fewest doses it requires, and $due says so', async () => {
    const at = 'MedicationRequest.dosageInstruction[0].timing.repeat';
    // "1-2 times every 4-6 hours": once every 6 h (it was every 4 h, as if the range were not there).
    expect(await dueWithAssumptions({ repeat: { frequency: 1, frequencyMax: 2, period: 4, periodMax: 6, periodUnit: 'h' } }, '2026-03-27T00:00:00+01:00', '2026-03-28T00:00:00+01:00')).to.equal({
      due: ['2026-03-27T00:00:00+01:00', '2026-03-27T06:00:00+01:00', '2026-03-27T12:00:00+01:00', '2026-03-27T18:00:00+01:00'],
      assumed: [`${at}.frequencyMax: 1 to 2 doses a period: scheduled 1, the fewest`, `${at}.periodMax: every 4 to 6 h: scheduled every 6 h, the longest`],
    });
    // "Every 2-3 days": every 3 days.
    expect((await dueWithAssumptions({ repeat: { frequency: 1, period: 2, periodMax: 3, periodUnit: 'd' } }, ...week)).due)
      .to.equal(['2026-03-27T08:00:00+01:00', '2026-03-30T08:00:00+02:00']);
    // "3 to 5 doses": 3.
    expect(await dueWithAssumptions({ repeat: { frequency: 1, period: 1, periodUnit: 'd', count: 3, countMax: 5 } }, ...week)).to.equal({
      due: ['2026-03-27T08:00:00+01:00', '2026-03-28T08:00:00+01:00', '2026-03-29T08:00:00+02:00'],
      assumed: [`${at}.countMax: 3 to 5 doses: the schedule ends after 3, the fewest`],
    });
    // "For 2 to 3 days": 2 (the high was taken and the low ignored); "2 days or more": 2, not for ever.
    expect(await dueWithAssumptions({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsRange: { low: days(2, 'd'), high: days(3, 'd') } } }, ...week)).to.equal({
      due: ['2026-03-27T08:00:00+01:00', '2026-03-28T08:00:00+01:00'],
      assumed: [`${at}.boundsRange.low: lasting 2 d to 3 d: the schedule ends after 2 d, the shortest`],
    });
    expect((await dueWithAssumptions({ repeat: { frequency: 1, period: 1, periodUnit: 'd', boundsRange: { low: days(2, 'd') } } }, ...week)).due)
      .to.equal(['2026-03-27T08:00:00+01:00', '2026-03-28T08:00:00+01:00']);
  });

  it('each dose carries Timing.repeat.duration, how long it lasts once begun', async () => {
    const id = (await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', duration: 30, durationMax: 45, durationUnit: 'min' } }, { authoredOn: '2026-03-27' }))).id;
    const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${id}/$due?start=${encodeURIComponent('2026-03-27T00:00:00+01:00')}&end=${encodeURIComponent('2026-03-28T00:00:00+01:00')}` });
    const doses = res.json.parameter.filter((x: any) => x.name === 'dose');
    expect(doses).to.have.length(1);
    expect(doses[0].part.find((x: any) => x.name === 'duration').valueDuration).to.equal({ value: 30, unit: 'min', system: UCUM, code: 'min' });
    expect(res.json.parameter.filter((x: any) => x.name === 'assumption')).to.have.length(1);
  });

  it('dayOfWeek: one dose per day listed and time given in a weekly frequency, else unscheduled; an interval keeps to the days listed', async () => {
    const window = ['2026-03-27T00:00:00+01:00', '2026-04-06T00:00:00+02:00'] as const;
    expect(await dueTimes({ repeat: { frequency: 2, period: 1, periodUnit: 'wk', dayOfWeek: ['mon', 'thu'], timeOfDay: ['09:00:00'], boundsPeriod: from27 } }, ...window))
      .to.equal(['2026-03-30T09:00:00+02:00', '2026-04-02T09:00:00+02:00']);
    // "Twice a week, on Monday at 08:00 and 20:00" (was unscheduled).
    expect(await dueTimes({ repeat: { frequency: 2, period: 1, periodUnit: 'wk', dayOfWeek: ['mon'], timeOfDay: ['08:00:00', '20:00:00'], boundsPeriod: from27 } }, ...window))
      .to.equal(['2026-03-30T08:00:00+02:00', '2026-03-30T20:00:00+02:00']);
    // "Once a week, Monday and Thursday" does not say which: unscheduled (it was given on both, twice a week).
    const rx = (await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'wk', dayOfWeek: ['mon', 'thu'], boundsPeriod: from27 } }))).id;
    const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx}/$due?start=${encodeURIComponent(window[0])}&end=${encodeURIComponent(window[1])}` });
    expect(dosesOf(res.json)).to.equal([]);
    expect(res.json.parameter.filter((x: any) => x.name === 'unscheduled')).to.have.length(1);
    // "Every 12 h on Mondays" (the days were ignored: every day).
    expect(await dueTimes({ repeat: { frequency: 1, period: 12, periodUnit: 'h', dayOfWeek: ['mon'], timeOfDay: ['08:00:00'], boundsPeriod: { start: '2026-04-01' } } }, '2026-04-01T00:00:00+02:00', '2026-04-09T00:00:00+02:00'))
      .to.equal(['2026-04-06T08:00:00+02:00', '2026-04-06T20:00:00+02:00']);
  });

  it('a date-only Timing.event is the patient\'s local day, at the repeat\'s time of day or the server\'s, not UTC midnight', async () => {
    const window = `start=${encodeURIComponent('2026-03-27T00:00:00+01:00')}&end=${encodeURIComponent('2026-04-01T00:00:00+02:00')}`;
    const dosesFor = async (timing: fhir4.Timing) => {
      const rx = (await create(app, request(p, timing, { authoredOn: '2026-03-27' }))).id;
      const res = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx}/$due?${window}` });
      return { doses: dosesOf(res.json).map((d) => [d.due, d.timeSource]), unscheduled: res.json.parameter.filter((x: any) => x.name === 'unscheduled').length };
    };
    // Was 2026-03-28T01:00+01:00 and 2026-03-30T02:00+02:00 (UTC midnight in Berlin).
    expect(await dosesFor({ event: ['2026-03-30', '2026-03-28'] })).to.equal({ doses: [['2026-03-28T08:00:00+01:00', 'server-default'], ['2026-03-30T08:00:00+02:00', 'server-default']], unscheduled: 0 });
    expect(await dosesFor({ event: ['2026-03-28', '2026-03-29T12:00:00+02:00'], repeat: { timeOfDay: ['09:30:00'] } }))
      .to.equal({ doses: [['2026-03-28T09:30:00+01:00', undefined], ['2026-03-29T12:00:00+02:00', undefined]], unscheduled: 0 });
    // A month names no day: unscheduled, not 1 March at midnight.
    expect(await dosesFor({ event: ['2026-03'] })).to.equal({ doses: [], unscheduled: 1 });
  });

  it('an order edited without authoredOn keeps its start: a count is not restarted, an interval not moved', async () => {
    const rx = await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'h', count: 3 } }));
    const now = Date.now();
    const window = `start=${encodeURIComponent(new Date(now - 3_600_000).toISOString())}&end=${encodeURIComponent(new Date(now + 86_400_000).toISOString())}`;
    const due = async () => dosesOf((await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx.id}/$due?${window}` })).json).map((d) => d.due);
    const first = await due();
    expect(first).to.have.length(3);
    // More than a second later (due times are given to the second): three more doses from the edit, before.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const edited = await app.request({ method: 'PUT', url: `/fhir/MedicationRequest/${rx.id}`, payload: { ...rx, note: [{ text: 'with food' }] } });
    expect(edited.statusCode, edited.payload).to.equal(200);
    expect(await due()).to.equal(first);
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
      [{ frequency: 1, period: -1, periodUnit: 'd' }, `${at}.period`],
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
      // R4 tim-1, tim-2, tim-4, tim-6..tim-9, and ranges upside down: each was scheduled as if it were not there.
      [{ frequency: 1, period: 1, periodUnit: 'd', duration: 30 }, `${at}.durationUnit`],
      [{ period: 1, timeOfDay: ['09:00:00'] }, `${at}.periodUnit`],
      [{ frequency: 1, period: 1, periodUnit: 'd', duration: -30, durationUnit: 'min' }, `${at}.duration`],
      [{ frequency: 1, periodMax: 6, periodUnit: 'h' }, `${at}.periodMax`],
      [{ frequency: 1, period: 1, periodUnit: 'd', durationMax: 30, durationUnit: 'min' }, `${at}.durationMax`],
      [{ frequency: 1, period: 1, periodUnit: 'd', countMax: 5 }, `${at}.countMax`],
      [{ frequency: 1, period: 1, periodUnit: 'd', offset: 30 }, `${at}.offset`],
      [{ when: ['CM'], offset: 30 }, `${at}.offset`],
      [{ frequency: 3, frequencyMax: 2, period: 1, periodUnit: 'd' }, `${at}.frequencyMax`],
      [{ frequency: 1, period: 6, periodMax: 4, periodUnit: 'h' }, `${at}.periodMax`],
      [{ frequency: 1, period: 1, periodUnit: 'd', count: 5, countMax: 3 }, `${at}.countMax`],
      [{ frequency: 1, period: 1, periodUnit: 'd', boundsRange: { low: days(5, 'd'), high: days(3, 'd') } }, `${at}.boundsRange`], // R4 rng-2
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
