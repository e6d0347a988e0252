import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, startTestServer, type TestServer, unique } from '../helpers/server';
import { walkPages } from '../helpers/paging';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * `_sort` on one parameter of an index table across patients (`Observation?_sort=code`,
 * `?_sort=value-quantity`, `?_sort=date`) is driven by the parameter's index rows, each resource
 * at the row holding its sort value, the resources without a value after them
 * (src/search/sorted-by-row.ts). The order must be the generic sort's (the smallest value
 * ascending, the largest descending, ties and the valueless by id the way of the key), every
 * resource once on every page, forwards and back.
 */
describe('_sort by an index row across patients', () => {
  let app: TestServer;
  // A category of this run's own: the shared database holds other suites' Observations.
  const system = `urn:test:${unique('sorted')}`;
  const labels: Record<string, string> = {};
  const ids: Record<string, string> = {};

  const walk = (query: string) => walkPages(app, `/fhir/Observation?category=${encodeURIComponent(`${system}|c`)}&${query}`, labels, 8);

  async function observation(label: string, fields: Record<string, unknown>): Promise<string> {
    const id = await createResource(app, { resourceType: 'Observation', status: 'final', category: [{ coding: [{ system, code: 'c' }] }], code: { text: 'no coding' }, ...fields });
    labels[id] = label;
    ids[label] = id;
    return id;
  }
  const coded = (...codes: string[]) => ({ code: { coding: codes.map((code, k) => ({ system: `${system}:${k}`, code })) } });
  const quantity = (value: number) => ({ valueQuantity: { value, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } });
  /** Labels in id order, ascending or descending: the order of ties and of the valueless. */
  const byId = (descending: boolean, ...of: string[]) => [...of].sort((a, b) => (ids[a]! < ids[b]! ? -1 : 1) * (descending ? -1 : 1));

  before(async () => {
    app = await startTestServer();
    const patient = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Sorted') }] });
    await observation('b', { ...coded('b'), ...quantity(5), subject: { reference: `Patient/${patient}` }, effectiveDateTime: '2026-05-03T08:00:00Z' });
    // Two codes: first at its smallest, `a`, ascending; at its largest, `d`, descending.
    await observation('a..d', { ...coded('d', 'a'), ...quantity(7), effectiveDateTime: '2026-05-01T08:00:00Z' });
    // Sorted oldest first at the start of its period, though it ends last.
    await observation('c', { ...coded('c'), ...quantity(5), effectivePeriod: { start: '2026-04-01T00:00:00Z', end: '2026-05-05T00:00:00Z' } });
    // Several date rows: listed once, at its earliest event.
    await observation('e', { ...coded('e'), ...quantity(1), effectiveTiming: { event: ['2026-05-04T08:00:00Z', '2026-05-02T08:00:00Z'] } });
    // The same code twice and two equal dates: still listed once.
    await observation('f twice', { code: { coding: [{ system: `${system}:0`, code: 'f' }, { system: `${system}:1`, code: 'f' }] }, ...quantity(9), effectiveTiming: { event: ['2026-05-06T09:00:00Z', '2026-05-06T09:00:00Z'] } });
    await observation('none 1', {});
    await observation('none 2', {});
    const gone = await observation('deleted', { ...coded('a'), ...quantity(0), effectiveDateTime: '2026-01-01T08:00:00Z' });
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${gone}` })).statusCode).to.equal(204);
    delete ids.deleted;
  });
  after(() => app.stop());

  const expected: Record<string, () => string[]> = {
    '_sort=code': () => ['a..d', 'b', 'c', 'e', 'f twice', ...byId(false, 'none 1', 'none 2')],
    '_sort=-code': () => ['f twice', 'e', 'a..d', 'c', 'b', ...byId(true, 'none 1', 'none 2')],
    '_sort=value-quantity': () => ['e', ...byId(false, 'b', 'c'), 'a..d', 'f twice', ...byId(false, 'none 1', 'none 2')],
    '_sort=-value-quantity': () => ['f twice', 'a..d', ...byId(true, 'b', 'c'), 'e', ...byId(true, 'none 1', 'none 2')],
    '_sort=date': () => ['c', 'a..d', 'e', 'b', 'f twice', ...byId(false, 'none 1', 'none 2')],
  };

  it('lists each resource at its smallest (ascending) or largest (descending) value, the valueless last by id, once each, forwards and back', async () => {
    for (const [sort, order] of Object.entries(expected)) {
      for (const count of [50, 3, 2, 1]) {
        const { forwards, pages, backwards } = await walk(`${sort}&_count=${count}`);
        expect(forwards, `${sort}&_count=${count}`).to.equal(order());
        expect(pages, `${sort}&_count=${count}`).to.equal(Math.ceil(7 / count));
        expect(backwards, `back, ${sort}&_count=${count}`).to.equal(forwards);
      }
    }
  });

  it('gives the order of the generic sort (a second key, `_id` the way of the first, sorts through per-resource subqueries)', async () => {
    for (const sort of Object.keys(expected)) {
      const generic = `${sort},${sort.includes('=-') ? '-' : ''}_id`;
      for (const count of [50, 2]) {
        expect((await walk(`${sort}&_count=${count}`)).forwards, sort).to.equal((await walk(`${generic}&_count=${count}`)).forwards);
      }
    }
  });

  it('sorts on several keys the same way: each at its smallest or largest value, the valueless of a key last', async () => {
    // Ties of value-quantity (b and c at 5) broken by their latest date, newest first; the valueless by id, the way of the last key.
    const order = ['e', 'c', 'b', 'a..d', 'f twice', ...byId(true, 'none 1', 'none 2')];
    for (const count of [50, 2]) {
      const { forwards, backwards } = await walk(`_sort=value-quantity,-date&_count=${count}`);
      expect(forwards, `_count=${count}`).to.equal(order);
      expect(backwards, `back, _count=${count}`).to.equal(order);
    }
    // A resource column first keeps its own index's order.
    const byUpdate = await walk('_sort=-_lastUpdated,code&_count=3');
    expect(byUpdate.forwards).to.have.length(7);
    expect(byUpdate.backwards).to.equal(byUpdate.forwards);
  });

  it('keeps the other filters exact, on the sorted parameter and on others', async () => {
    expect((await walk(`code=${encodeURIComponent(`${system}:0|b`)},${encodeURIComponent(`${system}:1|a`)}&_sort=code&_count=1`)).forwards).to.equal(['a..d', 'b']);
    expect((await walk('value-quantity=ge5&_sort=-value-quantity&_count=2')).forwards).to.equal(['f twice', 'a..d', ...byId(true, 'b', 'c')]);
    expect((await walk('date=le2026-05-02&_sort=date&_count=2')).forwards).to.equal(['c', 'a..d', 'e']);
    // Matched by a value other than its sort value: `e`'s later event.
    expect((await walk('date=ge2026-05-04&_sort=date')).forwards).to.equal(['c', 'e', 'f twice']);
    const count = await app.request({ method: 'GET', url: `/fhir/Observation?category=${encodeURIComponent(`${system}|c`)}&_sort=code&_total=accurate&_count=2` });
    expect(count.json.total).to.equal(7);
    expect(count.json.entry).to.have.length(2);
  });

  it('answers a cursor of another shape with a 400 OperationOutcome', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Observation?category=${encodeURIComponent(`${system}|c`)}&_sort=code&_cursor=not-a-cursor` });
    expect(res.statusCode).to.equal(400);
    expect(res.json.resourceType).to.equal('OperationOutcome');
  });
});
