import type { FhirContext } from '../fhir/context';
import { badRequest, OperationOutcomeError, unprocessable } from '../kernel/outcome';
import { isSupportedType } from '../kernel/resource-types';
import { type CommittedWrite, executeWrites } from '../pipeline';
import { findMatchingIds } from '../search';
import type { Queryable } from '../store/db';
import { readResource, readResources, readVersion } from '../store/repository';

/**
 * FHIR R4 Subscriptions, rest-hook channel (R4 subscription.html). A matching change is queued
 * in monitoring_delivery inside its own transaction, then POSTed after commit by the
 * DeliveryWorker, retried with doubling delays, across restarts; failures are recorded in the
 * Subscription's status and error.
 */

const DELIVERED_STATUSES = ['active', 'error'];
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '0.0.0.0']);

function parseCriteria(criteria: string | undefined): { type: string; params: URLSearchParams } | undefined {
  if (!criteria) return undefined;
  const [type, query = ''] = criteria.split('?', 2) as [string, string | undefined];
  return { type, params: new URLSearchParams(query) };
}

/** True when `endpoint` is this server's own FHIR base: a notification there would loop. */
function isOwnBase(ctx: FhirContext, endpoint: URL, port: number | undefined): boolean {
  const normalized = `${endpoint.origin}${endpoint.pathname}`.replace(/\/+$/, '');
  if (normalized === ctx.baseUrl || normalized.startsWith(`${ctx.baseUrl}/`)) return true;
  const ownPort = String(port ?? ctx.config.port);
  const endpointPort = endpoint.port || (endpoint.protocol === 'https:' ? '443' : '80');
  const ownHost = LOOPBACK.has(endpoint.hostname) || endpoint.hostname === ctx.config.host || endpoint.hostname === new URL(ctx.baseUrl).hostname;
  return ownHost && endpointPort === ownPort && (endpoint.pathname === '/fhir' || endpoint.pathname.startsWith('/fhir/'));
}

/**
 * Checks a Subscription before it is stored and accepts it (`requested` becomes `active`).
 * Returns whether the resource changed.
 */
export async function acceptSubscription(ctx: FhirContext, tx: Queryable, sub: fhir4.Subscription, listeningPort: number | undefined): Promise<boolean> {
  if (sub.channel.type !== 'rest-hook') {
    throw unprocessable(`channel type '${sub.channel.type}' is not supported; this server delivers rest-hook only`, ['Subscription.channel.type']);
  }
  let endpoint: URL;
  try {
    endpoint = new URL(sub.channel.endpoint ?? '');
  } catch {
    throw unprocessable('a rest-hook Subscription needs an absolute http(s) endpoint', ['Subscription.channel.endpoint']);
  }
  if (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') {
    throw unprocessable(`endpoint scheme '${endpoint.protocol}' is not allowed; use http or https`, ['Subscription.channel.endpoint']);
  }
  if (isOwnBase(ctx, endpoint, listeningPort)) {
    throw unprocessable('the endpoint is this server\'s own FHIR base; notifications would loop', ['Subscription.channel.endpoint']);
  }
  for (const [i, header] of (sub.channel.header ?? []).entries()) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:\s?[^\r\n]*$/.test(header)) {
      throw unprocessable(`header '${header}' is not 'Name: value'`, [`Subscription.channel.header[${i}]`]);
    }
  }
  const criteria = parseCriteria(sub.criteria);
  if (!criteria || !isSupportedType(criteria.type)) {
    throw unprocessable(`criteria '${sub.criteria}' must be a search on a supported type, e.g. Flag?status=active`, ['Subscription.criteria']);
  }
  try {
    // Parses and plans the search; no row has this id.
    await findMatchingIds(tx, criteria.type, new URLSearchParams([...criteria.params, ['_id', '-']]), 1);
  } catch (err) {
    if (err instanceof OperationOutcomeError) throw badRequest(`Subscription.criteria: ${err.message}`, ['Subscription.criteria']);
    throw err;
  }
  if (sub.status === 'requested') {
    sub.status = 'active';
    return true;
  }
  return false;
}

