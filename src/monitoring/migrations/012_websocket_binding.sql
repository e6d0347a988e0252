-- One-time tokens that bind a websocket to a Subscription (R4 websocket channel, with the
-- bind-with-token handshake of the R4B/R5 backport). Issued by Subscription/{id}/$get-ws-binding-token
-- under the caller's SMART token; kept in the database, not in memory, so that the socket may reach
-- another server process than the one that issued it. Only a hash is stored.
CREATE TABLE IF NOT EXISTS monitoring_ws_binding (
  token_hash      text PRIMARY KEY,
  subscription_id text        NOT NULL,
  expires_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS monitoring_ws_binding_expiry_idx ON monitoring_ws_binding (expires_at);
