import { policyReach, type ReadLimits, readLimits } from '../access/enforce';
import { GOVERNING_TYPES, withConsents } from '../access/consent';
import { type GrantRef, type GrantStanding, type GrantStandings, recordedGrant } from '../access/grant';
import { type AccessPolicy, policyFromScopes, unrestricted } from '../access/policy';
import { administersSubscriptions, isSubscriber } from '../access/subscriber';
import { DEFAULT_INPUT_LIMITS, idSlices } from '../kernel/input-limits';
import { OperationOutcomeError } from '../kernel/outcome';
import type { CommittedWrite, PendingWrite, UnitOfWork } from '../pipeline';
import { type CriteriaMatcher, criteriaMatcher, findMatchingIds, withinLimits } from '../search';
import type { Queryable, Transaction } from '../store/db';
import { readVersion, readVersioned } from '../store/repository';
import { parseCriteria } from './subscription-accept';

/**
 * Which committed writes each live Subscription is told about, matched under its subscriber's
 * grant: the criteria run as a search by that client would (its scopes, its patient's
 * compartment, its granular limits), and a notification carries the resource only when the
 * subscriber may read it. Queued in monitoring_delivery in the transaction of the change.
 * Only while that grant stands (decision 032): a revoked grant, an ended login session, a
 * removed user or client silence the Subscription at once, on every node.
 */

export const DELIVERED_STATUSES = ['active', 'error'];

interface LiveSubscription {
  id: string;
  channel: string;
  criteria: { type: string; params: URLSearchParams };
  /** The criteria judged in memory (src/search/criteria-match.ts): before any query, and instead of one when exact. */
  matcher: CriteriaMatcher;
  wantsPayload: boolean;
  /** The subscriber as recorded; its grant is asked after at every match (decision 032). */
  owner: OwnerRow;
  /** The subscriber's policy with the scopes recorded (narrowed when its grant now holds fewer). */
  policy: AccessPolicy;
}

interface OwnerRow {
  subscription_id: string;
  client_id: string;
  scopes: string[];
  patient: string | null;
  fhir_user: string | null;
  subject: string | null;
  grant_id: string | null;
  token_id: string | null;
}

/** The grant a write of a Subscription records as its subscriber's (the server's own status updates record none). */
const owners = new WeakMap<object, AccessPolicy>();

/**
 * Whether a write of a Subscription makes its writer the subscriber: a create always does; an
 * update does unless an administrator makes it (the server's own status updates, the end check,
 * an operator's backend service: src/access/subscriber.ts). An administrator's update keeps the
 * recorded subscriber, and so the grant its notifications are matched under: the operator
 * correcting a clinician's Subscription must neither take the clinician's alerts away nor send
 * them matched under the operator's wider grant (decision 032).
 */
export function recordsItsWriter(w: Pick<PendingWrite, 'previous' | 'policy'>): boolean {
  return !w.previous || !administersSubscriptions(w.policy);
}

/** validate stage: remember who set each Subscription, for the rules stage to record. */
export function noteSubscriber(writes: readonly PendingWrite[]): void {
  for (const w of writes) {
    if (w.type !== 'Subscription' || !w.resource) continue;
    if (recordsItsWriter(w)) owners.set(w.resource, w.policy);
  }
}

/**
 * Whether `policy` writes as the recorded subscriber `row`: the same client for the same user
 * (subject), as who may bind to a websocket Subscription (src/access/subscriber.ts `isSubscriber`).
 * The server's own access (status updates, AUTH_DISABLED) acts for every subscriber and, on an
 * update, records none.
 */
export function writesAsSubscriber(row: Pick<OwnerRow, 'client_id' | 'subject'> | undefined, policy: AccessPolicy): boolean {
  return policy === unrestricted || isSubscriber(row && { clientId: row.client_id, subject: row.subject }, policy);
}

/** Whether `policy` writes Subscription `id` as its recorded subscriber (./websocket.ts: who may bind to it). */
export async function isRecordedSubscriber(db: Queryable, id: string, policy: AccessPolicy): Promise<boolean> {
  return policy === unrestricted || writesAsSubscriber((await ownersOf(db, [id]))[0], policy);
}

