/**
 * A write `Transaction.later` queued (src/store/db.ts), as both engines hold it until the
 * statement or COMMIT it travels with is sent.
 */
export interface QueuedWrite {
  sql: string;
  params?: readonly unknown[];
  /** Maps its failure (a duplicate new id becomes the error that replays the unit). */
  onError?: (err: unknown) => unknown;
}

/** Sends `write` with `run`; its failure is rejected as its `onError` maps it. */
export async function sendQueued<R>(write: QueuedWrite, run: (sql: string, params: readonly unknown[] | undefined) => Promise<R>): Promise<R> {
  try {
    return await run(write.sql, write.params);
  } catch (err) {
    throw write.onError ? write.onError(err) : err;
  }
}
