-- A use of a key is confirmed once Google accepted the call. Only confirmed uses teach a key's
-- limit: reservations still in flight would make a 429 look like a larger quota than it is.
ALTER TABLE api_key_uses ADD COLUMN confirmed boolean NOT NULL DEFAULT false;
