-- Monitoring rules (src/monitoring, docs/decisions/005-monitoring-rules.md). Every table is
-- maintained in the write transaction of the resources it derives from, so it can never
-- disagree with them.

-- The compiled limits and schedule of each CarePlan with a Patient subject: the hot lookup of
-- an Observation batch ("the active plans of these patients") is one index scan of this table,
-- not a JSON walk of CarePlans and Goals per reading.
CREATE TABLE IF NOT EXISTS monitoring_plan (
  careplan_id  text PRIMARY KEY,
  patient      text        NOT NULL,
  active       boolean     NOT NULL,
  period_start timestamptz,            -- NULL: open
  period_end   timestamptz,            -- NULL: open; inclusive
  limits       jsonb       NOT NULL,   -- [{measure, display, unit, low, high, critical, goal}]
  schedule     jsonb       NOT NULL,   -- [{measure, display, everyMs}]
  goal_ids     text[]      NOT NULL,   -- stored Goals it reads, to recompile when one changes
  stored_at    timestamptz NOT NULL    -- first stored: adherence windows ending earlier are not judged
);
CREATE INDEX IF NOT EXISTS monitoring_plan_patient_idx ON monitoring_plan (patient) WHERE active;
CREATE INDEX IF NOT EXISTS monitoring_plan_goal_idx ON monitoring_plan USING gin (goal_ids);

-- The Flags this capability raised, by what they are about, so that a breach finds the active
-- Flag to update (no alert storm). `active` follows the Flag's status on every Flag write.
CREATE TABLE IF NOT EXISTS monitoring_flag (
  flag_id     text PRIMARY KEY,
  patient     text    NOT NULL,
  careplan_id text    NOT NULL,
  measure     text    NOT NULL,
  direction   text    NOT NULL,          -- high | low | missed
  active      boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS monitoring_flag_key_idx ON monitoring_flag (careplan_id, measure, direction) WHERE active;

-- Every judged breach once: re-judging ($evaluate) or re-writing an Observation never raises
-- it twice.
CREATE TABLE IF NOT EXISTS monitoring_breach (
  observation_id text NOT NULL,
  careplan_id    text NOT NULL,
  measure        text NOT NULL,
  direction      text NOT NULL,
  flag_id        text NOT NULL,
  PRIMARY KEY (observation_id, careplan_id, measure, direction)
);

-- Adherence: the end of the last due window judged per plan and measure.
CREATE TABLE IF NOT EXISTS monitoring_adherence (
  careplan_id   text NOT NULL,
  measure       text NOT NULL,
  checked_until timestamptz NOT NULL,
  PRIMARY KEY (careplan_id, measure)
);

-- Subscription notifications waiting to be delivered (rest-hook). Rows are written in the
-- transaction of the change they announce, so a commit is never without its notification;
-- deleted when delivered or abandoned.
CREATE TABLE IF NOT EXISTS monitoring_delivery (
  id              bigserial PRIMARY KEY,
  subscription_id text        NOT NULL,
  resource_type   text        NOT NULL,
  resource_id     text        NOT NULL,
  version_id      integer     NOT NULL,
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt    timestamptz NOT NULL DEFAULT now(),
  last_error      text
);
CREATE INDEX IF NOT EXISTS monitoring_delivery_due_idx ON monitoring_delivery (next_attempt);
