import { connect } from 'node:net';
import { Client, Pool, type PoolClient, type QueryConfig, type QueryResult as PgResult, types } from 'pg';
import { OperationOutcomeError } from '../kernel/outcome';
import { QUERY_CANCELED } from './cancellation';
import { isStalePreparedStatement, PreparedNames } from './prepared';
import type { Db, QueryResult, Transaction } from './db';
import { type QueuedWrite, sendQueued } from './queued-write';

// Timestamps are read as their ISO text, never through JS Date: FHIR instants keep their
// precision and zone, and a Date round trip would silently change both.
types.setTypeParser(1184, (v: string) => v); // timestamptz
types.setTypeParser(20, (v: string) => v); // int8 stays exact

export interface PostgresOptions {
  max?: number;
  applicationName?: string;
  /** Longest a statement may run (STATEMENT_TIMEOUT); 0 = no limit. */
  statementTimeoutMs?: number;
  /** Repeated statements as named prepared statements (DATABASE_PREPARED_STATEMENTS, default on; src/store/prepared.ts). */
  preparedStatements?: boolean;
  /**
   * Where LISTEN connects (DATABASE_LISTEN_URL), when `connectionString` is PgBouncer in
   * transaction mode: there a LISTEN is answered but hears nothing, not even a NOTIFY sent
   * straight to PostgreSQL (checked with Debian's PgBouncer 1.18). Default: `connectionString`.
   */
  listenUrl?: string;
}

