import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, startTestServer, type TestServer, unique } from '../helpers/server';
import { walkPages } from '../helpers/paging';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * A compartment search (`Patient/X/Observation?…`, no `_sort` or one by `date`) is driven by the
 * patient's key rows; the members the key misses (named by `performer` alone) are a second set
 * merged in by the same order (src/search/sql.ts, compartmentTail). Whatever the plan, the answer
 * is the whole compartment that meets the filters, in the generic sort's order, every member
 * once, on every page, forwards and back.
 */
describe('compartment searches driven by the patient key', () => {
  let app: TestServer;
  let patient: string;
  const system = `urn:test:${unique('compartment')}`;
  const labels: Record<string, string> = {};

  const walk = (query: string) => walkPages(app, `/fhir/Patient/${patient}/Observation?${query}`, labels, 10);

  async function observation(label: string, fields: Record<string, unknown>, code = 'x'): Promise<string> {
    const id = await createResource(app, { resourceType: 'Observation', status: 'final', code: { coding: [{ system, code }] }, ...fields });
    labels[id] = label;
    return id;
  }

  before(async () => {
    app = await startTestServer();
    patient = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Compartment') }] });
    const other = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Other') }] });
    const of = (id: string) => ({ reference: `Patient/${id}` });
    await observation('may 1', { subject: of(patient), effectiveDateTime: '2026-05-01T08:00:00Z' });
    await observation('may 3', { subject: of(patient), effectiveDateTime: '2026-05-03T08:00:00Z' });
    await observation('april to may 5', { subject: of(patient), effectivePeriod: { start: '2026-04-01T00:00:00Z', end: '2026-05-05T00:00:00Z' } });
    // Its subject and performer both: one member, listed once.
    await observation('may 2, subject and performer', { subject: of(patient), performer: [of(patient)], effectiveDateTime: '2026-05-02T08:00:00Z' });
    await observation('undated', { subject: of(patient) });
    // Members through performer alone: keyed to another patient, or to none (and named twice).
    await observation('performed, may 4, other subject', { subject: of(other), performer: [of(patient)], effectiveDateTime: '2026-05-04T08:00:00Z' });
    await observation('performed twice, may 2, no subject', { performer: [of(patient), of(patient)], effectiveDateTime: '2026-05-02T10:00:00Z' });
    await observation('performed, may 6, another code', { subject: of(other), performer: [of(patient)], effectiveDateTime: '2026-05-06T08:00:00Z' }, 'y');
    // Not members: another patient's, and a deleted one.
    await observation('other patient', { subject: of(other), effectiveDateTime: '2026-05-06T08:00:00Z' });
    const gone = await observation('deleted', { subject: of(patient), effectiveDateTime: '2026-05-07T08:00:00Z' });
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${gone}` })).statusCode).to.equal(204);
  });
  after(() => app.stop());

  // Newest first by each one's latest date, the undated last, whichever set it comes from.
  const newestFirst = ['performed, may 6, another code', 'april to may 5', 'performed, may 4, other subject', 'may 3', 'performed twice, may 2, no subject', 'may 2, subject and performer', 'may 1', 'undated'];

  it('lists every member once, newest first, the ones the key misses merged in, forwards and back', async () => {
    for (const count of [50, 3, 2, 1]) {
      const { forwards, pages, backwards } = await walk(`_count=${count}`);
      expect(forwards, `_count=${count}`).to.equal(newestFirst);
      expect(pages, `_count=${count}`).to.equal(Math.ceil(newestFirst.length / count));
      expect(backwards, `back, _count=${count}`).to.equal(forwards);
    }
  });

  it('gives the order of the generic sort for _sort=-date and _sort=date (`-date,_id` sorts the same members through per-resource subqueries)', async () => {
    for (const count of [50, 3, 1]) {
      for (const sort of ['-date', 'date']) {
        const driven = await walk(`_sort=${sort}&_count=${count}`);
        const generic = await walk(`_sort=${sort},_id&_count=${count}`);
        expect(driven.forwards, `${sort}, _count=${count}`).to.equal(generic.forwards);
        expect(driven.backwards, `${sort}, back, _count=${count}`).to.equal(driven.forwards);
      }
    }
    expect((await walk('_sort=-date')).forwards).to.equal(newestFirst);
    expect((await walk('_sort=date&_count=2')).forwards).to.equal(['april to may 5', 'may 1', 'may 2, subject and performer', 'performed twice, may 2, no subject', 'may 3', 'performed, may 4, other subject', 'performed, may 6, another code', 'undated']);
  });

  it('checks a code and a date filter on the members the key misses too', async () => {
    const code = `code=${encodeURIComponent(`${system}|x`)}`;
    const coded = newestFirst.filter((l) => l !== 'performed, may 6, another code');
    for (const count of [50, 2]) {
      const { forwards, backwards } = await walk(`${code}&_count=${count}`);
      expect(forwards, `_count=${count}`).to.equal(coded);
      expect(backwards, `back, _count=${count}`).to.equal(forwards);
    }
    expect((await walk(`${code}&date=ge2026-05-03&_count=2`)).forwards).to.equal(['april to may 5', 'performed, may 4, other subject', 'may 3']);
    expect((await walk(`date=ge2026-05-03&_sort=-date`)).forwards).to.equal(['performed, may 6, another code', 'april to may 5', 'performed, may 4, other subject', 'may 3']);
    expect((await walk(`code=${encodeURIComponent(`${system}|y`)}`)).forwards).to.equal(['performed, may 6, another code']);
  });

  it('finds the same members as the compartment read as a condition (a count, a sort no driver serves)', async () => {
    const sorted = await walk('_sort=_id&_count=3');
    expect([...sorted.forwards].sort()).to.equal([...newestFirst].sort());
    const count = await app.request({ method: 'GET', url: `/fhir/Patient/${patient}/Observation?_summary=count` });
    expect(count.json.total).to.equal(8);
  });

  it('answers a malformed cursor on this path with a 400 OperationOutcome', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Patient/${patient}/Observation?_cursor=WzAsIng`});
    expect(res.statusCode).to.equal(400);
    expect(res.json.resourceType).to.equal('OperationOutcome');
  });
});
