"""Job webhooks: the address check, the payload, Standard Webhooks signing, and one delivery.

Signing follows Standard Webhooks v1 (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``) with a secret per
user (``GET /api/me``). Deliveries wait in the outbox (PostgreSQL) until delivered or given up;
``veo.worker.outbox`` sends them with the back-off of ``SCHEDULE``.

Server-side request forgery: a webhook URL is resolved once, every address it resolves to must
be global (no private, loopback, link-local, multicast or reserved address, and none of the
forms that smuggle an IPv4 address inside IPv6: mapped, compatible, NAT64, 6to4, Teredo), and
the request then connects to the address that was checked (the Host header and TLS name stay
the URL's), so a second DNS answer cannot point it elsewhere. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from veo.errors import InvalidRequest
from veo.records import Final, Job, Output

# seconds before attempt n+1 (Standard Webhooks' example schedule, shortened at the long end)
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000)
MAX_TRIES = len(SCHEDULE) + 1
TIMEOUT = 15.0  # seconds a receiver gets to answer 2xx

UNRESOLVED = "webhook_unresolved"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 ranges that carry an IPv4 address (or reach one through a translator)
_TRANSLATED = tuple(ipaddress.ip_network(n) for n in (
    "::ffff:0:0/96",   # IPv4-mapped
    "::/96",           # IPv4-compatible (deprecated), and :: and ::1
    "64:ff9b::/96",    # NAT64 well-known prefix
    "64:ff9b:1::/48",  # NAT64 local-use
    "2002::/16",       # 6to4
    "2001::/32",       # Teredo
))


def is_public(addr: IPAddress) -> bool:
    """Whether a webhook may be delivered to this address."""
    if isinstance(addr, ipaddress.IPv6Address) and any(addr in n for n in _TRANSLATED):
        return False
    return bool(addr.is_global) and not addr.is_multicast


@dataclasses.dataclass(frozen=True)
class Target:
    """A checked webhook URL: where to connect, and what the request says it is."""

    url: str  # with the checked address in place of the host name
    host: str  # the original host[:port], for the Host header
    server_name: str  # the original host name, for TLS (SNI and certificate check)


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(f"webhook_url: {message}", details={"field": "webhook_url"})


async def check_url(url: str, *, allow_private: bool) -> Target:
    """Resolve ``url`` once and check every address; raise InvalidRequest naming the field."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("must be an http(s) URL")
    if parts.username or parts.password:
        raise _refuse("must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _refuse("has an invalid port") from None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        # may pass later (DNS trouble): the outbox retries this one instead of giving up
        raise InvalidRequest("webhook_url: host does not resolve", code=UNRESOLVED,
                             details={"field": "webhook_url"}) from None
    addrs = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addrs:
        raise _refuse("host does not resolve")
    if not allow_private and not all(is_public(a) for a in addrs):
        raise _refuse("resolves to a private, loopback or otherwise non-public address")
    addr = addrs[0]
    literal = f"[{addr}]" if addr.version == 6 else str(addr)
    netloc = f"{literal}:{port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host = parts.netloc.rsplit("@", 1)[-1]
    return Target(url=pinned, host=host, server_name=parts.hostname)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def payload(job: Job, outputs: list[Output], final: Final | None) -> dict[str, Any]:
    path = f"/api/jobs/{job.id}"
    return {
        "type": f"job.{job.status}",
        "timestamp": int(time.time()),
        "data": {
            "id": job.id, "status": job.status, "backend": job.backend, "model": job.model,
            "error": None if job.error is None else {
                "code": job.error.code, "message": job.error.message,
                "retryable": job.error.retryable},
            "attempts": job.attempts,
            "outputs": [{"id": o.id, "clip": o.clip, "variant": o.variant, "size": o.size,
                         "sha256": o.sha256, "path": f"{path}/outputs/{o.id}"}
                        for o in outputs],
            "final": None if final is None else {
                "status": final.status, "size": final.size, "sha256": final.sha256,
                "path": f"{path}/final" if final.status == "succeeded" else None},
        },
    }


async def post(target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST to the checked address; returns the status code (redirects are not followed)."""
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
        request = client.build_request("POST", target.url, content=body,
                                       headers={**headers, "host": target.host},
                                       extensions={"sni_hostname": target.server_name})
        resp = await client.send(request)
        return resp.status_code
