import type { FhirContext } from '../fhir/context';
import { OperationOutcomeError } from '../kernel/outcome';
import { executeWrites } from '../pipeline';

/** A Subscription version the server's own upkeep writes over the one it read. */
export interface SubscriptionUpdate {
  id: string;
  resource: fhir4.Subscription;
  /** The version read: the write is conditional on it (If-Match). */
  versionId: number;
}

/**
 * Writes each update as the server's own, one unit each, through the write pipeline (versioned
 * and audited like any write). Several nodes run the upkeep at once: a version another node, or
 * the Subscription's owner, changed first is a conflict, and theirs stands; any other failure is
 * logged with `failure` and left to the next run. Answers how many were written.
 */
export async function updateSubscriptionsAsServer(ctx: FhirContext, updates: Iterable<SubscriptionUpdate>, failure: string): Promise<number> {
  let written = 0;
  for (const { id, resource, versionId } of updates) {
    try {
      await executeWrites(ctx, [{ kind: 'update', type: 'Subscription', id, resource, ifMatch: versionId }]);
      written++;
    } catch (err) {
      if (err instanceof OperationOutcomeError && (err.status === 409 || err.status === 412)) continue;
      ctx.log.warn({ err, subscription: id }, `${failure}; the next run tries again`);
    }
  }
  return written;
}
