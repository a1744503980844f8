-- name: insert_upload
INSERT INTO uploads (id, user_id, object_key, content_type, width, height, size, sha256)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *;

-- name: get_upload
SELECT * FROM uploads WHERE id = $1 AND user_id = $2;

-- name: uploads_by_ids
SELECT * FROM uploads WHERE id = ANY($1::text[]) AND user_id = $2;
