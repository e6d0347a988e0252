import type { Request, Server } from '@hapi/hapi';
import { withCancellation } from '../store/cancellation';

declare module '@hapi/hapi' {
  interface ServerApplicationState {
    /** The cancellation of every request in flight, for a shutdown that must end in time. */
    inFlight?: Set<AbortController>;
  }
}

/**
 * Runs a request's work so that its database statements are cancelled when the request is
 * gone: the client disconnected, or the server is stopping and the grace
 * period is over (`abortInFlight`). A search whose client left must not hold a pool
 * connection, nor keep the process from stopping.
 */
export function cancellable<T>(request: Request, work: () => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const inFlight = (request.server.app.inFlight ??= new Set());
  inFlight.add(controller);
  // The response socket closing before the answer was written is the client leaving (what
  // hapi reports as `disconnect`). Listened to on the raw response: `request.events` builds a
  // Podium emitter per request, measured at ~8 % of a read's server CPU.
  const res = request.raw.res;
  const abort = () => {
    if (!res.writableEnded) controller.abort();
  };
  res.once('close', abort);
  return withCancellation(controller.signal, work).finally(() => {
    inFlight.delete(controller);
    res.removeListener('close', abort);
  });
}

/** Cancels the work of every request still running (shutdown, after the grace period). */
export function abortInFlight(server: Server): void {
  for (const controller of server.app.inFlight ?? []) controller.abort();
}
