import type { Db } from '../store/db';

/** An arbitrary constant: the advisory lock serialising every node's take from the budget. */
export const BUDGET_LOCK = 7_400_160;

/** The budget will not allow a request soon enough to wait for it in this run: try again at `retryInMs`. */
export class BudgetExhausted extends Error {
  constructor(readonly retryInMs: number) {
    super(`the Withings request budget is spent for ${Math.ceil(retryInMs / 1000)} s`);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The application's request budget at Withings, shared by every node through the database:
 * Withings allows 120 requests a minute per application, for all its users together
 * (research/withings-connector.md §5), and documents no header announcing what is left. A
 * sliding log of the window's requests (at most `limit` rows) under one advisory lock: a fixed
 * window would let twice the limit through across its edge, which is exactly the storm after a
 * downtime. A 601's wait_seconds blocks every node until it has passed.
 */
export class RequestBudget {
  private readonly windowMs: number;

  constructor(
    private readonly db: Db,
    private readonly limit: number,
    windowMs: number,
    /** Waits longer than this are not slept through: the caller reschedules (BudgetExhausted). */
    private readonly maxWaitMs: number,
  ) {
    // Counted here when sent, by Withings when received: a window 5 % longer absorbs the jitter between the two.
    this.windowMs = Math.ceil(windowMs * 1.05);
  }

  /**
   * Resolves when one more request may be sent, and counts it. Times are `clock_timestamp()`, the
   * moment this node holds the lock, not `now()`, which is when its transaction began: a take that
   * waited for another node's was logged as sent before it was, and freed its slot that much early
   * (a 601 in the downtime test on a loaded machine).
   */
  async take(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const waitMs = await this.db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [BUDGET_LOCK]);
        const { rows: blocked } = await tx.query<{ ms: number }>(
          `SELECT (extract(epoch FROM blocked_until - clock_timestamp()) * 1000)::float8 AS ms FROM withings_budget_block WHERE id = 1 AND blocked_until > clock_timestamp()`,
        );
        if (blocked[0]) return Math.ceil(blocked[0].ms);
        await tx.query(`DELETE FROM withings_request_log WHERE at <= clock_timestamp() - $1 * interval '1 millisecond'`, [this.windowMs]);
        const { rows } = await tx.query<{ n: number; ms: number | null }>(
          `SELECT count(*)::int AS n, (extract(epoch FROM min(at) + $1 * interval '1 millisecond' - clock_timestamp()) * 1000)::float8 AS ms FROM withings_request_log`,
          [this.windowMs],
        );
        if (rows[0]!.n < this.limit) {
          await tx.query('INSERT INTO withings_request_log (at) VALUES (clock_timestamp())');
          return 0;
        }
        return Math.max(1, Math.ceil(rows[0]!.ms ?? 1));
      });
      if (waitMs <= 0) return;
      if (waitMs > this.maxWaitMs) throw new BudgetExhausted(waitMs);
      await sleep(waitMs, signal);
    }
  }

  /** After a 601: no node sends anything for `seconds`. */
  async block(seconds: number): Promise<void> {
    await this.db.query(
      `INSERT INTO withings_budget_block (id, blocked_until) VALUES (1, now() + $1 * interval '1 second')
       ON CONFLICT (id) DO UPDATE SET blocked_until = greatest(withings_budget_block.blocked_until, excluded.blocked_until)`,
      [seconds],
    );
  }
}
