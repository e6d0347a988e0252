import { randomUUID } from 'node:crypto';
import { claimDue } from './accounts';
import { type SyncDeps, syncAccount } from './sync';

/**
 * Runs due accounts' syncs on this node: every `workerIntervalMs`, and at once when a
 * notification arrives (kick). At most `concurrency` accounts at a time, claimed in the
 * database (./accounts.ts claimDue), so nodes share the work. After a downtime every account is
 * due at once; they are taken `concurrency` at a time and every request waits its turn in the
 * shared budget, so the backlog drains at the allowed rate instead of as a storm.
 */
export class SyncWorker {
  /** This node's name on its leases. */
  readonly owner = `node-${randomUUID()}`;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly deps: SyncDeps) {}

  start(): void {
    const interval = this.deps.config.workerIntervalMs;
    if (interval <= 0 || this.timer) return;
    this.timer = setInterval(() => this.kick(), interval);
    this.timer.unref();
    this.kick();
  }

  /** Look for due accounts now (or as soon as the current round ends). Nothing while the worker is off (WITHINGS_WORKER_INTERVAL=0). */
  kick(): void {
    if (this.abort.signal.aborted || !this.timer) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.rounds()
      .catch((err: unknown) => this.deps.log.error({ err }, 'Withings sync worker failed'))
      .finally(() => (this.running = undefined));
  }

  private async rounds(): Promise<void> {
    const { ctx, config } = this.deps;
    do {
      this.again = false;
      const claimed = await claimDue(ctx.db, this.owner, config.leaseMs, config.concurrency);
      await Promise.all(claimed.map((account) => syncAccount(this.deps, account, this.owner, this.abort.signal)));
      // A full round may have left more due accounts behind it.
      if (claimed.length === config.concurrency) this.again = true;
    } while (this.again && !this.abort.signal.aborted);
  }

  /** Stops between requests: a run cut short releases its account, due again at once for any node. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.abort.abort(new Error('the server is stopping'));
    await this.running;
  }
}
