import { randomUUID } from 'node:crypto';
import type { Db } from './db';

/** The channel the check sends its own notification on. */
const CHECK_CHANNEL = 'fhir_listen_check';

/**
 * Whether a NOTIFY sent through the pool reaches this process's LISTEN within `withinMs`: false
 * behind PgBouncer in transaction mode without DATABASE_LISTEN_URL, where LISTEN is answered and
 * then hears nothing (decision 019), or when `stopped` aborts first. Websocket pings and the
 * other nodes' view of new Subscriptions rely on it; a deaf listener is otherwise silent.
 */
export async function notificationsArrive(db: Db, withinMs: number, stopped?: AbortSignal): Promise<boolean> {
  const token = randomUUID();
  let settle!: (heard: boolean) => void;
  const outcome = new Promise<boolean>((resolve) => (settle = resolve));
  const unlisten = await db.listen(CHECK_CHANNEL, (payload) => {
    if (payload === token) settle(true);
  });
  const timer = setTimeout(() => settle(false), withinMs);
  const onStop = () => settle(false);
  stopped?.addEventListener('abort', onStop, { once: true });
  try {
    // Named, so that a statement log (and a test counting a request's statements) can tell this
    // start-up check from the NOTIFYs of writes, which run on their own clock beside it.
    await db.query('SELECT pg_notify($1, $2) AS listen_check', [CHECK_CHANNEL, token]);
    return await outcome;
  } finally {
    clearTimeout(timer);
    stopped?.removeEventListener('abort', onStop);
    await unlisten();
  }
}
