-- The outputs a final was built from (clip, variant, sha256), so the API can say when a pick or
-- a redo made the final stale.
ALTER TABLE finals ADD COLUMN selection jsonb;