/**
 * Whether `policy` keeps Subscription `id`'s hidden header values when it sends their masks back
 * (./header-secrets.ts): its subscriber, or an administrator, whose update keeps the subscriber.
 */
export async function actsForSubscriber(db: Queryable, id: string, policy: AccessPolicy): Promise<boolean> {
  return administersSubscriptions(policy) || isRecordedSubscriber(db, id, policy);
}

/** Whether an update sends a Subscription's notifications elsewhere: another channel type or endpoint. */
export function readdressed(previous: fhir4.Subscription, next: fhir4.Subscription): boolean {
  return previous.channel.type !== next.channel.type || previous.channel.endpoint !== next.channel.endpoint;
}

/**
 * rules stage: subscription_owner follows the Subscriptions written. An update that gives a
 * Subscription another subscriber or another address drops its queued notifications in the same
 * transaction: they were matched under the previous subscriber's grant, for the previous
 * endpoint (and a retry would carry them to the new one).
 */
export async function recordSubscribers(tx: Transaction, committed: readonly CommittedWrite[]): Promise<void> {
  const subs = committed.filter((w) => w.type === 'Subscription');
  if (subs.length === 0) return;
  forgetSubscriptions();
  // The other nodes forget theirs at this commit (./index.ts listens): a Subscription created on
  // one node must be matched by a reading another node takes a moment later, not 2 s later.
  tx.later(`SELECT pg_notify('${SUBSCRIPTIONS_CHANGED_CHANNEL}', '')`);
  const gone = subs.filter((w) => !w.resource).map((w) => w.id);
  if (gone.length) await tx.query('DELETE FROM subscription_owner WHERE subscription_id = ANY($1::text[])', [gone]);
  const set = subs.flatMap((w) => {
    const policy = w.resource ? owners.get(w.resource) : undefined;
    return policy ? [{ id: w.id, policy }] : [];
  });
  await dropStaleQueue(tx, subs, set);
  // Whether each counts against its subscriber's cap (./subscription-cap.ts): not off. Versions
  // that keep their recorded subscriber (the server's own status updates) set only that.
  const recorded = new Set(set.map((x) => x.id));
  const kept = subs.filter((w) => w.resource && !recorded.has(w.id));
  if (kept.length) {
    await tx.query(
      `UPDATE subscription_owner o SET active = v.a FROM unnest($1::text[], $2::bool[]) AS v(id, a)
        WHERE o.subscription_id = v.id AND o.active IS DISTINCT FROM v.a`,
      [kept.map((w) => w.id), kept.map((w) => countsAgainstCap(w.resource as fhir4.Subscription))],
    );
  }
  if (set.length === 0) return;
  const byId = new Map(subs.map((w) => [w.id, w]));
  await tx.query(
    `INSERT INTO subscription_owner (subscription_id, client_id, scopes, patient, fhir_user, subject, grant_id, token_id, active)
     SELECT id, c, string_to_array(s, ' '), p, f, u, g, t, a
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[]) AS v(id, c, s, p, f, u, g, t, a)
     ON CONFLICT (subscription_id) DO UPDATE SET client_id = EXCLUDED.client_id, scopes = EXCLUDED.scopes, patient = EXCLUDED.patient,
       fhir_user = EXCLUDED.fhir_user, subject = EXCLUDED.subject, grant_id = EXCLUDED.grant_id, token_id = EXCLUDED.token_id, active = EXCLUDED.active`,
    [
      set.map((x) => x.id), set.map((x) => x.policy.clientId), set.map((x) => x.policy.scopes.join(' ')),
      set.map((x) => x.policy.patient ?? null), set.map((x) => x.policy.fhirUser ?? null), set.map((x) => x.policy.subject ?? null),
      set.map((x) => x.policy.grant?.grantId ?? null), set.map((x) => x.policy.grant?.tokenId ?? null),
      set.map((x) => countsAgainstCap(byId.get(x.id)!.resource as fhir4.Subscription)),
    ],
  );
}

/** Whether a Subscription counts against its subscriber's cap (MAX_SUBSCRIPTIONS_PER_CLIENT): every status but `off`. */
export function countsAgainstCap(sub: fhir4.Subscription): boolean {
  return sub.status !== 'off';
}

