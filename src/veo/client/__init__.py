"""A Python client for the Veo service, typed with the service's own wire types.

    from veo.client import AsyncClient

    async with AsyncClient() as veo:                      # VEO_URL and VEO_TOKEN
        frame = await veo.upload("start.png")
        job = await veo.run({"clips": [{"prompt": "a paper boat", "first_frame": frame.id}],
                             "number_of_videos": 2},
                            on_update=lambda j: print(j.status, j.progress))
        paths = await veo.download_job(job, "videos/")

:class:`Client` offers the same calls, blocking. Errors the API answers raise
:class:`ApiError` subclasses carrying its ``code``, ``message``, ``status`` and ``details``
(``InvalidRequest.field`` names the refused field); an unreachable service raises
:class:`ConnectionFailed`. Requests are retried on 429, 5xx and connection errors with
back-off, honouring Retry-After (see :class:`RetryPolicy`).
"""

from veo.client._async import AsyncClient
from veo.client._core import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    DownloadError,
    Forbidden,
    InvalidRequest,
    JobEvent,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServerSentEvent,
    SSEDecoder,
    Unauthorized,
    UnexpectedResponse,
    VeoClientError,
)
from veo.client._sync import Client

__all__ = [
    "ApiError", "AsyncClient", "BadRequest", "Client", "Conflict", "ConnectionFailed",
    "DownloadError", "Forbidden", "InvalidRequest", "JobEvent", "JobFailed", "NotFound",
    "PayloadTooLarge", "RateLimited", "RetryPolicy", "SSEDecoder", "ServerError",
    "ServerSentEvent", "Unauthorized", "UnexpectedResponse", "VeoClientError",
]
