"""Prometheus metrics. Counters and histograms are bumped where things happen (transitions in
``veo.lifecycle``, key events in the pool); each process (web, every worker) exposes its own.
Gauges of shared state (queue depth, key states, paused accounts) are read from PostgreSQL and
Redis at most once per ``GAUGE_TTL`` seconds, so a scrape costs a few indexed counts at worst
and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)
GAUGE_TTL = 5.0  # seconds a scrape may reuse the shared-state gauges

JOBS = Counter("veo_jobs_total", "Job transitions by backend and the status moved to.",
               ["backend", "status"], registry=REGISTRY)
JOB_SECONDS = Histogram(
    "veo_job_run_seconds", "Run time of finished runs (claim to finish), by outcome.",
    ["backend", "status"], registry=REGISTRY,
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600))
CLIPS = Counter("veo_clips_total", "Clips finished, by backend and outcome.",
                ["backend", "status"], registry=REGISTRY)
KEY_EVENTS = Counter("veo_api_key_events_total", "Gemini key events (cooling, invalid).",
                     ["event"], registry=REGISTRY)
REQUEUED = Counter("veo_reconciler_requeued_total", "Runs the reconciler re-enqueued, by why.",
                   ["reason"], registry=REGISTRY)
WEBHOOKS = Counter("veo_outbox_total", "Webhook and alert deliveries, by kind and outcome.",
                   ["kind", "outcome"], registry=REGISTRY)
FINALS = Histogram("veo_final_build_seconds", "Time to build a final video.", ["path"],
                   registry=REGISTRY, buckets=(1, 5, 15, 30, 60, 120, 300, 600))

ACTIVE = Gauge("veo_jobs_active", "Unfinished jobs by backend, status and pause reason.",
               ["backend", "status", "reason"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("veo_queue_depth", "Queued jobs by backend.", ["backend"], registry=REGISTRY)
KEYS = Gauge("veo_api_keys", "Gemini keys by state.", ["status"], registry=REGISTRY)
FLOW_PAUSED = Gauge("veo_flow_paused", "1 while a Flow account waits for a new login.",
                    ["account"], registry=REGISTRY)
SSE_STREAMS = Gauge("veo_sse_streams", "Open Server-Sent Event streams in this process.",
                    registry=REGISTRY)


class SharedGauges:
    """Refreshes the shared-state gauges through ``refresh`` no more often than GAUGE_TTL."""

    def __init__(self, refresh: Callable[[], Awaitable[None]]) -> None:
        self._refresh = refresh
        self._at = 0.0

    async def render(self) -> bytes:
        now = time.monotonic()
        if now - self._at >= GAUGE_TTL:
            self._at = now
            await self._refresh()
        return generate_latest(REGISTRY)


def serve(port: int) -> None:
    """Expose this process's metrics on ``port`` (workers; the web app has ``/metrics``)."""
    start_http_server(port, addr="0.0.0.0", registry=REGISTRY)  # noqa: S104 - scraped remotely
