-- Flow accounts: login-state bookkeeping (the state itself lives encrypted in storage), the
-- cool-down after rate limits, and the canary's last walk.

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

-- The back-off doubles with each rate limit in a row ($2 * 2^streak), capped at $3 seconds.
-- name: cool_account
INSERT INTO flow_accounts (account, cooling_until, cool_streak)
VALUES ($1, now() + make_interval(secs => $2::float8), 1)
ON CONFLICT (account) DO UPDATE
SET cooling_until = now() + make_interval(secs => least($2 * power(2, flow_accounts.cool_streak), $3)),
    cool_streak = flow_accounts.cool_streak + 1
RETURNING *;

-- name: account_rested
UPDATE flow_accounts SET cooling_until = NULL
WHERE account = $1 AND cooling_until IS NOT NULL AND cooling_until <= now()
RETURNING *;

-- A generation that went through ends the streak.
-- name: account_ok
UPDATE flow_accounts SET cool_streak = 0 WHERE account = $1 AND cool_streak <> 0;

-- name: set_canary
INSERT INTO flow_accounts (account, canary) VALUES ($1, $2)
ON CONFLICT (account) DO UPDATE SET canary = excluded.canary;

-- name: flow_accounts
SELECT * FROM flow_accounts ORDER BY account;
