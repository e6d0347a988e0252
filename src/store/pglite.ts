import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { PGlite, types } from '@electric-sql/pglite';
import { lockDataDir } from './data-dir-lock';
import type { Db, Queryable, Transaction } from './db';
import { type QueuedWrite, sendQueued } from './queued-write';

/** PGlite's instance or transaction as a Queryable. */
function queryable(q: Pick<PGlite, 'query' | 'exec'>): Queryable {
  return {
    async query(sql, params) {
      const result = await q.query(sql, params as unknown[] | undefined);
      return { rows: result.rows as never[], rowCount: result.affectedRows ?? result.rows.length };
    },
    async exec(sql) {
      await q.exec(sql);
    },
  };
}

/** The engine under each open embedded Db, for dumpOpenPglite. */
const engines = new WeakMap<Db, PGlite>();

/**
 * Embedded PostgreSQL (WebAssembly, in-process). One statement runs at a time and PGlite
 * serialises `transaction()` behind a mutex, so embedded transactions must stay short: a long
 * one stalls every other request. `from`, a tarball of dumpOpenPglite or dumpPgliteDataDir,
 * is the data it starts with (an empty `dataDir`, or memory).
 */
export async function openPglite(dataDir: string | undefined, from?: Blob): Promise<Db> {
  const unlock = dataDir ? lockDataDir(dataDir) : () => {};
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
  }
  // Same text-not-Date rule as the pg adapter (see postgres.ts).
  const parsers = { [types.TIMESTAMPTZ]: (v: string) => v, [types.INT8]: (v: string) => v };
  let pg: PGlite;
  try {
    pg = await PGlite.create(dataDir, { parsers, ...(from ? { loadDataDir: from } : {}) });
  } catch (err) {
    unlock();
    throw err;
  }

  const db: Db = {
    kind: 'pglite',
    ...queryable(pg),
    transaction(fn) {
      return pg.transaction(async (t) => {
        // In-process, there is no round trip to save: a queued write simply runs first.
        const inner = queryable(t);
        const queued: QueuedWrite[] = [];
        const flush = async () => {
          for (const write of queued.splice(0)) await sendQueued(write, (sql, params) => inner.query(sql, params));
        };
        const tx: Transaction = {
          query: async (sql, params) => {
            await flush();
            return inner.query(sql, params);
          },
          exec: async (sql) => {
            await flush();
            await inner.exec(sql);
          },
          later: (sql, params, onError) => void queued.push({ sql, params, onError }),
        };
        const result = await fn(tx);
        await flush();
        return result;
      });
    },
    async listen(channel, onPayload) {
      return pg.listen(channel, onPayload);
    },
    withSignal: () => db,
    async close() {
      try {
        await pg.close();
      } finally {
        unlock();
      }
    },
  };
  engines.set(db, pg);
  return db;
}

/**
 * The data of an open embedded database as an uncompressed tarball that openPglite starts from:
 * the tests migrate the 144 types' tables once per process (seconds to minutes, decision 010)
 * and start every other empty database from a copy.
 */
export async function dumpOpenPglite(db: Db): Promise<Blob> {
  const pg = engines.get(db);
  if (!pg) throw new Error('not an embedded database opened by openPglite');
  return pg.dumpDataDir('none');
}

/**
 * The embedded database's data directory as one gzipped tarball (PGlite's dumpDataDir), for
 * backups (src/backup). The directory is opened, and so locked, here: a running server holds the
 * lock and the dump is refused rather than taken from under it. `before` reads what the backup
 * records about the database, on the same instance.
 */
export async function dumpPgliteDataDir(dataDir: string, before?: (q: Queryable) => Promise<void>): Promise<Blob> {
  if (!existsSync(dataDir)) throw new Error(`no embedded database in ${dataDir}`);
  const unlock = lockDataDir(dataDir);
  try {
    const pg = await PGlite.create(dataDir);
    try {
      await before?.(queryable(pg));
      return await pg.dumpDataDir('gzip');
    } finally {
      await pg.close();
    }
  } finally {
    unlock();
  }
}

/** Makes `dataDir`, which must not hold anything yet, from a tarball of dumpPgliteDataDir. */
export async function loadPgliteDataDir(dataDir: string, tarball: Blob): Promise<void> {
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) throw new Error(`${dataDir} is not empty: restore into a fresh data directory`);
  const unlock = lockDataDir(dataDir);
  try {
    mkdirSync(dataDir, { recursive: true });
    const pg = await PGlite.create(dataDir, { loadDataDir: tarball });
    await pg.close();
  } finally {
    unlock();
  }
}
