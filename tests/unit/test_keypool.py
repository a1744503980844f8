"""The key pool's policy against an in-memory ``KeyStore`` (the Protocol in ``veo.keypool``):
rotation, windows, cooling, invalid keys, waiting in place or pausing, never another user's
key, encryption at rest, and redacted errors."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from veo import config, keypool
from veo.crypto import Box
from veo.errors import AllKeysCooling, InvalidRequest, NoUsableKey
from veo.gemini import KeyCheck
from veo.keypool import KeyPool, KeyStore
from veo.records import ApiKey

SECRET = "unit-secret-key-that-is-long-enough-0123456789"


def new_key(tag: str = "k") -> str:
    return "AI" + f"za{tag}-{uuid.uuid4().hex}"  # built at run time: no key-like literal


def new_aq_key() -> str:
    return "AQ" + "." + "Ab" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class _Use:
    id: int
    key_id: str
    at: float


class MemoryKeys:
    """An in-memory KeyStore with the semantics of sql/queries/api_keys.sql."""

    def __init__(self) -> None:
        self.rows: dict[str, ApiKey] = {}
        self.limits: dict[str, int | None] = {}
        self.uses: list[_Use] = []
        self._ids = itertools.count(1)
        self._order = itertools.count()
        self.created: dict[str, int] = {}

    def _put(self, row: ApiKey) -> ApiKey:
        self.rows[row.id] = row
        return row

    def _update(self, key_id: str, **fields: Any) -> ApiKey:
        return self._put(msgspec.structs.replace(self.rows[key_id], **fields))

    def _ready(self, row: ApiKey) -> bool:
        return row.status == "active" or (
            row.status == "cooling" and row.cooling_until is not None
            and row.cooling_until <= _now())

    def _used(self, key_id: str, window: float) -> list[_Use]:
        cutoff = time.time() - window
        return [u for u in self.uses if u.key_id == key_id and u.at > cutoff]

    def _mine(self, user_id: str) -> list[ApiKey]:
        return [r for r in self.rows.values() if r.user_id in (user_id, None)]

    async def insert_key(self, *, user_id: str | None, label: str | None, fingerprint: str,
                         key_enc: str, last4: str, status: str = "active",
                         last_error: str | None = None) -> ApiKey | None:
        if await self.key_by_fingerprint(user_id, fingerprint) is not None:
            return None
        row = ApiKey(id=f"key_{uuid.uuid4().hex[:24]}", user_id=user_id, label=label,
                     fingerprint=fingerprint, key_enc=key_enc, last4=last4, status=status,
                     cooling_until=None, cool_streak=0, last_error=last_error,
                     last_used_at=None, created_at=_now())
        self.created[row.id] = next(self._order)
        self.limits[row.id] = None
        return self._put(row)

    async def key_by_fingerprint(self, user_id: str | None, fingerprint: str) -> ApiKey | None:
        return next((r for r in self.rows.values()
                     if r.user_id == user_id and r.fingerprint == fingerprint), None)

    async def get_key(self, key_id: str) -> ApiKey | None:
        return self.rows.get(key_id)

    async def pick_key(self, user_id: str, window: float,
                       exclude: Iterable[str] = ()) -> tuple[ApiKey, int] | None:
        excluded = set(exclude)
        cands = []
        for r in self._mine(user_id):
            if r.id in excluded or not self._ready(r):
                continue
            used, limit = len(self._used(r.id, window)), self.limits[r.id]
            if limit is not None and used >= limit:
                continue
            last = r.last_used_at.timestamp() if r.last_used_at else -1.0
            cands.append(((r.user_id is None, used / (limit or 1_000_000), last, r.id), r))
        if not cands:
            return None
        _, row = min(cands, key=lambda c: c[0])
        use = _Use(next(self._ids), row.id, time.time())
        self.uses.append(use)
        return self._update(row.id, last_used_at=_now()), use.id

    async def key_stats(self, user_id: str) -> tuple[int, int, datetime | None]:
        mine = self._mine(user_id)
        cooling = [r.cooling_until for r in mine if r.status == "cooling" and r.cooling_until]
        return (sum(r.status != "invalid" for r in mine), sum(self._ready(r) for r in mine),
                min(cooling) if cooling else None)

    async def next_key_free(self, user_id: str, window: float) -> datetime | None:
        times = [r.cooling_until for r in self._mine(user_id)
                 if r.status == "cooling" and r.cooling_until and r.cooling_until > _now()]
        for r in self._mine(user_id):
            limit, used = self.limits[r.id], self._used(r.id, window)
            if r.status != "invalid" and limit is not None and len(used) >= limit:
                times.append(datetime.fromtimestamp(min(u.at for u in used) + window, UTC))
        return min(times) if times else None

    async def key_refused(self, key_id: str, use_id: int, window: float) -> int | None:
        self.uses = [u for u in self.uses if u.id != use_id]
        left = len(self._used(key_id, window))
        if left > 0:
            self.limits[key_id] = left
        return self.limits[key_id]

    async def give_back_use(self, use_id: int) -> None:
        self.uses = [u for u in self.uses if u.id != use_id]

    async def date_use(self, use_id: int, after_pick: float, window: float) -> None:
        for use in self.uses:
            if use.id == use_id:
                use.at += after_pick

    async def cool_key(self, key_id: str, base_seconds: float, max_seconds: float, error: str,
                       retry_after: float | None = None) -> tuple[datetime, int] | None:
        row = self.rows[key_id]
        if row.status == "invalid":
            return None
        seconds = min(retry_after if retry_after is not None
                      else base_seconds * 2 ** row.cool_streak, max_seconds)
        until = _now() + timedelta(seconds=seconds)
        self._update(key_id, status="cooling", cool_streak=row.cool_streak + 1,
                     last_error=error, cooling_until=until)
        return until, row.cool_streak + 1

    async def invalidate_key(self, key_id: str, error: str) -> bool:
        if self.rows[key_id].status == "invalid":
            return False
        self._update(key_id, status="invalid", cooling_until=None, last_error=error)
        return True

    async def key_succeeded(self, key_id: str) -> None:
        self._update(key_id, cool_streak=0)


def _settings(**env: str) -> config.Settings:
    return config.load({"VEO_SECRET_KEY": SECRET, "VEO_KEY_WINDOW_SECONDS": "60",
                        "VEO_KEY_COOLDOWN_SECONDS": "1", "VEO_KEY_COOLDOWN_MAX_SECONDS": "4",
                        "VEO_KEY_MAX_WAIT_SECONDS": "0.5", **env})


def _pool(store: MemoryKeys | None = None, **env: str) -> tuple[KeyPool, MemoryKeys]:
    store = store or MemoryKeys()
    return KeyPool(store, Box(SECRET), _settings(**env)), store


async def _ok(key: str) -> KeyCheck:
    return KeyCheck("ok")


def test_the_memory_store_is_a_keystore() -> None:
    store: KeyStore = MemoryKeys()  # mypy checks the Protocol; this runs the annotation
    assert store is not None


async def test_keys_are_encrypted_and_rotate() -> None:
    pool, _ = _pool()
    a, b = new_key("a"), new_key("b")
    ra = await pool.add("usr_1", a, "first", _ok)
    rb = await pool.add("usr_1", b, None, _ok)
    assert a not in ra.key_enc and b not in rb.key_enc and ra.last4 == a[-4:]
    assert keypool.masked(ra.last4) == "…" + a[-4:]
    picked = [(await pool.acquire("usr_1")).secret for _ in range(6)]
    # least recently used first: the keys take turns
    assert set(picked[:2]) == {a, b} and picked[2:] == picked[:2] * 2


async def test_a_user_never_gets_another_users_key_but_shares_the_operator_pool() -> None:
    pool, _ = _pool()
    theirs, mine, shared = new_key("theirs"), new_key("mine"), new_key("op")
    await pool.add("usr_other", theirs, None, _ok)
    assert await pool.sync_operator_pool([shared]) == 1
    assert await pool.sync_operator_pool([shared]) == 0  # one row per operator key
    seen = {(await pool.acquire("usr_1")).secret for _ in range(3)}
    assert seen == {shared}
    await pool.add("usr_1", mine, None, _ok)
    leases = [await pool.acquire("usr_1") for _ in range(3)]
    # the owner's own key first; the operator pool is the fallback, never another user's key
    assert {lease.secret for lease in leases} == {mine}
    assert not any(lease.operator for lease in leases)
    assert theirs not in {lease.secret for lease in leases}


async def test_no_key_at_all_is_no_usable_key() -> None:
    pool, _ = _pool()
    with pytest.raises(NoUsableKey):
        await pool.acquire("usr_1")
    assert await pool.has_usable("usr_1") is False


async def test_a_full_window_is_skipped_then_waited_for_or_paused() -> None:
    pool, store = _pool(VEO_KEY_WINDOW_SECONDS="0.4", VEO_KEY_MAX_WAIT_SECONDS="1")
    key = new_key()
    row = await pool.add("usr_1", key, None, _ok)
    first = await pool.acquire("usr_1")
    second = await pool.acquire("usr_1")
    # Google refused the second call: the pool learns the limit (one per window) and the
    # refused call's reservation is given back
    await pool.refused(second, "429 RESOURCE_EXHAUSTED", retry_after=0.2)
    assert store.limits[row.id] == 1
    assert [u.id for u in store.uses] == [first.use_id]
    started = time.monotonic()
    third = await pool.acquire("usr_1")  # waits in place: the window frees within max_wait
    assert third.secret == key and time.monotonic() - started >= 0.15
    # a wait longer than key_max_wait_seconds pauses instead of blocking the worker
    pool2, _ = _pool(VEO_KEY_WINDOW_SECONDS="30", VEO_KEY_MAX_WAIT_SECONDS="0.2",
                          VEO_KEY_COOLDOWN_MAX_SECONDS="60")
    await pool2.add("usr_1", key, None, _ok)
    lease = await pool2.acquire("usr_1")
    await pool2.refused(await pool2.acquire("usr_1"), "429", retry_after=10)
    with pytest.raises(AllKeysCooling) as caught:
        await pool2.acquire("usr_1")
    assert caught.value.until is not None and caught.value.until > time.time() + 5
    assert lease.use_id is not None


async def test_cooling_grows_and_is_capped() -> None:
    pool, store = _pool(VEO_KEY_MAX_WAIT_SECONDS="0")
    row = await pool.add("usr_1", new_key(), None, _ok)
    streaks = []
    for _ in range(4):
        lease = await pool.acquire("usr_1") if store.rows[row.id].status == "active" else \
            keypool.Lease(key_id=row.id, secret="x", operator=False)
        before = time.time()
        await pool.refused(lease, "429")
        until = store.rows[row.id].cooling_until
        assert until is not None
        streaks.append(round(until.timestamp() - before))
    assert streaks == [1, 2, 4, 4]  # 1 s doubling, capped at VEO_KEY_COOLDOWN_MAX_SECONDS
    with pytest.raises(AllKeysCooling):
        await pool.acquire("usr_1")
    await pool.ok(keypool.Lease(key_id=row.id, secret="x", operator=False))
    assert store.rows[row.id].cool_streak == 0


async def test_an_invalid_key_is_never_used_again_and_its_error_is_redacted() -> None:
    pool, store = _pool()
    bad, good = new_key("bad"), new_aq_key()
    rbad = await pool.add("usr_1", bad, None, _ok)
    await pool.add("usr_1", good, None, _ok)
    lease = await pool.acquire("usr_1")
    while lease.secret != bad:
        lease = await pool.acquire("usr_1")
    # Google's 403 text quotes the key; the stored error must not
    await pool.invalid(lease, f"403 PERMISSION_DENIED: Consumer 'api_key:{bad}' has been "
                              "suspended.")
    row = store.rows[rbad.id]
    assert row.status == "invalid" and row.last_error is not None
    assert bad not in row.last_error and "suspended" in row.last_error
    assert lease.use_id not in [u.id for u in store.uses]  # Google counted nothing
    assert {(await pool.acquire("usr_1")).secret for _ in range(3)} == {good}
    assert await pool.lease_of(rbad.id) is None  # not even for polling
    assert await pool.lease_of("key_gone") is None
    assert await pool.lease_of(None) is None


async def test_lease_of_returns_the_creating_key_whatever_its_window() -> None:
    pool, _ = _pool(VEO_KEY_MAX_WAIT_SECONDS="0")
    key = new_key()
    row = await pool.add("usr_1", key, None, _ok)
    await pool.refused(await pool.acquire("usr_1"), "429", retry_after=30)
    # cooling for creates, but polling spends no quota: the creating key still polls
    lease = await pool.lease_of(row.id)
    assert lease is not None and lease.secret == key and lease.use_id is None


async def test_acquire_does_not_spin_when_every_usable_key_is_excluded() -> None:
    """A clip that was refused (429) by its only key excludes that key for the rest of its
    loop; once the key thaws, ``next_key_free`` points at a moment already past. The pool must
    then either use the key or give up (pause): never loop forever re-reading the store."""
    pool, store = _pool(VEO_KEY_MAX_WAIT_SECONDS="5")
    key = new_key()
    row = await pool.add("usr_1", key, None, _ok)
    lease = await pool.acquire("usr_1")
    await pool.refused(lease, "429 quota", retry_after=0.1)
    calls = 0
    pick = store.pick_key

    async def counting(user_id: str, window: float,
                       exclude: Iterable[str] = ()) -> tuple[ApiKey, int] | None:
        nonlocal calls
        calls += 1
        return await pick(user_id, window, exclude)

    store.pick_key = counting  # type: ignore[method-assign]
    try:
        got = await asyncio.wait_for(pool.acquire("usr_1", frozenset({row.id})), 2.0)
    except AllKeysCooling:
        got = None
    except TimeoutError:
        raise AssertionError(f"acquire spun for 2 s ({calls} picks) on a thawed, excluded "
                             "key") from None
    assert got is None or got.key_id == row.id
    assert calls < 50


async def test_add_validates_without_storing_bad_input() -> None:
    pool, store = _pool()

    async def invalid(key: str) -> KeyCheck:
        return KeyCheck("invalid", f"API key not valid: {key}")

    async def no_model(key: str) -> KeyCheck:
        return KeyCheck("model_unavailable", f"models/x is not found for {key}")

    aq = new_aq_key()
    row = await pool.add("usr_1", aq, None, invalid)
    assert row.status == "invalid" and row.last_error is not None and aq not in row.last_error
    with pytest.raises(InvalidRequest) as caught:
        await pool.add("usr_1", aq, None, _ok)
    assert caught.value.code == "duplicate_key"
    other = new_key()
    with pytest.raises(InvalidRequest) as caught:
        await pool.add("usr_1", other, None, no_model)
    assert caught.value.code == "key_cannot_use_model" and other not in caught.value.message
    for bad in ("short", "has space in it " + "x" * 20, "x" * 401):
        with pytest.raises(InvalidRequest):
            await pool.add("usr_1", bad, None, _ok)
    with pytest.raises(InvalidRequest):
        await pool.add("usr_1", new_key(), "l" * 201, _ok)
    assert len(store.rows) == 1
