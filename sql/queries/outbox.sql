-- The outbox: webhook deliveries and operator alerts, kept until delivered or given up so a
-- Redis loss drops none. Senders claim due rows by pushing next_at ahead (a lease), so two
-- workers never send one row at the same time and a sender that dies is retried after it.

-- name: add_outbox
INSERT INTO outbox (id, kind, job_id, url, payload) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: claim_outbox
UPDATE outbox SET next_at = now() + make_interval(secs => $2::float8), attempts = attempts + 1
WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_at <= now()
             ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING *;

-- name: outbox_delivered
UPDATE outbox SET status = 'delivered', last_error = NULL WHERE id = $1;

-- name: outbox_retry
UPDATE outbox SET next_at = now() + make_interval(secs => $2::float8), last_error = $3 WHERE id = $1;

-- name: outbox_abandoned
UPDATE outbox SET status = 'abandoned', last_error = $2 WHERE id = $1;

-- name: get_outbox
SELECT * FROM outbox WHERE id = $1;

-- One alert per cause while it lasts. Returns a row only for a new cause.
-- name: raise_cause
INSERT INTO alert_causes (kind, scope) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING kind;

-- name: clear_cause
DELETE FROM alert_causes WHERE kind = $1 AND scope = $2 RETURNING kind;
