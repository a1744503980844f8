from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import Harness, make_env, running
from veo.sandbox.gemini import FakeGemini


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    fake = FakeGemini()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def harness(pg_dsn: str, redis_url: str, redis, tmp_path: Path,  # type: ignore[no-untyped-def]
                  fake_gemini: FakeGemini) -> AsyncIterator[Harness]:
    env = make_env(pg_dsn, redis_url, str(tmp_path / "store"), GEMINI_BASE_URL=fake_gemini.url)
    async with running(env) as h:
        yield h
