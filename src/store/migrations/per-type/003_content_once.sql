-- Every version's JSON is stored once (issue 16: ~7 kB per vital sign, half of it the history
-- copy of the current version). The current table holds the current version with its history
-- position (seq) and the interaction that wrote it (method); {{table}}_history holds only the
-- versions that were replaced. Reads of history take both (src/store/history.ts).
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS seq bigint;
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS method text;
UPDATE {{table}} c SET seq = h.seq, method = h.method
  FROM {{table}}_history h WHERE h.id = c.id AND h.version_id = c.version_id AND c.seq IS NULL;
UPDATE {{table}} SET seq = nextval('history_seq'), method = 'PUT' WHERE seq IS NULL;
DELETE FROM {{table}}_history h USING {{table}} c WHERE h.id = c.id AND h.version_id = c.version_id;
ALTER TABLE {{table}} ALTER COLUMN seq SET DEFAULT nextval('history_seq');
ALTER TABLE {{table}} ALTER COLUMN seq SET NOT NULL;
ALTER TABLE {{table}} ALTER COLUMN method SET DEFAULT 'POST';
ALTER TABLE {{table}} ALTER COLUMN method SET NOT NULL;
CREATE INDEX IF NOT EXISTS {{table}}_seq_idx ON {{table}} (seq);
