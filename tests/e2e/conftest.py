from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import CHROMIUM, Harness, make_env, running
from veo import flow_state
from veo.sandbox.flow import FakeFlow
from veo.sandbox.gemini import FakeGemini


@pytest.fixture
async def harness(pg_dsn: str, redis_url: str, redis, tmp_path: Path,  # type: ignore[no-untyped-def]
                  fake_gemini: FakeGemini,
                  request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """The whole service on the API backend; ``indirect`` parametrization adds settings."""
    extra = getattr(request, "param", {})
    env = make_env(pg_dsn, redis_url, str(tmp_path / "store"), GEMINI_BASE_URL=fake_gemini.url,
                   **extra)
    async with running(env) as h:
        yield h


def flow_env(h_env: dict[str, str], fake: FakeFlow, **extra: str) -> dict[str, str]:
    # headless by default here for speed; the headed path has tests of its own
    return {**h_env, "FLOW_BACKEND_ENABLED": "true", "FLOW_BASE_URL": fake.home,
            "FLOW_BROWSER_EXECUTABLE": CHROMIUM, "FLOW_JOB_TIMEOUT": "30",
            "FLOW_HEADLESS": "true", "FLOW_CANARY_MINUTES": "0", "FLOW_LEASE_SECONDS": "3",
            "FLOW_COOLDOWN_SECONDS": "30", **extra}


@pytest.fixture
async def flow_harness(pg_dsn: str, redis_url: str, redis, tmp_path: Path,  # type: ignore[no-untyped-def]
                       fake_gemini: FakeGemini, fake_flow: FakeFlow,
                       request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    extra = getattr(request, "param", {})
    account = f"acct{uuid.uuid4().hex[:8]}"
    env = flow_env(make_env(pg_dsn, redis_url, str(tmp_path / "store"),
                            GEMINI_BASE_URL=fake_gemini.url, FLOW_ACCOUNT=account),
                   fake_flow, **extra)
    async with running(env) as h:
        await flow_state.write(h.svc.storage, h.svc.box, h.settings.flow_account,
                               fake_flow.storage_state(), h.settings.flow_storage_state_key)
        yield h
