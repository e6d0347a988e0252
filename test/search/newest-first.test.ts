import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, startTestServer, type TestServer, unique } from '../helpers/server';
import { labelledPage, walkPages } from '../helpers/paging';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Newest first across patients (`Observation?…&_sort=-date` with no patient to drive it) reads
 * the date table's index backwards, each resource at its latest date, and the undated after
 * them (src/search/newest-first.ts). Whatever plan PostgreSQL picks, the order must be the
 * generic sort's: the largest end of each resource's dates, newest first, ties and the undated
 * by id, newest first; every resource once, on every page, forwards and back.
 */
describe('newest first across patients', () => {
  let app: TestServer;
  // A code of this run's own: the shared database holds other suites' Observations.
  const system = `urn:test:${unique('newest')}`;
  const labels: Record<string, string> = {};

  const page = (url: string) => labelledPage(app, url, labels);
  // Seven resources: more pages than that is a cursor that does not move on.
  const walk = (query: string) => walkPages(app, `/fhir/Observation?code=${encodeURIComponent(`${system}|x`)}&${query}`, labels, 8);

  async function observation(label: string, fields: Record<string, unknown>): Promise<string> {
    const id = await createResource(app, { resourceType: 'Observation', status: 'final', code: { coding: [{ system, code: 'x' }] }, ...fields });
    labels[id] = label;
    return id;
  }

  before(async () => {
    app = await startTestServer();
    const patient = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Newest') }] });
    await observation('may 1', { subject: { reference: `Patient/${patient}` }, effectiveDateTime: '2026-05-01T08:00:00Z' });
    await observation('may 3', { effectiveDateTime: '2026-05-03T08:00:00Z' });
    // Sorted at the end of its period, though it started first.
    await observation('april to may 5', { effectivePeriod: { start: '2026-04-01T00:00:00Z', end: '2026-05-05T00:00:00Z' } });
    // Several date rows: listed once, at its latest event.
    await observation('events may 2 and 4', { effectiveTiming: { event: ['2026-05-02T08:00:00Z', '2026-05-04T08:00:00Z'] } });
    // Two equal date rows: still listed once.
    await observation('events may 2 twice', { effectiveTiming: { event: ['2026-05-02T09:00:00Z', '2026-05-02T09:00:00Z'] } });
    await observation('undated 1', {});
    await observation('undated 2', {});
    const gone = await observation('deleted', { effectiveDateTime: '2026-05-06T08:00:00Z' });
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${gone}` })).statusCode).to.equal(204);
  });
  after(() => app.stop());

  it('lists the dated newest first by their latest date, then the undated, once each, forwards and back', async () => {
    const dated = ['april to may 5', 'events may 2 and 4', 'may 3', 'events may 2 twice', 'may 1'];
    const undated = Object.entries(labels).filter(([, l]) => l.startsWith('undated')).sort(([a], [b]) => (a < b ? 1 : -1)).map(([, l]) => l);
    for (const count of [50, 3, 2, 1]) {
      const { forwards, pages, backwards } = await walk(`_sort=-date&_count=${count}`);
      expect(forwards, `_count=${count}`).to.equal([...dated, ...undated]);
      expect(pages, `_count=${count}`).to.equal(Math.ceil(7 / count));
      expect(backwards, `back, _count=${count}`).to.equal(forwards);
    }
  });

  it('gives the order of the generic sort (`-date,-_id` sorts the same resources through per-resource subqueries)', async () => {
    for (const count of [50, 2]) {
      const driven = await walk(`_sort=-date&_count=${count}`);
      const generic = await walk(`_sort=-date,-_id&_count=${count}`);
      expect(driven.forwards, `_count=${count}`).to.equal(generic.forwards);
    }
  });

  it('keeps date filters exact, with and without an upper bound', async () => {
    expect((await walk('date=ge2026-05-03&_sort=-date&_count=2')).forwards).to.equal(['april to may 5', 'events may 2 and 4', 'may 3']);
    // The period from April matches a bound before its end; the two-event Timing matches on its first event.
    expect((await walk('date=le2026-05-02&_sort=-date&_count=2')).forwards).to.equal(['april to may 5', 'events may 2 and 4', 'events may 2 twice', 'may 1']);
    expect((await walk('date=sa2026-05-02&_sort=-date')).forwards).to.equal(['events may 2 and 4', 'may 3']);
  });

  it('finds a resource by a range other than its latest, when the latest misses the filter', async () => {
    // The month of May ends last, so its row drives; it starts before May 2, and only the event of
    // May 4 starts after (`sa`): the resource matches through that other row.
    const code = (c: string) => ({ resourceType: 'Observation', status: 'final', code: { coding: [{ system, code: c }] } });
    labels[await createResource(app, { ...code('y'), effectiveTiming: { event: ['2026-05', '2026-05-04T10:00:00Z'] } })] = 'may, and an event may 4';
    labels[await createResource(app, { ...code('y'), effectiveTiming: { event: ['2026-05'] } })] = 'may only';
    const found = await page(`/fhir/Observation?code=${encodeURIComponent(`${system}|y`)}&date=sa2026-05-02&_sort=-date`);
    expect(found.ids).to.equal(['may, and an event may 4']);
    const both = await page(`/fhir/Observation?code=${encodeURIComponent(`${system}|y`)}&date=ge2026-05-02&_sort=-date`);
    expect(both.ids).to.have.length(2);
  });

  it('counts every match, dated or not, whatever the sort', async () => {
    const count = await app.request({ method: 'GET', url: `/fhir/Observation?code=${encodeURIComponent(`${system}|x`)}&_sort=-date&_summary=count` });
    expect(count.json.total).to.equal(7);
    const accurate = await app.request({ method: 'GET', url: `/fhir/Observation?code=${encodeURIComponent(`${system}|x`)}&_sort=-date&_total=accurate&_count=2` });
    expect(accurate.json.total).to.equal(7);
    expect(accurate.json.entry).to.have.length(2);
  });

  it('answers malformed input on this path with a 400 OperationOutcome', async () => {
    for (const url of [
      `/fhir/Observation?code=${encodeURIComponent(`${system}|x`)}&_sort=-date&_cursor=not-a-cursor`,
      `/fhir/Observation?_sort=-date&date=ge2026-13-45`,
    ]) {
      const res = await app.request({ method: 'GET', url });
      expect(res.statusCode, url).to.equal(400);
      expect(res.json.resourceType, url).to.equal('OperationOutcome');
    }
  });
});
