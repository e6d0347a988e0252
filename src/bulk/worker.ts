import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { GrantStandings } from '../access/grant';
import { KickedLoop } from '../kernel/kicked-loop';
import type { Db } from '../store/db';
import { type BulkConfig } from '../config';
import { runJob } from './export';
import { claimJob, deleteExpired, finishJob } from './jobs';

/**
 * Runs export jobs in this process: claims one at a time from the jobs table (FOR UPDATE SKIP
 * LOCKED, so several server processes share the queue), runs it batch by batch, and sweeps
 * expired jobs and their files. Stopping leaves a running job at its last checkpoint; its lease
 * runs out and this or another process resumes it. A job whose grant has ended (`grants`,
 * decision 032) fails saying so.
 */
export class ExportWorker {
  /** This process's name in the jobs' `worker` column. */
  readonly id = `worker-${randomUUID()}`;
  private readonly loop: KickedLoop;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly config: BulkConfig,
    private readonly grants: GrantStandings,
  ) {
    this.loop = new KickedLoop(() => this.drain(), (err) => this.log.error({ err }, 'bulk export worker failed'), config.pollIntervalMs);
  }

  start(): void {
    if (this.config.pollIntervalMs > 0) this.loop.start();
  }

  /** Looks for work now (after a kick-off), or right after the current pass. */
  kick(): void {
    this.loop.kick();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Runs every claimable job to its end (or until stopped); `maxBatches` per job for tests of resumption. */
  async drain(maxBatches?: number): Promise<void> {
    await deleteExpired(this.db);
    for (;;) {
      const job = await claimJob(this.db, this.id, this.config.leaseMs);
      if (!job) return;
      let error: string | undefined;
      try {
        const result = await runJob(this.db, job, {
          worker: this.id,
          leaseMs: this.config.leaseMs,
          batchSize: this.config.batchSize,
          stopping: () => this.loop.stopped,
          grants: this.grants,
          ...(maxBatches !== undefined ? { maxBatches } : {}),
        });
        if (result === 'released') return;
        if (result !== 'done') {
          this.log.info({ job: job.id, reason: result.failed }, 'bulk export job stopped: its grant has ended');
          error = result.failed;
        }
      } catch (err) {
        // A job that fails keeps failing on retry (its request was checked at kick-off): report it.
        this.log.error({ err, job: job.id }, 'bulk export job failed');
        error = 'the export failed on the server; the request id of the kick-off and the job id are in the server log';
      }
      await finishJob(this.db, job.id, this.id, error === undefined ? {} : { error }, this.config.fileTtlMs);
    }
  }
}
