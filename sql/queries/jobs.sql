-- Jobs, clips, outputs, generations and finals.
--
-- Every change of a job's status is one guarded UPDATE (… WHERE status = … [AND run_seq = …])
-- whose row count the caller checks, so two workers never both move one job; the moves match
-- veo.jobs.TRANSITIONS (a test parses this file and checks). Every write made by a run (clip
-- state, progress, outputs, generations, the final) is fenced by the run's number: a run that
-- lost the job (canceled, re-queued after its worker went silent) changes nothing.

-- A job, its clips and its final in one statement (one round trip, atomic). The queue
-- position is counted in the same snapshot, which does not yet see the new row.
-- name: insert_job
WITH job AS (
    INSERT INTO jobs (id, user_id, backend, requested_backend, model, params, webhook_url,
                      idempotency_key, request_hash, flow_account, continuity, final_options)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    RETURNING *),
clip AS (
    INSERT INTO clips (job_id, idx, prompt, first_frame, last_frame, reference_images, extend_from)
    SELECT job.id, c.ord - 1, c.prompt, c.first_frame, c.last_frame,
           coalesce((SELECT array_agg(x) FROM jsonb_array_elements_text(c.refs::jsonb) x), '{}'),
           c.extend_from
    FROM job, unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
         WITH ORDINALITY AS c(prompt, first_frame, last_frame, refs, extend_from, ord)
    RETURNING idx),
fin AS (
    INSERT INTO finals (job_id, options) SELECT job.id, job.final_options FROM job
    WHERE job.final_options IS NOT NULL
    RETURNING job_id)
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

-- name: finals_of_jobs
SELECT * FROM finals WHERE job_id = ANY($1::text[]);

-- name: get_output
SELECT * FROM outputs WHERE id = $1 AND job_id = $2;

-- An output of one of the user's jobs, by id alone (a clip's extend_from names it).
-- name: output_of_user
SELECT o.* FROM outputs o JOIN jobs j ON j.id = o.job_id WHERE o.id = $1 AND j.user_id = $2;

-- name: clips_of_job
SELECT * FROM clips WHERE job_id = $1 ORDER BY idx;

-- ---- transitions --------------------------------------------------------------------------

-- A fresh run: its timeouts count from now, not from the job's first run.
-- name: claim_job
UPDATE jobs
SET status = 'running', attempts = attempts + 1, started_at = now(), finished_at = NULL,
    heartbeat_at = now(), worker_id = $3, error = NULL, updated_at = now()
WHERE id = $1 AND run_seq = $2 AND status = 'queued'
RETURNING *;

-- name: heartbeat
UPDATE jobs SET heartbeat_at = now() WHERE id = $1 AND run_seq = $2 AND status = 'running';

-- name: finish_job
UPDATE jobs
SET status = $3, progress = CASE WHEN $3 = 'succeeded' THEN 100 ELSE progress END,
    error = $4, finished_at = now(), heartbeat_at = NULL, worker_id = NULL, updated_at = now()
WHERE id = $1 AND run_seq = $2 AND status = 'running' AND $3 IN ('succeeded', 'failed')
RETURNING *;

-- Back to the queue under a new run number (retry after a retryable error, shutdown). A run
-- handed back because its worker is stopping failed at nothing: it gives its attempt back ($4).
-- name: requeue_running
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, heartbeat_at = NULL, worker_id = NULL,
    error = $3, updated_at = now(),
    attempts = CASE WHEN $4 THEN greatest(attempts - 1, 0) ELSE attempts END
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

-- Every queued Flow job of the account waits with the one that found the cause.
-- name: pause_queued_flow
UPDATE jobs
SET status = 'paused', paused_reason = $2, flow_needs_auth = ($2 = 'flow_needs_auth'),
    resume_at = $3, run_seq = run_seq + 1, updated_at = now()
WHERE backend = 'flow' AND status = 'queued' AND coalesce(flow_account, 'default') = $1
RETURNING *;

-- name: resume_flow
UPDATE jobs
SET status = 'queued', paused_reason = NULL, flow_needs_auth = false, resume_at = NULL,
    run_seq = run_seq + 1, updated_at = now()
WHERE status = 'paused' AND paused_reason = $2 AND coalesce(flow_account, 'default') = $1
RETURNING *;

-- name: resume_api_due
UPDATE jobs j
SET status = 'queued', paused_reason = NULL, resume_at = NULL, run_seq = run_seq + 1,
    updated_at = now()
WHERE j.status = 'paused' AND j.paused_reason = 'api_keys_exhausted'
  AND EXISTS (SELECT 1 FROM api_keys k
              WHERE (k.user_id = j.user_id OR k.user_id IS NULL)
                AND (k.status = 'active' OR (k.status = 'cooling' AND k.cooling_until <= now())))
RETURNING *;