export function openPostgres(connectionString: string, options: PostgresOptions = {}): Db {
  const pool = new Pool({
    connectionString: withSessionSettings(connectionString, options.statementTimeoutMs),
    // node-postgres's pipelining: a statement is sent without waiting for the answer to the one
    // before it. Transactions use it to send their BEGIN and queued writes with the statement
    // after them (see `transaction`); one statement at a time behaves as before.
    pipeline: true,
    max: options.max ?? Number(process.env.DATABASE_POOL_SIZE ?? 10),
    ...(options.applicationName ? { application_name: options.applicationName } : {}),
  });
  // An idle client's network error must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);

  const cancelTarget = cancelAddress(connectionString);
  /**
   * Cancels the statement `client` is running with the protocol's CancelRequest, on a socket of
   * its own (no pool slot: the pool may be what a flood of searches exhausted). Not
   * `SELECT pg_cancel_backend(pid)`: behind PgBouncer the pid a client sees is PgBouncer's own
   * number, which could name some other backend; PgBouncer forwards a CancelRequest to the
   * server connection that client is really using.
   */
  const cancel = (client: PoolClient) => {
    const { processID, secretKey } = client as unknown as { processID?: number; secretKey?: number };
    if (!processID || secretKey === undefined) return;
    sendCancelRequest(cancelTarget, processID, secretKey);
  };

  const prepared = options.preparedStatements === false ? undefined : new PreparedNames();
  /** The statement as pg takes it: named when it repeats (and preparing is on). */
  const statement = (sql: string, params: readonly unknown[] | undefined, named: boolean) => {
    // Only statements with parameters: a text without any may hold several statements, which
    // only the simple protocol runs (migrations), and gains little from a name.
    const name = named && params?.length ? prepared?.nameOf(sql) : undefined;
    return name === undefined ? { text: sql, values: params as unknown[] | undefined } : { name, text: sql, values: params as unknown[] | undefined };
  };

  /**
   * Runs `work` (statements sent on `client`) so that an abort of `signal` cancels them: one
   * listener however many statements are in flight.
   */
  const cancellable = async <T>(client: PoolClient, signal: AbortSignal | undefined, inTransaction: boolean, work: () => Promise<T>): Promise<T> => {
    if (signal?.aborted) throw cancelled(inTransaction, true);
    const onAbort = () => cancel(client);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await work();
    } catch (err) {
      if ((err as { code?: string }).code === QUERY_CANCELED) throw cancelled(inTransaction, signal?.aborted === true);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  };

  const queryOn = async <R>(client: PoolClient, sql: string, params: readonly unknown[] | undefined, named = true): Promise<QueryResult<R>> => {
    const result = await sendOn(client, statement(sql, params, named));
    return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
  };

  const runOn = <R>(client: PoolClient, signal: AbortSignal | undefined, sql: string, params: readonly unknown[] | undefined, inTransaction: boolean, named = true): Promise<QueryResult<R>> =>
    cancellable(client, signal, inTransaction, () => queryOn<R>(client, sql, params, named));

  /** One statement on a pooled connection; a connection whose prepared statements went stale is dropped and the statement run again, unnamed. */
  const runPooled = async <R>(signal: AbortSignal | undefined, sql: string, params: readonly unknown[] | undefined, named = true): Promise<QueryResult<R>> => {
    if (signal?.aborted) throw cancelled(false, true);
    const client = await pool.connect();
    try {
      const result = await runOn<R>(client, signal, sql, params, false, named);
      client.release();
      return result;
    } catch (err) {
      client.release(isStalePreparedStatement(err) ? (err as Error) : undefined);
      if (named && isStalePreparedStatement(err)) return runPooled<R>(signal, sql, params, false);
      throw err;
    }
  };

  /** The database as requests see it; `signal` cancels the statements of one request. */
  const db = (signal: AbortSignal | undefined): Db => ({
    kind: 'postgres',
    query: (sql, params) => runPooled(signal, sql, params),
    exec: async (sql) => {
      await pool.query(sql);
    },
    async transaction(fn) {
      if (signal?.aborted) throw cancelled(true, true);
      const client = await pool.connect();
      let stale: Error | undefined;
      let begun = false;
      const queued: QueuedWrite[] = [];
      /**
       * Sends `statement` behind a BEGIN (when none was sent yet) and the queued writes, in one
       * write to the socket: pipelined, the server answers them in order and none waits for the
       * one before it. Answers with the statement's result, or rejects with the first failure.
       * The COMMIT is never cancelled by the request's signal (`cancelOnAbort` false), as before
       * pipelining: a client that left after its write was done still gets it committed.
       */
      const send = <R>(statement: () => Promise<R>, cancelOnAbort = true): Promise<R> => cancellable(client, cancelOnAbort ? signal : undefined, true, async () => {
        // node-postgres corks its socket this way around each statement's messages (query.js); the
        // outer cork makes the whole batch one write. Without a socket to cork (another transport),
        // the statements are still pipelined, in several writes.
        const stream = (client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } }).connection?.stream;
        const sent: Array<Promise<unknown>> = [];
        stream?.cork?.();
        try {
          // A BEGIN cannot fail on a working connection; if the connection breaks, every statement
          // sent with it fails too, and the first failure is reported below.
          if (!begun) sent.push(sendOn(client, 'BEGIN'));
          begun = true;
          for (const write of queued.splice(0)) sent.push(sendQueued(write, (sql, params) => queryOn(client, sql, params)));
          sent.push(statement());
        } finally {
          stream?.uncork?.();
        }
        // Every answer is awaited (a failure left alone would be an unhandled rejection); the
        // first failure is the one to report: the ones after it only met the aborted transaction.
        const settled = await Promise.allSettled(sent);
        const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
        if (failed) throw failed.reason;
        return (settled.at(-1) as PromiseFulfilledResult<R>).value;
      });
      try {
        const tx: Transaction = {
          query: (sql, params) => send(() => queryOn(client, sql, params)),
          exec: async (sql) => {
            await send(() => sendOn(client, sql));
          },
          later: (sql, params, onError) => void queued.push({ sql, params, onError }),
        };
        const result = await fn(tx);
        // A transaction that ran nothing has nothing to commit: no BEGIN was sent.
        if (begun || queued.length) {
          const commit = await send(() => sendOn(client, 'COMMIT'), false);
          if (commit.command !== 'COMMIT') throw new Error(`COMMIT answered ${commit.command}: the transaction was rolled back`);
        }
        return result;
      } catch (err) {
        if (begun) await sendOn(client, 'ROLLBACK').catch(() => undefined);
        if (isStalePreparedStatement(err)) stale = err as Error;
        throw err;
      } finally {
        client.release(stale);
      }
    },
    listen: (channel, onPayload) => listenOn(options.listenUrl || connectionString, channel, onPayload),
    withSignal: db,
    close: () => pool.end(),
  });
  return db(undefined);
}

/**
 * One statement on `client`, through node-postgres's callback rather than the promise its
 * `query` returns. Measured reason: with the returned promise, the rows of every result outlived
 * V8's young-generation collections and were promoted (about 2.3 MB a scavenge under 50-entry
 * searches, 53 kB per request, though nothing held them), so the server paid for scavenges that
 * copied them and for full collections that freed them: about 0.08 ms of a 0.45 ms search. With
 * the callback, about 2 kB a scavenge (decision 023). Same result, same errors (their stack
 * starts at the socket: node-postgres's promise re-captured it, which nothing here reads).
 */
