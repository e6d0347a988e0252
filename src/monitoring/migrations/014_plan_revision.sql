-- Issue 16, a create in one round trip: a node keeps each patient's active plans in memory
-- (src/monitoring/plan-cache.ts) and checks its copy inside the write that relies on it instead
-- of reading the plans first. Every write of a plan row moves its revision (stored_at is the
-- transaction's start time, which two writes can share), so a patient's plans are the same
-- exactly when their (careplan_id, revision) pairs are.
CREATE SEQUENCE IF NOT EXISTS monitoring_plan_revision;
ALTER TABLE monitoring_plan ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT nextval('monitoring_plan_revision');

-- The check's verdict: casting false to it raises check_violation (23514), which rolls the write
-- back to be replayed with a fresh read. A cast, not a plpgsql function: measured 6 µs a check
-- against 32–52 µs for the same comparison inside a function.
DO $$
BEGIN
  CREATE DOMAIN monitoring_plans_unchanged AS boolean CHECK (VALUE);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
