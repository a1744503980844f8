-- Gemini keys. Key state (cooling, invalid) lives here so every worker process shares it.

-- name: insert_key
INSERT INTO api_keys (id, user_id, label, fingerprint, key_enc, last4, status, last_error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (coalesce(user_id, ''), fingerprint) DO NOTHING
RETURNING *;

-- name: key_by_fingerprint
SELECT * FROM api_keys WHERE coalesce(user_id, '') = coalesce($1, '') AND fingerprint = $2;

-- name: list_keys
SELECT * FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC;

-- name: delete_key
DELETE FROM api_keys WHERE id = $1 AND user_id = $2 RETURNING id;

-- name: all_keys
SELECT * FROM api_keys ORDER BY created_at;

-- name: update_key_enc
UPDATE api_keys SET key_enc = $2 WHERE id = $1 AND key_enc = $3;

-- Cooling keys whose time has passed count as usable; callers see the fresh status.
-- name: thaw_keys
UPDATE api_keys SET status = 'active', cooling_until = NULL
WHERE status = 'cooling' AND cooling_until <= now();

-- The owner's keys first, then the operator pool; least recently used first, so keys rotate.
-- No SKIP LOCKED: a key may serve several requests at once, and a locked row must not read as
-- "no key usable" (that would pause jobs for nothing under load).
-- name: pick_key
UPDATE api_keys SET last_used_at = clock_timestamp()
WHERE id = (
    SELECT id FROM api_keys
    WHERE (user_id = $1 OR user_id IS NULL)
      AND (status = 'active' OR (status = 'cooling' AND cooling_until <= now()))
      AND NOT (id = ANY($2::text[]))
    ORDER BY (user_id IS NULL), last_used_at NULLS FIRST, id
    LIMIT 1)
RETURNING *;

-- name: usable_key_stats
SELECT
    count(*) FILTER (WHERE status <> 'invalid') AS not_invalid,
    count(*) FILTER (WHERE status = 'active' OR (status = 'cooling' AND cooling_until <= now())) AS ready,
    min(cooling_until) FILTER (WHERE status = 'cooling') AS next_ready
FROM api_keys WHERE user_id = $1 OR user_id IS NULL;

-- The API's own RetryInfo delay ($5) wins when it sent one; otherwise the back-off doubles
-- with each 429 in a row ($2 * 2^streak), capped at $4 seconds.
-- name: cool_key
UPDATE api_keys
SET status = 'cooling', cool_streak = cool_streak + 1, last_error = $3,
    cooling_until = now() + make_interval(secs => least(
        coalesce($5::float8, $2 * power(2, cool_streak)), $4))
WHERE id = $1 AND status <> 'invalid'
RETURNING cooling_until, cool_streak;

-- name: invalidate_key
UPDATE api_keys SET status = 'invalid', cooling_until = NULL, last_error = $2
WHERE id = $1 AND status <> 'invalid' RETURNING id;

-- name: key_succeeded
UPDATE api_keys SET cool_streak = 0 WHERE id = $1 AND cool_streak <> 0;

-- name: key_counts
SELECT status, count(*) AS n FROM api_keys GROUP BY status;

-- name: available_keys
SELECT count(*) FROM api_keys WHERE status = 'active' OR (status = 'cooling' AND cooling_until <= now());
