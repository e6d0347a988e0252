import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { supportedTypes } from '../kernel/resource-types';
import { migrationsDir } from '../kernel/paths';
import type { Db } from './db';
import { tableOf } from './tables';

/** An arbitrary constant: the advisory lock that keeps two starting servers from migrating at once. */
const MIGRATION_LOCK = 7_400_101;

interface Migration {
  name: string;
  sql: string;
}

function sqlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort();
}

/**
 * Every migration in order: the global files of src/store/migrations, then each per-type
 * template applied to every supported type. A type added to profiles/supported-types.json gets
 * its tables at the next start.
 */
export function pendingMigrationPlan(): Migration[] {
  const plan: Migration[] = sqlFiles(migrationsDir).map((f) => ({ name: f, sql: readFileSync(join(migrationsDir, f), 'utf8') }));
  const perTypeDir = join(migrationsDir, 'per-type');
  for (const f of sqlFiles(perTypeDir)) {
    const template = readFileSync(join(perTypeDir, f), 'utf8');
    for (const type of supportedTypes) {
      plan.push({ name: `per-type/${f}:${type}`, sql: template.replaceAll('{{table}}', tableOf(type)) });
    }
  }
  return plan;
}

/**
 * Applies the migrations not yet recorded in schema_migrations, each in its own transaction.
 * One transaction for all of them held a lock on every relation created (several hundred with
 * eleven types) until commit, and exhausted PostgreSQL's shared lock table ("out of shared
 * memory", max_locks_per_transaction) once in CI. Each migration takes the advisory lock and
 * checks again inside its transaction, so two servers starting together still apply each once.
 */
export async function migrate(db: Db): Promise<string[]> {
  // Under the lock too: two concurrent CREATE TABLE IF NOT EXISTS collide in the catalog.
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
  });
  const done = new Set((await db.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name));
  const applied: string[] = [];
  for (const m of pendingMigrationPlan()) {
    if (done.has(m.name)) continue;
    const ran = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const { rows } = await tx.query('SELECT 1 FROM schema_migrations WHERE name = $1', [m.name]);
      if (rows.length > 0) return false;
      await tx.exec(m.sql);
      await tx.query('INSERT INTO schema_migrations (name) VALUES ($1)', [m.name]);
      return true;
    });
    if (ran) applied.push(m.name);
  }
  return applied;
}
