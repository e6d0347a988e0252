-- What each breach said when it was raised, so that a Flag whose breach is taken back
-- (retractBreaches, src/monitoring/flags.ts) is described by the breaches it still holds: the
-- latest one's text, the first one's time, the priority while any is critical. `seq` is the
-- order breaches were recorded, the order a Flag gains its details. Breaches recorded before
-- this migration have no description (NULL): a Flag still holding one keeps its summary as it is.
CREATE SEQUENCE IF NOT EXISTS monitoring_breach_seq;
ALTER TABLE monitoring_breach ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT nextval('monitoring_breach_seq');
ALTER TABLE monitoring_breach ADD COLUMN IF NOT EXISTS event_time text;
ALTER TABLE monitoring_breach ADD COLUMN IF NOT EXISTS text text;
ALTER TABLE monitoring_breach ADD COLUMN IF NOT EXISTS critical boolean;
-- A retraction reads the breaches a Flag still holds.
CREATE INDEX IF NOT EXISTS monitoring_breach_flag_idx ON monitoring_breach (flag_id, seq);
