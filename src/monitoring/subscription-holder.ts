import { administersSubscriptions, isSubscriber, type Subscriber, subscriberOf, subscriberTag, SUBSCRIBER_TAG_SYSTEM, taggedSubscriber } from '../access/subscriber';
import { OperationOutcomeError } from '../kernel/outcome';
import type { PendingWrite } from '../pipeline';
import type { Queryable } from '../store/db';
import { recordedSubscribers, recordsItsWriter } from './notify';

/**
 * Only a Subscription's recorded subscriber (decision 032: the client, for the user whose token
 * set it) changes or deletes it, and reads it (src/access/subscriber.ts has the rule). A
 * Subscription is where a physician's alerts go: any clinician allowed to write Subscriptions
 * (`user/*.cruds`, every user of the shared dashboard client) could delete a colleague's, turn it
 * off, or update it and so become its subscriber, and the colleague's alerts stopped without a
 * word to them (subscriptions probe).
 *
 * Who else may: the server's own access (status updates, the end check, erasure, AUTH_DISABLED),
 * and a backend service (a token with no user and no patient: the operator's system clients),
 * which administers the server's Subscriptions. An administrator's update keeps the recorded
 * subscriber, and so the grant its notifications are matched under (./notify.ts
 * `recordsItsWriter`). A Subscription with no recorded subscriber (stored before issue 11) may be
 * adopted by a user's write, as before.
 *
 * A 403 before the Subscription's content is judged (endpoint, headers, cap). A caller who is not
 * the subscriber may not read it either and is refused by the access policy before this
 * (decision 031: 404 to a PATCH, 403 to a PUT or DELETE); this holds for one stored before the
 * subscriber tag, which the policy cannot judge.
 *
 * Then every version written is stamped with the tag naming its subscriber (the writer when it
 * becomes the subscriber, the recorded one otherwise), which the access policy's reads go by; a
 * tag of that system sent by the client is dropped. One statement per apply that replaces
 * Subscriptions as a user, or keeps the subscriber of one stored before the tag; none otherwise.
 */
export async function enforceSubscriberHolds(tx: Queryable, writes: readonly PendingWrite[]): Promise<void> {
  const subscriptions = writes.filter((w) => w.type === 'Subscription');
  const asking = subscriptions.filter((w) => w.previous && (!administersSubscriptions(w.policy) || (w.resource && !taggedSubscriber(w.previous))));
  const holders = asking.length ? await recordedSubscribers(tx, asking.map((w) => w.id)) : new Map();
  for (const w of subscriptions) {
    const row = holders.get(w.id);
    const holder: Subscriber | undefined = row && { clientId: row.client_id, subject: row.subject };
    if (w.previous && !administersSubscriptions(w.policy) && holder !== undefined && !isSubscriber(holder, w.policy)) {
      w.reject(new OperationOutcomeError(403, {
        code: 'forbidden',
        diagnostics: `Subscription/${w.id} is held by another subscriber (client ${holder.clientId}${holder.subject ? ', another user' : ''}): only its subscriber, or a backend service of the operator, may ${w.resource ? 'change' : 'delete'} it`,
        expression: ['Subscription'],
      }));
      continue;
    }
    if (w.resource && stampSubscriber(w, recordsItsWriter(w) ? subscriberOf(w.policy) : holder)) w.changed = true;
  }
}

/**
 * Sets the subscriber tag of the version `w` writes: `who`, or the previous version's when the
 * subscriber is kept and `who` was not asked for. Returns whether the resource changed.
 */
function stampSubscriber(w: PendingWrite, who: Subscriber | undefined): boolean {
  const resource = w.resource!;
  const sent = resource.meta?.tag ?? [];
  const tag = who ? subscriberTag(who) : taggedSubscriber(w.previous);
  const tags = [...sent.filter((t) => t.system !== SUBSCRIBER_TAG_SYSTEM), ...(tag ? [tag] : [])];
  if (JSON.stringify(tags) === JSON.stringify(sent)) return false;
  const { tag: _sent, ...meta } = resource.meta ?? {};
  resource.meta = tags.length ? { ...meta, tag: tags } : meta;
  return true;
}
