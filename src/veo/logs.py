"""structlog set up once for every process, with a processor that redacts secrets.

The redactor runs last before rendering, so nothing added by any processor escapes it. It masks
by field name (``authorization``, ``cookie``, ``api_key`` ...), by shape (Gemini keys, bearer
tokens, our own tokens, presigned query strings), and by value for secrets the process registered
with :func:`register_secret` (decrypted keys, the admin token), whatever their shape.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

MASK = "[REDACTED]"

_SECRET_FIELDS = re.compile(
    r"(^|_|-)(api_?key|key_value|token|authorization|cookies?|set-cookie|secret|password|"
    r"storage_state|x-goog-api-key|credentials?|presigned(_url)?|signature)$",
    re.IGNORECASE,
)
# one alternation, so each string is scanned once (this runs on every field of every event)
_SECRET_SHAPES = re.compile("|".join([
    r"AIza[0-9A-Za-z_\-]{20,}",
    r"\bAQ\.[0-9A-Za-z_\-.]{20,}",  # the newer "authorization" key shape
    r"(?i:\bbearer\s+[A-Za-z0-9._~+/=\-]+)",
    r"\bveo_[A-Za-z0-9_\-]{16,}",
    r"\bwhsec_[A-Za-z0-9+/=]{16,}",
    # presigned URLs: keep the path, drop the signed query string
    r"(?i:\?[^\s\"']*(?:X-Amz-Signature|X-Amz-Credential|Signature=|Expires=)[^\s\"']*)",
    r"(?i:(?:api_key:|[?&]key=)[^\s\"'&]+)",
]))

# Registered secrets are found by exact token, so redaction costs the same however many keys
# the process has seen: the text is split into runs of token characters and each run is looked
# up in a set. A secret with other characters in it (rare) is searched for directly.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_~.\-]+")
_tokens: set[str] = set()
_others: set[str] = set()
_lock = threading.Lock()
_MIN_REGISTERED_LEN = 8  # shorter strings would mask ordinary words


def register_secret(value: str | None) -> None:
    """Mask this exact string wherever it appears in a later log event."""
    if value and len(value) >= _MIN_REGISTERED_LEN:
        with _lock:
            (_tokens if _TOKEN_CHARS.fullmatch(value) else _others).add(value)


def _mask_run(m: re.Match[str]) -> str:
    run = m.group(0)
    if run in _tokens:
        return MASK
    core = run.strip("._-~")  # a secret at the end of a sentence, or between dots
    if core != run and core in _tokens:
        return run.replace(core, MASK)
    return run


def redact_text(text: str) -> str:
    if _tokens:
        text = _TOKEN_CHARS.sub(_mask_run, text)
    for secret in tuple(_others):
        if secret in text:
            text = text.replace(secret, MASK)
    return _SECRET_SHAPES.sub(MASK, text)


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: (MASK if isinstance(k, str) and _SECRET_FIELDS.search(k) and v not in (None, "")
                else _redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(repr(value) if not isinstance(value, BaseException) else str(value))


def redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {k: (MASK if _SECRET_FIELDS.search(k) and v not in (None, "") else _redact(v))
            for k, v in event_dict.items()}


def configure(log_format: str = "json", level: int = logging.INFO) -> None:
    """Configure structlog and route stdlib logging (uvicorn, arq) through the same pipeline."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, redact_processor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # looked up per logger, so a swapped sys.stdout (tests, daemons) is honoured
        logger_factory=lambda *_: structlog.PrintLogger(sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = _StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_processor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "aiobotocore", "urllib3", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time of the record."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
