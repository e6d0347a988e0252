import type { GrantStandings } from '../access/grant';
import type { FhirContext } from '../fhir/context';
import { hasEnded, readLiveSubscriptions, subscriptionStandings } from './notify';
import { updateSubscriptionsAsServer } from './server-updates';

/** Most Subscriptions turned off in one run; the next run takes the rest. */
const PER_RUN = 500;

/**
 * Sets to `off` the Subscriptions that have ended, through the write pipeline (versioned and
 * audited as the server's own update, as delivery failures are recorded), so that they leave the
 * live set every node loads every 2 s. Two kinds, both already silent before this runs
 * (src/monitoring/notify.ts, ./delivery.ts):
 *
 * - past `end`: R4 defines `Subscription.end` as "the time for the server to turn the
 *   subscription off". The dashboard makes one Subscription per clinician per shift; without this
 *   the live set only grew.
 * - whose grant has ended (decision 032: revoked, its login session over, its user or client
 *   removed): `off` with an `error` saying why, rather than left `active` and silently unheard.
 *   The Subscription is where its owner and an administrator look to learn what the server does
 *   for it; an ended grant does not come back, so the subscriber must set it again under a live
 *   one. This runs here, not where the grant ends, because what ends grants (the token endpoint,
 *   the user and client CLIs, which have only a database) has no unit of work to write through.
 *
 * Several nodes may run this at once: a version another node changed first is a conflict, left to
 * that node. Answers how many it turned off.
 */
export async function turnOffEndedSubscriptions(ctx: FhirContext, grants: GrantStandings, now = Date.now()): Promise<number> {
  const live = await readLiveSubscriptions(ctx.db);
  const standings = await subscriptionStandings(ctx.db, grants, [...live.keys()]);
  const ended = [...live].flatMap(([id, { resource, versionId }]) => {
    const standing = standings.get(id)!;
    if (!standing.alive) return [{ id, versionId, resource: { ...resource, status: 'off' as const, error: `the grant it was set under has ended: ${standing.reason}` } }];
    return hasEnded(resource, now) ? [{ id, versionId, resource: { ...resource, status: 'off' as const } }] : [];
  }).slice(0, PER_RUN);
  return updateSubscriptionsAsServer(ctx, ended, 'could not turn off an ended subscription');
}
