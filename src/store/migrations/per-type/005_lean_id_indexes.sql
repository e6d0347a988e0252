-- Issue 16, storage per Observation: the index rows of one resource are found by `id` alone
-- (replaced on update, deleted on erasure, probed per candidate row), never by (id, param)
-- without a heap visit. An index on `id` alone lets PostgreSQL's btree deduplication (13+)
-- keep one key with a list of row pointers per resource instead of one 40-byte key per row:
-- observation_token's grew to 40 MB at 100,000 Observations on (id, param), 9.5 MB on (id).
-- The patient index leaves out rows without a code: a CodeableConcept's text rows serve only
-- `:text`, which is never answered from it (every query on it pins code_hash).
DROP INDEX IF EXISTS {{table}}_token_id_idx;
CREATE INDEX IF NOT EXISTS {{table}}_token_id_idx ON {{table}}_token (id);
DROP INDEX IF EXISTS {{table}}_string_id_idx;
CREATE INDEX IF NOT EXISTS {{table}}_string_id_idx ON {{table}}_string (id);
DROP INDEX IF EXISTS {{table}}_date_id_idx;
CREATE INDEX IF NOT EXISTS {{table}}_date_id_idx ON {{table}}_date (id);
DROP INDEX IF EXISTS {{table}}_quantity_id_idx;
CREATE INDEX IF NOT EXISTS {{table}}_quantity_id_idx ON {{table}}_quantity (id);
DROP INDEX IF EXISTS {{table}}_number_id_idx;
CREATE INDEX IF NOT EXISTS {{table}}_number_id_idx ON {{table}}_number (id);
DROP INDEX IF EXISTS {{table}}_uri_id_idx;
CREATE INDEX IF NOT EXISTS {{table}}_uri_id_idx ON {{table}}_uri (id);
DROP INDEX IF EXISTS {{table}}_reference_id_idx;
CREATE INDEX IF NOT EXISTS {{table}}_reference_id_idx ON {{table}}_reference (id);
DROP INDEX IF EXISTS {{table}}_composite_id_idx;
CREATE INDEX IF NOT EXISTS {{table}}_composite_id_idx ON {{table}}_composite (id);
DROP INDEX IF EXISTS {{table}}_token_patient_idx;
CREATE INDEX IF NOT EXISTS {{table}}_token_patient_idx
  ON {{table}}_token (patient, param, code_hash, date_high DESC NULLS LAST, id) INCLUDE (hash, date_low, date_multi)
  WHERE code_hash IS NOT NULL;
