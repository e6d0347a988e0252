-- The grant a job runs under (decision 032, as for Subscriptions): the authorization grant of the
-- kick-off token (auth_token.grant_id, a user's authorization) and that token's jti. The worker
-- asks the authorization server before every batch whether it still stands, and status and files
-- ask before they answer. Jobs from before have neither: a backend client's live with its
-- registration, a user's have ended (nothing says which grant they were); see src/bulk/grant.ts.
ALTER TABLE bulk_export_job ADD COLUMN IF NOT EXISTS grant_id text;
ALTER TABLE bulk_export_job ADD COLUMN IF NOT EXISTS token_id text;
