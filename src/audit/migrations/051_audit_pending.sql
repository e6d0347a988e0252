-- Audit rows staged by write units (docs/decisions/014-erasure-and-anonymisation.md, "Audit
-- cost"): a write unit inserts its AuditEvents here in its own transaction, without the chain
-- head's lock, so concurrent commits no longer queue on one row. The chainer (src/audit/chainer.ts)
-- moves them, in queue order and in batches, into audit_event, where they get their chain
-- position (seq) and hash exactly as before. A staged row is never changed: it is moved whole.
CREATE TABLE IF NOT EXISTS audit_pending (
  queued bigserial PRIMARY KEY,
  id text NOT NULL,
  recorded timestamptz NOT NULL,
  type text NOT NULL,
  subtype text,
  action text,
  outcome text NOT NULL,
  patients text[] NOT NULL DEFAULT '{}',
  agents text[] NOT NULL DEFAULT '{}',
  entities text[] NOT NULL DEFAULT '{}',
  json text NOT NULL
);
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
  FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();
