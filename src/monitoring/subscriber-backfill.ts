import { SUBSCRIBER_TAG_SYSTEM } from '../access/subscriber';
import type { FhirContext } from '../fhir/context';
import { findMatchingIds } from '../search';
import { readVersioned } from '../store/repository';
import { recordedSubscribers } from './notify';
import { updateSubscriptionsAsServer } from './server-updates';

/** Most Subscriptions tagged in one run; the next run takes the rest. */
const PER_RUN = 200;

/**
 * Stamps the subscriber tag (decision 032) on the Subscriptions stored before it existed. Until a
 * version carries it, the access policy lets only administrators read one, and its own subscriber
 * gets the 404 of an unknown id: after an upgrade, every app's existing Subscriptions would have
 * been beyond their own reach until something else wrote them. Each is updated as the server's
 * own write, whose validate stage stamps the subscriber recorded in `subscription_owner`
 * (./subscription-holder.ts); the content is otherwise as stored. Only those with a recorded
 * subscriber are asked (one without has nobody to name, and would be asked again every run).
 *
 * Runs with the periodic end check, on every node: a version another node changed first is
 * theirs. Answers how many it tagged.
 */
export async function tagSubscriptionsStoredUntagged(ctx: FhirContext): Promise<number> {
  const untagged = await findMatchingIds(ctx.db, 'Subscription', new URLSearchParams({ '_tag:not': `${SUBSCRIBER_TAG_SYSTEM}|` }), PER_RUN);
  if (untagged.length === 0) return 0;
  const owned = await recordedSubscribers(ctx.db, untagged);
  const stored = await readVersioned<fhir4.Subscription>(ctx.db, 'Subscription', untagged.filter((id) => owned.has(id)));
  return updateSubscriptionsAsServer(ctx, [...stored].map(([id, v]) => ({ id, ...v })), 'could not tag a Subscription with its subscriber');
}
