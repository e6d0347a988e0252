-- Subscription.channel.header lines are write-only secrets (decision 033): the subscriber's
-- credentials for its own endpoint. The stored resource keeps each line's name and a mask; the
-- value is here, written in the transaction of the Subscription version that set it, and read
-- only by delivery. Deleting the Subscription deletes its lines.
CREATE TABLE IF NOT EXISTS monitoring_subscription_header (
  subscription_id text    NOT NULL,
  position        integer NOT NULL,   -- the line's index in channel.header
  name            text    NOT NULL,
  value           text    NOT NULL,
  PRIMARY KEY (subscription_id, position)
);

-- The HMAC key of the masks' fingerprints: one random key per database, made here so that every
-- node of a database shares it from the start (gen_random_uuid draws from the server's strong
-- random source; two of them are 244 random bits).
CREATE TABLE IF NOT EXISTS monitoring_header_key (
  id  integer PRIMARY KEY CHECK (id = 1),
  key text    NOT NULL
);
INSERT INTO monitoring_header_key (id, key)
  SELECT 1, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
  ON CONFLICT (id) DO NOTHING;
