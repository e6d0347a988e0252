-- Issue 14, the audit's cost per event (docs/decisions/021-audit-storage.md, "Ids by position").
-- A new event's id is its chain position (seq, the primary key): records no longer carry a
-- random id, so no unique btree over random UUIDs is written per event. The ids of the events
-- stored before this stay as they were, unique among themselves (a partial index); an id of
-- digits is never a random UUID, so the two kinds cannot meet.
-- `recorded` grows with seq (events are appended as they happen; staged write events a second
-- later at most), so a BRIN index serves date searches at a fraction of a btree's write cost.
ALTER TABLE audit_event DROP CONSTRAINT audit_event_id_key, ALTER COLUMN id DROP NOT NULL;
CREATE UNIQUE INDEX audit_event_id ON audit_event (id) WHERE id IS NOT NULL;
ALTER TABLE audit_pending ALTER COLUMN id DROP NOT NULL;
DROP INDEX audit_event_recorded;
CREATE INDEX audit_event_recorded ON audit_event USING brin (recorded);
