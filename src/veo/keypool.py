"""The Gemini key pool: rotation, each key's quota window, cool-down after 429, retirement of
invalid keys.

Key state lives in PostgreSQL (``api_keys``, ``api_key_uses``), so every worker process sees the
same windows, cooling and invalid marks. A user's job only ever draws from that user's keys and
the operator pool (``GEMINI_API_KEYS``); the SQL of ``pick_key`` is the one place that rule is
written. Google's quotas are requests per minute per project: instead of learning that a key is
spent from one 429 after another, the pool counts each key's calls in the window and skips a
key whose learned limit is reached until a call ages out. When every key is full or cooling, a
short wait happens in place; a long one pauses the job (``AllKeysCooling``).

The pool talks to a ``KeyStore`` (``veo.db.Db`` in production, an in-memory one in unit tests).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from veo import logs, metrics
from veo.config import Settings
from veo.crypto import Box
from veo.errors import AllKeysCooling, InvalidRequest, NoUsableKey
from veo.records import ApiKey

if TYPE_CHECKING:
    from veo.gemini import KeyCheck

log = logs.get_logger("veo.keypool")

PURPOSE = "gemini_api_key"
MIN_KEY, MAX_KEY = 10, 400  # characters; keys are opaque (AIza…, AQ.…, whatever comes next)


class KeyStore(Protocol):
    async def insert_key(self, *, user_id: str | None, label: str | None, fingerprint: str,
                         key_enc: str, last4: str, status: str = ...,
                         last_error: str | None = ...) -> ApiKey | None: ...
    async def key_by_fingerprint(self, user_id: str | None,
                                 fingerprint: str) -> ApiKey | None: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def pick_key(self, user_id: str, window: float,
                       exclude: Iterable[str] = ...) -> tuple[ApiKey, int] | None: ...
    async def key_stats(self, user_id: str) -> tuple[int, int, datetime | None]: ...
    async def next_key_free(self, user_id: str, window: float) -> datetime | None: ...
    async def key_refused(self, key_id: str, use_id: int, window: float) -> int | None: ...
    async def give_back_use(self, use_id: int) -> None: ...
    async def date_use(self, use_id: int, after_pick: float, window: float) -> None: ...
    async def cool_key(self, key_id: str, base_seconds: float, max_seconds: float, error: str,
                       retry_after: float | None = ...) -> tuple[datetime, int] | None: ...
    async def invalidate_key(self, key_id: str, error: str) -> bool: ...
    async def key_succeeded(self, key_id: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class Lease:
    """One key, taken for one call. ``use_id`` is the reservation in the key's window."""

    key_id: str
    secret: str
    operator: bool
    use_id: int | None = None
    picked: float = dataclasses.field(default_factory=time.monotonic)

    def __repr__(self) -> str:
        return f"Lease(key_id={self.key_id!r})"


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def masked(last4: str) -> str:
    return f"…{last4}"


def wait_for(next_free: datetime | None, now: float, max_wait: float) -> float | None:
    """Seconds to wait in place for the next free key, or None when that is too long (or
    unknown) and the job should pause instead."""
    if next_free is None:
        return None
    delay = max(0.0, next_free.timestamp() - now)
    return delay if delay <= max_wait else None


# A validator answers how a key fared: ok, invalid, model_unavailable or unknown (+ message).
Validator = Callable[[str], Awaitable["KeyCheck"]]


