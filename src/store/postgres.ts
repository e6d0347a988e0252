import { Pool, types } from 'pg';
import type { Db, Queryable, QueryResult } from './db';

// Timestamps are read as their ISO text, never through JS Date: FHIR instants keep their
// precision and zone, and a Date round trip would silently change both.
types.setTypeParser(1184, (v: string) => v); // timestamptz
types.setTypeParser(20, (v: string) => v); // int8 stays exact

export function openPostgres(connectionString: string, options: { max?: number; applicationName?: string } = {}): Db {
  const pool = new Pool({
    connectionString,
    max: options.max ?? Number(process.env.DATABASE_POOL_SIZE ?? 10),
    ...(options.applicationName ? { application_name: options.applicationName } : {}),
  });
  // An idle client's network error must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);

  const run = async <R>(q: { query: Pool['query'] }, sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> => {
    const result = await q.query(sql, params as unknown[] | undefined);
    return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
  };

  return {
    kind: 'postgres',
    query: (sql, params) => run(pool, sql, params),
    exec: async (sql) => {
      await pool.query(sql);
    },
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const tx: Queryable = {
          query: (sql, params) => run(client as unknown as Pool, sql, params),
          exec: async (sql) => {
            await client.query(sql);
          },
        };
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
