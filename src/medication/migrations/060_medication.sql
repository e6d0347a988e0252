-- Medication schedules (src/medication, docs/decisions/010-medication-schedules.md). Maintained
-- in the write transaction of the MedicationRequest it derives from.

-- Each MedicationRequest for a Patient, its dosage timings compiled: due doses are computed from
-- this row and the patient's time zone, never from a walk of the request's JSON.
CREATE TABLE IF NOT EXISTS medication_schedule (
  request_id    text PRIMARY KEY,
  patient       text        NOT NULL,
  active        boolean     NOT NULL,
  compiled      jsonb       NOT NULL,  -- CompiledRequest (src/medication/timing.ts)
  stored_at     timestamptz NOT NULL,  -- first stored: doses due earlier are not judged
  checked_until timestamptz            -- doses due (plus grace) before this were judged
);
CREATE INDEX IF NOT EXISTS medication_schedule_patient_idx ON medication_schedule (patient) WHERE active;

-- Each dose judged missed once, with the Flag it counted on. An administration taken at or
-- after the first missed dose not yet caught up with (its window) closes the Flag.
CREATE TABLE IF NOT EXISTS medication_missed_dose (
  request_id text        NOT NULL,
  due_at     timestamptz NOT NULL,
  flag_id    text,
  caught_up  boolean     NOT NULL DEFAULT false,
  PRIMARY KEY (request_id, due_at)
);
CREATE INDEX IF NOT EXISTS medication_missed_dose_open_idx ON medication_missed_dose (request_id, due_at) WHERE NOT caught_up;

-- Each dose reminded once, whichever process's reminder job got to it first.
CREATE TABLE IF NOT EXISTS medication_reminder (
  request_id       text        NOT NULL,
  due_at           timestamptz NOT NULL,
  communication_id text        NOT NULL,
  PRIMARY KEY (request_id, due_at)
);
