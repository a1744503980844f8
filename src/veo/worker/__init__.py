"""The worker process: ``arq veo.worker.Settings`` runs API and Flow jobs."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # built lazily: importing veo.worker must not read the environment or open connections
    if name == "Settings":
        from veo.worker import settings

        return settings.build(flow=True)
    raise AttributeError(name)
