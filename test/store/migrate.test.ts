import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type Db, openDb } from '../../src/store/db';
import { SCHEMA } from '../../src/schema';
import { migrate, pendingMigrationPlan } from '../../src/store/migrate';

export const lab = Lab.script();
const { describe, it } = lab;

const url = process.env.DATABASE_URL ?? '';
const onPostgres = url.startsWith('postgres://') || url.startsWith('postgresql://');

describe('migrations', () => {
  it('two servers starting together on an empty database apply each migration once', { timeout: 120_000 }, async () => {
    let admin: Db | undefined;
    let schema: string | undefined;
    let first: Db;
    let second: Db;
    if (onPostgres) {
      schema = `migrate_race_${Date.now()}_${process.pid}`;
      admin = await openDb(url, '');
      await admin.query(`CREATE SCHEMA ${schema}`);
      const withSchema = new URL(url);
      withSchema.searchParams.set('options', `-c search_path=${schema}`);
      first = await openDb(withSchema.toString(), '');
      second = await openDb(withSchema.toString(), '');
    } else {
      first = second = await openDb('pglite://memory', '');
    }
    try {
      const [a, b] = await Promise.all([migrate(first, SCHEMA), migrate(second, SCHEMA)]);
      const plan = pendingMigrationPlan(SCHEMA).map((m) => m.name);
      expect([...a, ...b].sort()).to.equal([...plan].sort());
      const { rows } = await first.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      expect(rows[0]!.n).to.equal(plan.length);
      expect(await migrate(first, SCHEMA)).to.equal([]);
    } finally {
      await first.close();
      if (second !== first) await second.close();
      if (admin && schema) {
        await admin.query(`DROP SCHEMA ${schema} CASCADE`);
        await admin.close();
      }
    }
  });

  it('adopts the names a database recorded before each capability owned its migrations', async () => {
    const db = await openDb('pglite://memory', '');
    try {
      await migrate(db, SCHEMA);
      // As an older server recorded them: bare file names, no owner.
      await db.query(`UPDATE schema_migrations SET name = substring(name from position('/' in name) + 1)`);
      expect(await migrate(db, SCHEMA)).to.equal([]);
      const { rows } = await db.query<{ name: string }>(`SELECT name FROM schema_migrations WHERE name = 'auth/020_auth.sql'`);
      expect(rows).to.have.length(1);
    } finally {
      await db.close();
    }
  });
});
