import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';

/**
 * WORKERS=N (N > 1): the process forks N server processes that share its port, one per core.
 * One Node process serves on one core; on a 2-core machine the read path left the second core to
 * PostgreSQL and idle time (README "Several nodes", the bench's figures). Each worker is a node
 * of docs/decisions/019-scale-out.md on the one PostgreSQL database, exactly as nodes on separate
 * machines are: nothing is shared between them but the database (caches are invalidated through
 * it, the audit chain is serialised in it), which the cross-node suite checks.
 *
 * The primary serves nothing. It replaces a worker that dies while serving, stops them all when
 * it is told to (each drains its in-flight requests), and gives up when a worker dies before it
 * ever listened: that is a configuration or database fault another fork would only repeat.
 */
export function superviseWorkers(count: number, log: Logger): void {
  let stopping = false;
  const listened = new WeakSet<Worker>();
  const fork = () => {
    const worker = cluster.fork();
    worker.once('listening', () => listened.add(worker));
  };
  for (let i = 0; i < count; i++) fork();

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (code !== 0) process.exitCode = 1;
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(process.exitCode ?? 0);
      return;
    }
    if (!listened.has(worker)) {
      log.error({ pid: worker.process.pid, code, signal }, 'a worker exited before it served; stopping the others');
      process.exitCode = 1;
      stop();
      return;
    }
    log.error({ pid: worker.process.pid, code, signal }, 'a worker died; starting another');
    // A second after: a fault that kills every new worker at once does not spin the machine.
    setTimeout(() => !stopping && fork(), 1_000).unref();
  });

  const stop = () => {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    if (workers.length === 0) process.exit(process.exitCode ?? 0);
    for (const worker of workers) worker.process.kill('SIGTERM');
  };
  const onSignal = (signal: string) => {
    log.info({ signal, workers: count }, 'shutting down');
    stop();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

/** True in the process that should serve (a worker, or the only process); false in a supervising primary. */
export function servesRequests(workers: number): boolean {
  return workers <= 1 || !cluster.isPrimary;
}
