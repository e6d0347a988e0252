import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type Db, openDb } from '../../src/store/db';
import { WriteStatement } from '../../src/store/write-statement';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const url = process.env.DATABASE_URL ?? '';
const onPostgres = url.startsWith('postgres://') || url.startsWith('postgresql://');

/**
 * `WriteStatement.column`: the write path's columns travel as one text, a value per line, where
 * the values allow it, and as an array literal where they do not. Either way PostgreSQL must
 * get back exactly the values sent, NULLs and types included.
 */
describe('write statement columns', () => {
  let db: Db;
  before(async () => {
    db = await openDb(onPostgres ? url : 'pglite://memory', '');
  });
  after(() => db.close());

  /** The column's values as PostgreSQL reads them (as text, NULL as null), and how they travelled. */
  const roundTrip = async (values: unknown[], type: string) => {
    const statement = new WriteStatement();
    const expr = statement.column(values, type);
    const params = (statement as unknown as { params: { values: unknown[] } }).params.values;
    const { rows } = await db.query<{ v: string | null }>(`SELECT v::text AS v FROM unnest(${expr}) WITH ORDINALITY AS c(v, n) ORDER BY n`, params);
    return { back: rows.map((r) => r.v), asLines: typeof params[0] === 'string' };
  };

  it('sends plain values as lines and gets every one back, NULLs included', async () => {
    expect(await roundTrip(['a', null, 'b c', '"quoted" \\ back', 'ü'], 'text')).to.equal({ back: ['a', null, 'b c', '"quoted" \\ back', 'ü'], asLines: true });
    expect(await roundTrip([1, null, 2.5, -7], 'numeric')).to.equal({ back: ['1', null, '2.5', '-7'], asLines: true });
    expect(await roundTrip([true, false, null], 'bool')).to.equal({ back: ['true', 'false', null], asLines: true });
    expect(await roundTrip([null], 'text')).to.equal({ back: [null], asLines: true });
    const json = JSON.stringify({ resourceType: 'Basic', text: 'line\nfeed', q: '"' });
    const stored = await roundTrip([json, null], 'jsonb');
    expect(stored.asLines).to.be.true();
    expect(JSON.parse(stored.back[0]!)).to.equal(JSON.parse(json));
    expect(stored.back[1]).to.be.null();
    expect(await roundTrip(['2026-01-02T03:04:05.678Z'], 'timestamptz')).to.part.include({ asLines: true });
  });

  it('gets a long column (180,000 characters as lines, one value of 70,000) back whole and in order', async () => {
    // 150 JSON documents of ~1.2 kB (about 180,000 characters as lines) with NULLs among them.
    const doc = (i: number) => JSON.stringify({ resourceType: 'Basic', id: `b${i}`, text: 'ü'.repeat(i % 7) + 'x'.repeat(1_200) });
    const values = Array.from({ length: 150 }, (_, i) => (i % 40 === 39 ? null : doc(i)));
    const back = await roundTrip(values, 'jsonb');
    expect(back.asLines).to.be.true();
    expect(back.back.map((v) => (v === null ? null : (JSON.parse(v) as { id: string }).id))).to.equal(values.map((v) => (v === null ? null : (JSON.parse(v) as { id: string }).id)));
    const huge = 'y'.repeat(70_000);
    expect(await roundTrip(['a', huge, null, 'b'], 'text')).to.equal({ back: ['a', huge, null, 'b'], asLines: true });
    expect(await roundTrip([huge], 'text')).to.equal({ back: [huge], asLines: true });
  });

  it('falls back to an array literal for a line feed, U+0001, an empty string or a non-scalar, and still gets them back', async () => {
    expect(await roundTrip(['a\nb', 'c'], 'text')).to.equal({ back: ['a\nb', 'c'], asLines: false });
    expect(await roundTrip(['a\u0001b', null], 'text')).to.equal({ back: ['a\u0001b', null], asLines: false });
    expect(await roundTrip([''], 'text')).to.equal({ back: [''], asLines: false });
    expect(await roundTrip(['', 'x'], 'text')).to.equal({ back: ['', 'x'], asLines: false });
    expect(await roundTrip([Number.NaN], 'numeric')).to.equal({ back: ['NaN'], asLines: false });
  });
});

/** Over HTTP: values that cannot travel as lines are stored and found as written. */
describe('resources whose values hold line feeds and control characters', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  it('stores them faithfully and finds them by those values', async () => {
    const system = `urn:test:${unique('lines')}`;
    const values = ['first\nsecond', 'one\u0001two', 'plain'];
    const ids: string[] = [];
    for (const value of values) {
      const res = await app.request({
        method: 'POST',
        url: '/fhir/Observation',
        payload: { resourceType: 'Observation', status: 'final', identifier: [{ system, value }], code: { text: `reading\n${value}` } },
      });
      expect(res.statusCode, res.payload).to.equal(201);
      ids.push(res.json.id);
      const read = await app.request({ method: 'GET', url: `/fhir/Observation/${res.json.id}` });
      expect(read.json.identifier[0].value).to.equal(value);
      expect(read.json.code.text).to.equal(`reading\n${value}`);
    }
    for (const [i, value] of values.entries()) {
      const found = await app.request({ method: 'GET', url: `/fhir/Observation?identifier=${encodeURIComponent(`${system}|${value}`)}` });
      expect(found.statusCode).to.equal(200);
      expect(found.json.entry.map((e: { resource: { id: string } }) => e.resource.id)).to.equal([ids[i]]);
    }
  });
});
