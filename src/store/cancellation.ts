import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The request a database statement works for, so that a statement can be cancelled when its
 * request is gone (the client disconnected, or the server is shutting down): a search left
 * running after its client left holds a pool connection for nothing. The HTTP layer runs each
 * request's work inside `withCancellation`; the PostgreSQL adapter cancels the statement in
 * flight (a protocol CancelRequest, no pool slot needed) when the signal fires.
 */
const current = new AsyncLocalStorage<AbortSignal>();

export function withCancellation<T>(signal: AbortSignal, fn: () => T): T {
  return current.run(signal, fn);
}

export function cancellationSignal(): AbortSignal | undefined {
  return current.getStore();
}

/** PostgreSQL's query_canceled: a statement_timeout or a cancelled request. */
export const QUERY_CANCELED = '57014';
