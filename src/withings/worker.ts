import { randomUUID } from 'node:crypto';
import { KickedLoop } from '../kernel/kicked-loop';
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
  private readonly loop: KickedLoop;

  constructor(private readonly deps: SyncDeps) {
    this.loop = new KickedLoop(() => this.round(), (err) => deps.log.error({ err }, 'Withings sync worker failed'), deps.config.workerIntervalMs);
  }

  /** Nothing while the worker is off (WITHINGS_WORKER_INTERVAL=0). */
  start(): void {
    if (this.deps.config.workerIntervalMs > 0) this.loop.start();
  }

  /** Look for due accounts now (or as soon as the current round ends). */
  kick(): void {
    this.loop.kick();
  }

  private async round(): Promise<void> {
    const { ctx, config } = this.deps;
    const claimed = await claimDue(ctx.db, this.owner, config.leaseMs, config.concurrency);
    await Promise.all(claimed.map((account) => syncAccount(this.deps, account, this.owner, this.abort.signal)));
    // A full round may have left more due accounts behind it.
    if (claimed.length === config.concurrency) this.loop.kick();
  }

  /** Stops between requests: a run cut short releases its account, due again at once for any node. */
  async stop(): Promise<void> {
    this.abort.abort(new Error('the server is stopping'));
    await this.loop.stop();
  }
}
