import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * The embedded database is single-process: two processes opening one data directory each keep
 * their own copy in memory and overwrite each other's writes (a token or client made by a CLI
 * while the server ran vanished). So whoever opens it holds a lock file beside it
 * (`<dir>.lock`, with its pid); a second opener is refused with a message that says what to do.
 * A lock left by a process that no longer runs is taken over.
 */
export class DataDirInUseError extends Error {}

export function lockDataDir(dataDir: string): () => void {
  const dir = resolve(dataDir);
  const lockFile = join(dirname(dir), `${basename(dir)}.lock`);
  const mine = JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString(), command: process.argv.slice(1).join(' ') });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lockFile, mine, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = readHolder(lockFile);
      if (holder && isRunning(holder.pid)) {
        throw new DataDirInUseError(
          `the embedded database in ${dir} is in use by process ${holder.pid} (${holder.command || 'unknown'}, since ${holder.startedAt}). ` +
            'It is single-process: stop that server first, or run both against PostgreSQL (DATABASE_URL=postgres://…). ' +
            'While the server runs, register clients over HTTP (POST /auth/register with REGISTRATION_TOKEN) and get tokens from /auth/token.',
        );
      }
      unlinkSync(lockFile); // stale: its process is gone
      if (attempt === 1) throw err;
    }
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    try {
      if (readFileSync(lockFile, 'utf8') === mine) unlinkSync(lockFile);
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return release;
}

function readHolder(lockFile: string): { pid: number; startedAt?: string; command?: string } | undefined {
  try {
    const parsed = JSON.parse(readFileSync(lockFile, 'utf8')) as { pid?: unknown; startedAt?: string; command?: string };
    return typeof parsed.pid === 'number' ? { pid: parsed.pid, startedAt: parsed.startedAt, command: parsed.command } : undefined;
  } catch {
    return undefined; // unreadable or half-written: treated as stale
  }
}

function isRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
