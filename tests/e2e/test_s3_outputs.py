"""With S3 storage (a real moto_server), a finished video is served as a redirect to a
short-lived presigned URL, and deleting the job removes its objects from the bucket."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.harness import add_key, make_env, new_key, running
from veo.sandbox import mp4
from veo.sandbox.gemini import FakeGemini


async def test_presigned_redirect_and_delete(pg_dsn: str, redis_url: str, redis,  # type: ignore[no-untyped-def]
                                             tmp_path: Path, fake_gemini: FakeGemini,
                                             s3_server: str, s3_bucket: str) -> None:
    env = make_env(pg_dsn, redis_url, str(tmp_path / "unused"), GEMINI_BASE_URL=fake_gemini.url,
                   S3_ENDPOINT=s3_server, S3_BUCKET=s3_bucket, S3_ACCESS_KEY="test",
                   S3_SECRET_KEY="test", S3_REGION="us-east-1")
    async with running(env) as h:
        assert h.svc.storage.backend == "s3"
        _, token = await h.user("s3user")
        await add_key(h, token, new_key("s3"))
        await h.start_worker()
        job_id = (await h.http.post("/api/jobs", json={"prompt": "to the bucket"},
                                    headers=h.auth(token))).json()["id"]
        done = await h.wait_job(token, job_id, {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        resp = await h.http.get(done["outputs"][0]["url"], headers=h.auth(token))
        assert resp.status_code == 302 and resp.headers["cache-control"] == "no-store"
        location = resp.headers["location"]
        assert location.startswith(s3_server) and "X-Amz-Signature" in location
        async with httpx.AsyncClient() as client:
            video = await client.get(location)
        assert video.status_code == 200
        ident = mp4.identify(video.content)
        assert ident is not None and ident["prompt"] == "to the bucket"
        # a link for a <video> element is a presigned URL too
        link = (await h.http.get(done["outputs"][0]["url"] + "/link",
                                 headers=h.auth(token))).json()
        assert link["url"].startswith(s3_server) and "X-Amz-Signature" in link["url"]
        # the presigned URL is made on request, never stored
        stored = await h.svc.db.pool.fetchval(
            "SELECT count(*) FROM outputs WHERE object_key LIKE '%X-Amz%'")
        assert stored == 0
        assert [o.key for o in await h.svc.storage.list(f"outputs/{job_id}/")] == \
            [f"outputs/{job_id}/0-0.jpg", f"outputs/{job_id}/0-0.mp4"]
        assert await h.svc.storage.list(f"staging/{job_id}/") == []  # promoted, not copied
        assert (await h.http.delete(f"/api/jobs/{job_id}", headers=h.auth(token))).status_code \
            == 204
        assert await h.svc.storage.list(f"outputs/{job_id}/") == []
