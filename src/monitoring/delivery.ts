import type { GrantStandings } from '../access/grant';
import type { FhirContext } from '../fhir/context';
import { KickedLoop } from '../kernel/kicked-loop';
import { executeWrites } from '../pipeline';
import { readResource } from '../store/repository';
import { type EndpointPolicy, postNotification } from './endpoint';
import { composeAlertEmail, Mailer } from './email';
import { deliveredHeaders, type HeaderLine, isServerHeader } from './header-secrets';
import { DELIVERED_STATUSES, type DeliveryVerdict, judgeQueued, type QueuedNotification } from './notify';
import { mailtoAddress } from './subscription-accept';

/**
 * Delivers queued notifications (rest-hook and email, R4 subscription.html). Claims due rows with
 * FOR UPDATE SKIP LOCKED and a lease (several server processes share the queue), POSTs or mails outside any
 * transaction (a slow subscriber must not hold the embedded database's one transaction), then
 * deletes or reschedules the row with doubling delays, across restarts.
 *
 * The Subscription resource changes only when its state does (active → error on the first
 * failure, error → active on the next success): a subscriber that is down for a day must not
 * grow a new Subscription version per attempt. Attempts and the last error are in the queue.
 */

interface Delivery extends QueuedNotification {
  attempts: number;
}

const BATCH = 20;
const POLL_MS = 1000;
const TIMEOUT_MS = 10_000;
/** How the `error` of a Subscription that lost a notification begins. */
const ABANDONED = 'notifications abandoned';

export class DeliveryWorker {
  private readonly mailer: Mailer;
  private readonly loop: KickedLoop;

  constructor(
    private readonly ctx: FhirContext,
    private readonly endpoints: EndpointPolicy,
    private readonly grants: GrantStandings,
  ) {
    this.mailer = new Mailer(ctx.config.alerts);
    this.loop = new KickedLoop(() => this.drain(), (err) => this.ctx.log.error({ err }, 'subscription delivery failed'), POLL_MS);
  }

  start(): void {
    this.loop.start();
  }

  /** Runs the queue now (after a commit that queued something), or right after the current run. */
  kick(): void {
    this.loop.kick();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
    this.mailer.close();
  }

  private async drain(): Promise<void> {
    for (;;) {
      if (this.loop.stopped) return;
      const { rows } = await this.ctx.db.query<Delivery>(
        `UPDATE monitoring_delivery SET next_attempt = now() + make_interval(secs => $1::double precision / 1000)
          WHERE id IN (SELECT id FROM monitoring_delivery WHERE next_attempt <= now() ORDER BY next_attempt, id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)
          RETURNING id, subscription_id, resource_type, resource_id, version_id, attempts, with_payload`,
        [this.ctx.config.subscriptionLeaseMs],
      );
      if (rows.length === 0) return;
      rows.sort((a, b) => Number(a.id) - Number(b.id));
      // Judged again just before sending, as when queued: not sent once the grant has ended
      // (decision 032) or its subscriber may no longer see the version; no resource once it may
      // no longer read it.
      const verdicts = await judgeQueued(this.ctx.db, this.grants, rows);
      await Promise.all(rows.map((d) => this.deliver(d, verdicts.get(d.id)!)));
    }
  }

