import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, startTestServer, type TestServer, unique } from '../helpers/server';
import { walkPages } from '../helpers/paging';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * A compartment search with no `_sort` (`Patient/X/Observation?…`) is driven by the patient's key
 * rows, newest first; the members the key misses (named by `performer`, or undated) follow as a
 * second set (src/search/sql.ts, compartmentTail). Whatever the plan, the answer is the whole
 * compartment that meets the filters, every member once, on every page, forwards and back.
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

  /** The tail's order: by id, the driver's tiebreak (ids are the server's, so labels alone cannot say). */
  function byId(...wanted: string[]): string[] {
    return Object.entries(labels).filter(([, l]) => wanted.includes(l)).sort(([a], [b]) => (a < b ? -1 : 1)).map(([, l]) => l);
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

  const keyedDated = ['april to may 5', 'may 3', 'may 2, subject and performer', 'may 1'];

  it('lists the keyed dated newest first, then the other members by id, once each, forwards and back', async () => {
    const everyone = [...keyedDated, ...byId('undated', 'performed, may 4, other subject', 'performed twice, may 2, no subject', 'performed, may 6, another code')];
    for (const count of [50, 3, 2, 1]) {
      const { forwards, pages, backwards } = await walk(`_count=${count}`);
      expect(forwards, `_count=${count}`).to.equal(everyone);
      expect(pages, `_count=${count}`).to.equal(Math.ceil(everyone.length / count));
      expect(backwards, `back, _count=${count}`).to.equal(forwards);
    }
  });

  it('checks a code and a date filter on the members the key misses too', async () => {
    const code = `code=${encodeURIComponent(`${system}|x`)}`;
    const coded = [...keyedDated, ...byId('undated', 'performed, may 4, other subject', 'performed twice, may 2, no subject')];
    for (const count of [50, 2]) {
      const { forwards, backwards } = await walk(`${code}&_count=${count}`);
      expect(forwards, `_count=${count}`).to.equal(coded);
      expect(backwards, `back, _count=${count}`).to.equal(forwards);
    }
    expect((await walk(`${code}&date=ge2026-05-03&_count=2`)).forwards).to.equal(['april to may 5', 'may 3', 'performed, may 4, other subject']);
    expect((await walk(`date=ge2026-05-03`)).forwards).to.equal(['april to may 5', 'may 3', ...byId('performed, may 4, other subject', 'performed, may 6, another code')]);
    expect((await walk(`code=${encodeURIComponent(`${system}|y`)}`)).forwards).to.equal(['performed, may 6, another code']);
  });

  it('finds the same members as the compartment read as a condition (a sorted search, a count)', async () => {
    const sorted = await walk('_sort=_id&_count=3');
    expect([...sorted.forwards].sort()).to.equal([...(await walk('_count=3')).forwards].sort());
    const count = await app.request({ method: 'GET', url: `/fhir/Patient/${patient}/Observation?_summary=count` });
    expect(count.json.total).to.equal(8);
  });

  it('answers a malformed cursor on this path with a 400 OperationOutcome', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Patient/${patient}/Observation?_cursor=WzAsIng`});
    expect(res.statusCode).to.equal(400);
    expect(res.json.resourceType).to.equal('OperationOutcome');
  });
});
