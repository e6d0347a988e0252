-- Compact audit storage (docs/decisions/021-audit-storage.md). New rows store and chain the
-- record of an event (its facts as JSON, about 400 bytes: src/audit/event.ts, AuditRecord) in
-- `record`; the BALP AuditEvent is rendered from it when read, searched or exported. Rows
-- stored before keep their rendered AuditEvent in `json`, which their hash covers: they verify
-- and are served as they were. Exactly one of the two is set.
--
-- The search keys become one btree-indexed column each: an event names at most one patient
-- (one event per patient, BALP Patient* profiles), one user, one client and one data entity.
-- The GIN indexes on the key arrays cost more per insert than the row itself did, and a GIN
-- array answered no query a btree on one value cannot.

-- The old arrays to the new columns, for the rows already stored and those staged.
CREATE FUNCTION audit_user_key(agents text[]) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT a FROM unnest(agents) a WHERE a NOT LIKE 'urn:ietf:params:oauth:client-id|%' LIMIT 1 $$;
CREATE FUNCTION audit_client_key(agents text[]) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT a FROM unnest(agents) a WHERE a LIKE 'urn:ietf:params:oauth:client-id|%' LIMIT 1 $$;
-- The data entity as recorded: the longest key that is not the patient's own (a versioned
-- reference is listed beside its unversioned form), or an erased patient's pseudonym.
CREATE FUNCTION audit_entity_key(entities text[], patients text[]) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT e FROM unnest(entities) e WHERE e IS DISTINCT FROM 'Patient/' || patients[1] ORDER BY length(e) DESC LIMIT 1 $$;

ALTER TABLE audit_event
  ALTER COLUMN json DROP NOT NULL,
  ADD COLUMN record text,
  ADD COLUMN patient text,
  ADD COLUMN agent_user text,
  ADD COLUMN agent_client text,
  ADD COLUMN entity text COLLATE "C";
-- The append-only trigger refuses this one-time fill of derived columns; the hash covers none of them.
ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only;
UPDATE audit_event SET patient = patients[1], agent_user = audit_user_key(agents), agent_client = audit_client_key(agents), entity = audit_entity_key(entities, patients);
ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only;
ALTER TABLE audit_event DROP COLUMN patients, DROP COLUMN agents, DROP COLUMN entities,
  ADD CONSTRAINT audit_event_one_text CHECK ((record IS NULL) <> (json IS NULL));

ALTER TABLE audit_pending
  ALTER COLUMN json DROP NOT NULL,
  ADD COLUMN record text,
  ADD COLUMN patient text,
  ADD COLUMN agent_user text,
  ADD COLUMN agent_client text,
  ADD COLUMN entity text COLLATE "C";
ALTER TABLE audit_pending DISABLE TRIGGER audit_pending_no_update;
UPDATE audit_pending SET patient = patients[1], agent_user = audit_user_key(agents), agent_client = audit_client_key(agents), entity = audit_entity_key(entities, patients);
ALTER TABLE audit_pending ENABLE TRIGGER audit_pending_no_update;
ALTER TABLE audit_pending DROP COLUMN patients, DROP COLUMN agents, DROP COLUMN entities,
  ADD CONSTRAINT audit_pending_one_text CHECK ((record IS NULL) <> (json IS NULL));

DROP FUNCTION audit_user_key(text[]);
DROP FUNCTION audit_client_key(text[]);
DROP FUNCTION audit_entity_key(text[], text[]);

-- Partial: most events name no user (system tokens) or no data entity (searches).
CREATE INDEX audit_event_patient ON audit_event (patient) WHERE patient IS NOT NULL;
CREATE INDEX audit_event_agent_user ON audit_event (agent_user) WHERE agent_user IS NOT NULL;
CREATE INDEX audit_event_agent_client ON audit_event (agent_client) WHERE agent_client IS NOT NULL;
CREATE INDEX audit_event_entity ON audit_event (entity) WHERE entity IS NOT NULL;
