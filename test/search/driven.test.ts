import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, searchAll, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const UCUM = 'http://unitsofmeasure.org';

/**
 * Searches driven by the patient index (src/search/sql.ts, planDriver) by a bare code: a
 * resource whose codings share the code under two systems has two rows of it there, and must
 * still be listed once, on every page.
 */
describe('patient searches driven by a bare code', () => {
  let app: TestServer;
  let pid = '';
  const days: Record<string, string> = {};

  /** Every page of a search, as the days of the Observations listed, in order. */
  async function pages(query: string): Promise<string[]> {
    return (await searchAll(app, `/fhir/Observation?patient=${pid}&${query}`)).map((r) => days[r.id]!);
  }

  before(async () => {
    app = await startTestServer();
    pid = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Driven') }] });
    for (const day of [1, 2, 3, 4, 5]) {
      // Day 3's reading codes its category and its code twice, under a second system with the same codes.
      const twice = day === 3;
      const id = await createResource(app, {
        resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${pid}` }, effectiveDateTime: `2026-05-0${day}T08:00:00Z`,
        category: [{ coding: [{ system: CATEGORY, code: 'vital-signs' }, ...(twice ? [{ system: 'urn:local:category', code: 'vital-signs' }] : [])] }],
        code: { coding: [{ system: LOINC, code: '8867-4' }, ...(twice ? [{ system: 'urn:local:code', code: '8867-4' }] : [])] },
        valueQuantity: { value: 60 + day, unit: '/min', system: UCUM, code: '/min' },
      });
      days[id] = `05-0${day}`;
    }
  });
  after(() => app.stop());

  it('lists a resource once when two of its codings share the searched code', async () => {
    for (const count of [50, 2]) {
      expect(await pages(`code=8867-4&_count=${count}`), `code, _count=${count}`).to.equal(['05-05', '05-04', '05-03', '05-02', '05-01']);
      expect(await pages(`category=vital-signs&_count=${count}`), `category, _count=${count}`).to.equal(['05-05', '05-04', '05-03', '05-02', '05-01']);
      expect(await pages(`category=vital-signs&date=ge2026-05-02&_sort=-date&_count=${count}`)).to.equal(['05-05', '05-04', '05-03', '05-02']);
      expect(await pages(`category=vital-signs&_sort=date&_count=${count}`)).to.equal(['05-01', '05-02', '05-03', '05-04', '05-05']);
    }
    const total = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&code=8867-4&_summary=count` });
    expect(total.json.total).to.equal(5);
  });
});

/**
 * A patient's searches that pin no code (`Observation?patient=X&_sort=-date`, `…&date=ge…`,
 * `Observation?patient=X`) are driven by the one reference row each resource has for its
 * patient key (src/search/extract.ts): every resource of the patient, once, in date order, the
 * undated last; nothing of another patient, nothing deleted, nothing moved away.
 */
describe('patient searches driven by the patient key alone', () => {
  let app: TestServer;
  let pid = '';
  let other = '';
  const labels: Record<string, string> = {};

  async function listed(query: string): Promise<string[]> {
    return (await searchAll(app, `/fhir/Observation?${query.replaceAll('{pid}', pid)}`)).map((r) => labels[r.id] ?? `unknown ${r.id}`);
  }

  async function observation(label: string, fields: Record<string, unknown>, patient = pid): Promise<string> {
    const id = await createResource(app, { resourceType: 'Observation', status: 'final', code: { text: label }, subject: { reference: `Patient/${patient}` }, ...fields });
    labels[id] = label;
    return id;
  }

  before(async () => {
    app = await startTestServer();
    pid = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Keyed') }] });
    other = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Other') }] });
    for (const day of [1, 2, 3, 5]) await observation(`05-0${day}`, { effectiveDateTime: `2026-05-0${day}T08:00:00Z` });
    // The patient twice, as subject and performer: two reference rows name it, one drives.
    await observation('05-04 performer', { effectiveDateTime: '2026-05-04T08:00:00Z', performer: [{ reference: `Patient/${pid}` }] });
    await observation('undated', {});
    // Two events around 05-03: its date copy is an envelope (date_multi), so 05-03 is checked against the events.
    await observation('timing 05-02+05-06', { effectiveTiming: { event: ['2026-05-02T12:00:00Z', '2026-05-06T12:00:00Z'] } });
    await observation('other patient', { effectiveDateTime: '2026-05-03T09:00:00Z' }, other);
    const deleted = await observation('deleted', { effectiveDateTime: '2026-05-03T10:00:00Z' });
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${deleted}` })).statusCode).to.equal(204);
    const moved = await observation('moved away', { effectiveDateTime: '2026-05-03T11:00:00Z' });
    const update = { resourceType: 'Observation', id: moved, status: 'final', code: { text: 'moved away' }, subject: { reference: `Patient/${other}` }, effectiveDateTime: '2026-05-03T11:00:00Z' };
    expect((await app.request({ method: 'PUT', url: `/fhir/Observation/${moved}`, payload: update })).statusCode).to.equal(200);
  });
  after(() => app.stop());

  it('lists every resource of the patient once, in date order, on every page size', async () => {
    const newest = ['timing 05-02+05-06', '05-05', '05-04 performer', '05-03', '05-02', '05-01', 'undated'];
    for (const count of [50, 2]) {
      expect(await listed(`patient={pid}&_sort=-date&_count=${count}`), `-date, _count=${count}`).to.equal(newest);
      expect(await listed(`subject=Patient/{pid}&_count=${count}`), `unsorted, _count=${count}`).to.equal(newest);
      expect(await listed(`patient={pid}&_sort=date&_count=${count}`), `date, _count=${count}`).to.equal(['05-01', '05-02', 'timing 05-02+05-06', '05-03', '05-04 performer', '05-05', 'undated']);
      expect(await listed(`patient={pid}&date=ge2026-05-04&_count=${count}`), `date=ge, _count=${count}`).to.equal(['timing 05-02+05-06', '05-05', '05-04 performer']);
      // Inside the Timing's envelope but on neither event: not a match.
      expect(await listed(`patient={pid}&date=2026-05-03&_count=${count}`), `date=eq, _count=${count}`).to.equal(['05-03']);
    }
    const total = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&_summary=count` });
    expect(total.json.total).to.equal(7);
    expect(await listed(`patient=${other}&_sort=-date`)).to.equal(['moved away', 'other patient']);
  });

  it('refuses a malformed date or cursor on the driven path with a 400 OperationOutcome', async () => {
    for (const query of ['date=ge2026-13-45&_sort=-date', 'date=notadate', '_sort=-date&_cursor=not-a-cursor']) {
      const res = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&${query}` });
      expect(res.statusCode, query).to.equal(400);
      expect(res.json.resourceType, query).to.equal('OperationOutcome');
    }
  });
});

/**
 * A patient's search for a list of codes (`code=a,b,c`, as SMART apps ask for a chart's series)
 * is driven by one range scan of the patient index per code, merged in date order
 * (src/search/sql.ts, termBranches). A resource with rows of two listed codes, or two rows of
 * one bare code, is listed once, under every order and page size.
 */
describe('patient searches driven by a list of codes', () => {
  const HEART = '8867-4';
  const WEIGHT = '29463-7';
  let app: TestServer;
  let pid = '';
  const labels: Record<string, string> = {};

  async function listed(query: string): Promise<string[]> {
    return (await searchAll(app, `/fhir/Observation?patient=${pid}&${query}`)).map((r) => labels[r.id] ?? `unknown ${r.id}`);
  }

  async function observation(label: string, day: number, coding: Array<{ system: string; code: string }>, patient = pid): Promise<string> {
    const id = await createResource(app, {
      resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${patient}` }, effectiveDateTime: `2026-06-0${day}T08:00:00Z`,
      category: [{ coding: [{ system: CATEGORY, code: 'vital-signs' }] }], code: { coding }, valueQuantity: { value: 60 + day, unit: '1', system: UCUM, code: '1' },
    });
    labels[id] = label;
    return id;
  }

  before(async () => {
    app = await startTestServer();
    pid = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Listed') }] });
    const other = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Other') }] });
    await observation('heart 1', 1, [{ system: LOINC, code: HEART }]);
    await observation('weight 2', 2, [{ system: LOINC, code: WEIGHT }]);
    // Coded as both: found by both branches, listed once.
    await observation('both 3', 3, [{ system: LOINC, code: HEART }, { system: LOINC, code: WEIGHT }]);
    // The heart rate's code under a second system too: two rows of the bare code.
    await observation('heart twice 4', 4, [{ system: LOINC, code: HEART }, { system: 'urn:local:code', code: HEART }]);
    await observation('temperature 5', 5, [{ system: LOINC, code: '8310-5' }]);
    await observation('weight 6', 6, [{ system: LOINC, code: WEIGHT }]);
    await observation('other patient', 7, [{ system: LOINC, code: HEART }], other);
    const deleted = await observation('deleted', 8, [{ system: LOINC, code: HEART }]);
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${deleted}` })).statusCode).to.equal(204);
  });
  after(() => app.stop());

  it('lists each resource of any listed code once, newest first, on every page size', async () => {
    const newest = ['weight 6', 'heart twice 4', 'both 3', 'weight 2', 'heart 1'];
    // Seventeen terms: past the driven plan's limit, answered by the generic one the same way.
    const many = [`${LOINC}|${HEART}`, WEIGHT, ...Array.from({ length: 15 }, (_, i) => `${LOINC}|0000${i}-0`)].join(',');
    for (const count of [50, 2]) {
      for (const codes of [`${LOINC}|${HEART},${LOINC}|${WEIGHT}`, `${HEART},${WEIGHT}`, `${WEIGHT},${HEART}`, `${HEART},${LOINC}|${WEIGHT},urn:local:code|${HEART}`, many]) {
        // Unsorted, the generic plan keeps its own order (by id): the same resources, once each.
        const inOrder = (labels: string[]) => (codes === many ? [...labels].sort() : labels);
        expect(inOrder(await listed(`code=${codes}&_count=${count}`)), `${codes}, _count=${count}`).to.equal(inOrder(newest));
        expect(await listed(`code=${codes}&_sort=-date&_count=${count}`), `${codes}, -date, _count=${count}`).to.equal(newest);
        expect(await listed(`code=${codes}&_sort=date&_count=${count}`), `${codes}, date, _count=${count}`).to.equal([...newest].reverse());
        expect(inOrder(await listed(`code=${codes}&date=ge2026-06-03&_count=${count}`)), `${codes}, date=ge, _count=${count}`).to.equal(inOrder(['weight 6', 'heart twice 4', 'both 3']));
      }
      // A single category drives; the list is checked on its rows.
      expect(await listed(`category=vital-signs&code=${HEART},${WEIGHT}&_count=${count}`)).to.equal(newest);
    }
    expect(await listed(`code=urn:local:code|${HEART},${LOINC}|8310-5`)).to.equal(['temperature 5', 'heart twice 4']);
    const total = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&code=${HEART},${WEIGHT}&_summary=count` });
    expect(total.json.total).to.equal(5);
  });

  it('refuses a malformed date or cursor on the merged path with a 400 OperationOutcome', async () => {
    for (const query of [`code=${HEART},${WEIGHT}&date=ge2026-13-45`, `code=${HEART},${WEIGHT}&_sort=date&date=notadate`, `code=${HEART},${WEIGHT}&_cursor=not-a-cursor`]) {
      const res = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&${query}` });
      expect(res.statusCode, query).to.equal(400);
      expect(res.json.resourceType, query).to.equal('OperationOutcome');
    }
  });

  it('pages back over the merged order: the previous link of page 2 is page 1', async () => {
    const first = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&code=${HEART},${WEIGHT}&_count=2` });
    const next = (first.json.link as Array<{ relation: string; url: string }>).find((l) => l.relation === 'next')!.url;
    const second = await app.request({ method: 'GET', url: next.slice(next.indexOf('/fhir/')) });
    expect(second.json.entry.map((e: { resource: { id: string } }) => labels[e.resource.id])).to.equal(['both 3', 'weight 2']);
    const previous = (second.json.link as Array<{ relation: string; url: string }>).find((l) => l.relation === 'previous')!.url;
    const back = await app.request({ method: 'GET', url: previous.slice(previous.indexOf('/fhir/')) });
    expect(back.json.entry.map((e: { resource: { id: string } }) => labels[e.resource.id])).to.equal(['weight 6', 'heart twice 4']);
  });
});