interface LiveSubscription {
  id: string;
  criteria: { type: string; params: URLSearchParams };
}

/**
 * The live rest-hook Subscriptions, cached: the query cost 3–6 ms per ingest transaction on the
 * bench, for a table that changes a few times a day. A Subscription written through this
 * process drops the cache in its own transaction; one written by another process is seen
 * within SUBSCRIPTION_CACHE_MS.
 */
const SUBSCRIPTION_CACHE_MS = 2000;
let cache: { at: number; subscriptions: LiveSubscription[] } | undefined;

export function forgetSubscriptions(): void {
  cache = undefined;
}

async function liveSubscriptions(tx: Queryable): Promise<LiveSubscription[]> {
  if (cache && Date.now() - cache.at < SUBSCRIPTION_CACHE_MS) return cache.subscriptions;
  const ids = await findMatchingIds(tx, 'Subscription', new URLSearchParams({ status: DELIVERED_STATUSES.join(','), type: 'rest-hook' }));
  const subscriptions = [...(await readResources<fhir4.Subscription>(tx, 'Subscription', ids))].flatMap(([id, sub]) => {
    const criteria = parseCriteria(sub.criteria);
    return criteria ? [{ id, criteria }] : [];
  });
  cache = { at: Date.now(), subscriptions };
  return subscriptions;
}

/**
 * Queues a notification for every live Subscription whose criteria match a committed write:
 * one search per subscription of a written type, restricted to the written ids, and one INSERT.
 */
export async function enqueueNotifications(tx: Queryable, committed: readonly CommittedWrite[]): Promise<number> {
  if (committed.some((w) => w.type === 'Subscription')) forgetSubscriptions();
  const written = committed.filter((w) => w.resource && w.type !== 'Subscription');
  if (written.length === 0) return 0;
  const deliveries: Array<{ sub: string; w: CommittedWrite }> = [];
  for (const { id, criteria } of await liveSubscriptions(tx)) {
    const candidates = written.filter((w) => w.type === criteria.type);
    if (candidates.length === 0) continue;
    const params = new URLSearchParams(criteria.params);
    params.set('_id', candidates.map((w) => w.id).join(','));
    const matched = new Set(await findMatchingIds(tx, criteria.type, params));
    for (const w of candidates) if (matched.has(w.id)) deliveries.push({ sub: id, w });
  }
  if (deliveries.length === 0) return 0;
  await tx.query(
    `INSERT INTO monitoring_delivery (subscription_id, resource_type, resource_id, version_id)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])`,
    [deliveries.map((d) => d.sub), deliveries.map((d) => d.w.type), deliveries.map((d) => d.w.id), deliveries.map((d) => d.w.versionId)],
  );
  return deliveries.length;
}

interface Delivery {
  id: string;
  subscription_id: string;
  resource_type: string;
  resource_id: string;
  version_id: number;
  attempts: number;
}

/** How long a claimed delivery is hidden from other workers while it is being POSTed. */
const LEASE = '2 minutes';
const BATCH = 20;
const POLL_MS = 1000;
const TIMEOUT_MS = 10_000;

/**
 * Delivers queued notifications. Claims due rows with FOR UPDATE SKIP LOCKED (several server
 * processes share the queue), POSTs outside any transaction (a slow subscriber must not hold
 * the embedded database's one transaction), then deletes or reschedules the row.
 */
