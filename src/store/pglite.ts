import { mkdirSync } from 'node:fs';
import { PGlite, types } from '@electric-sql/pglite';
import { lockDataDir } from './data-dir-lock';
import type { Db, Queryable } from './db';

/**
 * Embedded PostgreSQL (WebAssembly, in-process). One statement runs at a time and PGlite
 * serialises `transaction()` behind a mutex, so embedded transactions must stay short: a long
 * one stalls every other request.
 */
export async function openPglite(dataDir: string | undefined): Promise<Db> {
  const unlock = dataDir ? lockDataDir(dataDir) : () => {};
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
  }
  // Same text-not-Date rule as the pg adapter (see postgres.ts).
  const parsers = { [types.TIMESTAMPTZ]: (v: string) => v, [types.INT8]: (v: string) => v };
  let pg: PGlite;
  try {
    pg = await PGlite.create(dataDir, { parsers });
  } catch (err) {
    unlock();
    throw err;
  }

  return {
    kind: 'pglite',
    async query(sql, params) {
      const result = await pg.query(sql, params as unknown[] | undefined);
      return { rows: result.rows as never[], rowCount: result.affectedRows ?? result.rows.length };
    },
    async exec(sql) {
      await pg.exec(sql);
    },
    transaction(fn) {
      return pg.transaction(async (t) => {
        const tx: Queryable = {
          async query(sql, params) {
            const result = await t.query(sql, params as unknown[] | undefined);
            return { rows: result.rows as never[], rowCount: result.affectedRows ?? result.rows.length };
          },
          async exec(sql) {
            await t.exec(sql);
          },
        };
        return fn(tx);
      });
    },
    async listen(channel, onPayload) {
      return pg.listen(channel, onPayload);
    },
    async close() {
      try {
        await pg.close();
      } finally {
        unlock();
      }
    },
  };
}
