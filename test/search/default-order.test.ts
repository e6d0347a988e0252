import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, startTestServer, type TestServer, unique } from '../helpers/server';
import { walkPages } from '../helpers/paging';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * A search the client did not sort, with nothing to drive it by patient, is read in the order of
 * the index its date filter reads from a point on (src/search/default-order.ts): `_lastUpdated`
 * oldest change first, the type's date newest first. The matches must be exactly those of the
 * R4 prefixes, every one once, on every page, forwards and back; other unsorted searches keep
 * their order.
 */
describe('the order of unsorted searches for recent data', () => {
  let app: TestServer;
  // A code of this run's own: the shared database holds other suites' Observations.
  const system = `urn:test:${unique('order')}`;
  const code = encodeURIComponent(`${system}|x`);
  const labels: Record<string, string> = {};
  /** Each label's meta.lastUpdated, in milliseconds. */
  const changed: Record<string, number> = {};

  const walk = (query: string) => walkPages(app, `/fhir/Observation?code=${code}&${query}`, labels, 8);

  async function observation(label: string, effectiveDateTime: string): Promise<string> {
    const id = await createResource(app, { resourceType: 'Observation', status: 'final', code: { coding: [{ system, code: 'x' }] }, effectiveDateTime });
    labels[id] = label;
    const read = await app.request({ method: 'GET', url: `/fhir/Observation/${id}` });
    changed[label] = Date.parse(read.json.meta.lastUpdated);
    return id;
  }

  /** Labels by lastUpdated, oldest first. */
  const byChange = () => Object.keys(changed).sort((a, b) => changed[a]! - changed[b]!);

  before(async () => {
    app = await startTestServer();
    // Created out of date order, a few milliseconds apart so that each has its own instant.
    const first = await observation('may 3', '2026-05-03T08:00:00Z');
    for (const [label, at] of [['may 1', '2026-05-01T08:00:00Z'], ['may 5', '2026-05-05T08:00:00Z'], ['may 2', '2026-05-02T08:00:00Z'], ['may 4', '2026-05-04T08:00:00Z']] as const) {
      await new Promise((resolve) => setTimeout(resolve, 3));
      await observation(label, at);
    }
    // Changed last: its new version is the newest change, though it was created first.
    await new Promise((resolve) => setTimeout(resolve, 3));
    const res = await app.request({ method: 'PUT', url: `/fhir/Observation/${first}`, payload: { resourceType: 'Observation', id: first, status: 'amended', code: { coding: [{ system, code: 'x' }] }, effectiveDateTime: '2026-05-03T08:00:00Z' } });
    expect(res.statusCode).to.equal(200);
    changed['may 3'] = Date.parse(res.json.meta.lastUpdated);
  });
  after(() => app.stop());

  it('lists changes since a point oldest first, an updated resource at its new change, once each on every page size', async () => {
    const since = new Date(changed['may 3']! - 60_000).toISOString();
    for (const count of [50, 2, 1]) {
      const { forwards, backwards } = await walk(`_lastUpdated=gt${since}&_count=${count}`);
      expect(forwards, `_count=${count}`).to.equal(byChange());
      expect(forwards.at(-1)).to.equal('may 3');
      expect(backwards, `back, _count=${count}`).to.equal(forwards);
    }
  });

  it('matches _lastUpdated by every prefix exactly as R4 defines it for the search value\'s range', async () => {
    const order = byChange();
    const middle = changed[order[2]!]!;
    // A value of millisecond precision is the range of that millisecond; of second precision, that second.
    const points: Array<[string, number, number]> = [
      [new Date(middle).toISOString(), middle, middle + 1],
      [new Date(middle).toISOString().slice(0, 19) + 'Z', Math.floor(middle / 1000) * 1000, Math.floor(middle / 1000) * 1000 + 1000],
      [new Date(changed[order[0]!]! - 1).toISOString(), changed[order[0]!]! - 1, changed[order[0]!]!],
    ];
    const expected: Record<string, (v: number, low: number, end: number) => boolean> = {
      eq: (v, low, end) => v >= low && v < end,
      ne: (v, low, end) => v < low || v >= end,
      gt: (v, _low, end) => v >= end,
      sa: (v, _low, end) => v >= end,
      ge: (v, low) => v >= low,
      lt: (v, low) => v < low,
      eb: (v, low) => v < low,
      le: (v, _low, end) => v < end,
    };
    for (const [value, low, end] of points) {
      for (const [prefix, holds] of Object.entries(expected)) {
        const query = `_lastUpdated=${prefix}${value}`;
        const want = order.filter((l) => holds(changed[l]!, low, end)).sort();
        const { forwards } = await walk(`${query}&_count=2`);
        expect([...forwards].sort(), query).to.equal(want);
      }
    }
  });

  it('lists readings from a date on newest first, as `_sort=-date` does, once each on every page size', async () => {
    for (const count of [50, 2, 1]) {
      const unsorted = await walk(`date=ge2026-05-02&_count=${count}`);
      expect(unsorted.forwards, `_count=${count}`).to.equal(['may 5', 'may 4', 'may 3', 'may 2']);
      expect(unsorted.backwards, `back, _count=${count}`).to.equal(unsorted.forwards);
      expect(unsorted.forwards).to.equal((await walk(`date=ge2026-05-02&_sort=-date&_count=${count}`)).forwards);
    }
    expect((await walk('date=sa2026-05-03&_count=1')).forwards).to.equal(['may 5', 'may 4']);
  });

  it('orders by any date parameter filtered from a point, not only `date` (a Patient\'s birthdate, newest first)', async () => {
    const family = unique('Born');
    const born: Record<string, string> = {};
    for (const birthDate of ['1950-03-01', '1971-07-15', '1944-12-24', '1962-01-05']) {
      born[await createResource(app, { resourceType: 'Patient', name: [{ family }], birthDate })] = birthDate;
    }
    for (const count of [50, 1]) {
      const { forwards, backwards } = await walkPages(app, `/fhir/Patient?family=${family}&birthdate=ge1950-01-01&_count=${count}`, born, 8);
      expect(forwards, `_count=${count}`).to.equal(['1971-07-15', '1962-01-05', '1950-03-01']);
      expect(backwards, `back, _count=${count}`).to.equal(forwards);
    }
  });

  it('keeps the other unsorted searches in id order (an upper bound, no date filter, a patient compartment)', async () => {
    const byId = (labelsFound: string[]) => {
      const ids = Object.fromEntries(Object.entries(labels).map(([id, l]) => [l, id]));
      return [...labelsFound].sort((a, b) => (ids[a]! < ids[b]! ? -1 : 1));
    };
    for (const query of ['date=le2026-05-03', 'date=ge2026-05-02&date=le2026-05-04', '_count=2']) {
      const { forwards } = await walk(query);
      expect(forwards, query).to.equal(byId(forwards));
    }
    expect((await walk('date=ge2026-05-02&date=le2026-05-04')).forwards.sort()).to.equal(['may 2', 'may 3', 'may 4']);
  });

  it('answers a malformed date or cursor on these searches with a 400 OperationOutcome', async () => {
    for (const url of [`/fhir/Observation?code=${code}&_lastUpdated=ge2026-02-30`, `/fhir/Observation?code=${code}&date=ge2026-05-02&_cursor=not-a-cursor`, `/fhir/Observation?_lastUpdated=gx2026-05-02`]) {
      const res = await app.request({ method: 'GET', url });
      expect(res.statusCode, url).to.equal(400);
      expect(res.json.resourceType, url).to.equal('OperationOutcome');
    }
  });
});
