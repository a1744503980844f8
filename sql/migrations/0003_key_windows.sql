-- Each Gemini key's quota window, tracked instead of learned from 429s one rejection at a time:
-- every create call reserves a use; a key whose uses in the last window reached its learned
-- limit is skipped until one ages out. A 429 teaches the limit (the uses it had in the window)
-- and gives its reservation back, since Google did not count the refused call.
ALTER TABLE api_keys ADD COLUMN window_limit integer CHECK (window_limit > 0);

CREATE TABLE api_key_uses (
    key_id  text NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    id      bigserial PRIMARY KEY
);
CREATE INDEX api_key_uses_window ON api_key_uses (key_id, at);
