import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type Db, openDb } from '../../src/store/db';
import { SCHEMA } from '../../src/schema';
import { migrate, pendingMigrationPlan } from '../../src/store/migrate';

export const lab = Lab.script();
const { describe, it } = lab;

const url = process.env.DATABASE_URL ?? '';
const onPostgres = url.startsWith('postgres://') || url.startsWith('postgresql://');

/** The mechanism is the same for one type as for 144; a few keep these tests quick. */
const types = ['Patient', 'Observation', 'Device'];

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
      const [a, b] = await Promise.all([migrate(first, SCHEMA, { types }), migrate(second, SCHEMA, { types })]);
      const plan = pendingMigrationPlan(SCHEMA, types).map((m) => m.name);
      expect([...a, ...b].sort()).to.equal([...plan].sort());
      const { rows } = await first.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      expect(rows[0]!.n).to.equal(plan.length);
      expect(await migrate(first, SCHEMA, { types })).to.equal([]);
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
      await migrate(db, SCHEMA, { types });
      // As an older server recorded them: bare file names, no owner.
      await db.query(`UPDATE schema_migrations SET name = substring(name from position('/' in name) + 1)`);
      expect(await migrate(db, SCHEMA, { types })).to.equal([]);
      const { rows } = await db.query<{ name: string }>(`SELECT name FROM schema_migrations WHERE name = 'auth/020_auth.sql'`);
      expect(rows).to.have.length(1);
    } finally {
      await db.close();
    }
  });

  it('moves a database that kept every current version in history to one copy per version', async () => {
    const db = await openDb('pglite://memory', '');
    try {
      await migrate(db, SCHEMA, { types });
      // As the earlier layout wrote them: version 2 current, and both versions in history.
      await db.query(`INSERT INTO device (id, version_id, last_updated, deleted, content) VALUES ('d1', 2, now(), false, '{"resourceType":"Device","id":"d1"}')`);
      await db.query(`INSERT INTO device_history (id, version_id, seq, last_updated, deleted, method, content) VALUES
        ('d1', 1, 7, now(), false, 'POST', '{"resourceType":"Device","id":"d1"}'), ('d1', 2, 8, now(), false, 'PUT', '{"resourceType":"Device","id":"d1"}')`);
      await db.query(`UPDATE device SET seq = NULL, method = NULL WHERE id = 'd1'`).catch(() => undefined);
      await db.query(`DELETE FROM schema_migrations WHERE name = 'store/per-type/003_content_once.sql:Device'`);
      expect(await migrate(db, SCHEMA, { types })).to.equal(['store/per-type/003_content_once.sql:Device']);
      const { rows: history } = await db.query<{ version_id: number }>(`SELECT version_id FROM device_history WHERE id = 'd1'`);
      expect(history.map((r) => r.version_id)).to.equal([1]);
      const { rows: current } = await db.query<{ method: string }>(`SELECT method FROM device WHERE id = 'd1'`);
      expect(current[0]!.method).to.exist();
    } finally {
      await db.close();
    }
  });
  it("takes an Observation's status rows out of the patient index, and no other type's", async () => {
    const db = await openDb('pglite://memory', '');
    try {
      await migrate(db, SCHEMA, { types: [...types, 'Flag'] });
      // As the earlier writer left them: every coded row of a keyed resource drives, with the date.
      for (const table of ['observation_token', 'flag_token']) {
        await db.query(`INSERT INTO ${table} (id, param, patient, code, hash, code_hash, date_low, date_high, drives) VALUES
          ('r1', 'status', 'p1', 'final', 1, 2, '2026-05-02T12:00:00Z', '2026-05-02T12:00:00Z', true),
          ('r1', 'code', 'p1', '8867-4', 3, 4, '2026-05-02T12:00:00Z', '2026-05-02T12:00:00Z', true)`);
      }
      await db.query(`DELETE FROM schema_migrations WHERE name LIKE 'store/per-type/009_observation_status_not_driving.sql:%'`);
      expect(await migrate(db, SCHEMA, { types: [...types, 'Flag'] })).to.include('store/per-type/009_observation_status_not_driving.sql:Observation');
      const driving = async (table: string) =>
        (await db.query<{ param: string; dated: boolean }>(`SELECT param, date_high IS NOT NULL AS dated FROM ${table} WHERE drives ORDER BY param`)).rows.map((r) => `${r.param}:${r.dated}`);
      expect(await driving('observation_token')).to.equal(['code:true']);
      expect(await driving('flag_token')).to.equal(['code:true', 'status:true']);
      const { rows } = await db.query<{ dated: boolean }>(`SELECT date_low IS NOT NULL OR date_high IS NOT NULL AS dated FROM observation_token WHERE param = 'status'`);
      expect(rows).to.equal([{ dated: false }]);
    } finally {
      await db.close();
    }
  });

  it("marks one driving reference row per resource with a patient key, with its date range, for the rows written before", async () => {
    const db = await openDb('pglite://memory', '');
    try {
      await migrate(db, SCHEMA, { types });
      // As the earlier layout wrote them: no row marked, no date copy. o1 names its patient twice
      // (subject and performer) and has two `date` ranges; o2 has no date; the Patient's own
      // reference to its practitioner carries its id as key but names another resource.
      await db.query(`INSERT INTO observation_reference (id, param, patient, target_type, target_id) VALUES
        ('o1', 'subject', 'p1', 'Patient', 'p1'), ('o1', 'performer', 'p1', 'Patient', 'p1'), ('o2', 'subject', 'p1', 'Patient', 'p1'), ('o3', 'focus', NULL, 'Device', 'd1')`);
      await db.query(`INSERT INTO observation_date (id, param, patient, low, high) VALUES
        ('o1', 'date', 'p1', '2026-05-02T12:00:00Z', '2026-05-02T12:00:00Z'), ('o1', 'date', 'p1', '2026-05-06T12:00:00Z', '2026-05-06T12:00:00Z'), ('o2', 'issued', 'p1', '2026-05-01T00:00:00Z', '2026-05-01T00:00:00Z')`);
      await db.query(`INSERT INTO patient_reference (id, param, patient, target_type, target_id) VALUES ('p1', 'general-practitioner', 'p1', 'Practitioner', 'dr1')`);
      await db.query(`DELETE FROM schema_migrations WHERE name IN ('store/per-type/007_patient_driving_rows.sql:Observation', 'store/per-type/007_patient_driving_rows.sql:Patient')`);
      expect(await migrate(db, SCHEMA, { types })).to.equal(['store/per-type/007_patient_driving_rows.sql:Patient', 'store/per-type/007_patient_driving_rows.sql:Observation']);
      const { rows } = await db.query<{ id: string; low: string | null; high: string | null; multi: boolean }>(
        `SELECT id, date_low::text AS low, date_high::text AS high, date_multi AS multi FROM observation_reference WHERE drives ORDER BY id`,
      );
      expect(rows.map((r) => r.id)).to.equal(['o1', 'o2']);
      expect(rows[0]!.low!).to.startWith('2026-05-02 12:00:00');
      expect(rows[0]!.high!).to.startWith('2026-05-06 12:00:00');
      expect(rows[0]!.multi).to.be.true();
      expect([rows[1]!.low, rows[1]!.high, rows[1]!.multi]).to.equal([null, null, false]);
      expect((await db.query(`SELECT 1 FROM patient_reference WHERE drives`)).rows).to.have.length(0);
    } finally {
      await db.close();
    }
  });
});
