"""The Flow login (a Playwright storage state) kept encrypted in object storage.

Shared by the admin API, ``veo-auth`` and the worker. A plaintext JSON file written straight
into the bucket (as operators used to do by hand) is accepted and re-written encrypted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from veo import names
from veo.crypto import Box, is_envelope
from veo.errors import InvalidRequest
from veo.storage import Storage

MAX_STATE_BYTES = 5 * 1024 * 1024


def purpose(account: str) -> str:
    return f"flow_storage_state:{account}"


def parse(raw: bytes) -> dict[str, Any]:
    """Check that ``raw`` is a Playwright storage state; return it decoded."""
    try:
        state = json.loads(raw)
    except ValueError:
        raise InvalidRequest("storage state: not JSON") from None
    if not isinstance(state, dict) or not isinstance(state.get("cookies"), list):
        raise InvalidRequest("storage state: expected Playwright's {\"cookies\": [...], "
                             "\"origins\": [...]} as written by `veo-auth export`")
    for cookie in state["cookies"]:
        if not isinstance(cookie, dict) or not {"name", "value", "domain"} <= cookie.keys():
            raise InvalidRequest("storage state: every cookie needs name, value and domain")
    state.setdefault("origins", [])
    return state


@dataclasses.dataclass
class Loaded:
    state: dict[str, Any]
    etag: str
    was_plaintext: bool


def state_key(account: str) -> str:
    return names.flow_state(account)


async def write(storage: Storage, box: Box, account: str, state: dict[str, Any],
                key: str | None = None) -> str:
    raw = json.dumps(state).encode()
    sealed = await asyncio.to_thread(box.encrypt, raw, purpose(account))
    info = await storage.put_bytes(key or state_key(account), sealed.encode(),
                                   "application/octet-stream")
    return info.etag


async def read(storage: Storage, box: Box, account: str, key: str | None = None) -> Loaded | None:
    """Load and decrypt the state; a plaintext file is re-written encrypted on the way."""
    key = key or state_key(account)
    head = await storage.head(key)
    if head is None:
        return None
    raw = await storage.get_bytes(key)
    if is_envelope(raw):
        plain = await asyncio.to_thread(box.decrypt, raw.decode(), purpose(account))
        return Loaded(state=parse(plain), etag=head.etag, was_plaintext=False)
    state = parse(raw)
    etag = await write(storage, box, account, state, key)
    return Loaded(state=state, etag=etag, was_plaintext=True)
