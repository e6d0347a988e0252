import { Socket } from 'node:net';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type Db, openDb } from '../../src/store/db';
import { openPostgres } from '../../src/store/postgres';
import { unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const url = process.env.DATABASE_URL ?? '';
const onPostgres = url.startsWith('postgres://') || url.startsWith('postgresql://');

/**
 * A transaction's queued writes (`Transaction.later`): the unit of work queues the writes whose
 * answers it does not read (new versions with their index rows, the staged audit rows), and they
 * travel with the next statement or the COMMIT. On both engines the statements after a queued
 * write see it, and a queued write that fails takes the whole transaction with it.
 */
describe('transactions with queued writes', () => {
  const table = `tx_${unique('t').replace(/-/g, '_')}`;
  let db: Db;

  before(async () => {
    db = await openDb(onPostgres ? url : 'pglite://memory', '');
    await db.exec(`CREATE TABLE ${table} (id text PRIMARY KEY, n int)`);
  });

  after(async () => {
    await db.exec(`DROP TABLE IF EXISTS ${table}`);
    await db.close();
  });

  const ids = async () => (await db.query<{ id: string }>(`SELECT id FROM ${table} ORDER BY id`)).rows.map((r) => r.id);

  it('lets the statements after a queued write see it, and commits both', async () => {
    const seen = await db.transaction(async (tx) => {
      tx.later(`INSERT INTO ${table} VALUES ($1, 1)`, ['seen-a']);
      const { rows } = await tx.query<{ n: number }>(`SELECT n FROM ${table} WHERE id = $1`, ['seen-a']);
      tx.later(`INSERT INTO ${table} VALUES ($1, 2)`, ['seen-b']);
      return rows;
    });
    expect(seen).to.equal([{ n: 1 }]);
    expect(await ids()).to.include(['seen-a', 'seen-b']);
  });

  it('rolls everything back when a write queued for the COMMIT fails, and rejects with its error as mapped', async () => {
    await db.query(`INSERT INTO ${table} VALUES ('taken', 0)`);
    const err = await expect(
      db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} VALUES ($1, 1)`, ['before-dup']);
        tx.later(`INSERT INTO ${table} VALUES ($1, 1)`, ['taken'], (e) => new Error(`mapped ${(e as { code?: string }).code}`));
      }),
    ).to.reject();
    expect((err as Error).message).to.equal('mapped 23505');
    expect(await ids()).to.not.include('before-dup');
  });

  it('reports a failed queued write from the statement it travelled with, and nothing of the transaction stays', async () => {
    const reached: string[] = [];
    const err = await expect(
      db.transaction(async (tx) => {
        tx.later(`INSERT INTO ${table} VALUES ($1, 1)`, ['with-dup']);
        tx.later(`INSERT INTO ${table} VALUES ($1, 1)`, ['taken']);
        await tx.query('SELECT 1');
        reached.push('after the statement');
      }),
    ).to.reject();
    expect((err as { code?: string }).code).to.equal('23505');
    expect(reached).to.equal([]);
    expect(await ids()).to.not.include('with-dup');
  });
});

/**
 * Round trips, counted as writes to the database connection's socket: the BEGIN goes with the
 * first statement, queued writes and the COMMIT with the statement after them. Declared for
 * PostgreSQL only: the embedded engine runs in the process and has no socket.
 */
const title = onPostgres
  ? 'pipelined transactions on PostgreSQL'
  : 'pipelined transactions — declared for PostgreSQL only: PGlite has no connection whose writes these are (run with DATABASE_URL=postgres://…)';

describe(title, { skip: !onPostgres }, () => {
  const table = `txp_${unique('t').replace(/-/g, '_')}`;
  let db: Db;

  before(async () => {
    db = openPostgres(url, { max: 1 });
    await db.exec(`CREATE TABLE ${table} (id text PRIMARY KEY, n int)`);
  });

  after(async () => {
    await db.exec(`DROP TABLE IF EXISTS ${table}`);
    await db.close();
  });

  /** Writes to any socket while `fn` runs (only the pool's one connection writes here). */
  const socketWrites = async (fn: () => Promise<unknown>): Promise<number> => {
    const proto = Socket.prototype as unknown as Record<'_write' | '_writev', (...args: unknown[]) => unknown>;
    const original = { write: proto._write, writev: proto._writev };
    let writes = 0;
    proto._write = function (this: Socket, ...args: unknown[]) {
      writes++;
      return original.write.apply(this, args);
    };
    proto._writev = function (this: Socket, ...args: unknown[]) {
      writes++;
      return original.writev!.apply(this, args);
    };
    try {
      await fn();
    } finally {
      proto._write = original.write;
      proto._writev = original.writev;
    }
    return writes;
  };

  it('sends a create-shaped transaction (a read, a queued write, a queued audit row) in two writes, not five', async () => {
    const writes = await socketWrites(() =>
      db.transaction(async (tx) => {
        await tx.query(`SELECT count(*) FROM ${table} WHERE id = $1`, ['plan']);
        tx.later(`INSERT INTO ${table} VALUES ($1, 1)`, ['version']);
        tx.later(`INSERT INTO ${table} VALUES ($1, 1)`, ['audit']);
      }),
    );
    expect(writes).to.equal(2);
    expect((await db.query(`SELECT count(*)::int AS n FROM ${table} WHERE id IN ('version', 'audit')`)).rows).to.equal([{ n: 2 }]);
  });

  it('sends nothing for a transaction that ran no statement', async () => {
    expect(await socketWrites(() => db.transaction(async () => 'nothing to do'))).to.equal(0);
  });
});
