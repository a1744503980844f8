-- Jobs. Every state change is a guarded UPDATE (… WHERE status = …) whose row count the
-- caller checks, so two workers can never both move one job.

-- A job and its clips in one statement (one round trip, atomic). The queue position is
-- counted in the same snapshot, which does not yet see the new row.
-- name: insert_job
WITH job AS (
    INSERT INTO jobs (id, user_id, backend, requested_backend, model, params, webhook_url,
                      idempotency_key, request_hash, flow_account)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    RETURNING *),
clip AS (
    INSERT INTO clips (job_id, idx, prompt, first_frame, last_frame)
    SELECT job.id, c.ord - 1, c.prompt, c.first_frame, c.last_frame
    FROM job, unnest($11::text[], $12::text[], $13::text[])
         WITH ORDINALITY AS c(prompt, first_frame, last_frame, ord)
    RETURNING idx)
SELECT job.*, (SELECT count(*) FROM clip) AS clip_count,
       (SELECT count(*) FROM jobs q WHERE q.status = 'queued' AND q.backend = job.backend)
           AS queue_position
FROM job;

-- name: job_by_idempotency
SELECT * FROM jobs WHERE user_id = $1 AND idempotency_key = $2;

-- name: get_job
SELECT j.*,
       CASE WHEN j.status = 'queued' THEN (
           SELECT count(*) FROM jobs q
           WHERE q.status = 'queued' AND q.backend = j.backend
             AND (q.created_at, q.id) < (j.created_at, j.id)) END AS queue_position
FROM jobs j WHERE j.id = $1;

-- name: list_jobs
SELECT j.*,
       CASE WHEN j.status = 'queued' THEN (
           SELECT count(*) FROM jobs q
           WHERE q.status = 'queued' AND q.backend = j.backend
             AND (q.created_at, q.id) < (j.created_at, j.id)) END AS queue_position
FROM jobs j
WHERE j.user_id = $1
  AND ($2::text IS NULL OR j.status = $2)
  AND ($3::timestamptz IS NULL OR (j.created_at, j.id) < ($3, $4))
ORDER BY j.created_at DESC, j.id DESC
LIMIT $5;

-- name: clips_of_jobs
SELECT * FROM clips WHERE job_id = ANY($1::text[]) ORDER BY job_id, idx;

-- name: outputs_of_jobs
SELECT * FROM outputs WHERE job_id = ANY($1::text[]) ORDER BY job_id, clip, variant;

-- name: get_output
SELECT * FROM outputs WHERE id = $1 AND job_id = $2;

-- name: claim_job
UPDATE jobs
SET status = 'running', attempts = attempts + 1, started_at = coalesce(started_at, now()),
    heartbeat_at = now(), worker_id = $3, error = NULL, updated_at = now()
WHERE id = $1 AND run_seq = $2 AND status = 'queued'
RETURNING *;

-- name: heartbeat
UPDATE jobs SET heartbeat_at = now() WHERE id = $1 AND run_seq = $2 AND status = 'running';

-- name: set_progress
UPDATE jobs SET progress = $3, updated_at = now()
WHERE id = $1 AND run_seq = $2 AND status = 'running' AND progress <> $3;

-- name: finish_job
UPDATE jobs
SET status = $3, progress = CASE WHEN $3 = 'succeeded' THEN 100 ELSE progress END,
    error = $4, finished_at = now(), heartbeat_at = NULL, updated_at = now()
WHERE id = $1 AND run_seq = $2 AND status = 'running'
RETURNING *;

-- Back to the queue under a new run number (retry after a retryable error, shutdown).
-- name: requeue_running
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, heartbeat_at = NULL, worker_id = NULL,
    error = $3, updated_at = now()
WHERE id = $1 AND run_seq = $2 AND status = 'running'
RETURNING *;

-- A pause spends no try: the run that found the cause gives its attempt back.
-- name: pause_job
UPDATE jobs
SET status = 'paused', paused_reason = $3, flow_needs_auth = ($3 = 'flow_needs_auth'),
    attempts = CASE WHEN status = 'running' THEN greatest(attempts - 1, 0) ELSE attempts END,
    resume_at = $4, heartbeat_at = NULL, worker_id = NULL, run_seq = run_seq + 1, updated_at = now()
WHERE id = $1 AND run_seq = $2 AND status IN ('running', 'queued')
RETURNING *;

-- Every queued Flow job of the account waits for a new login with the one that hit it.
-- name: pause_queued_flow
UPDATE jobs
SET status = 'paused', paused_reason = 'flow_needs_auth', flow_needs_auth = true,
    run_seq = run_seq + 1, updated_at = now()
WHERE backend = 'flow' AND status = 'queued' AND coalesce(flow_account, 'default') = $1
RETURNING id;

-- name: resume_flow
UPDATE jobs
SET status = 'queued', paused_reason = NULL, flow_needs_auth = false, resume_at = NULL,
    run_seq = run_seq + 1, updated_at = now()
WHERE status = 'paused' AND paused_reason = 'flow_needs_auth'
  AND coalesce(flow_account, 'default') = $1
