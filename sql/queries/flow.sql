-- Flow login state bookkeeping per account (the state itself lives encrypted in storage).

-- name: flow_account
SELECT * FROM flow_accounts WHERE account = $1;

-- name: flow_state_loaded
INSERT INTO flow_accounts (account, state_etag, state_updated_at, last_verified_at, needs_auth_since)
VALUES ($1, $2, now(), CASE WHEN $3 THEN now() END, NULL)
ON CONFLICT (account) DO UPDATE
SET state_etag = excluded.state_etag, state_updated_at = now(),
    last_verified_at = coalesce(excluded.last_verified_at, flow_accounts.last_verified_at),
    needs_auth_since = NULL;

-- name: flow_verified
INSERT INTO flow_accounts (account, last_verified_at) VALUES ($1, now())
ON CONFLICT (account) DO UPDATE SET last_verified_at = now(), needs_auth_since = NULL;

-- name: flow_needs_auth
INSERT INTO flow_accounts (account, needs_auth_since) VALUES ($1, now())
ON CONFLICT (account) DO UPDATE
SET needs_auth_since = coalesce(flow_accounts.needs_auth_since, now());
