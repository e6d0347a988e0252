import { type AccessPolicy, unrestricted } from '../access/policy';
import { OperationOutcomeError } from '../kernel/outcome';
import type { PendingWrite } from '../pipeline';
import type { Queryable } from '../store/db';
import { recordedSubscribers, writesAsSubscriber } from './notify';

/**
 * Only a Subscription's recorded subscriber (decision 032: the client, for the user whose token
 * set it) changes or deletes it. A Subscription is where a physician's alerts go: any clinician
 * allowed to write Subscriptions (`user/*.cruds`, every user of the shared dashboard client)
 * could delete a colleague's, turn it off, or update it and so become its subscriber, and the
 * colleague's alerts stopped without a word to them (subscriptions probe). Reading stays open
 * to whoever may read Subscriptions (decision 033: the header values are masked).
 *
 * Who else may: the server's own access (status updates, the end check, erasure, AUTH_DISABLED),
 * and a backend service (a token with no user and no patient: the operator's system clients), which
 * administers the server's Subscriptions. A Subscription with no recorded subscriber (stored
 * before issue 11) may be adopted by any writer, as before.
 *
 * A 403 before the Subscription's content is judged (endpoint, headers, cap): the caller may read
 * the Subscription, so the refusal tells it nothing it could not read. One statement per apply
 * that replaces or deletes Subscriptions as a user; none otherwise.
 */
export async function enforceSubscriberHolds(tx: Queryable, writes: readonly PendingWrite[]): Promise<void> {
  const replacing = writes.filter((w) => w.type === 'Subscription' && w.previous && !administers(w.policy));
  if (replacing.length === 0) return;
  const holders = await recordedSubscribers(tx, replacing.map((w) => w.id));
  for (const w of replacing) {
    const holder = holders.get(w.id);
    if (holder === undefined || writesAsSubscriber(holder, w.policy)) continue;
    w.reject(new OperationOutcomeError(403, {
      code: 'forbidden',
      diagnostics: `Subscription/${w.id} is held by another subscriber (client ${holder.client_id}${holder.subject ? ', another user' : ''}): only its subscriber, or a backend service of the operator, may ${w.resource ? 'change' : 'delete'} it`,
      expression: ['Subscription'],
    }));
  }
}

/** The server's own access, and a backend service's token (no user, no patient). */
function administers(policy: AccessPolicy): boolean {
  return policy === unrestricted || (policy.subject === undefined && policy.patient === undefined);
}
