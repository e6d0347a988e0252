-- Bulk Data export jobs (Bulk Data Access v2.0.0, issue 21; docs/decisions/017-bulk-export.md).
-- A job is claimed by one worker at a time through a lease (lease_until, taken with
-- FOR UPDATE SKIP LOCKED); progress is the checkpoint it resumes from after a restart.
CREATE TABLE IF NOT EXISTS bulk_export_job (
  id               text        PRIMARY KEY,
  client_id        text        NOT NULL,
  status           text        NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
  -- The kick-off request URL, for the manifest's `request`.
  request          text        NOT NULL,
  -- What to export: level, types, _since, _typeFilter, the reference set of patients.
  spec             jsonb       NOT NULL,
  -- Who asked: the token's grant, to judge every row as the kick-off would have.
  grant_scopes     text[]      NOT NULL,
  grant_context    jsonb       NOT NULL,
  transaction_time timestamptz NOT NULL,
  progress         jsonb       NOT NULL DEFAULT '{}',
  error            text,
  worker           text,
  lease_until      timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  completed_at     timestamptz,
  expires_at       timestamptz
);
CREATE INDEX IF NOT EXISTS bulk_export_job_claim_idx ON bulk_export_job (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS bulk_export_job_expiry_idx ON bulk_export_job (expires_at) WHERE expires_at IS NOT NULL;

-- The output files, as numbered chunks of NDJSON text: `file` is a resource type, or
-- 'OperationOutcome' for the error file. A chunk and the progress that names it commit together.
CREATE TABLE IF NOT EXISTS bulk_export_chunk (
  job_id text    NOT NULL REFERENCES bulk_export_job (id) ON DELETE CASCADE,
  file   text    NOT NULL,
  seq    integer NOT NULL,
  count  integer NOT NULL,
  ndjson text    NOT NULL,
  PRIMARY KEY (job_id, file, seq)
);
-- lz4 where the server has it (PostgreSQL 14+ built with it; PGlite is not): NDJSON of one type
-- compresses well, and lz4 wrote a 1 MB chunk about 30 % faster than pglz and read it back
-- faster too (measured on PostgreSQL 15, this machine).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
    ALTER TABLE bulk_export_chunk ALTER COLUMN ndjson SET COMPRESSION lz4;
  END IF;
END
$$;
