-- Issue 14, erasure and the append-only trail (docs/decisions/036-sealed-audit-queries.md): the
-- raw request of an event that names a patient is stored sealed under that patient's key, and
-- erasing the patient sets the key to NULL (the row stays as a tombstone, so that an event still
-- waiting at the erasure is stored without its request, not under a fresh key). Unlike the
-- trail, this table is changed by the application: it holds no event, only the means to read one.
CREATE TABLE IF NOT EXISTS audit_patient_key (
  patient text PRIMARY KEY,
  key bytea
);
