-- The grant a Subscription acts under (decision 032): the authorization grant of the token that
-- set it (auth_token.grant_id, a user's authorization) and that token's jti. Matching and delivery
-- ask the authorization server whether it still stands. Rows from before have neither: a user's
-- are ended (nothing says which grant they were), a backend client's live with its registration.
ALTER TABLE subscription_owner ADD COLUMN IF NOT EXISTS grant_id text;
ALTER TABLE subscription_owner ADD COLUMN IF NOT EXISTS token_id text;
