-- Removing a user revokes every token of theirs (src/auth/users.ts): found by subject, not by a
-- scan of every token issued in the last day.
CREATE INDEX IF NOT EXISTS auth_token_subject ON auth_token (subject);