class KeyPool:
    def __init__(self, store: KeyStore, box: Box, settings: Settings) -> None:
        self.store = store
        self.box = box
        self.settings = settings
        self.window = settings.key_window_seconds
        self._queue: dict[str, asyncio.Lock] = {}  # waiters for a key, per user
        # decrypted keys by their ciphertext: a pick is on the hot path of every create, and a
        # thread hop per pick costs more than the work (the clients hold the keys anyway)
        self._secrets: dict[str, str] = {}

    async def _encrypt(self, key: str) -> str:
        return await asyncio.to_thread(self.box.encrypt, key.encode(), PURPOSE)

    async def _decrypt(self, row: ApiKey) -> str:
        secret = self._secrets.get(row.key_enc)
        if secret is None:
            raw = await asyncio.to_thread(self.box.decrypt, row.key_enc, PURPOSE)
            secret = raw.decode()
            logs.register_secret(secret)
            if len(self._secrets) >= 1024:
                self._secrets.clear()
            self._secrets[row.key_enc] = secret
        return secret

    async def sync_operator_pool(self, keys: Iterable[str]) -> int:
        """Make sure every ``GEMINI_API_KEYS`` key has a row (state shared across workers)."""
        added = 0
        for key in keys:
            fp = fingerprint(key)
            if await self.store.key_by_fingerprint(None, fp) is None:
                row = await self.store.insert_key(user_id=None, label="operator pool",
                                                  fingerprint=fp,
                                                  key_enc=await self._encrypt(key),
                                                  last4=key[-4:])
                added += row is not None
        return added

    async def add(self, user_id: str, key: str, label: str | None,
                  validate: Validator) -> ApiKey:
        key = key.strip()
        if not MIN_KEY <= len(key) <= MAX_KEY or any(c.isspace() for c in key):
            raise InvalidRequest("key: does not look like a Gemini API key",
                                 details={"field": "key"})
        if label is not None and len(label) > 200:
            raise InvalidRequest("label: at most 200 characters", details={"field": "label"})
        logs.register_secret(key)
        fp = fingerprint(key)
        if await self.store.key_by_fingerprint(user_id, fp) is not None:
            raise InvalidRequest("key: this key is already stored", code="duplicate_key",
                                 details={"field": "key"})
        check = await validate(key)
        status, error = "active", None
        if check.verdict == "invalid":
            status, error = "invalid", logs.redact_text(check.message or "rejected by Google")
        elif check.verdict == "model_unavailable":
            raise InvalidRequest(
                f"key: it works, but its Google project cannot use "
                f"{self.settings.default_model} ({logs.redact_text(check.message or '')}); "
                "enable the model for the project (paid tier) and add the key again",
                code="key_cannot_use_model", details={"field": "key"})
        row = await self.store.insert_key(user_id=user_id, label=label, fingerprint=fp,
                                          key_enc=await self._encrypt(key), last4=key[-4:],
                                          status=status, last_error=error)
        if row is None:
            raise InvalidRequest("key: this key is already stored", code="duplicate_key",
                                 details={"field": "key"})
        return row

    async def has_usable(self, user_id: str) -> bool:
        not_invalid, _, _ = await self.store.key_stats(user_id)
        return not_invalid > 0

    async def acquire(self, user_id: str, exclude: frozenset[str] = frozenset(),
                      waiting: Callable[[], None] = lambda: None) -> Lease:
        """A key for one create call. Waits in place up to ``key_max_wait_seconds`` for a
        window or cool-down to end (calling ``waiting`` first); beyond that raises
        ``AllKeysCooling`` (pause the job).

        Waiters of one user queue behind one another in this process, and only the head asks
        PostgreSQL: when a slot frees, one query takes it instead of every waiter's at once."""
        lease = await self._pick(user_id, exclude)
        if lease is not None:
            return lease
        waiting()
        async with self._queue.setdefault(user_id, asyncio.Lock()):
            while True:
                lease = await self._pick(user_id, exclude)
                if lease is not None:
                    return lease
                not_invalid, _, _ = await self.store.key_stats(user_id)
                if not_invalid == 0:
                    raise NoUsableKey("no usable Gemini API key for this user")
                next_free = await self.store.next_key_free(user_id, self.window)
                delay = wait_for(next_free, time.time(), self.settings.key_max_wait_seconds)
                if delay is None:
                    raise AllKeysCooling("every usable Gemini key is cooling down or spent",
                                         until=next_free.timestamp() if next_free else None)
                await asyncio.sleep(delay + 0.01)
                # keys tried in this round were skipped only so as not to retry them at once
                exclude = frozenset()

    async def _pick(self, user_id: str, exclude: frozenset[str]) -> Lease | None:
        asked = time.monotonic()  # the reservation is stamped after this, never before
        picked = await self.store.pick_key(user_id, self.window, exclude)
        if picked is None:
            return None
        row, use_id = picked
        return Lease(key_id=row.id, secret=await self._decrypt(row),
                     operator=row.user_id is None, use_id=use_id, picked=asked)

    async def lease_of(self, key_id: str | None) -> Lease | None:
        """The key that created a generation, for polling it (resources are per project);
        None when it is gone or invalid."""
        row = await self.store.get_key(key_id) if key_id else None
        if row is None or row.status == "invalid":
            return None
        return Lease(key_id=row.id, secret=await self._decrypt(row),
                     operator=row.user_id is None)

    async def refused(self, lease: Lease, error: str, retry_after: float | None = None,
                      **fields: Any) -> None:
        """A 429: the call did not count; the key is full for now."""
        limit = None
        if lease.use_id is not None:
            limit = await self.store.key_refused(lease.key_id, lease.use_id, self.window)
        cooled = await self.store.cool_key(lease.key_id, self.settings.key_cooldown_seconds,
                                           self.settings.key_cooldown_max_seconds,
                                           logs.redact_text(error)[:500], retry_after)
        metrics.KEY_EVENTS.labels("cooling").inc()
        if cooled is not None:
            until, streak = cooled
            log.warning("api.key_cooling", key_id=lease.key_id, until=until.isoformat(),
                        streak=streak, window_limit=limit, **fields)

    async def invalid(self, lease: Lease, error: str, **fields: Any) -> None:
        if lease.use_id is not None:
            await self.store.give_back_use(lease.use_id)
        if await self.store.invalidate_key(lease.key_id, logs.redact_text(error)[:500]):
            metrics.KEY_EVENTS.labels("invalid").inc()
            log.warning("api.key_invalid", key_id=lease.key_id,
                        error=logs.redact_text(error)[:200], **fields)

    async def unused(self, lease: Lease) -> None:
        """The call was never made (it failed before reaching Google): free its slot."""
        if lease.use_id is not None:
            await self.store.give_back_use(lease.use_id)

    async def spent(self, lease: Lease, sent: float, answered: float) -> None:
        """Google accepted a create on this key, sent and answered at these ``time.monotonic()``
        moments: its use counts from halfway between them."""
        if lease.use_id is not None:
            await self.store.date_use(lease.use_id,
                                      max(0.0, (sent + answered) / 2 - lease.picked),
                                      self.window)

    async def ok(self, lease: Lease) -> None:
        await self.store.key_succeeded(lease.key_id)
