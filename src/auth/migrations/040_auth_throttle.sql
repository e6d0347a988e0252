-- Throttling of the authorization server's doors (logins, the token endpoint): one row per
-- counted event, in the database so that every server process counts the same events. An
-- attempt is recorded before the work it stands for (a password hash, a signature check), so
-- thirty concurrent guesses cannot all run before the first is counted (issue 11).
CREATE TABLE IF NOT EXISTS auth_throttle (
  bucket  text        NOT NULL,
  at      timestamptz NOT NULL DEFAULT now(),
  attempt text        NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_throttle_bucket ON auth_throttle (bucket, at);
CREATE INDEX IF NOT EXISTS auth_throttle_attempt ON auth_throttle (attempt);
DROP TABLE IF EXISTS auth_login_failure;
