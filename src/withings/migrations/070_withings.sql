-- The Withings cloud connector (src/withings, docs/decisions/016-withings-connector.md).

-- One linked Withings account per row: whose readings it brings (patient), its tokens (AES-256-GCM
-- ciphertext, never plain), and its sync job's state. Every node's worker claims due rows with
-- FOR UPDATE SKIP LOCKED and holds a lease while it syncs, so several nodes may run the job.
CREATE TABLE IF NOT EXISTS withings_account (
  id                 text PRIMARY KEY,
  patient_id         text        NOT NULL,
  withings_userid    text        NOT NULL UNIQUE,
  status             text        NOT NULL DEFAULT 'active',   -- active | relink-needed
  access_token       text        NOT NULL,                     -- ciphertext (src/withings/cipher.ts)
  refresh_token      text        NOT NULL,                     -- ciphertext; replaced with every refresh (rotation)
  access_expires_at  timestamptz NOT NULL,
  token_version      integer     NOT NULL DEFAULT 1,
  refresh_lock_until timestamptz,                              -- the per-account token lock
  scope              text        NOT NULL DEFAULT '',
  subscribed         boolean     NOT NULL DEFAULT false,       -- notify subscriptions in place
  cursor_lastupdate  bigint,                                   -- getmeas lastupdate (unix s); null: backfill
  next_attempt_at    timestamptz NOT NULL DEFAULT now(),
  sync_requested_at  timestamptz,                              -- latest notification (or operator request)
  attempts           integer     NOT NULL DEFAULT 0,           -- consecutive failed runs (backoff)
  lease_owner        text,
  lease_until        timestamptz,
  last_success_at    timestamptz,
  last_error         text,
  last_error_at      timestamptz,
  readings_stored    bigint      NOT NULL DEFAULT 0,
  readings_refused   bigint      NOT NULL DEFAULT 0,
  linked_by          text,
  linked_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS withings_account_due_idx ON withings_account (next_attempt_at) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS withings_account_patient_idx ON withings_account (patient_id);

-- A link in progress: who asked to link which patient, until the browser comes back from
-- Withings. Only the SHA-256 of the ticket is kept; it is used once.
CREATE TABLE IF NOT EXISTS withings_link_ticket (
  ticket_hash text PRIMARY KEY,
  patient_id  text        NOT NULL,
  requested_by text,
  expires_at  timestamptz NOT NULL
);

-- The application's requests to Withings in the current window, all nodes together: the
-- documented budget is 120 a minute per application.
CREATE TABLE IF NOT EXISTS withings_request_log (
  at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS withings_request_log_at_idx ON withings_request_log (at);

-- A 601 (too many requests) stops every node's requests until its wait_seconds have passed.
CREATE TABLE IF NOT EXISTS withings_budget_block (
  id            integer PRIMARY KEY,
  blocked_until timestamptz NOT NULL
);
