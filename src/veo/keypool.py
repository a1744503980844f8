"""The Gemini key pool: rotation, cool-down after 429, retirement of invalid keys.

Key state lives in PostgreSQL (``api_keys``), so every worker process sees the same cooling and
invalid marks. A user's job only ever draws from that user's keys and the operator pool
(``GEMINI_API_KEYS``); the SQL in ``pick_key`` is the one place that rule is written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from veo import logs
from veo.config import Settings
from veo.crypto import Box
from veo.db import Db, Row
from veo.errors import AllKeysCooling, InvalidRequest, NoUsableKey

log = logs.get_logger("veo.keypool")

PURPOSE = "gemini_api_key"


@dataclasses.dataclass(frozen=True)
class Lease:
    key_id: str
    secret: str
    operator: bool

    def __repr__(self) -> str:
        return f"Lease(key_id={self.key_id!r})"


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def masked(last4: str) -> str:
    return f"…{last4}"


# A validator answers None for a good key, or (invalid, message).
Validator = Callable[[str], Awaitable[tuple[bool, str] | None]]


class KeyPool:
    def __init__(self, db: Db, box: Box, settings: Settings) -> None:
        self.db = db
        self.box = box
        self.settings = settings

    async def _encrypt(self, key: str) -> str:
        return await asyncio.to_thread(self.box.encrypt, key.encode(), PURPOSE)

    async def _decrypt(self, row: Row) -> str:
        raw = await asyncio.to_thread(self.box.decrypt, row["key_enc"], PURPOSE)
        secret = raw.decode()
        logs.register_secret(secret)
        return secret

    async def sync_operator_pool(self, keys: tuple[str, ...]) -> int:
        """Make sure every ``GEMINI_API_KEYS`` key has a row (state shared across workers)."""
        added = 0
        for key in keys:
            fp = fingerprint(key)
            if await self.db.key_by_fingerprint(None, fp) is None:
                row = await self.db.insert_key(user_id=None, label="operator pool",
                                               fingerprint=fp, key_enc=await self._encrypt(key),
                                               last4=key[-4:])
                added += row is not None
        return added

    async def add(self, user_id: str, key: str, label: str | None,
                  validate: Validator) -> Row:
        key = key.strip()
        if not 10 <= len(key) <= 200 or any(c.isspace() for c in key):
            raise InvalidRequest("key: does not look like a Gemini API key",
                                 details={"field": "key"})
        if label is not None and len(label) > 200:
            raise InvalidRequest("label: at most 200 characters", details={"field": "label"})
        logs.register_secret(key)
        fp = fingerprint(key)
        if await self.db.key_by_fingerprint(user_id, fp) is not None:
            raise InvalidRequest("key: this key is already stored", code="duplicate_key",
                                 details={"field": "key"})
        verdict = await validate(key)
        status, error = "active", None
        if verdict is not None:
            invalid, message = verdict
            if invalid:
                status, error = "invalid", message
        row = await self.db.insert_key(user_id=user_id, label=label, fingerprint=fp,
                                       key_enc=await self._encrypt(key), last4=key[-4:],
                                       status=status, last_error=error)
        if row is None:
            raise InvalidRequest("key: this key is already stored", code="duplicate_key",
                                 details={"field": "key"})
        return row

    async def has_usable(self, user_id: str) -> bool:
        stats = await self.db.key_stats(user_id)
        return int(stats["not_invalid"]) > 0

    async def acquire(self, user_id: str, exclude: frozenset[str] = frozenset()) -> Lease:
        row = await self.db.pick_key(user_id, exclude)
        if row is None:
            stats = await self.db.key_stats(user_id)
            if int(stats["not_invalid"]) == 0:
                raise NoUsableKey("no usable Gemini API key for this user")
            until: datetime | None = stats["next_ready"]
            raise AllKeysCooling("every usable Gemini key is cooling down",
                                 until=until.timestamp() if until else None)
        return Lease(key_id=row["id"], secret=await self._decrypt(row),
                     operator=row["user_id"] is None)

    async def cooling(self, lease: Lease, error: str, retry_after: float | None = None,
                      **fields: Any) -> None:
        row = await self.db.cool_key(lease.key_id, self.settings.key_cooldown_seconds,
                                     self.settings.key_cooldown_max_seconds, error[:500],
                                     retry_after)
        if row is not None:
            log.warning("api.key_cooling", key_id=lease.key_id, until=row["cooling_until"]
                        .isoformat(), streak=row["cool_streak"], **fields)

    async def invalid(self, lease: Lease, error: str, **fields: Any) -> None:
        if await self.db.invalidate_key(lease.key_id, error[:500]):
            log.warning("api.key_invalid", key_id=lease.key_id, error=error[:200], **fields)

    async def ok(self, lease: Lease) -> None:
        await self.db.key_succeeded(lease.key_id)
