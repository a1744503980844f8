-- Gemini keys. Key state (cooling, invalid) lives here so every worker process shares it.

-- name: insert_key
INSERT INTO api_keys (id, user_id, label, fingerprint, key_enc, last4, status, last_error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (coalesce(user_id, ''), fingerprint) DO NOTHING
RETURNING *;

-- name: key_by_fingerprint
SELECT * FROM api_keys WHERE coalesce(user_id, '') = coalesce($1, '') AND fingerprint = $2;

-- A cooling key whose time has passed reads as active: reads never write.
-- name: list_keys
SELECT id, user_id, label, fingerprint, key_enc, last4,
       CASE WHEN status = 'cooling' AND cooling_until <= now() THEN 'active' ELSE status END AS status,
       CASE WHEN status = 'cooling' AND cooling_until <= now() THEN NULL ELSE cooling_until END
           AS cooling_until,
       cool_streak, last_error, last_used_at, created_at
FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC;

-- name: get_key
SELECT * FROM api_keys WHERE id = $1;

-- name: delete_key
DELETE FROM api_keys WHERE id = $1 AND user_id = $2 RETURNING id;

-- name: all_keys
SELECT * FROM api_keys ORDER BY created_at;

-- name: update_key_enc
UPDATE api_keys SET key_enc = $2 WHERE id = $1 AND key_enc = $3;

-- Picks are serialised by a transaction-scoped advisory lock (taken by the caller), so two
-- picks never both take a key's last free slot; no SKIP LOCKED, since a locked row must not
-- read as "no key usable". The owner's keys first, then the operator pool; among them the one
-- with the most room in its window, then the least recently used, so keys rotate.
-- $3: window seconds. A key is full when its uses in the window reached its learned limit.
-- name: pick_key
WITH cand AS (
    SELECT k.*, (SELECT count(*) FROM api_key_uses u
                 WHERE u.key_id = k.id AND u.at > clock_timestamp() - make_interval(secs => $3::float8)) AS used
    FROM api_keys k
    WHERE (k.user_id = $1 OR k.user_id IS NULL)
      AND (k.status = 'active' OR (k.status = 'cooling' AND k.cooling_until <= clock_timestamp()))
      AND NOT (k.id = ANY($2::text[]))),
chosen AS (
    SELECT id FROM cand WHERE window_limit IS NULL OR used < window_limit
    ORDER BY (user_id IS NULL), used::float8 / coalesce(window_limit, 1000000), last_used_at
             NULLS FIRST, id
    LIMIT 1),
reserve AS (INSERT INTO api_key_uses (key_id) SELECT id FROM chosen RETURNING id AS use_id)
UPDATE api_keys SET last_used_at = clock_timestamp()
WHERE id = (SELECT id FROM chosen)
RETURNING *, (SELECT use_id FROM reserve) AS use_id;

-- name: lock_key_picks
SELECT pg_advisory_xact_lock(7202613);

-- When the next key frees up: now, when a usable key has room (a use aged out between the
-- caller's failed pick and this query: waiting for the next one would lose that slot), else
-- the first cooling key to thaw, or the first use to age out of a full key's window. A
-- cool-down that already ended is not an answer on its own (the key was not picked because its
-- window is full, or the caller excluded it): counting it would make the caller wait for a
-- moment already past, again and again. $2: window seconds.
-- name: next_key_free
SELECT least(
    (SELECT clock_timestamp() WHERE EXISTS (
        SELECT 1 FROM api_keys k
        WHERE (k.user_id = $1 OR k.user_id IS NULL)
          AND (k.status = 'active' OR (k.status = 'cooling' AND k.cooling_until <= clock_timestamp()))
          AND (k.window_limit IS NULL
               OR (SELECT count(*) FROM api_key_uses u
                   WHERE u.key_id = k.id AND u.at > clock_timestamp() - make_interval(secs => $2::float8))
                  < k.window_limit))),
    (SELECT min(cooling_until) FROM api_keys
     WHERE (user_id = $1 OR user_id IS NULL) AND status = 'cooling'
       AND cooling_until > clock_timestamp()),
    (SELECT min(oldest) FROM (
        SELECT (SELECT min(u.at) FROM api_key_uses u
                WHERE u.key_id = k.id AND u.at > clock_timestamp() - make_interval(secs => $2::float8))
               + make_interval(secs => $2::float8) AS oldest
        FROM api_keys k
        WHERE (k.user_id = $1 OR k.user_id IS NULL) AND k.status <> 'invalid'
          AND k.window_limit IS NOT NULL
          AND (SELECT count(*) FROM api_key_uses u
               WHERE u.key_id = k.id AND u.at > clock_timestamp() - make_interval(secs => $2::float8))
              >= k.window_limit) full_keys)) AS at;

-- A 429: Google did not count the refused call, so its reservation goes; the uses left in the
-- window and confirmed by Google are what the key allows (the limit, learned). Confirmed uses
-- never exceed the real limit, so the limit only grows toward it: a 429 that comes from our
-- clock and Google's disagreeing by a few milliseconds must not shrink it for good. Calls
-- picked before this one and still in flight grow it when they are confirmed (date_use).
-- $3: window seconds.
-- name: key_refused
WITH gone AS (DELETE FROM api_key_uses WHERE id = $2),
used AS (SELECT count(*) AS n FROM api_key_uses
         WHERE key_id = $1 AND id <> $2 AND confirmed
           AND at > clock_timestamp() - make_interval(secs => $3::float8))
UPDATE api_keys SET window_limit = CASE WHEN (SELECT n FROM used) > 0
                                        THEN greatest(coalesce(window_limit, 0),
                                                      (SELECT n FROM used)::int)
                                        ELSE window_limit END,
                    refused_use = $2, refused_at = clock_timestamp()
WHERE id = $1
RETURNING window_limit;

-- A use is dated by the caller: $2 seconds after its pick, halfway between sending the call
-- and Google's answer (Google counted it while it was in flight). Dated at the pick, a key
-- picked early but sent late would free its slot in our window before Google's (a 429); dated
-- at the answer, after it (a slot lost per window). Only elapsed times of the caller's clock
-- are used, so the caller's and the database's clocks need not agree. A dated use is
-- confirmed: only confirmed uses teach a key's limit.
-- name: date_use
WITH dated AS (
    UPDATE api_key_uses SET at = at + make_interval(secs => $2::float8), confirmed = true
    WHERE id = $1 RETURNING key_id)
UPDATE api_keys k
SET window_limit = greatest(k.window_limit, (
    SELECT count(*)::int FROM api_key_uses u
    WHERE u.key_id = k.id AND u.id < k.refused_use AND (u.confirmed OR u.id = $1)
      AND u.at > k.refused_at - make_interval(secs => $3::float8)))
FROM dated
WHERE k.id = dated.key_id AND $1 < k.refused_use;

-- name: give_back_use
DELETE FROM api_key_uses WHERE id = $1;

-- name: prune_key_uses
DELETE FROM api_key_uses WHERE at < now() - make_interval(secs => $1::float8);

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
SELECT CASE WHEN status = 'cooling' AND cooling_until <= now() THEN 'active' ELSE status END
           AS status, count(*) AS n
FROM api_keys GROUP BY 1;

-- name: available_keys
SELECT count(*) FROM api_keys WHERE status = 'active' OR (status = 'cooling' AND cooling_until <= now());