export class DeliveryWorker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly ctx: FhirContext) {}

  start(): void {
    this.stopped = false;
    this.kick();
  }

  /** Runs the queue now (after a commit that queued something), or right after the current run. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.running = this.drain()
      .catch((err: unknown) => this.ctx.log.error({ err }, 'subscription delivery failed'))
      .finally(() => {
        this.running = undefined;
        if (this.stopped) return;
        if (this.again) {
          this.again = false;
          this.kick();
        } else {
          this.timer = setTimeout(() => this.kick(), POLL_MS);
          this.timer.unref();
        }
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private async drain(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const { rows } = await this.ctx.db.query<Delivery>(
        `UPDATE monitoring_delivery SET next_attempt = now() + interval '${LEASE}'
          WHERE id IN (SELECT id FROM monitoring_delivery WHERE next_attempt <= now() ORDER BY next_attempt, id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)
          RETURNING id, subscription_id, resource_type, resource_id, version_id, attempts`,
      );
      if (rows.length === 0) return;
      rows.sort((a, b) => Number(a.id) - Number(b.id));
      await Promise.all(rows.map((d) => this.deliver(d)));
    }
  }

  private async deliver(d: Delivery): Promise<void> {
    const sub = (await readResource<fhir4.Subscription>(this.ctx.db, 'Subscription', d.subscription_id))?.resource;
    if (!sub || !DELIVERED_STATUSES.includes(sub.status)) {
      await this.ctx.db.query('DELETE FROM monitoring_delivery WHERE id = $1', [d.id]);
      return;
    }
    let failure: string | undefined;
    try {
      const headers: Record<string, string> = {};
      for (const h of sub.channel.header ?? []) {
        const at = h.indexOf(':');
        headers[h.slice(0, at).trim()] = h.slice(at + 1).trim();
      }
      let body: string | undefined;
      if (sub.channel.payload) {
        const version = await readVersion(this.ctx.db, d.resource_type, d.resource_id, d.version_id);
        body = version?.json ?? undefined;
        headers['content-type'] = sub.channel.payload;
      }
      const res = await fetch(sub.channel.endpoint!, { method: 'POST', headers, body, signal: AbortSignal.timeout(TIMEOUT_MS) });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) failure = `HTTP ${res.status}`;
    } catch (err) {
      failure = err instanceof Error ? `${err.name}: ${(err.cause as Error | undefined)?.message ?? err.message}` : String(err);
    }
    const what = `${d.resource_type}/${d.resource_id}/_history/${d.version_id}`;
    if (!failure) {
      await this.ctx.db.query('DELETE FROM monitoring_delivery WHERE id = $1', [d.id]);
      if (sub.status === 'error') await this.recordStatus(d.subscription_id, 'active', undefined);
      return;
    }
    const attempts = d.attempts + 1;
    if (attempts >= this.ctx.config.subscriptionMaxAttempts) {
      await this.ctx.db.query('DELETE FROM monitoring_delivery WHERE id = $1', [d.id]);
      await this.recordStatus(d.subscription_id, 'error', `notification of ${what} abandoned after ${attempts} attempts: ${failure}`);
      return;
    }
    const delay = Math.min(this.ctx.config.subscriptionRetryBaseMs * 2 ** (attempts - 1), 3_600_000);
    await this.ctx.db.query(
      `UPDATE monitoring_delivery SET attempts = $2, last_error = $3, next_attempt = now() + make_interval(secs => $4::double precision / 1000) WHERE id = $1`,
      [d.id, attempts, failure, delay],
    );
    if (sub.status !== 'error' || sub.error !== `notification of ${what} failed: ${failure}; retrying`) {
      await this.recordStatus(d.subscription_id, 'error', `notification of ${what} failed: ${failure}; retrying`);
    }
  }

  /** Status and error go through the write pipeline: versioned, audited, visible to the subscriber's owner. */
  private async recordStatus(id: string, status: 'active' | 'error', error: string | undefined): Promise<void> {
    const stored = await readResource<fhir4.Subscription>(this.ctx.db, 'Subscription', id);
    if (!stored) return;
    const sub = stored.resource;
    if (sub.status !== 'active' && sub.status !== 'error') return;
    sub.status = status;
    if (error) sub.error = error;
    else delete sub.error;
    try {
      await executeWrites(this.ctx, [{ kind: 'update', type: 'Subscription', id, resource: sub, ifMatch: stored.versionId }]);
    } catch (err) {
      // A concurrent edit of the Subscription wins; the next attempt records again.
      this.ctx.log.warn({ err, subscription: id }, 'could not record the subscription status');
    }
  }
}
