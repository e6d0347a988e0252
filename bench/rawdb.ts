import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Db, Queryable } from '../src/store/db';
import { openDb } from '../src/store/db';
import { openPostgres } from '../src/store/postgres';
import { migrateAll } from '../src/schema';

/**
 * The raw-SQL side of every comparison: the same statements the server would need, without
 * HTTP, Hapi, validation or JSON handling in between.
 *
 * On PostgreSQL it is a `pg` pool on the server's own database and schema. Embedded, the
 * server's in-memory PGlite lives inside the server process and nothing else can reach it, so
 * the raw side is a second in-memory PGlite in the bench process, with the same migrations
 * (the same tables and indexes). That makes the embedded ratio "server vs. the engine through
 * its driver", with no network hop on the raw side.
 */
export interface RawDb {
  readonly kind: 'postgres' | 'pglite';
  /** `SELECT version()` and, embedded, the PGlite package version. */
  readonly version: string;
  /** Where the raw side runs, to print. */
  readonly where: string;
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<{ rows: R[]; rowCount: number }>;
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * PostgreSQL processes doing this run's work: the backends of the server and raw connections
   * (by application_name) and the background processes. Undefined when embedded.
   */
  postgresPids(): Promise<number[] | undefined>;
  close(): Promise<void>;
}

/** The application_name prefix of every connection of a run (server and raw side). */
export const applicationName = (runId: string, side: 'server' | 'raw') => `fhir-bench-${runId}-${side}`;

export interface TableSize {
  table: string;
  rows: number;
  bytes: number;
}

/** Row count and pg_total_relation_size (heap, indexes, TOAST) of every table in `schema`. */
export async function tableSizes(db: Pick<RawDb, 'query'>, schema: string): Promise<TableSize[]> {
  const { rows } = await db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name`,
    [schema],
  );
  const out: TableSize[] = [];
  for (const { table_name } of rows) {
    const qualified = `"${schema}"."${table_name}"`;
    const r = await db.query<{ rows: string | number; bytes: string | number }>(
      `SELECT count(*) AS rows, pg_total_relation_size('${qualified}') AS bytes FROM ${qualified}`,
    );
    out.push({ table: table_name, rows: Number(r.rows[0].rows), bytes: Number(r.rows[0].bytes) });
  }
  return out;
}

export async function openRawPostgres(url: string, poolSize: number, runId: string): Promise<RawDb> {
  // The server's own adapter, with a pool as large as the server's and a name to charge CPU to.
  const db = openPostgres(url, { max: poolSize, applicationName: applicationName(runId, 'raw') });
  // The memory settings the figures depend on most: shared_buffers, and whether its pages may be
  // huge ones (without, every backend takes a page fault per 4 kB of shared memory it first touches).
  const settings = (
    await db.query<{ version: string; shared_buffers: string; huge_pages: string }>(
      "SELECT version(), current_setting('shared_buffers') AS shared_buffers, current_setting('huge_pages') AS huge_pages",
    )
  ).rows[0]!;
  const version = `${settings.version}; shared_buffers ${settings.shared_buffers}, huge_pages ${settings.huge_pages}`;
  return {
    kind: 'postgres',
    version,
    where: `pg pool (max ${poolSize}) on the server's database and schema`,
    query: (sql, params) => db.query(sql, params),
    transaction: (fn) => db.transaction(fn),
    async postgresPids() {
      const { rows } = await db.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend' OR application_name LIKE $1`,
        [`fhir-bench-${runId}-%`],
      );
      return rows.map((r) => r.pid);
    },
    close: () => db.close(),
  };
}

export async function openRawPglite(): Promise<RawDb> {
  const db: Db = await openDb('pglite://memory', '');
  await migrateAll(db);
  const version = (await db.query<{ version: string }>('SELECT version()')).rows[0].version;
  // The package's exports map hides its package.json; read it beside the resolved entry point.
  const pkg = JSON.parse(readFileSync(join(dirname(require.resolve('@electric-sql/pglite')), '..', 'package.json'), 'utf8')) as { version: string };
  return {
    kind: 'pglite',
    version: `PGlite ${pkg.version} (${version})`,
    where: 'a second in-memory PGlite in the bench process, same migrations (the server\'s own is unreachable)',
    query: (sql, params) => db.query(sql, params),
    transaction: (fn) => db.transaction(fn),
    postgresPids: async () => undefined,
    close: () => db.close(),
  };
}