RETURNING id, run_seq, backend, flow_account;

-- name: resume_api_due
UPDATE jobs j
SET status = 'queued', paused_reason = NULL, resume_at = NULL, run_seq = run_seq + 1,
    updated_at = now()
WHERE j.status = 'paused' AND j.paused_reason = 'api_keys_exhausted'
  AND EXISTS (SELECT 1 FROM api_keys k
              WHERE (k.user_id = j.user_id OR k.user_id IS NULL)
                AND (k.status = 'active' OR (k.status = 'cooling' AND k.cooling_until <= now())))
RETURNING id, run_seq, backend, flow_account;

-- name: cancel_job
UPDATE jobs
SET status = 'canceled', paused_reason = NULL, flow_needs_auth = false, finished_at = now(),
    heartbeat_at = NULL, updated_at = now(),
    error = '{"code": "canceled", "message": "canceled by the user", "retryable": false}'
WHERE id = $1 AND status IN ('queued', 'running', 'paused')
RETURNING *;

-- name: cancel_open_clips
UPDATE clips SET status = 'canceled' WHERE job_id = $1 AND status IN ('queued', 'running');

-- name: retry_job
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, error = NULL, finished_at = NULL, progress = 0,
    paused_reason = NULL, flow_needs_auth = false, updated_at = now()
WHERE id = $1 AND status IN ('failed', 'canceled')
RETURNING *;

-- name: reset_unfinished_clips
UPDATE clips SET status = 'queued', error = NULL, progress = 0
WHERE job_id = $1 AND status <> 'succeeded';

-- name: retry_failed_flow
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, error = NULL, finished_at = NULL, progress = 0,
    updated_at = now()
WHERE backend = 'flow' AND status = 'failed' AND ($1::text IS NULL OR coalesce(flow_account, 'default') = $1)
RETURNING id, run_seq, backend, flow_account;

-- name: delete_job
DELETE FROM jobs WHERE id = $1 AND status NOT IN ('running') RETURNING id;

-- Only the run that owns the job may write its clips (a cancel or re-queue took it away).
-- name: set_clip
UPDATE clips SET status = $3, error = $4, progress = $5
WHERE job_id = $1 AND idx = $2
  AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND run_seq = $6 AND status = 'running');

-- name: set_clip_progress
UPDATE clips SET progress = $3 WHERE job_id = $1 AND idx = $2 AND progress <> $3;

-- name: clips_of_job
SELECT * FROM clips WHERE job_id = $1 ORDER BY idx;

-- name: upsert_output
INSERT INTO outputs (id, job_id, clip, variant, object_key, size, sha256, content_type)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (job_id, clip, variant) DO UPDATE
SET object_key = excluded.object_key, size = excluded.size, sha256 = excluded.sha256,
    content_type = excluded.content_type
RETURNING *;

-- name: save_operation
INSERT INTO operations (job_id, clip, request, name, key_id, samples) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (job_id, clip, request) DO UPDATE SET name = excluded.name, key_id = excluded.key_id,
    samples = excluded.samples;

-- name: operations_of_clip
SELECT * FROM operations WHERE job_id = $1 AND clip = $2 ORDER BY request;

-- name: forget_operation
DELETE FROM operations WHERE job_id = $1 AND clip = $2 AND request = $3;

-- Reconciler: unfinished jobs whose arq entry may be gone.
-- name: queued_jobs
SELECT id, run_seq, backend, flow_account FROM jobs WHERE status = 'queued'
ORDER BY created_at LIMIT $1;

-- A running job whose worker stopped beating is orphaned: back to the queue, new run number.
-- name: requeue_orphans
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, heartbeat_at = NULL, worker_id = NULL,
    updated_at = now()
WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
RETURNING id, run_seq, backend, flow_account;

-- name: fail_overdue
UPDATE jobs
SET status = 'failed', finished_at = now(), heartbeat_at = NULL, updated_at = now(),
    error = jsonb_build_object('code', 'timeout', 'retryable', true, 'message',
        'the job ran longer than its timeout (' || $1::text || ' s for api, ' || $2::text || ' s per clip for flow)')
WHERE status = 'running'
  AND started_at < now() - make_interval(secs => CASE WHEN backend = 'api' THEN $1 ELSE
        $2 * (SELECT count(*) FROM clips c WHERE c.job_id = jobs.id) END)
RETURNING *;

-- name: queue_status
SELECT
    count(*) FILTER (WHERE status = 'queued') AS pending,
    count(*) FILTER (WHERE status = 'running') AS processing,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'paused' AND paused_reason = 'flow_needs_auth') AS waiting_auth
FROM jobs WHERE backend = 'flow';

-- name: status_counts
SELECT backend, status, count(*) AS n FROM jobs GROUP BY backend, status;

-- name: duration_stats
SELECT backend, status, count(*) AS n,
       coalesce(sum(extract(epoch FROM finished_at - started_at)), 0) AS seconds
FROM jobs WHERE finished_at IS NOT NULL AND started_at IS NOT NULL
GROUP BY backend, status;
