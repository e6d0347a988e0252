import type { Logger } from 'pino';
import type { Db } from '../store/db';
import { chainStaged, hasStaged } from './chain';

/** Rows moved per chaining transaction: the batch that keeps one transaction short. */
const BATCH = 1_000;
/**
 * How long a kick waits, so that the staged rows of commits close together are chained in one
 * transaction. Measured (docs/decisions/021-audit-storage.md): at 25 ms, one client's creates
 * were chained three to five at a time, and the chaining transactions (five round trips and a
 * commit each) were most of the audit's cost per create.
 */
const COALESCE_MS = 100;
/** The backstop: rows staged by another server process, or left by a chaining that failed, wait at most this long. */
const POLL_MS = 1_000;

/**
 * Links the write audit into the chain (docs/decisions/014-erasure-and-anonymisation.md, "Audit
 * cost"); the read recorder (./recorder.ts) appends its batches directly, and both take the
 * head's row lock, so the chain stays one sequence. Write units stage their AuditEvents in their
 * own transaction; this links them into the hash chain after commit, in batches, oldest first:
 * kicked after every unit that wrote, and polled once a second. Tamper evidence is unchanged for chained rows; a staged row is
 * chained within the bound (a kick's few milliseconds, else the poll).
 */
export class AuditChainer {
  private timer: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  start(): void {
    // One cheap look a second; a chaining transaction only when something waits.
    this.poll ??= setInterval(() => {
      hasStaged(this.db).then((waiting) => waiting && this.kick(), () => undefined);
    }, POLL_MS);
    this.poll.unref();
  }

  /** Chains soon: commits within the next few milliseconds share the chaining transaction. */
  kick(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.drain();
    }, COALESCE_MS);
  }

  /** Chains every row staged so far; resolves when they are in the chain (tests, shutdown, erasure answers). */
  drain(): Promise<void> {
    this.running = this.running.then(async () => {
      try {
        while ((await chainStaged(this.db, BATCH)) === BATCH);
      } catch (err) {
        // Staged rows stay staged (committed with their writes); the next kick or poll retries.
        this.log.error({ err: { message: (err as Error).message } }, 'audit chaining failed; staged rows wait for the next attempt');
      }
    });
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.poll) clearInterval(this.poll);
    if (this.timer) clearTimeout(this.timer);
    this.poll = undefined;
    this.timer = undefined;
    await this.drain();
  }
}
