"""``veo rotate-secret``: re-encrypt every stored secret under a new ``VEO_SECRET_KEY``.

Run with the new secret in ``VEO_SECRET_KEY`` and the old one in ``VEO_OLD_SECRET_KEY``. Each
item is re-encrypted on its own with a guarded write, and an item the new secret already opens
is skipped, so an interrupted run loses nothing and is finished by running it again.
"""

from __future__ import annotations

import asyncio
import json

from veo import flow_state, logs
from veo.config import Settings
from veo.crypto import Box, is_envelope
from veo.errors import ConfigError, CryptoError
from veo.keypool import PURPOSE as KEY_PURPOSE
from veo.services import opened

log = logs.get_logger("veo.rotate")


async def rotate_secret(settings: Settings) -> int:
    if not settings.old_secret_key:
        raise ConfigError("set VEO_OLD_SECRET_KEY to the old secret (and VEO_SECRET_KEY to the "
                          "new one) to rotate")
    new, old = Box(settings.secret_key), Box(settings.old_secret_key)
    counts = {"keys_rotated": 0, "keys_current": 0, "states_rotated": 0, "states_current": 0,
              "unreadable": 0}
    async with opened(settings) as svc:
        for row in await svc.db.all_keys():
            env = row.key_enc
            try:
                await asyncio.to_thread(new.decrypt, env, KEY_PURPOSE)
                counts["keys_current"] += 1
                continue
            except CryptoError:
                pass
            try:
                plain = await asyncio.to_thread(old.decrypt, env, KEY_PURPOSE)
            except CryptoError:
                counts["unreadable"] += 1
                log.error("rotate.unreadable", key_id=row.id)
                continue
            sealed = await asyncio.to_thread(new.encrypt, plain, KEY_PURPOSE)
            if await svc.db.update_key_enc(row.id, sealed, env):
                counts["keys_rotated"] += 1
        for obj in await svc.storage.list("flow/auth/"):
            if not obj.key.endswith("/storage_state.json"):
                continue
            account = obj.key.split("/")[2]
            raw = await svc.storage.get_bytes(obj.key)
            purpose = flow_state.purpose(account)
            if is_envelope(raw):
                try:
                    await asyncio.to_thread(new.decrypt, raw.decode(), purpose)
                    counts["states_current"] += 1
                    continue
                except CryptoError:
                    pass
                try:
                    plain = await asyncio.to_thread(old.decrypt, raw.decode(), purpose)
                except CryptoError:
                    counts["unreadable"] += 1
                    log.error("rotate.unreadable", object=obj.key)
                    continue
            else:
                plain = raw
            await flow_state.write(svc.storage, new, account, json.loads(plain), obj.key)
            counts["states_rotated"] += 1
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 1 if counts["unreadable"] else 0
