-- The key of readings' deterministic ids (src/devices/reading-identity.ts): one random key per
-- database, made here so that every node shares it from the start (gen_random_uuid draws from
-- the server's strong random source; two of them are 244 random bits). `since`: readings taken
-- before it may be stored under the unkeyed id of earlier versions, which the doors still match.
CREATE TABLE IF NOT EXISTS device_reading_key (
  id    integer     PRIMARY KEY CHECK (id = 1),
  key   text        NOT NULL,
  since timestamptz NOT NULL DEFAULT now()
);
INSERT INTO device_reading_key (id, key)
  SELECT 1, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
  ON CONFLICT (id) DO NOTHING;
