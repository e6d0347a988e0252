-- Issue 16, storage per Observation: the index rows of one resource are found by `id` alone
-- (replaced on update, deleted on erasure, probed per candidate row), never by (id, param)
-- without a heap visit. An index on `id` alone lets PostgreSQL's btree deduplication (13+)
-- keep one key with a list of row pointers per resource instead of one 40-byte key per row:
-- observation_token's grew to 40 MB at 100,000 Observations on (id, param), 9.5 MB on (id).
-- The patient index leaves out rows without a code: a CodeableConcept's text rows serve only
-- `:text`, which is never answered from it (every query on it pins code_hash).
DO $$
DECLARE kind text;
BEGIN
  FOREACH kind IN ARRAY ARRAY['token', 'string', 'date', 'quantity', 'number', 'uri', 'reference', 'composite'] LOOP
    EXECUTE format('DROP INDEX IF EXISTS %I', '{{table}}_' || kind || '_id_idx');
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (id)', '{{table}}_' || kind || '_id_idx', '{{table}}_' || kind);
  END LOOP;
END $$;
DROP INDEX IF EXISTS {{table}}_token_patient_idx;
CREATE INDEX IF NOT EXISTS {{table}}_token_patient_idx
  ON {{table}}_token (patient, param, code_hash, date_high DESC NULLS LAST, id) INCLUDE (hash, date_low, date_multi)
  WHERE code_hash IS NOT NULL;
