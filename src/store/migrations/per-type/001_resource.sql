-- Applied once for each supported type, with {{table}} replaced by the type's table name.
-- Current version of each resource; `content` is the full JSON including meta, NULL once deleted.
CREATE TABLE IF NOT EXISTS {{table}} (
  id           text PRIMARY KEY,
  version_id   integer     NOT NULL,
  last_updated timestamptz NOT NULL,
  deleted      boolean     NOT NULL DEFAULT false,
  content      jsonb
);
CREATE INDEX IF NOT EXISTS {{table}}_last_updated_idx ON {{table}} (last_updated, id);

-- Every version ever written. `method` is the interaction that produced it (POST, PUT, PATCH,
-- DELETE), needed for Bundle.entry.request in history bundles.
CREATE TABLE IF NOT EXISTS {{table}}_history (
  id           text        NOT NULL,
  version_id   integer     NOT NULL,
  seq          bigint      NOT NULL DEFAULT nextval('history_seq'),
  last_updated timestamptz NOT NULL,
  deleted      boolean     NOT NULL,
  method       text        NOT NULL,
  content      jsonb,
  PRIMARY KEY (id, version_id)
);
CREATE INDEX IF NOT EXISTS {{table}}_history_seq_idx ON {{table}}_history (seq);
