import { openPglite } from './pglite';
import { openPostgres } from './postgres';

/**
 * The one database interface. Everything above `src/store` talks to PostgreSQL through it,
 * whether the engine is a real server (`pg` pool) or the embedded PGlite: both run the same SQL.
 */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/** The statements of one transaction. */
export interface Transaction extends Queryable {
  /**
   * Queues a write whose answer nobody reads. It is sent with the transaction's next statement,
   * or with its COMMIT, in the same write to the server: on PostgreSQL it costs no round trip of
   * its own (pipelined). Statements see it, as they would had it run at once. If it fails, the
   * statement it travelled with rejects with its error (mapped by `onError`, when given), or
   * `transaction()` does; the COMMIT then only ends the aborted transaction, and nothing of it
   * is kept.
   */
  later(sql: string, params?: readonly unknown[], onError?: (err: unknown) => unknown): void;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /**
   * Runs `fn` in one database transaction: committed when it resolves, rolled back when it throws.
   * On PostgreSQL the BEGIN travels with the transaction's first statement (one round trip for
   * both), and a transaction that ran no statement sends neither BEGIN nor COMMIT.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
  /**
   * Calls `onPayload` for every NOTIFY on `channel` committed by any connection (another server
   * process too), until the returned function is called. Delivery is at most once: a notification
   * sent while the listening connection is down is lost.
   */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /**
   * The same database whose statements are cancelled when `signal` aborts: the request they work
   * for went away, or the server is stopping (src/fhir/request-lifetime.ts). Explicit, not an
   * AsyncLocalStorage: its promise hooks cost every promise of the process, measured at a
   * quarter of a read's server CPU. The embedded database runs in the process and has nothing
   * to cancel.
   */
  withSignal(signal: AbortSignal): Db;
  close(): Promise<void>;
}

/** Opens the database named by a DATABASE_URL-style string (see src/config.ts). */
export async function openDb(url: string, dataDir: string, options: { statementTimeoutMs?: number; preparedStatements?: boolean; listenUrl?: string } = {}): Promise<Db> {
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return openPostgres(url, options);
  }
  if (url === 'pglite://memory') {
    return openPglite(undefined);
  }
  if (url === '' || url.startsWith('pglite://')) {
    return openPglite(url.startsWith('pglite://') ? url.slice('pglite://'.length) : dataDir);
  }
  throw new Error(`DATABASE_URL must be postgres://…, pglite://memory, pglite://<dir> or unset; got ${url.split(':')[0]}:…`);
}

/**
 * `db` as the transaction `tx` sees it, for code written against a Db (the read interactions) that
 * must run inside that transaction: it sees the transaction's own uncommitted writes, and on PGlite
 * it does not wait for the one-transaction mutex `tx` holds. A transaction begun through it joins
 * `tx`; it cannot listen, and is not closed through it.
 */
export function joiningTransaction(db: Db, tx: Transaction): Db {
  const joined: Db = {
    kind: db.kind,
    query: (sql, params) => tx.query(sql, params),
    exec: (sql) => tx.exec(sql),
    transaction: (fn) => fn(tx),
    listen: () => Promise.reject(new Error('a Db joining a transaction cannot listen')),
    withSignal: () => joined,
    close: () => Promise.reject(new Error('a Db joining a transaction is closed with its own Db')),
  };
  return joined;
}
