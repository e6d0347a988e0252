-- SMART authorization server (src/auth). Global tables, not per type.

-- Signing keys of the server. Several at once: the newest unretired key of an alg signs; every
-- key stays published (and verifies) until all tokens it signed have expired after retirement.
CREATE TABLE IF NOT EXISTS auth_signing_key (
  kid         text PRIMARY KEY,
  alg         text NOT NULL,
  private_jwk jsonb NOT NULL,
  public_jwk  jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  retired_at  timestamptz
);

-- Registered clients (RFC 7591 metadata). Secrets are kept only as scrypt hashes.
CREATE TABLE IF NOT EXISTS auth_client (
  client_id          text PRIMARY KEY,
  client_name        text,
  auth_method        text NOT NULL CHECK (auth_method IN ('none', 'client_secret_basic', 'private_key_jwt')),
  secret_hash        text,
  jwks               jsonb,
  jwks_uri           text,
  redirect_uris      jsonb NOT NULL DEFAULT '[]',
  grant_types        jsonb NOT NULL DEFAULT '[]',
  scope              text NOT NULL DEFAULT '',
  can_introspect     boolean NOT NULL DEFAULT false,
  metadata           jsonb NOT NULL DEFAULT '{}',
  created_at         timestamptz NOT NULL DEFAULT now()
);

-- jti of accepted client assertions, kept until the assertion expires: a second use within its
-- lifetime is a replay, across processes and restarts.
CREATE TABLE IF NOT EXISTS auth_assertion_jti (
  client_id  text NOT NULL,
  jti        text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (client_id, jti)
);
CREATE INDEX IF NOT EXISTS auth_assertion_jti_expires ON auth_assertion_jti (expires_at);

-- Every token issued, by jti: the resource server accepts only recorded, unrevoked tokens, so a
-- revocation holds at once in every process.
CREATE TABLE IF NOT EXISTS auth_token (
  jti        text PRIMARY KEY,
  kind       text NOT NULL DEFAULT 'access',
  client_id  text NOT NULL,
  subject    text,
  patient    text,
  scope      text NOT NULL,
  issued_at  timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS auth_token_client ON auth_token (client_id);
CREATE INDEX IF NOT EXISTS auth_token_expires ON auth_token (expires_at);