-- name: cancel_job
UPDATE jobs
SET status = 'canceled', paused_reason = NULL, flow_needs_auth = false, finished_at = now(),
    heartbeat_at = NULL, worker_id = NULL, updated_at = now(),
    error = '{"code": "canceled", "message": "canceled by the user", "retryable": false}'
WHERE id = $1 AND status IN ('queued', 'running', 'paused')
RETURNING *;

-- name: cancel_open_clips
UPDATE clips SET status = 'canceled', started_at = NULL
WHERE job_id = $1 AND status IN ('queued', 'running');

-- A user retry or a re-queue of failed Flow jobs is a fresh run with every try again.
-- name: retry_job
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, attempts = 0, error = NULL, finished_at = NULL,
    progress = 0, paused_reason = NULL, flow_needs_auth = false, updated_at = now()
WHERE id = $1 AND status IN ('failed', 'canceled')
RETURNING *;

-- name: retry_failed_flow
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, attempts = 0, error = NULL, finished_at = NULL,
    progress = 0, updated_at = now()
WHERE backend = 'flow' AND status = 'failed'
  AND ($1::text IS NULL OR coalesce(flow_account, 'default') = $1)
RETURNING *;

-- More work on a finished job (redo a clip, rebuild the final): a fresh run.
-- name: rework_job
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, attempts = 0, error = NULL, finished_at = NULL,
    paused_reason = NULL, flow_needs_auth = false, updated_at = now()
WHERE id = $1 AND status IN ('succeeded', 'failed', 'canceled')
RETURNING *;

-- Clips that did not succeed start over; what a failed run paid for is spent, never polled.
-- name: reset_unfinished_clips
UPDATE clips SET status = 'queued', error = NULL, progress = 0, started_at = NULL
WHERE job_id = $1 AND status <> 'succeeded';

-- name: drop_unfinished_generations
DELETE FROM generations g USING clips c
WHERE g.job_id = $1 AND c.job_id = g.job_id AND c.idx = g.clip AND c.status <> 'succeeded';

-- name: delete_job
DELETE FROM jobs WHERE id = $1 AND status <> 'running' RETURNING id;

-- A running job whose worker stopped beating is orphaned: back to the queue, new run number.
-- Its stored generations stay: the next run resumes polling them.
-- name: requeue_orphans
UPDATE jobs
SET status = 'queued', run_seq = run_seq + 1, heartbeat_at = NULL, worker_id = NULL,
    updated_at = now()
WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1::float8)
RETURNING *;

-- Timeouts are per clip and per run: a job fails when one of its running clips has run longer
-- than its backend's budget ($1 api, $2 flow seconds), or its final build longer than $3.
-- name: fail_overdue
UPDATE jobs j
SET status = 'failed', finished_at = now(), heartbeat_at = NULL, worker_id = NULL,
    updated_at = now(),
    error = jsonb_build_object('code', 'timeout', 'retryable', true, 'message',
        'a clip ran longer than its timeout (' ||
        (CASE WHEN j.backend = 'api' THEN $1::float8 ELSE $2::float8 END)::text || ' s)')
WHERE j.status = 'running'
  AND (EXISTS (SELECT 1 FROM clips c
               WHERE c.job_id = j.id AND c.status = 'running'
                 AND c.started_at < now() - make_interval(
                     secs => CASE WHEN j.backend = 'api' THEN $1::float8 ELSE $2::float8 END)))
RETURNING *;

-- name: fail_overdue_finals
UPDATE jobs j
SET status = 'failed', finished_at = now(), heartbeat_at = NULL, worker_id = NULL,
    updated_at = now(),
    error = jsonb_build_object('code', 'timeout', 'retryable', true, 'message',
        'building the final video took longer than ' || $1::text || ' s')
WHERE j.status = 'running'
  AND EXISTS (SELECT 1 FROM finals f WHERE f.job_id = j.id AND f.status = 'running'
                AND f.started_at < now() - make_interval(secs => $1::float8))
RETURNING *;

-- A job that failed for a reason of its own (no usable key, a timeout) leaves no clip open:
-- the clips that never ended carry the job's error.
-- name: fail_open_clips
UPDATE clips SET status = 'failed', error = $2
WHERE job_id = $1 AND status IN ('queued', 'running');

-- The clips that were running when their job timed out carry the error too.
-- name: fail_running_clips
UPDATE clips SET status = 'failed', error = $2
WHERE job_id = $1 AND status = 'running';

-- name: fail_running_final
UPDATE finals SET status = 'failed', error = $2, finished_at = now()
WHERE job_id = $1 AND status = 'running';

-- name: requeue_running_clips
UPDATE clips SET status = 'queued', started_at = NULL WHERE job_id = $1 AND status = 'running';

-- ---- writes of a run (fenced) ----------------------------------------------------------------

-- Locks the job row for the length of a transaction if this run still owns it: a promotion
-- of an object to its final key happens under it, so no newer run can interleave.
-- name: lock_run
SELECT id FROM jobs WHERE id = $1 AND run_seq = $2 AND status = 'running' FOR UPDATE;