/** Deletes the queued notifications of the Subscriptions updated (in `subs`) to another subscriber (`set`, as noted) or another address. */
async function dropStaleQueue(tx: Queryable, subs: readonly CommittedWrite[], set: ReadonlyArray<{ id: string; policy: AccessPolicy }>): Promise<void> {
  const updated = new Map(subs.filter((w) => w.resource && w.previous).map((w) => [w.id, w]));
  if (updated.size === 0) return;
  const resubscribed = set.filter((x) => updated.has(x.id));
  const recorded = new Map((await ownersOf(tx, resubscribed.map((x) => x.id))).map((r) => [r.subscription_id, r]));
  const stale = new Set(resubscribed.filter((x) => !writesAsSubscriber(recorded.get(x.id), x.policy)).map((x) => x.id));
  for (const w of updated.values()) if (readdressed(w.previous as fhir4.Subscription, w.resource as fhir4.Subscription)) stale.add(w.id);
  if (stale.size) await tx.query('DELETE FROM monitoring_delivery WHERE subscription_id = ANY($1::text[])', [[...stale]]);
}

function ownerPolicy(row: OwnerRow, scopes: string[] = row.scopes): AccessPolicy {
  return policyFromScopes(scopes, {
    clientId: row.client_id,
    ...(row.subject ? { subject: row.subject } : {}),
    ...(row.patient ? { patient: row.patient } : {}),
    ...(row.fhir_user ? { fhirUser: row.fhir_user } : {}),
  });
}

/** The grant an owner row records; undefined for the server's own access (AUTH_DISABLED, internal writes), which no grant bounds. */
function grantOf(row: OwnerRow): GrantRef | undefined {
  return recordedGrant({ clientId: row.client_id, scopes: row.scopes, subject: row.subject, grantId: row.grant_id, tokenId: row.token_id });
}

/**
 * How each owner's grant stands now, in one statement for them all (the server's own stands as
 * recorded). Not cached: a grant's end must silence its Subscriptions from the next write on,
 * on every node, and this is one statement per unit that matched something, not per notification.
 */
async function standingsOf(db: Queryable, grants: GrantStandings, owners: readonly OwnerRow[]): Promise<GrantStanding[]> {
  const refs = owners.map(grantOf);
  const answers = await grants(db, refs.filter((r): r is GrantRef => r !== undefined));
  let next = 0;
  return refs.map((ref, i) => (ref ? answers[next++]! : { alive: true, scopes: owners[i]!.scopes }));
}

/** The recorded subscribers of the Subscriptions `ids` (none for one without). */
/** The recorded subscriber of each of `ids` that has one (./subscription-holder.ts). */
export async function recordedSubscribers(db: Queryable, ids: readonly string[]): Promise<Map<string, OwnerRow>> {
  return new Map((await ownersOf(db, ids)).map((row) => [row.subscription_id, row]));
}

async function ownersOf(db: Queryable, ids: readonly string[]): Promise<OwnerRow[]> {
  if (ids.length === 0) return [];
  return (await db.query<OwnerRow>('SELECT * FROM subscription_owner WHERE subscription_id = ANY($1::text[])', [ids])).rows;
}

/** The standing of the grant of each Subscription of `ids` (delivery, turning off); one without a recorded subscriber has none. */
export async function subscriptionStandings(db: Queryable, grants: GrantStandings, ids: readonly string[]): Promise<Map<string, GrantStanding>> {
  const rows = await ownersOf(db, ids);
  const standings = await standingsOf(db, grants, rows);
  const byId = new Map(rows.map((r, i) => [r.subscription_id, standings[i]!]));
  for (const id of ids) if (!byId.has(id)) byId.set(id, { alive: false, reason: 'no subscriber was recorded for it' });
  return byId;
}

/** A notification waiting in monitoring_delivery, as the delivery worker claims it. */
export interface QueuedNotification {
  id: string;
  subscription_id: string;
  resource_type: string;
  resource_id: string;
  version_id: number;
  with_payload: boolean;
}

/** Whether a queued notification goes out now, and with which resource text (only when its subscriber may still read it). */
export type DeliveryVerdict = { readonly send: false; readonly reason: string } | { readonly send: true; readonly payload?: string };

