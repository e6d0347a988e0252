import type { FhirContext } from '../fhir/context';
import { OperationOutcomeError } from '../kernel/outcome';
import { executeWrites } from '../pipeline';
import { hasEnded, readLiveSubscriptions } from './notify';

/** Most Subscriptions turned off in one run; the next run takes the rest. */
const PER_RUN = 500;

/**
 * R4 defines `Subscription.end` as "the time for the server to turn the subscription off". Past
 * it a Subscription is already silent (src/monitoring/notify.ts); this sets its status to `off`,
 * through the write pipeline (versioned and audited as the server's own update, as delivery
 * failures are recorded), so that it leaves the live set every node loads every 2 s. Without it
 * that set only grew: the dashboard makes one Subscription per clinician per shift, ended ones
 * kept `active`. Several nodes may run this at once: a version another node changed first is a
 * conflict, left to that node. Answers how many it turned off.
 */
export async function turnOffEndedSubscriptions(ctx: FhirContext, now = Date.now()): Promise<number> {
  const live = await readLiveSubscriptions(ctx.db);
  const ended = [...live].filter(([, { resource }]) => hasEnded(resource, now)).slice(0, PER_RUN);
  let turnedOff = 0;
  for (const [id, { resource, versionId }] of ended) {
    try {
      await executeWrites(ctx, [{ kind: 'update', type: 'Subscription', id, resource: { ...resource, status: 'off' }, ifMatch: versionId }]);
      turnedOff++;
    } catch (err) {
      // Changed since it was read (another node turned it off, or its owner edited it): theirs stands.
      if (err instanceof OperationOutcomeError && (err.status === 409 || err.status === 412)) continue;
      ctx.log.warn({ err, subscription: id }, 'could not turn off an ended subscription; the next run tries again');
    }
  }
  return turnedOff;
}
