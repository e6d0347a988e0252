import { randomUUID } from 'node:crypto';
import type { Db } from '../store/db';

/**
 * Counting events per bucket over a window, in the database (every process sees the same
 * counts). `take` records the attempt BEFORE the caller does the work it guards, under a lock
 * per bucket, so concurrent attempts queue and the limit holds exactly; an attempt that turns
 * out not to count (a correct password) is `forgiven`.
 */
export interface Budget {
  bucket: string;
  limit: number;
  windowMs: number;
}

export type Taken = { allowed: true; attempt: string } | { allowed: false; retryAfterSeconds: number };

export async function take(db: Db, budgets: readonly Budget[]): Promise<Taken> {
  return db.transaction(async (tx) => {
    const sorted = [...budgets].sort((a, b) => a.bucket.localeCompare(b.bucket));
    await tx.query('SELECT count(pg_advisory_xact_lock(hashtext(b))) FROM unnest($1::text[]) AS b', [sorted.map((b) => `throttle|${b.bucket}`)]);
    let retryAfterSeconds = 0;
    for (const b of sorted) {
      const { rows } = await tx.query<{ n: number; oldest: string | null }>(
        `SELECT count(*)::int AS n, min(at) AS oldest FROM auth_throttle WHERE bucket = $1 AND at > now() - make_interval(secs => $2::double precision)`,
        [b.bucket, b.windowMs / 1000],
      );
      const { n, oldest } = rows[0]!;
      if (n >= b.limit) {
        // The window frees a slot when its oldest event leaves it.
        const wait = oldest ? Math.ceil((new Date(oldest).getTime() + b.windowMs - Date.now()) / 1000) : Math.ceil(b.windowMs / 1000);
        retryAfterSeconds = Math.max(retryAfterSeconds, wait, 1);
      }
    }
    if (retryAfterSeconds > 0) return { allowed: false, retryAfterSeconds };
    const attempt = randomUUID();
    await tx.query('INSERT INTO auth_throttle (bucket, attempt) SELECT b, $2 FROM unnest($1::text[]) AS b', [sorted.map((b) => b.bucket), attempt]);
    return { allowed: true, attempt };
  });
}

/** The attempt does not count after all (a login that succeeded). */
export async function forgive(db: Db, attempt: string): Promise<void> {
  await db.query('DELETE FROM auth_throttle WHERE attempt = $1', [attempt]);
}

/** Forgets every event of a bucket (an account's failures after a successful login). */
export async function clearBucket(db: Db, bucket: string): Promise<void> {
  await db.query('DELETE FROM auth_throttle WHERE bucket = $1', [bucket]);
}

export async function purgeThrottle(db: Db, olderThanMs: number): Promise<void> {
  await db.query('DELETE FROM auth_throttle WHERE at < now() - make_interval(secs => $1::double precision)', [olderThanMs / 1000]);
}
