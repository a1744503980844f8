-- Fresh runs, fenced writes, per-clip timeouts, films, revocable tokens, and an outbox for
-- webhooks and operator alerts that survives a Redis loss.

-- A Flow account cooling down after a rate-limit or unusual-activity answer pauses its jobs too.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_paused_reason_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_paused_reason_check
    CHECK (paused_reason IN ('flow_needs_auth', 'api_keys_exhausted', 'flow_rate_limited'));

-- continuity 'chain': clip n+1 starts from the last frame of clip n's selected variant.
-- final_options: null, or how to stitch the clips into one video once all have succeeded.
ALTER TABLE jobs
    ADD COLUMN continuity    text NOT NULL DEFAULT 'none' CHECK (continuity IN ('none', 'chain')),
    ADD COLUMN final_options jsonb;

-- started_at is when the clip began in the current run: timeouts are per clip and per run.
-- selected is the variant the final uses (variant 0 until the user picks).
-- redo marks a clip whose new variants replace the old ones only once they all exist.
ALTER TABLE clips
    ADD COLUMN reference_images text[] NOT NULL DEFAULT '{}',
    ADD COLUMN extend_from      text,
    ADD COLUMN started_at       timestamptz,
    ADD COLUMN selected         integer NOT NULL DEFAULT 0 CHECK (selected >= 0),
    ADD COLUMN redo             boolean NOT NULL DEFAULT false;

ALTER TABLE outputs
    ADD COLUMN poster_key       text,
    ADD COLUMN duration_seconds double precision;

-- Remote generations (Omni interactions, Veo operations) of a clip, recorded the moment they
-- exist, with the key that created them: resources are per Google project, so only that key
-- may poll them. run_seq says which run paid for it; a retry drops what a failed run left.
ALTER TABLE operations RENAME TO generations;
ALTER TABLE generations RENAME COLUMN name TO handle;
ALTER TABLE generations ADD COLUMN run_seq integer NOT NULL DEFAULT 0;

-- The stitched film of a job: one row per job that asked for one.
CREATE TABLE finals (
    job_id           text PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    options          jsonb NOT NULL,
    object_key       text,
    poster_key       text,
    duration_seconds double precision,
    size             bigint,
    sha256           text,
    error            jsonb,
    started_at       timestamptz,
    finished_at      timestamptz
);

-- Bearer tokens live apart from users so they can be revoked and replaced.
CREATE TABLE tokens (
    token_hash  text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
INSERT INTO tokens (token_hash, user_id) SELECT token_hash, id FROM users;
ALTER TABLE users DROP COLUMN token_hash;

-- Webhook deliveries and operator alerts wait here until delivered or given up, so a Redis
-- loss drops none of them. One row per event; attempts and next_at drive the back-off.
CREATE TABLE outbox (
    id          text PRIMARY KEY,              -- the webhook-id / alert id; stable across tries
    kind        text NOT NULL CHECK (kind IN ('webhook', 'alert')),
    job_id      text REFERENCES jobs(id) ON DELETE CASCADE,
    url         text,                          -- null for alerts: ALERT_WEBHOOK_URL at send time
    payload     jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'abandoned')),
    attempts    integer NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE status = 'pending';

-- One alert per cause while it lasts: the cause is cleared when it ends (a new login, a key
-- that works again), after which a new occurrence alerts again.
CREATE TABLE alert_causes (
    kind       text NOT NULL,
    scope      text NOT NULL,
    raised_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, scope)
);

-- Per-account Flow upkeep: cooling after rate limits, and the canary's last walk.
ALTER TABLE flow_accounts
    ADD COLUMN cooling_until  timestamptz,
    ADD COLUMN cool_streak    integer NOT NULL DEFAULT 0,
    ADD COLUMN canary         jsonb;

CREATE INDEX clips_running ON clips (started_at) WHERE status = 'running';

-- Error texts from Google quote the key that made the call: scrub any that were stored
-- before texts were redacted on the way in.
UPDATE api_keys SET last_error = regexp_replace(
    regexp_replace(last_error, '(AIza[0-9A-Za-z_\-]{20,}|AQ\.[0-9A-Za-z_\-.]{20,})', '[REDACTED]', 'g'),
    'api_key:[^\s''"]+', 'api_key:[REDACTED]', 'g')
WHERE last_error ~ '(AIza|AQ\.|api_key:)';
UPDATE jobs SET error = regexp_replace(
    regexp_replace(error::text, '(AIza[0-9A-Za-z_\-]{20,}|AQ\.[0-9A-Za-z_\-.]{20,})', '[REDACTED]', 'g'),
    'api_key:[^\s''"\\]+', 'api_key:[REDACTED]', 'g')::jsonb
WHERE error::text ~ '(AIza|AQ\.|api_key:)';
UPDATE clips SET error = regexp_replace(
    regexp_replace(error::text, '(AIza[0-9A-Za-z_\-]{20,}|AQ\.[0-9A-Za-z_\-.]{20,})', '[REDACTED]', 'g'),
    'api_key:[^\s''"\\]+', 'api_key:[REDACTED]', 'g')::jsonb
WHERE error::text ~ '(AIza|AQ\.|api_key:)';
