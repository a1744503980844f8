"""Bearer-token authentication. Tokens are looked up by hash; the bootstrap admin token is a
real user row (see ``Db.bootstrap_admin``)."""

from __future__ import annotations

import secrets
import time

from starlette.requests import Request

from veo.errors import Forbidden, Unauthorized
from veo.records import User
from veo.services import Services, token_hash

TOKEN_PREFIX = "veo_"  # noqa: S105 - a prefix, not a secret


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# token hash -> (user, expiry): a short cache spares a query per request; failures are never
# cached, and a revocation empties this process's cache at once (other web processes follow
# within _CACHE_SECONDS).
_CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
_cache: dict[str, tuple[User, float]] = {}


def forget(hashes: list[str]) -> None:
    for h in hashes:
        _cache.pop(h, None)


async def current_user(request: Request) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send Authorization: Bearer <token>")
    hashed = token_hash(token.strip())
    now = time.monotonic()
    hit = _cache.get(hashed)
    if hit is not None and hit[1] > now:
        return hit[0]
    svc: Services = request.app.state.services
    user = await svc.db.user_by_token_hash(hashed)
    if user is None:
        raise Unauthorized("invalid token")
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[hashed] = (user, now + _CACHE_SECONDS)
    return user


async def current_admin(request: Request) -> User:
    user = await current_user(request)
    if not user.is_admin:
        raise Forbidden("this route is for admins")
    return user
