import { subscriberCode, subscriberOf } from '../access/subscriber';
import { OperationOutcomeError } from '../kernel/outcome';
import type { PendingWrite } from '../pipeline';
import type { Queryable } from '../store/db';
import { countsAgainstCap, recordsItsWriter } from './notify';

/**
 * MAX_SUBSCRIPTIONS_PER_CLIENT: the most Subscriptions one subscriber may hold that are not
 * `off`. Every write is matched against every live Subscription (./notify.ts), and a probe with
 * 500 that match everything made each Observation write cost ~600 ms; without a cap one client
 * could slow every door of the server.
 *
 * The subscriber is the one recorded in subscription_owner (decision 032): the client, for the
 * user (subject) whose token set it, as `writesAsSubscriber` judges. So the users of one SMART
 * app (the dashboard's client is shared by every clinician) each have their own cap. The server's
 * own access (AUTH_DISABLED, internal writes) records client `internal` and no user: without auth,
 * every Subscription counts against that one subscriber.
 *
 * A write is refused only when it adds to its subscriber's count (a create that is not off, an
 * update that turns one on or hands it to another subscriber) and the count would pass the cap:
 * a subscriber over a lowered cap may still update, turn off and delete what it holds. The
 * refusal is a 422 `business-rule` OperationOutcome through `write.reject`: the entry alone in a
 * batch, the whole unit (a transaction Bundle) otherwise.
 *
 * Run in the validate stage, in the write's transaction. The count is taken under a transaction
 * advisory lock on the subscriber, in its own statement before the count (docs/DESIGN.md
 * "Storage"): a concurrent write for the same subscriber waits for this unit's commit and then
 * counts what it wrote (the rules stage keeps subscription_owner.active with every version).
 * Statements: none for units without a Subscription that is not off; else at most one read of the
 * rows replaced, then a lock and a count (one index scan) per subscriber, usually one.
 */

interface OwnerState {
  subscription_id: string;
  client_id: string;
  subject: string | null;
  active: boolean;
}

export async function enforceSubscriptionCap(tx: Queryable, writes: readonly PendingWrite[], max: number): Promise<void> {
  if (max <= 0) return;
  const counting = writes.filter((w) => w.type === 'Subscription' && w.resource && countsAgainstCap(w.resource as fhir4.Subscription));
  if (counting.length === 0) return;
  const replaced = counting.filter((w) => w.previous).map((w) => w.id);
  const prior = new Map(
    replaced.length === 0
      ? []
      : (await tx.query<OwnerState>('SELECT subscription_id, client_id, subject, active FROM subscription_owner WHERE subscription_id = ANY($1::text[])', [replaced])).rows
          .map((r) => [r.subscription_id, r] as const),
  );

  // Whom each write leaves the Subscription with (./notify.ts recordsItsWriter: a create, or an
  // update not an administrator's, records its writer), and whether that adds to their count.
  const byOwner = new Map<string, { clientId: string; subject: string | null; kept: number; adding: PendingWrite[] }>();
  for (const w of counting) {
    const before = prior.get(w.id);
    const records = recordsItsWriter(w);
    const owner = records ? subscriberOf(w.policy) : before && { clientId: before.client_id, subject: before.subject };
    if (!owner) continue; // no subscriber is recorded for it (a row from before issue 11): it counts for no one
    // The one key of a subscriber (src/access/subscriber.ts), as the read limit and the holder check compare.
    const key = subscriberCode(owner);
    const entry = byOwner.get(key) ?? { clientId: owner.clientId, subject: owner.subject ?? null, kept: 0, adding: [] };
    byOwner.set(key, entry);
    if (before?.active && subscriberCode({ clientId: before.client_id, subject: before.subject }) === key) entry.kept++;
    else entry.adding.push(w);
  }
  // What this apply writes is counted here, not from the table (its rows are about to change).
  const written = writes.filter((w) => w.type === 'Subscription').map((w) => w.id);
  // In one order, so that two units adding for the same two subscribers cannot deadlock.
  for (const key of [...byOwner.keys()].sort()) {
    const owner = byOwner.get(key)!;
    if (owner.adding.length === 0) continue;
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`subscription-owner|${key}`]);
    const { rows } = await tx.query<{ n: string }>(
      `SELECT count(*) AS n FROM subscription_owner
        WHERE client_id = $1 AND subject IS NOT DISTINCT FROM $2 AND active AND NOT (subscription_id = ANY($3::text[]))`,
      [owner.clientId, owner.subject, written],
    );
    let held = Number(rows[0]!.n) + owner.kept;
    for (const w of owner.adding) {
      if (held >= max) {
        w.reject(new OperationOutcomeError(422, {
          code: 'business-rule',
          diagnostics: `this subscriber (client ${owner.clientId}${owner.subject ? `, user ${owner.subject}` : ''}) already holds ${held} Subscriptions that are not off, the most allowed (MAX_SUBSCRIPTIONS_PER_CLIENT = ${max}); delete one, or set one's status to off, first`,
          expression: ['Subscription.status'],
        }));
      } else {
        held++;
      }
    }
  }
}
