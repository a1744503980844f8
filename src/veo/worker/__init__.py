"""The worker processes: ``arq veo.worker.Settings`` runs API and Flow jobs;
``arq veo.worker.ApiSettings`` runs API jobs only (no browser)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # built lazily: importing veo.worker must not read the environment or open connections
    if name in ("Settings", "ApiSettings"):
        from veo.worker import settings

        return settings.build(flow=name == "Settings")
    raise AttributeError(name)
