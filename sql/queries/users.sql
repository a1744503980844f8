-- Users and their bearer tokens. A token is stored as its sha256 and found by index lookup;
-- revoking marks it, so a revoked token answers 401 at once.

-- name: create_user
WITH u AS (INSERT INTO users (id, name, is_admin) VALUES ($1, $2, $3) RETURNING *),
t AS (INSERT INTO tokens (token_hash, user_id) SELECT $4, u.id FROM u)
SELECT id, name, is_admin, created_at FROM u;

-- name: user_by_token_hash
SELECT u.id, u.name, u.is_admin, u.created_at
FROM tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = $1 AND t.revoked_at IS NULL;

-- name: user_by_name
SELECT id, name, is_admin, created_at FROM users WHERE name = $1 ORDER BY created_at LIMIT 1;

-- name: user_by_id
SELECT id, name, is_admin, created_at FROM users WHERE id = $1;

-- name: add_token
INSERT INTO tokens (token_hash, user_id) VALUES ($1, $2);

-- name: revoke_tokens
UPDATE tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL RETURNING token_hash;

-- The bootstrap admin is a real row so its jobs and keys behave like anyone's; its one token
-- is the hash of VEO_ADMIN_TOKEN, replaced when the variable changes.
-- name: upsert_bootstrap_admin
WITH u AS (
    INSERT INTO users (id, name, is_admin) VALUES ('usr_bootstrap_admin', 'admin', true)
    ON CONFLICT (id) DO UPDATE SET is_admin = true RETURNING id),
gone AS (
    UPDATE tokens SET revoked_at = now()
    WHERE user_id = 'usr_bootstrap_admin' AND token_hash <> $1 AND revoked_at IS NULL)
INSERT INTO tokens (token_hash, user_id) SELECT $1, u.id FROM u
ON CONFLICT (token_hash) DO UPDATE SET revoked_at = NULL;
