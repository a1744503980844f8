"""Benchmark helpers: the in-process worker, and quieter logs."""

from __future__ import annotations

from veo.worker.settings import in_process as worker

__all__ = ["quiet", "worker"]


def quiet() -> None:
    import logging

    import structlog

    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
