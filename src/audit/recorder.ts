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
      await this.store(batch.flat());
    } catch (err) {
      const putBack = refusedForItsData(err) ? await this.storeOneByOne(batch) : batch;
      if (putBack.length) {
        // Put back (they are retried with the next batch); the log names no patient or resource.
        this.waiting = [...putBack, ...this.waiting].slice(-MAX_WAITING);
        this.log.error({ err: { message: (err as Error).message }, waiting: this.waiting.length }, 'audit batch not stored; retrying with the next one');
        this.timer ??= setTimeout(() => void this.flush(), this.config.flushIntervalMs);
      }
    }
    if (this.dropped) {
      this.log.error({ dropped: this.dropped }, 'audit records dropped: the audit store was unreachable for too long');
      this.dropped = 0;
    }
  }

  private async store(records: AuditRecord[]): Promise<void> {
    await this.sealer.seal(records);
    await this.db.transaction((tx) => appendToChain(tx, records));
  }

  /**
   * A batch the database refused for what it holds (a value no column can store): each request's
   * records are stored on their own, so that one such request costs the trail its own records
   * and not everyone's. Put back, the whole batch failed again with every batch after it, and
   * the trail recorded nothing more (robustness probe: a NUL in a claimed client id). Answers
   * what failed for another reason (the database went away meanwhile), to be retried.
   */
  private async storeOneByOne(batch: AuditRecord[][]): Promise<AuditRecord[][]> {
    const retry: AuditRecord[][] = [];
    let unstorable = 0;
    for (const records of batch) {
      try {
        await this.store(records);
      } catch (err) {
        if (refusedForItsData(err)) unstorable += records.length;
        else retry.push(records);
      }
    }
    if (unstorable) this.log.error({ unstorable }, 'audit records not stored: the database refused their content');
    return retry;
  }

  async stop(): Promise<void> {
    await this.flush();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Whether the database refused a statement for the values it was given (SQLSTATE class 22, data
 * exception: a NUL in text, an invalid byte sequence, a value out of range), which no retry mends.
 */
function refusedForItsData(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('22');
}
