-- Issue 16, storage per Observation: an Observation's `status` rows no longer drive a patient's
-- search (src/search/extract.ts, drivesByPatient): they leave the token table's patient index and
-- drop their copy of the date range. Applied to every type's table by the template; the constant
-- condition makes it a no-op (not even a scan) on every table but Observation's.
UPDATE {{table}}_token SET drives = false, date_low = NULL, date_high = NULL, date_multi = false
  WHERE '{{table}}' = 'observation' AND drives AND param = 'status';
