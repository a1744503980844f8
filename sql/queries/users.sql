-- Users and their bearer tokens (stored as sha256, compared by index lookup).

-- name: create_user
INSERT INTO users (id, name, is_admin, token_hash) VALUES ($1, $2, $3, $4)
RETURNING id, name, is_admin, created_at;

-- name: user_by_token_hash
SELECT id, name, is_admin, created_at FROM users WHERE token_hash = $1;

-- name: user_by_name
SELECT id, name, is_admin, created_at FROM users WHERE name = $1 ORDER BY created_at LIMIT 1;

-- The bootstrap admin is a real row so its jobs and keys behave like anyone's.
-- name: upsert_bootstrap_admin
INSERT INTO users (id, name, is_admin, token_hash) VALUES ('usr_bootstrap_admin', 'admin', true, $1)
ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, is_admin = true;