/**
 * Judges queued notifications again just before they are sent, as their queueing judged them
 * (enqueueNotifications): the grant that set the Subscription must stand, the subscriber must
 * still find the version under that grant's scopes as they stand now and the patient's Consents
 * as they are now, and the resource goes along only if it may still read it. A retry can come an
 * hour after the queueing, time enough for a registration to be narrowed or a Consent withdrawn.
 * One statement for the owners, one for the grants, then one read per notification.
 */
export async function judgeQueued(db: Queryable, grants: GrantStandings, queued: readonly QueuedNotification[]): Promise<Map<string, DeliveryVerdict>> {
  const ids = [...new Set(queued.map((q) => q.subscription_id))];
  const rows = await ownersOf(db, ids);
  const standings = await standingsOf(db, grants, rows);
  const policies = new Map<string, Promise<AccessPolicy | DeliveryVerdict>>();
  const policyOf = (id: string): Promise<AccessPolicy | DeliveryVerdict> => {
    const i = rows.findIndex((r) => r.subscription_id === id);
    if (i === -1) return Promise.resolve({ send: false, reason: 'no subscriber was recorded for it' });
    const standing = standings[i]!;
    if (!standing.alive) return Promise.resolve({ send: false, reason: standing.reason });
    return withConsents(db, ownerPolicy(rows[i]!, standing.scopes), { fresh: true });
  };
  const verdicts = new Map<string, DeliveryVerdict>();
  for (const q of queued) {
    if (!policies.has(q.subscription_id)) policies.set(q.subscription_id, policyOf(q.subscription_id));
    const policy = await policies.get(q.subscription_id)!;
    verdicts.set(q.id, 'send' in policy ? policy : await judgeOne(db, policy, q));
  }
  return verdicts;
}

async function judgeOne(db: Queryable, policy: AccessPolicy, q: QueuedNotification): Promise<DeliveryVerdict> {
  const json = (await readVersion(db, q.resource_type, q.resource_id, q.version_id))?.json;
  // Erased since it was queued (a delete is never queued: enqueueNotifications skips them).
  if (!json) return { send: false, reason: 'the version is no longer stored' };
  const version = { id: q.resource_id, resource: JSON.parse(json) as fhir4.FhirResource };
  const may = async (action: 'r' | 's'): Promise<boolean> => {
    const limits = limitsOrNone(policy, q.resource_type, action);
    if (!limits) return false;
    // A limit only the database can judge is judged on the current version (the one indexed).
    const seen = visibleInMemory(q.resource_type, [version], limits) ?? (await visible(db, q.resource_type, policy, new URLSearchParams(), [q.resource_id], limits));
    return seen.has(q.resource_id);
  };
  if (!(await may('s'))) return { send: false, reason: 'its subscriber may no longer see it' };
  return q.with_payload && (await may('r')) ? { send: true, payload: json } : { send: true };
}

/** Channels whose notifications wait in monitoring_delivery; websocket ones are announced at commit (./websocket.ts). */
const QUEUED_CHANNELS = ['rest-hook', 'email'];
export const CHANNELS = [...QUEUED_CHANNELS, 'websocket'];

/** The database channel (NOTIFY) on which committed websocket notifications reach every server process. */
export const WEBSOCKET_NOTIFY_CHANNEL = 'fhir_subscription_ping';

/**
 * The live Subscriptions, cached: the query cost 3–6 ms per ingest transaction on the
 * bench, for a table that changes a few times a day. A Subscription written through this
 * process drops the cache in its own transaction; one written by another process drops it when
 * that write's NOTIFY on SUBSCRIPTIONS_CHANGED_CHANNEL arrives (at its commit), and at the latest
 * after SUBSCRIPTION_CACHE_MS, should the listening connection be down.
 */
const SUBSCRIPTION_CACHE_MS = 2000;
export const SUBSCRIPTIONS_CHANGED_CHANNEL = 'fhir_subscriptions_changed';
let cache: { at: number; subscriptions: LiveSubscription[] } | undefined;

export function forgetSubscriptions(): void {
  cache = undefined;
}

