-- Issue 16: a patient's search with no code to drive it (`Observation?patient=X&_sort=-date`,
-- `…&date=ge…`, `Observation?patient=X`) fetched every resource of the patient, checked each
-- and sorted them: 59 ms for a patient with 4,000 readings. Every resource with a patient key
-- now has one driving reference row (src/search/extract.ts: its key row), marked `drives` and
-- carrying the copy of the resource's `date` range the token table's driving rows carry; the
-- index below makes such a search one range scan of the patient's rows, newest first.
ALTER TABLE {{table}}_reference ADD COLUMN IF NOT EXISTS date_low timestamptz;
ALTER TABLE {{table}}_reference ADD COLUMN IF NOT EXISTS date_high timestamptz;
ALTER TABLE {{table}}_reference ADD COLUMN IF NOT EXISTS date_multi boolean NOT NULL DEFAULT false;
ALTER TABLE {{table}}_reference ADD COLUMN IF NOT EXISTS drives boolean NOT NULL DEFAULT false;
-- Rows written before this migration: one row per resource naming its patient key. Which of
-- several such rows (a subject and a performer naming the same Patient) is immaterial to the
-- search, which needs exactly one; the next write of the resource marks its key row.
-- One UPDATE, so that each row gets one new version before the index is built.
UPDATE {{table}}_reference r
  SET drives = true, date_low = e.low, date_high = e.high, date_multi = coalesce(e.n > 1, false)
  FROM (SELECT DISTINCT ON (id) ctid AS row, id FROM {{table}}_reference
        WHERE patient IS NOT NULL AND target_type = 'Patient' AND target_id = patient
        ORDER BY id, param) k
  LEFT JOIN (SELECT id, min(low) AS low, max(high) AS high, count(*) AS n FROM {{table}}_date
             WHERE param = 'date' GROUP BY id) e ON e.id = k.id
  WHERE r.ctid = k.row;
CREATE INDEX IF NOT EXISTS {{table}}_reference_patient_idx
  ON {{table}}_reference (patient, date_high DESC NULLS LAST, id) INCLUDE (date_low, date_multi)
  WHERE drives;
