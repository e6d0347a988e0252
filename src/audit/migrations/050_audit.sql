-- The audit trail (src/audit): one row per AuditEvent, append-only and hash-chained.
--
-- seq is the chain position, assigned by the appender while it holds the chain head's row lock
-- (audit_chain_head FOR UPDATE), so it has no gaps and follows commit order. hash =
-- sha256(previous hash || seq || json) in hex; the first row chains to the head's genesis hash.
-- The columns beside json are the search keys of `GET /fhir/AuditEvent`, derived from json.
CREATE TABLE audit_event (
  seq bigint PRIMARY KEY,
  id text NOT NULL UNIQUE,
  recorded timestamptz NOT NULL,
  type text NOT NULL,
  subtype text,
  action text,
  outcome text NOT NULL,
  patients text[] NOT NULL DEFAULT '{}',
  agents text[] NOT NULL DEFAULT '{}',
  entities text[] NOT NULL DEFAULT '{}',
  json text NOT NULL,
  hash text NOT NULL
);
CREATE INDEX audit_event_recorded ON audit_event (recorded);
CREATE INDEX audit_event_patients ON audit_event USING gin (patients);
CREATE INDEX audit_event_agents ON audit_event USING gin (agents);
CREATE INDEX audit_event_entities ON audit_event USING gin (entities);

-- The newest link of the chain: what the next row chains to. Exported off-box, it also reveals
-- the removal of the newest rows, which a chain alone cannot.
CREATE TABLE audit_chain_head (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  seq bigint NOT NULL,
  hash text NOT NULL
);
INSERT INTO audit_chain_head (one, seq, hash) VALUES (true, 0, repeat('0', 64));

-- Append-only (OWASP Logging CS, ASVS 16.4.2): no UPDATE, DELETE or TRUNCATE, whoever asks.
-- Changing a row needs the trigger disabled first (an owner's act, itself visible in the
-- server log), and the verification command (npm run audit:verify) finds what it changed.
CREATE FUNCTION audit_event_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
  FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
  FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change();
