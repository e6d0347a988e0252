import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { oneOf } from '../../src/kernel/sql-any';
import type { Db } from '../../src/store/db';
import { openPostgres } from '../../src/store/postgres';
import { CUSTOM_PLAN } from '../../src/store/prepared';
import { startTestServer, testDatabaseUrl, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const url = process.env.DATABASE_URL ?? '';
const onPostgres = url.startsWith('postgres://') || url.startsWith('postgresql://');

/**
 * Repeated statements run as named prepared statements (src/store/prepared.ts). One connection
 * per pool, so that what `pg_prepared_statements` shows is the connection the statements ran on.
 * Declared for PostgreSQL only: PGlite runs in the process and has no protocol round trip to save.
 */
const title = onPostgres
  ? 'named prepared statements on PostgreSQL'
  : 'named prepared statements — declared for PostgreSQL only: PGlite has no separate backend whose plan cache this is about (run with DATABASE_URL=postgres://…)';

describe(title, { skip: !onPostgres }, () => {
  const table = `prepared_${unique('t').replace(/-/g, '_')}`;
  let db: Db;

  before(async () => {
    db = openPostgres(url, { max: 1 });
    await db.exec(`CREATE TABLE ${table} (id text PRIMARY KEY, n int)`);
    await db.query(`INSERT INTO ${table} VALUES ('a', 1), ('b', 2)`);
  });

  after(async () => {
    await db.exec(`DROP TABLE IF EXISTS ${table}`);
    await db.close();
  });

  const preparedCount = async (on: Db, text: string) =>
    Number((await on.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_prepared_statements WHERE statement = $1', [text])).rows[0]!.n);

  it('prepares a statement from its second use, on a transaction too, and answers the same', async () => {
    const sql = `SELECT n FROM ${table} WHERE id = $1`;
    expect((await db.query(sql, ['a'])).rows).to.equal([{ n: 1 }]);
    expect(await preparedCount(db, sql)).to.equal(0);
    expect((await db.query(sql, ['b'])).rows).to.equal([{ n: 2 }]);
    expect(await preparedCount(db, sql)).to.equal(1);
    expect(await db.transaction(async (tx) => (await tx.query(sql, ['a'])).rows)).to.equal([{ n: 1 }]);
  });

  it('runs a statement again, unnamed on a new connection, when a migration changed its result type', async () => {
    const sql = `SELECT * FROM ${table} WHERE id = $1`;
    await db.query(sql, ['a']);
    await db.query(sql, ['a']);
    expect(await preparedCount(db, sql)).to.equal(1);
    await db.exec(`ALTER TABLE ${table} ADD COLUMN note text`);
    // PostgreSQL refuses the kept plan (0A000 "cached plan must not change result type").
    expect((await db.query(sql, ['a'])).rows).to.equal([{ id: 'a', n: 1, note: null }]);
    expect(await preparedCount(db, sql)).to.equal(0);
    expect((await db.query(sql, ['b'])).rows).to.equal([{ id: 'b', n: 2, note: null }]);
  });

  /** How often PostgreSQL planned the prepared statement whose text is `text`, kept (generic) or for the call (custom). */
  const plansOf = async (on: Db, text: string) =>
    (await on.query<{ generic: string; custom: string }>(
      'SELECT generic_plans::text AS generic, custom_plans::text AS custom FROM pg_prepared_statements WHERE statement = $1', [text],
    )).rows[0];

  it('keeps one plan for a one-of condition given one value (oneOf), which `= ANY($1::text[])` does not', async () => {
    const anySql = `SELECT n FROM ${table} WHERE id = ANY($1::text[])`;
    const one = oneOf('id', 1, ['a']);
    const oneSql = `SELECT n FROM ${table} WHERE ${one.sql}`;
    for (let i = 0; i < 10; i++) {
      expect((await db.query(anySql, [['a']])).rows).to.equal([{ n: 1 }]);
      expect((await db.query(oneSql, [one.value])).rows).to.equal([{ n: 1 }]);
    }
    // The reason for oneOf: the array form is planned again on each of its nine prepared calls.
    expect(await plansOf(db, anySql)).to.equal({ generic: '0', custom: '9' });
    expect(Number((await plansOf(db, oneSql))!.generic)).to.be.above(0);
    // Several values keep the array form.
    const several = oneOf('id', 1, ['a', 'b']);
    expect(several.sql).to.equal('id = ANY($1::text[])');
    expect((await db.query(`SELECT n FROM ${table} WHERE ${several.sql} ORDER BY n`, [several.value])).rows).to.equal([{ n: 1 }, { n: 2 }]);
  });

  /** `work` against a server on one connection of its own, so that its plan cache is the one looked at. */
  async function onOwnConnection(work: (server: TestServer, own: Db) => Promise<void>): Promise<void> {
    const own = openPostgres(await testDatabaseUrl(), { max: 1 });
    const server = await startTestServer({}, { db: () => own });
    try {
      await work(server, own);
    } finally {
      await server.stop();
      await own.close();
    }
  }

  it('plans the monitoring plans check of an Observation create once, not on every create', async () => {
    await onOwnConnection(async (server, own) => {
      const patient = await server.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } });
      for (let i = 0; i < 10; i++) {
        const created = await server.request({
          method: 'POST', url: '/fhir/Observation',
          payload: {
            resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
            subject: { reference: `Patient/${patient.json.id}` }, effectiveDateTime: '2026-11-02T08:00:00Z',
            valueQuantity: { value: 70 + i, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
          },
        });
        expect(created.statusCode).to.equal(201);
      }
      const lookups = (await own.query<{ generic: string; custom: string }>(
        // The first create reads the patient's plans; the others check the server's copy of them
        // (src/monitoring/plan-cache.ts) with a statement prepared from its second use.
        "SELECT generic_plans::text AS generic, custom_plans::text AS custom FROM pg_prepared_statements WHERE statement LIKE '%monitoring_plans_unchanged%'",
      )).rows;
      expect(lookups.length).to.equal(1);
      expect(Number(lookups[0]!.generic)).to.be.above(0);
      expect(Number(lookups[0]!.custom)).to.be.below(6);
    });
  });

  it('never names a search no patient index drives (planned for its values each time), and names a driven one', async () => {
    // A generic plan of `code=…&date=ge…` across patients read every reading of the code:
    // 10 ms planned for its values, 0.44-0.56 s from the seventh call at 100k Observations.
    await onOwnConnection(async (server, own) => {
      const patient = await server.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } });
      for (let i = 0; i < 8; i++) {
        for (const query of [`code=http://loinc.org|8867-4&date=ge2026-11-0${i + 1}`, `patient=${patient.json.id}&code=http://loinc.org|8867-4`]) {
          const res = await server.request({ method: 'GET', url: `/fhir/Observation?${query}` });
          expect(res.statusCode, query).to.equal(200);
        }
      }
      const searches = (await own.query<{ statement: string }>(
        "SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%FROM observation%' AND statement LIKE '%r.content::text AS json%'",
      )).rows.map((r) => r.statement);
      expect(searches.length).to.equal(1);
      expect(searches[0]).to.include('observation_token d');
      expect(searches[0]!.startsWith(CUSTOM_PLAN)).to.be.false();
    });
  });

  it('prepares nothing when turned off (DATABASE_PREPARED_STATEMENTS=false, for PgBouncer in transaction mode)', async () => {
    const off = openPostgres(url, { max: 1, preparedStatements: false });
    try {
      const sql = `SELECT n FROM ${table} WHERE id = $1 AND n > 0`;
      for (let i = 0; i < 3; i++) await off.query(sql, ['a']);
      expect(await preparedCount(off, sql)).to.equal(0);
    } finally {
      await off.close();
    }
  });
});
