-- One sequence orders every version of every type, so that system-level history and history
-- paging can use a stable cursor (seq) rather than timestamps that may tie.
CREATE SEQUENCE IF NOT EXISTS history_seq;
