import type { Logger } from 'pino';
import type { AuditConfig } from '../config';
import type { Db } from '../store/db';
import { appendToChain } from './chain';
import type { AuditRecord } from './event';
import type { QuerySealer } from './sealed-query';

/** Beyond this many waiting (the database unreachable for long), the oldest are dropped and counted in the log. */
const MAX_WAITING = 100_000;

/**
 * Reads are audited after their response, in batches: at most `flushIntervalMs` later, or as
 * soon as `flushSize` wait, each batch one transaction on the chain. Measured reason: a read is
 * one short statement, and an audit append per read (a lock on the chain head and a commit)
 * would double it. A crash loses at most the batch in flight — the write audit, which must not
 * be lost, commits with its write instead (src/audit/writes.ts).
 */
export class AuditRecorder {
  private waiting: AuditRecord[][] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private dropped = 0;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly config: AuditConfig,
    private readonly sealer: QuerySealer,
  ) {}

  /**
   * Queues the records of one finished request. They are built when its response has been sent,
   * and hold only strings: a closure that built them with the batch kept the request's access
   * policy and facts alive for up to `flushIntervalMs`, long enough to be promoted to the old
   * generation (+50 µs of garbage collection per hot search, profiled).
   */
  record(records: AuditRecord[]): void {
    this.waiting.push(records);
    if (this.waiting.length > MAX_WAITING) {
      this.waiting.shift();
      this.dropped++;
    }
    if (this.waiting.length >= this.config.flushSize) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.config.flushIntervalMs);
  }

  /** Writes everything waiting now; resolves when it is stored (tests, shutdown). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writeBatch());
    return this.flushing;
  }

  private async writeBatch(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.waiting;
    this.waiting = [];
    if (batch.length === 0) return;
    try {
      const records = batch.flat();
      await this.sealer.seal(records);
      await this.db.transaction((tx) => appendToChain(tx, records));
    } catch (err) {
      // Put back (they are retried with the next batch); the log names no patient or resource.
      this.waiting = [...batch, ...this.waiting].slice(-MAX_WAITING);
      this.log.error({ err: { message: (err as Error).message }, waiting: this.waiting.length }, 'audit batch not stored; retrying with the next one');
      this.timer ??= setTimeout(() => void this.flush(), this.config.flushIntervalMs);
    }
    if (this.dropped) {
      this.log.error({ dropped: this.dropped }, 'audit records dropped: the audit store was unreachable for too long');
      this.dropped = 0;
    }
  }

  async stop(): Promise<void> {
    await this.flush();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