-- name: set_progress
UPDATE jobs SET progress = $3, updated_at = now()
WHERE id = $1 AND run_seq = $2 AND status = 'running' AND progress <> $3;

-- name: start_clip
UPDATE clips SET status = 'running', started_at = now(), error = NULL
WHERE job_id = $1 AND idx = $2
  AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND run_seq = $3 AND status = 'running');

-- name: set_clip
UPDATE clips SET status = $3, error = $4, progress = $5,
    started_at = CASE WHEN $3 = 'running' THEN started_at END,
    redo = CASE WHEN $3 = 'succeeded' THEN false ELSE redo END
WHERE job_id = $1 AND idx = $2
  AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND run_seq = $6 AND status = 'running');

-- name: set_clip_progress
UPDATE clips SET progress = $3
WHERE job_id = $1 AND idx = $2 AND progress <> $3
  AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND run_seq = $4 AND status = 'running');

-- Called inside a lock_run transaction.
-- name: upsert_output
INSERT INTO outputs (id, job_id, clip, variant, object_key, size, sha256, content_type,
                     poster_key, duration_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (job_id, clip, variant) DO UPDATE
SET object_key = excluded.object_key, size = excluded.size, sha256 = excluded.sha256,
    content_type = excluded.content_type, poster_key = excluded.poster_key,
    duration_seconds = excluded.duration_seconds, created_at = now()
RETURNING *;

-- A redone clip's variants beyond the new count go once the new ones exist.
-- name: drop_outputs_from
DELETE FROM outputs WHERE job_id = $1 AND clip = $2 AND variant >= $3 RETURNING *;

-- name: save_generation
INSERT INTO generations (job_id, clip, request, handle, key_id, samples, run_seq)
SELECT $1, $2, $3, $4, $5, $6, $7
WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND run_seq = $7 AND status = 'running')
ON CONFLICT (job_id, clip, request) DO UPDATE
SET handle = excluded.handle, key_id = excluded.key_id, samples = excluded.samples,
    run_seq = excluded.run_seq, created_at = now()
RETURNING job_id;

-- name: generations_of_clip
SELECT * FROM generations WHERE job_id = $1 AND clip = $2 ORDER BY request;

-- A spent generation is forgotten by the run that owns the job, never by a stale one (which
-- would drop what a newer run submitted and make it pay for the same clip again).
-- name: forget_generation
DELETE FROM generations WHERE job_id = $1 AND clip = $2 AND request = $3
  AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND run_seq = $4 AND status = 'running');

-- name: forget_clip_generations
DELETE FROM generations WHERE job_id = $1 AND clip = $2;

-- ---- variants, redo, final --------------------------------------------------------------------

-- name: select_variant
UPDATE clips SET selected = $3
WHERE job_id = $1 AND idx = $2
  AND EXISTS (SELECT 1 FROM outputs o WHERE o.job_id = $1 AND o.clip = $2 AND o.variant = $3)
RETURNING *;

-- name: mark_redo
UPDATE clips SET status = 'queued', error = NULL, progress = 0, started_at = NULL, redo = true,
    prompt = coalesce($3, prompt)
WHERE job_id = $1 AND idx = $2
RETURNING *;

-- name: get_final
SELECT * FROM finals WHERE job_id = $1;

-- A rebuild (new options, or clips changed under it): pending again.
-- name: reset_final
INSERT INTO finals (job_id, options) VALUES ($1, $2)
ON CONFLICT (job_id) DO UPDATE SET status = 'pending', options = excluded.options, error = NULL,
    started_at = NULL, finished_at = NULL
RETURNING *;

-- name: start_final
UPDATE finals SET status = 'running', started_at = now(), error = NULL, finished_at = NULL
WHERE job_id = $1
  AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND run_seq = $2 AND status = 'running')
RETURNING *;

-- Called inside a lock_run transaction.
-- name: finish_final
UPDATE finals SET status = $2, object_key = $3, poster_key = $4, duration_seconds = $5,
    size = $6, sha256 = $7, error = $8, selection = $9, finished_at = now()
WHERE job_id = $1
RETURNING *;

-- ---- the reconciler ----------------------------------------------------------------------------

-- name: queued_jobs
SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_at LIMIT $1;

-- name: queue_status
SELECT
    count(*) FILTER (WHERE status = 'queued') AS pending,
    count(*) FILTER (WHERE status = 'running') AS processing,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'paused' AND paused_reason = 'flow_needs_auth') AS waiting_auth
FROM jobs WHERE backend = 'flow' AND ($1::text IS NULL OR coalesce(flow_account, 'default') = $1);

-- Unfinished jobs by backend and status, for the metrics gauges (served by jobs_active).
-- name: active_counts
SELECT backend, status, coalesce(paused_reason, '') AS reason, count(*) AS n
FROM jobs WHERE status IN ('queued', 'running', 'paused')
GROUP BY backend, status, paused_reason;