/** The stored Subscriptions that may still be notified (status active or error, a channel this server delivers), with their versions. */
export async function readLiveSubscriptions(db: Queryable): Promise<Map<string, { resource: fhir4.Subscription; versionId: number }>> {
  const ids = await findMatchingIds(db, 'Subscription', new URLSearchParams({ status: DELIVERED_STATUSES.join(','), type: CHANNELS.join(',') }));
  return readVersioned<fhir4.Subscription>(db, 'Subscription', ids);
}

/** Whether a Subscription's `end` has passed: it is silent from then on, and turned off (./subscription-end.ts). */
export function hasEnded(sub: fhir4.Subscription, now: number): boolean {
  return sub.end !== undefined && Date.parse(sub.end) < now;
}

async function liveSubscriptions(tx: Queryable): Promise<LiveSubscription[]> {
  if (cache && Date.now() - cache.at < SUBSCRIPTION_CACHE_MS) return cache.subscriptions;
  const subs = await readLiveSubscriptions(tx);
  const ids = [...subs.keys()];
  const ownerOf = new Map((await ownersOf(tx, ids)).map((r) => [r.subscription_id, r]));
  const now = Date.now();
  const subscriptions = [...subs].flatMap(([id, { resource: sub }]) => {
    const criteria = parseCriteria(sub.criteria);
    // No recorded subscriber, no notifications: nobody's grant to match them under.
    const owner = ownerOf.get(id);
    // Past its `end`, a Subscription is silent (a dashboard's per-session one, for instance).
    return criteria && owner && !hasEnded(sub, now)
      ? [{ id, channel: sub.channel.type, criteria, matcher: criteriaMatcher(criteria.type, criteria.params), wantsPayload: Boolean(sub.channel.payload), owner, policy: ownerPolicy(owner) }]
      : [];
  });
  cache = { at: Date.now(), subscriptions };
  return subscriptions;
}

function limitsOrNone(policy: AccessPolicy, type: string, action: 'r' | 's'): ReadLimits | undefined {
  try {
    return readLimits(policy, type, action);
  } catch (err) {
    if (err instanceof OperationOutcomeError) return undefined;
    throw err;
  }
}

/** The ids of `ids` of `type` that `limits` let the subscriber (`policy`) see and that match `params`. */
async function visible(tx: Queryable, type: string, policy: AccessPolicy, params: URLSearchParams, ids: readonly string[], limits: ReadLimits): Promise<Set<string>> {
  const query = new URLSearchParams(params);
  for (const [k, v] of limits.constraint ?? []) query.append(k, v);
  const found = new Set<string>();
  // `_id` takes at most MAX_OR_VALUES ids, as a client's search does: a unit that wrote more of
  // the type (a 101-entry transaction) is asked about in slices, not refused (robustness probe).
  for (const slice of idSlices(ids)) {
    query.set('_id', slice.join(','));
    for (const id of await findMatchingIds(tx, type, query, undefined, limits.compartmentPatientId, policyReach(policy), NOTIFY_SEARCH_LIMITS)) found.add(id);
  }
  return found;
}

/**
 * The server's own search, not a client's: the criteria met the total-terms cap when the
 * Subscription was accepted, but they plus the grant's constraint plus a slice of ids may pass
 * it, and a notification must not be lost to a cap meant for what clients ask.
 */
const NOTIFY_SEARCH_LIMITS = { ...DEFAULT_INPUT_LIMITS, maxSearchTerms: Infinity };

/**
 * The writes `limits` let the subscriber see, judged in memory by the access policy's own
 * judgement of one version (`withinLimits`, as a vread is judged); undefined when a limit needs
 * the database (a granular constraint it cannot judge), and the search decides.
 */
function visibleInMemory(type: string, writes: ReadonlyArray<Pick<CommittedWrite, 'id' | 'resource'>>, limits: ReadLimits): Set<string> | undefined {
  try {
    return new Set(writes.filter((w) => withinLimits(type, w.resource!, limits)).map((w) => w.id));
  } catch (err) {
    if (err instanceof OperationOutcomeError && err.status === 403) return undefined;
    throw err;
  }
}

/**
 * Queues a notification for every live Subscription whose criteria match a committed write
 * under its subscriber's grant while that grant stands (one statement asks after the grants of
 * the Subscriptions whose criteria may match), and one INSERT (websocket ones: one NOTIFY). Criteria of plain
 * token and reference filters, and grants the access policy can judge on the version itself,
 * are judged in memory; anything else is one search per Subscription whose criteria may match,
 * restricted to the written ids. Returns how many were queued.
 */