function sendOn(client: PoolClient, statement: string | QueryConfig): Promise<PgResult> {
  return new Promise((resolve, reject) => {
    client.query(statement, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

const RELISTEN_MS = 1000;

/**
 * LISTEN holds a connection of its own for as long as it listens (never a pool slot: a pooled
 * connection goes back to others). A lost connection is reopened after a second.
 */
async function listenOn(connectionString: string, channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
  let client: Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const reopenLater = () => {
    if (!stopped) retry = setTimeout(() => void open().catch(reopenLater), RELISTEN_MS).unref();
  };
  const open = async () => {
    const c = new Client({ connectionString });
    c.on('notification', (n) => n.channel === channel && onPayload(n.payload ?? ''));
    c.on('error', () => {
      void c.end().catch(() => undefined);
      if (client !== c) return;
      client = undefined;
      reopenLater();
    });
    try {
      await c.connect();
      await c.query(`LISTEN "${channel.replace(/"/g, '""')}"`);
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    }
    if (stopped) await c.end();
    else client = c;
  };
  await open();
  return async () => {
    stopped = true;
    clearTimeout(retry);
    await client?.end().catch(() => undefined);
  };
}

/**
 * The connection string with the session settings this server needs added to its startup
 * options, beside any it already has (pg lets the URL's `options` override a separate setting):
 * - `statement_timeout=N`: a runaway search cannot hold a pool connection longer than this,
 *   whoever sent it;
 * - `jit=off`, unless the URL's options set `jit`: PostgreSQL compiles a statement whose
 *   estimated cost passes `jit_above_cost`, including branches it never runs. A search's page
 *   stops after 51 rows; the compilation took 40–100 ms per call (measured: newest vital signs
 *   across 1M Observations, 109 ms with JIT, 6 ms without), the estimate being that of the
 *   undated resources' scan, which a full page skips;
 * - `max_parallel_workers_per_gather=0`, unless the URL's options set it: a page that stops after
 *   51 rows gains nothing from a worker, and under concurrent requests each worker's start and
 *   its CPU are taken from the other requests (measured at 1M Observations, 8 clients:
 *   `code=…&date=ge<a week back>&_sort=-date` 128 → 474–493 statements/s, p95 105 → 30–33 ms;
 *   no search shape got slower; even a count over the million was not faster in parallel).
 * A timeout of 0 sends none of these: it is how a deployment behind PgBouncer, which refuses
 * startup options, configures the server; the README has them set on the role there instead.
 */
function withSessionSettings(connectionString: string, timeoutMs: number | undefined): string {
  if (timeoutMs === 0) return connectionString;
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return connectionString; // not a URL (a key=value string): its settings are its own
  }
  const given = url.searchParams.get('options') ?? '';
  const unlessGiven = (name: string, value: string) => (new RegExp(`\\b${name}\\s*=`).test(given) ? [] : [`-c ${name}=${value}`]);
  const settings = [given, ...(timeoutMs ? [`-c statement_timeout=${Math.floor(timeoutMs)}`] : []), ...unlessGiven('jit', 'off'), ...unlessGiven('max_parallel_workers_per_gather', '0')];
  url.searchParams.set('options', settings.join(' ').trim());
  return url.toString();
}

/**
 * A statement PostgreSQL cancelled: its request went away or the server is stopping (503, the
 * client is rarely there to read it), or it ran past STATEMENT_TIMEOUT: a read is then too
 * costly as asked (400), a write waited too long for others (503, worth a retry).
 */
function cancelled(inTransaction: boolean, byRequest: boolean): OperationOutcomeError {
  if (byRequest) return new OperationOutcomeError(503, { code: 'timeout', diagnostics: 'the request was cancelled before it finished (the client went away or the server is stopping)' }, { 'retry-after': '5' });
  if (!inTransaction) return new OperationOutcomeError(400, { code: 'too-costly', diagnostics: 'the query ran longer than this server allows (STATEMENT_TIMEOUT); narrow the search' });
  return new OperationOutcomeError(503, { code: 'timeout', diagnostics: 'the write waited longer than this server allows (STATEMENT_TIMEOUT); retry' }, { 'retry-after': '5' });
}

type CancelAddress = { path: string } | { host: string; port: number };

/** Where CancelRequests go: the host and port (or Unix socket) the connection string names. */
function cancelAddress(connectionString: string): CancelAddress {
  const url = new URL(connectionString);
  const port = Number(url.port || url.searchParams.get('port') || 5432);
  const host = url.searchParams.get('host') ?? (decodeURIComponent(url.hostname) || 'localhost');
  return host.startsWith('/') ? { path: `${host}/.s.PGSQL.${port}` } : { host, port };
}

/** The frontend CancelRequest message (PostgreSQL protocol 3, §55.2.7): length 16, code 80877102, pid, key. */
function sendCancelRequest(to: CancelAddress, processID: number, secretKey: number): void {
  const message = Buffer.alloc(16);
  message.writeInt32BE(16, 0);
  message.writeInt32BE(80877102, 4);
  message.writeInt32BE(processID, 8);
  message.writeInt32BE(secretKey, 12);
  const socket = connect(to as never, () => socket.end(message));
  socket.on('error', () => undefined);
  socket.setTimeout(5000, () => socket.destroy());
}
