import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { supportedTypes } from '../kernel/resource-types';
import { projectRoot } from '../kernel/paths';
import type { Db } from './db';
import { tableOf } from './tables';

/** An arbitrary constant: the advisory lock that keeps two starting servers from migrating at once. */
const MIGRATION_LOCK = 7_400_101;

/**
 * The SQL files a capability owns, in `src/<owner>/migrations/` (applied by name order, recorded
 * as `<owner>/<file>`). A `per-type/` subfolder holds templates applied once per supported type
 * with `{{table}}` replaced by the type's table name.
 */
export interface MigrationSource {
  owner: string;
}

export const storeMigrations: MigrationSource = { owner: 'store' };

interface Migration {
  name: string;
  sql: string;
}

function sqlFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort();
}

/**
 * Every migration of `sources`, in order: each source's files, then its per-type templates for
 * every supported type. A type added to profiles/supported-types.json gets its tables at the
 * next start.
 */
export function pendingMigrationPlan(sources: readonly MigrationSource[], types: readonly string[] = supportedTypes): Migration[] {
  const plan: Migration[] = [];
  for (const { owner } of sources) {
    const dir = join(projectRoot, 'src', owner, 'migrations');
    for (const f of sqlFiles(dir)) plan.push({ name: `${owner}/${f}`, sql: readFileSync(join(dir, f), 'utf8') });
    const perTypeDir = join(dir, 'per-type');
    for (const f of sqlFiles(perTypeDir)) {
      const template = readFileSync(join(perTypeDir, f), 'utf8');
      for (const type of types) {
        plan.push({ name: `${owner}/per-type/${f}:${type}`, sql: template.replaceAll('{{table}}', tableOf(type)) });
      }
    }
  }
  return plan;
}

/**
 * Databases made before each capability owned its migrations recorded bare names (`020_auth.sql`,
 * `per-type/001_resource.sql:Patient`); they are the same migrations under their owner's name.
 */
async function adoptOwnerlessNames(db: Db, plan: readonly Migration[]): Promise<void> {
  const renames = plan.map((m) => [m.name.slice(m.name.indexOf('/') + 1), m.name] as const);
  await db.query(
    `UPDATE schema_migrations s SET name = r.owned FROM unnest($1::text[], $2::text[]) AS r(bare, owned)
      WHERE s.name = r.bare AND NOT EXISTS (SELECT 1 FROM schema_migrations o WHERE o.name = r.owned)`,
    [renames.map((r) => r[0]), renames.map((r) => r[1])],
  );
}

export interface MigrateOptions {
  /**
   * The types whose per-type templates apply; every supported type unless given. Only the tests
   * of the migration mechanism narrow it: 144 types' tables take seconds to create.
   */
  types?: readonly string[];
}

/**
 * Applies the migrations not yet recorded in schema_migrations, each in its own transaction.
 * One transaction for all of them held a lock on every relation created (several hundred with
 * eleven types) until commit, and exhausted PostgreSQL's shared lock table ("out of shared
 * memory", max_locks_per_transaction) once in CI. Each migration takes the advisory lock and
 * checks again inside its transaction, so two servers starting together still apply each once.
 */
export async function migrate(db: Db, sources: readonly MigrationSource[], options: MigrateOptions = {}): Promise<string[]> {
  const plan = pendingMigrationPlan(sources, options.types);
  // Under the lock too: two concurrent CREATE TABLE IF NOT EXISTS collide in the catalog.
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
  });
  await adoptOwnerlessNames(db, plan);
  const done = new Set((await db.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name));
  const applied: string[] = [];
  for (const m of plan) {
    if (done.has(m.name)) continue;
    const ran = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      // Building a table or an index may take longer than a request may (STATEMENT_TIMEOUT).
      await tx.query('SET LOCAL statement_timeout = 0');
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
