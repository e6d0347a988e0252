/**
 * Statements are cancelled with their request (the client disconnected, or the server is
 * shutting down): a search left running after its client left holds a pool connection for
 * nothing. The HTTP layer hands each request's work a Db bound to the request's AbortSignal
 * (`Db.withSignal`, src/fhir/request-lifetime.ts); the PostgreSQL adapter cancels the statement
 * in flight (a protocol CancelRequest, no pool slot needed) when the signal fires.
 */

/** PostgreSQL's query_canceled: a statement_timeout or a cancelled request. */
export const QUERY_CANCELED = '57014';
