-- Who a Subscription notifies for: the client (its granted scopes, patient and user) that last
-- set it. Notifications are matched and filled under this grant at notification time, as a
-- search by that client would be (issue 11: a client holding only Subscription rights must not
-- receive other patients' data). The server's own status updates do not change it.
CREATE TABLE IF NOT EXISTS subscription_owner (
  subscription_id text PRIMARY KEY,
  client_id       text   NOT NULL,
  scopes          text[] NOT NULL,
  patient         text,
  fhir_user       text,
  subject         text
);

-- Whether a queued notification may carry the resource (the subscriber may read it), decided
-- when it was queued.
ALTER TABLE monitoring_delivery ADD COLUMN IF NOT EXISTS with_payload boolean NOT NULL DEFAULT false;
