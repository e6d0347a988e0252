-- SMART launches (src/auth, issue 8): local users, browser sessions, pending authorization
-- requests, authorization codes, EHR launch contexts, login throttling; refresh tokens live in
-- auth_token (kind = 'refresh', jti = 'rt:' || sha256 of the opaque token).

-- Local users. Passwords only as scrypt hashes (parameters inside the hash string).
CREATE TABLE IF NOT EXISTS auth_user (
  username      text PRIMARY KEY,
  password_hash text,
  fhir_user     text,
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- Browser sessions of the authorization server, by sha256 of the cookie value. `username` is
-- null until the user logs in; `fhir_user` of a federated (OpenID Connect) login is kept here.
CREATE TABLE IF NOT EXISTS auth_session (
  id_hash     text PRIMARY KEY,
  csrf        text NOT NULL,
  username    text,
  fhir_user   text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_session_expires ON auth_session (expires_at);

-- A validated authorization request waiting for login, patient choice and consent, bound to
-- the session that made it.
CREATE TABLE IF NOT EXISTS auth_request (
  id          text PRIMARY KEY,
  session     text NOT NULL,
  params      jsonb NOT NULL,
  patient     text,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_request_expires ON auth_request (expires_at);

-- Authorization codes by sha256: single use (used_at), bound to client, redirect URI and PKCE
-- challenge, 60 s.
CREATE TABLE IF NOT EXISTS auth_code (
  code_hash       text PRIMARY KEY,
  grant_id        text NOT NULL,
  client_id       text NOT NULL,
  redirect_uri    text NOT NULL,
  code_challenge  text NOT NULL,
  scope           text NOT NULL,
  username        text NOT NULL,
  fhir_user       text,
  patient         text,
  encounter       text,
  need_banner     boolean NOT NULL DEFAULT true,
  nonce           text,
  session         text,
  expires_at      timestamptz NOT NULL,
  used_at         timestamptz
);
CREATE INDEX IF NOT EXISTS auth_code_expires ON auth_code (expires_at);

-- EHR launch contexts (POST /auth/launch): short-lived, bound to one client.
CREATE TABLE IF NOT EXISTS auth_launch (
  id          text PRIMARY KEY,
  client_id   text NOT NULL,
  patient     text NOT NULL,
  encounter   text,
  created_by  text NOT NULL,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz
);

-- Failed logins by bucket ('user:NAME', 'addr:IP'), counted over a window for throttling.
CREATE TABLE IF NOT EXISTS auth_login_failure (
  bucket     text NOT NULL,
  failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS auth_login_failure_bucket ON auth_login_failure (bucket, failed_at);

-- Tokens of one grant (a code and its refresh chain) share grant_id: a replayed code or a reused
-- refresh token revokes them all. Refresh tokens keep the context they reissue.
ALTER TABLE auth_token ADD COLUMN IF NOT EXISTS grant_id text;
ALTER TABLE auth_token ADD COLUMN IF NOT EXISTS fhir_user text;
ALTER TABLE auth_token ADD COLUMN IF NOT EXISTS encounter text;
ALTER TABLE auth_token ADD COLUMN IF NOT EXISTS context jsonb;
CREATE INDEX IF NOT EXISTS auth_token_grant ON auth_token (grant_id);
