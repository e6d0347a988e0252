import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { Db } from '../../src/store/db';
import { openPostgres } from '../../src/store/postgres';
import { unique } from '../helpers/server';

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
