-- A websocket binding lasts no longer than the access token that asked for it: a socket that
-- outlived its token would go on hearing when a patient's data changes. NULL: the server's own
-- unrestricted callers (AUTH_DISABLED), whose access does not expire.
ALTER TABLE monitoring_ws_binding ADD COLUMN IF NOT EXISTS access_expires_at timestamptz;
