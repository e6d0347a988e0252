-- Issue 16, storage per Observation: the token table's patient index holds the rows the hot
-- path drives from (src/search/extract.ts, drivesByPatient: a row with a code, of any parameter
-- but `identifier`, of a resource with a patient key), marked `drives`; only they carry the
-- copy of the resource's date range. Its old predicate (`code_hash IS NOT NULL`) also held a
-- vital sign's identifier row, one of its five entries, from which no patient search is driven
-- (an identifier names one resource: the code index finds it).
ALTER TABLE {{table}}_token ADD COLUMN IF NOT EXISTS drives boolean NOT NULL DEFAULT false;
UPDATE {{table}}_token SET drives = true
  WHERE patient IS NOT NULL AND code_hash IS NOT NULL AND param <> 'identifier';
UPDATE {{table}}_token SET date_low = NULL, date_high = NULL, date_multi = false
  WHERE NOT drives AND (date_low IS NOT NULL OR date_high IS NOT NULL);
DROP INDEX IF EXISTS {{table}}_token_patient_idx;
CREATE INDEX IF NOT EXISTS {{table}}_token_patient_idx
  ON {{table}}_token (patient, param, code_hash, date_high DESC NULLS LAST, id) INCLUDE (hash, date_low, date_multi)
  WHERE drives;