  private async deliver(d: Delivery, verdict: DeliveryVerdict): Promise<void> {
    const stored = await readResource<fhir4.Subscription>(this.ctx.db, 'Subscription', d.subscription_id);
    const sub = stored?.resource;
    if (!sub || !DELIVERED_STATUSES.includes(sub.status) || !verdict.send) {
      await this.ctx.db.query('DELETE FROM monitoring_delivery WHERE id = $1', [d.id]);
      return;
    }
    // The stored values (the resource holds only their masks, decision 033), read with the version.
    const headers = sub.channel.type === 'rest-hook' ? await deliveredHeaders(this.ctx.db, { ...sub, id: d.subscription_id }) : [];
    // Still queued? Read after the Subscription and its headers: an update that gave it another
    // subscriber or address since this row was claimed deleted the row in the transaction that
    // wrote what was just read (recordSubscribers), so such a version is never sent this row.
    const { rows } = await this.ctx.db.query('SELECT 1 FROM monitoring_delivery WHERE id = $1', [d.id]);
    if (rows.length === 0) return;
    let failure: string | undefined;
    try {
      failure = sub.channel.type === 'email' ? await this.sendEmail(sub, d, verdict.payload) : await this.postRestHook(sub, d, verdict.payload, headers);
    } catch (err) {
      failure = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
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
      this.ctx.log.warn({ subscription: d.subscription_id, notification: what, attempts, failure }, 'notification abandoned');
      // A lost notification is said where its owner looks, the Subscription's `error` (it stays in
      // its history after a success clears it); once until then, not one version per notification.
      if (!sub.error?.startsWith(ABANDONED)) {
        await this.recordStatus(d.subscription_id, 'error', `${ABANDONED}: ${what} after ${attempts} attempts (${failure}); later ones may be too, until one is delivered`);
      }
      return;
    }
    const delay = Math.min(this.ctx.config.subscriptionRetryBaseMs * 2 ** (attempts - 1), 3_600_000);
    await this.ctx.db.query(
      `UPDATE monitoring_delivery SET attempts = $2, last_error = $3, next_attempt = now() + make_interval(secs => $4::double precision / 1000) WHERE id = $1`,
      [d.id, attempts, failure, delay],
    );
    if (sub.status !== 'error') {
      await this.recordStatus(d.subscription_id, 'error', `notification of ${what} failed: ${failure}; retrying up to ${this.ctx.config.subscriptionMaxAttempts} times`);
    }
  }

  /** POSTs the notification; returns the failure, if any. */
  private async postRestHook(sub: fhir4.Subscription, d: Delivery, payload: string | undefined, lines: readonly HeaderLine[]): Promise<string | undefined> {
    // The same key on every attempt of this notification: delivery is at least once (a node that
    // dies after the subscriber's 2xx and before the DELETE leaves the row to be sent again
    // after its lease), so a subscriber discards a repeat by this key (IETF Idempotency-Key).
    const headers: Record<string, string> = { 'idempotency-key': `${d.subscription_id}:${d.id}` };
    // A line naming a header the server sets (stored before such lines were refused) is not sent.
    for (const h of lines) if (!isServerHeader(h.name)) headers[h.name] = h.value;
    let body: string | undefined;
    // The resource only when the subscriber may read it (judged when queued and again now, ./notify.ts).
    if (sub.channel.payload && payload !== undefined) {
      body = payload;
      headers['content-type'] = sub.channel.payload;
    }
    const res = await postNotification(new URL(sub.channel.endpoint!), headers, body, this.endpoints, TIMEOUT_MS);
    return res.status < 200 || res.status >= 300 ? `HTTP ${res.status}` : undefined;
  }

  /** Mails a summary within ALERT_EMAIL_PHI (./email.ts); the resource is read only when the summary may use it. */
  private async sendEmail(sub: fhir4.Subscription, d: Delivery, payload: string | undefined): Promise<string | undefined> {
    const to = mailtoAddress(sub.channel.endpoint);
    if (!to) return `endpoint ${String(sub.channel.endpoint).slice(0, 80)} is not a mailto: address`;
    const mayUse = sub.channel.payload && payload !== undefined && this.ctx.config.alerts.emailPhi !== 'none';
    const mail = composeAlertEmail({
      subscriptionId: d.subscription_id, resourceType: d.resource_type, resourceId: d.resource_id,
      ...(mayUse ? { resource: JSON.parse(payload) as fhir4.Resource } : {}),
      origin: this.ctx.baseUrl.replace(/\/fhir$/, ''), fhirBase: this.ctx.baseUrl,
    }, this.ctx.config.alerts.emailPhi);
    await this.mailer.send(to.address, mail, TIMEOUT_MS);
    return undefined;
  }

  /** Status and error go through the write pipeline: versioned, audited, visible to the subscriber's owner. */
  private async recordStatus(id: string, status: 'active' | 'error', error: string | undefined): Promise<void> {
    const stored = await readResource<fhir4.Subscription>(this.ctx.db, 'Subscription', id);
    if (!stored) return;
    const sub = stored.resource;
    if ((sub.status === status && sub.error === error) || (sub.status !== 'active' && sub.status !== 'error')) return;
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
