/**
 * The heartbeat of a queue a process works through (Subscription deliveries, export jobs,
 * Withings syncs): a pass runs when kicked (a commit just queued work), runs again right after the
 * current one when kicked meanwhile, and otherwise every `intervalMs`, which also picks up work
 * queued by other processes. One pass at a time in a process; processes share the queue through the database
 * (FOR UPDATE SKIP LOCKED), never through this.
 */
export class KickedLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private started = false;
  private halted = false;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly onError: (err: unknown) => void,
    private readonly intervalMs: number,
  ) {}

  /** Whether stop() was called: a long pass checks it between items. */
  get stopped(): boolean {
    return this.halted;
  }

  start(): void {
    this.started = true;
    this.halted = false;
    this.kick();
  }

  /** Runs a pass now, or right after the current one. */
  kick(): void {
    if (!this.started || this.halted) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.running = this.pass()
      .catch(this.onError)
      .finally(() => {
        this.running = undefined;
        if (this.halted) return;
        if (this.again) {
          this.again = false;
          this.kick();
        } else {
          this.timer = setTimeout(() => this.kick(), this.intervalMs);
          this.timer.unref();
        }
      });
  }

  /** No new pass starts; resolves when the current one has ended. */
  async stop(): Promise<void> {
    this.halted = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
