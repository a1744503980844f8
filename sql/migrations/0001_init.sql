-- Initial schema. PostgreSQL is the record: every job state lives here, Redis only queues.
-- Status columns carry CHECK constraints with exactly SPEC §3's values, so no code path can
-- write a status the API cannot describe (the original system's auth-pause status did not fit).

CREATE TABLE users (
    id          text PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    is_admin    boolean NOT NULL DEFAULT false,
    token_hash  text NOT NULL UNIQUE,          -- sha256 of the bearer token; the token is shown once
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            text PRIMARY KEY,
    user_id       text REFERENCES users(id) ON DELETE CASCADE,  -- NULL: the operator pool
    label         text,
    fingerprint   text NOT NULL,               -- sha256 of the key, to refuse duplicates
    key_enc       text NOT NULL,               -- AES-GCM envelope (veo.crypto), never plaintext
    last4         text NOT NULL,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cooling', 'invalid')),
    cooling_until timestamptz,
    cool_streak   integer NOT NULL DEFAULT 0,  -- consecutive 429s: drives the growing back-off
    last_error    text,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'cooling') = (cooling_until IS NOT NULL))
);
CREATE UNIQUE INDEX api_keys_owner_fingerprint ON api_keys (coalesce(user_id, ''), fingerprint);
CREATE INDEX api_keys_pick ON api_keys (user_id, status, last_used_at);

CREATE TABLE uploads (
    id           text PRIMARY KEY,
    user_id      text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    object_key   text NOT NULL,
    content_type text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_user ON uploads (user_id, created_at DESC);

CREATE TABLE jobs (
    id                text PRIMARY KEY,
    user_id           text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled', 'paused')),
    paused_reason     text CHECK (paused_reason IN ('flow_needs_auth', 'api_keys_exhausted')),
    backend           text NOT NULL CHECK (backend IN ('api', 'flow')),
    requested_backend text NOT NULL DEFAULT 'auto' CHECK (requested_backend IN ('auto', 'api', 'flow')),
    model             text NOT NULL,
    params            jsonb NOT NULL,
    webhook_url       text,
    idempotency_key   text,
    request_hash      text,                    -- body hash, so a reused Idempotency-Key with another body is a 409
    progress          integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    flow_account      text,
    flow_needs_auth   boolean NOT NULL DEFAULT false,
    error             jsonb,
    attempts          integer NOT NULL DEFAULT 0,
    run_seq           integer NOT NULL DEFAULT 0,  -- bumped on every re-enqueue; part of the arq job id
    worker_id         text,
    heartbeat_at      timestamptz,
    resume_at         timestamptz,             -- api_keys_exhausted: when the first key cools off
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'paused') = (paused_reason IS NOT NULL))
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_listing ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_listing_status ON jobs (user_id, status, created_at DESC, id DESC);
-- the reconciler and queue counts only ever look at unfinished jobs
CREATE INDEX jobs_active ON jobs (status, backend, created_at)
    WHERE status IN ('queued', 'running', 'paused');
CREATE INDEX jobs_failed_flow ON jobs (backend, status) WHERE status = 'failed';

CREATE TABLE clips (
    job_id      text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx         integer NOT NULL CHECK (idx >= 0),
    prompt      text NOT NULL,
    first_frame text REFERENCES uploads(id) ON DELETE RESTRICT,
    last_frame  text REFERENCES uploads(id) ON DELETE RESTRICT,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    progress    integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    error       jsonb,
    PRIMARY KEY (job_id, idx)
);

-- A Veo long-running operation, recorded the moment its name exists so a rerun polls it
-- instead of paying for a second generation.
CREATE TABLE operations (
    job_id     text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    clip       integer NOT NULL,
    request    integer NOT NULL,               -- nth request for this clip (Veo 3.x: one sample each)
    name       text NOT NULL,
    key_id     text,
    samples    integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, clip, request)
);

CREATE TABLE outputs (
    id           text PRIMARY KEY,
    job_id       text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    clip         integer NOT NULL,
    variant      integer NOT NULL,
    object_key   text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    content_type text NOT NULL DEFAULT 'video/mp4',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, clip, variant)
);

CREATE TABLE flow_accounts (
    account           text PRIMARY KEY,
    state_etag        text,                    -- of the storage-state object last loaded
    state_updated_at  timestamptz,
    last_verified_at  timestamptz,
    needs_auth_since  timestamptz
);
