-- The last refused call of a key: which use it was and when. Calls picked before it that were
-- still in flight at the refusal were counted by Google before it; when they are confirmed
-- later they raise the key's learned limit (see date_use), so a limit learned in a burst is
-- not stuck one or two below the real one.
ALTER TABLE api_keys ADD COLUMN refused_use bigint, ADD COLUMN refused_at timestamptz;
