-- Issue 16: the hot path answers a date filter from the `date` range copied onto token rows,
-- without a probe of {{table}}_date per row, when that copy is exact: the resource has one
-- `date` range. date_multi marks the resources with several (a Timing's events), whose copy is
-- only an envelope; the index carries the mark so the check stays index-only.
ALTER TABLE {{table}}_token ADD COLUMN IF NOT EXISTS date_multi boolean NOT NULL DEFAULT false;
UPDATE {{table}}_token SET date_multi = true
  WHERE id IN (SELECT id FROM {{table}}_date WHERE param = 'date' GROUP BY id HAVING count(*) > 1);
DROP INDEX IF EXISTS {{table}}_token_patient_idx;
CREATE INDEX IF NOT EXISTS {{table}}_token_patient_idx
  ON {{table}}_token (patient, param, code_hash, date_high DESC NULLS LAST, id) INCLUDE (hash, date_low, date_multi);
