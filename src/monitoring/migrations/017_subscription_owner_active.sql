-- Whether a Subscription counts against its subscriber's cap (MAX_SUBSCRIPTIONS_PER_CLIENT,
-- src/monitoring/subscription-cap.ts): its status is not `off`. Kept by the rules stage with
-- every version of the Subscription, in its transaction, as the rest of this row is; the
-- partial index serves the count, taken under the subscriber's lock.
ALTER TABLE subscription_owner ADD COLUMN IF NOT EXISTS active boolean NOT NULL DEFAULT true;
-- Rows from before: read once from the Subscriptions as stored (the store's table, read only
-- here; from now on the column is written with each version). A database migrated for a few
-- types only (tests) may have no Subscription table, and then no Subscription.
DO $$
BEGIN
  IF to_regclass('subscription') IS NOT NULL THEN
    UPDATE subscription_owner o SET active = false
     WHERE NOT EXISTS (SELECT 1 FROM subscription s
                        WHERE s.id = o.subscription_id AND NOT s.deleted AND s.content->>'status' IS DISTINCT FROM 'off');
  END IF;
END
$$;
CREATE INDEX IF NOT EXISTS subscription_owner_active_idx ON subscription_owner (client_id, subject) WHERE active;
