import { type AccessPolicy, unrestricted } from './policy';

/**
 * Who holds a Subscription, and who may see and change it (decision 032, "Only the subscriber
 * changes a Subscription" and "Only the subscriber reads a Subscription"). One rule for both,
 * here in the access policy, so that reads (readLimits: read, vread, history, search, includes,
 * bundle entries, bulk export) and monitoring's writes (src/monitoring/subscription-holder.ts)
 * judge alike:
 *
 * - its subscriber: the same client for the same user (`subject`) as the token that set it, as
 *   recorded in monitoring's `subscription_owner`;
 * - an administrator: the server's own access (status updates, the end check, erasure,
 *   AUTH_DISABLED) and a backend service (a token with no user and no patient: the operator's
 *   system clients).
 *
 * Reads are limited by a tag every stored version carries (SUBSCRIBER_TAG_SYSTEM, stamped by
 * monitoring's validate stage from the recorded subscriber, never from what a client sends), so
 * that the limit is a search condition in SQL and judged in memory on one version (vread,
 * history, the version a write acts on) as a granular scope is, without a read path of its own.
 */

/** The system of the tag naming a Subscription's subscriber; its code is `subscriberCode`. */
export const SUBSCRIBER_TAG_SYSTEM = 'http://rpm.example.org/fhir/CodeSystem/subscriber';

/** A subscriber as recorded: client and user (none for a backend service or the server's own). */
export interface Subscriber {
  readonly clientId: string;
  readonly subject?: string | null;
}

/**
 * The one key of a subscriber, both for comparing a writer with the recorded subscriber and as
 * the tag's code. Each part URI-encoded, so that neither a space nor a search's separators
 * (`,` `|` `$` `\`) in an id can make two subscribers one or break the token search.
 */
export function subscriberCode(who: Subscriber): string {
  const client = encodeURIComponent(who.clientId);
  return who.subject ? `${client} ${encodeURIComponent(who.subject)}` : client;
}

/** The subscriber a policy writes as: its client and user. */
export function subscriberOf(policy: AccessPolicy): Subscriber {
  return { clientId: policy.clientId, subject: policy.subject ?? null };
}

/** Whether `policy` acts as the subscriber `holder` (same client, same user). */
export function isSubscriber(holder: Subscriber | undefined, policy: AccessPolicy): boolean {
  return holder !== undefined && subscriberCode(holder) === subscriberCode(subscriberOf(policy));
}

/** Whether `policy` administers every Subscription: the server's own access, or a backend service (no user, no patient). */
export function administersSubscriptions(policy: AccessPolicy): boolean {
  return policy === unrestricted || (policy.subject === undefined && policy.patient === undefined);
}

/** The tag that names `who` as a Subscription's subscriber. */
export function subscriberTag(who: Subscriber): fhir4.Coding {
  return { system: SUBSCRIBER_TAG_SYSTEM, code: subscriberCode(who), display: 'subscriber (client and user) of this Subscription' };
}

/** The subscriber a stored Subscription's tag names (its code), if any. */
export function taggedSubscriber(resource: { meta?: fhir4.Meta } | undefined): fhir4.Coding | undefined {
  return resource?.meta?.tag?.find((t) => t.system === SUBSCRIBER_TAG_SYSTEM);
}

/**
 * The condition a caller's reads of Subscriptions must also meet (AND with its granular scopes):
 * none for an administrator; for anyone else, being named by the subscriber tag.
 */
export function subscriptionReadCondition(policy: AccessPolicy): URLSearchParams | undefined {
  if (administersSubscriptions(policy)) return undefined;
  return new URLSearchParams({ _tag: `${SUBSCRIBER_TAG_SYSTEM}|${subscriberCode(subscriberOf(policy))}` });
}