export async function enqueueNotifications(uow: UnitOfWork, committed: readonly CommittedWrite[], grants: GrantStandings): Promise<number> {
  const { tx } = uow;
  const written = committed.filter((w) => w.resource && w.type !== 'Subscription');
  if (written.length === 0) return 0;
  const deliveries: Array<{ sub: string; w: CommittedWrite; payload: boolean }> = [];
  const pings = new Set<string>();
  // Consents read inside this transaction are cached like any request's, unless it wrote one.
  const fresh = committed.some((w) => GOVERNING_TYPES.has(w.type));
  // Before any grant, Consent or search is read: most Subscriptions name another patient or code
  // than a given write's.
  const considered = (await liveSubscriptions(tx)).flatMap((sub) => {
    const candidates = written.filter((w) => w.type === sub.criteria.type && sub.matcher.mayMatch(w.resource!));
    return candidates.length ? [{ sub, candidates }] : [];
  });
  if (considered.length === 0) return 0;
  // The subscribers' grants as they stand in this transaction: one statement for all of them.
  const standings = await standingsOf(tx, grants, considered.map((c) => c.sub.owner));
  for (const [i, { sub: cached, candidates }] of considered.entries()) {
    const standing = standings[i]!;
    if (!standing.alive) continue;
    const narrowed = standing.scopes.join(' ') === cached.owner.scopes.join(' ') ? cached.policy : ownerPolicy(cached.owner, standing.scopes);
    // The subscriber's grant as the Consents stand in this transaction (decision record 015).
    const sub = { ...cached, policy: await withConsents(tx, narrowed, { fresh }) };
    const searchable = limitsOrNone(sub.policy, sub.criteria.type, 's');
    if (!searchable) continue;
    let matched: Set<string>;
    try {
      matched = (sub.matcher.exact ? visibleInMemory(sub.criteria.type, candidates, searchable) : undefined)
        ?? (await visible(tx, sub.criteria.type, sub.policy, sub.criteria.params, candidates.map((w) => w.id), searchable));
    } catch (err) {
      // Criteria stored before the search grew stricter (a backslash that escapes nothing, a
      // repeated _sort) are refused before any SQL runs: that Subscription matches nothing, and
      // the write that would have notified it is not refused for it.
      if (!(err instanceof OperationOutcomeError && err.status === 400)) throw err;
      uow.ctx.log.warn({ subscription: sub.id, reason: err.issues[0]?.diagnostics }, 'Subscription criteria the search no longer accepts: not notified');
      continue;
    }
    if (matched.size === 0) continue;
    if (sub.channel === 'websocket') {
      // R4's websocket channel says only `ping <id>`: no payload to decide on.
      pings.add(sub.id);
      continue;
    }
    const readable = sub.wantsPayload ? limitsOrNone(sub.policy, sub.criteria.type, 'r') : undefined;
    const shown = candidates.filter((w) => matched.has(w.id));
    const withPayload = readable
      ? (visibleInMemory(sub.criteria.type, shown, readable) ?? (await visible(tx, sub.criteria.type, sub.policy, new URLSearchParams(), [...matched], readable)))
      : new Set<string>();
    for (const w of shown) deliveries.push({ sub: sub.id, w, payload: withPayload.has(w.id) });
  }
  if (pings.size) {
    // NOTIFY is transactional: every server process hears it at commit, never before or on rollback.
    await tx.query(`SELECT pg_notify('${WEBSOCKET_NOTIFY_CHANNEL}', id) FROM unnest($1::text[]) AS id`, [[...pings]]);
  }
  if (deliveries.length === 0) return 0;
  await tx.query(
    `INSERT INTO monitoring_delivery (subscription_id, resource_type, resource_id, version_id, with_payload)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bool[])`,
    [deliveries.map((d) => d.sub), deliveries.map((d) => d.w.type), deliveries.map((d) => d.w.id), deliveries.map((d) => d.w.versionId), deliveries.map((d) => d.payload)],
  );
  return deliveries.length;
}
