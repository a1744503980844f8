"""Envelope encryption for secrets at rest (Gemini keys, the Flow storage state).

Format, all base64url without padding, joined by ``.``: ``v1.<nonce>.<ciphertext+tag>``. The
AES-256-GCM key is derived from ``VEO_SECRET_KEY`` with HKDF-SHA256; the ``purpose`` string is
bound as associated data, so a ciphertext made for one purpose (a user's key) cannot be replayed
as another (the storage state). The version prefix lets ``veo rotate-secret`` and future formats
coexist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veo.errors import CryptoError

VERSION = "v1"
_NONCE_BYTES = 12


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive(secret: str, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"veo", info=info).derive(
        secret.encode()
    )


class Box:
    """Encrypts and decrypts with a key derived from the master secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise CryptoError("no VEO_SECRET_KEY: cannot encrypt or decrypt")
        self._aead = AESGCM(derive(secret, b"veo/envelope/v1"))
        self._token_key = derive(secret, b"veo/token-hash/v1")
        self._webhook_key = derive(secret, b"veo/webhook/v1")
        self._link_key = derive(secret, b"veo/link/v1")

    def encrypt(self, plaintext: bytes, purpose: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, purpose.encode())
        return f"{VERSION}.{_b64e(nonce)}.{_b64e(sealed)}"

    def decrypt(self, envelope: str, purpose: str) -> bytes:
        try:
            version, nonce, sealed = envelope.split(".")
        except ValueError:
            raise CryptoError("not an encrypted envelope") from None
        if version != VERSION:
            raise CryptoError(f"unknown envelope version {version!r}")
        try:
            return self._aead.decrypt(_b64d(nonce), _b64d(sealed), purpose.encode())
        except (InvalidTag, ValueError):
            raise CryptoError("envelope failed authentication (tampered, or another secret)") \
                from None

    def fingerprint(self, value: str) -> str:
        """Keyed hash for lookups (token hashes, key de-duplication): not reversible offline."""
        return hmac.new(self._token_key, value.encode(), hashlib.sha256).hexdigest()

    def webhook_secret(self, user_id: str) -> str:
        raw = hmac.new(self._webhook_key, user_id.encode(), hashlib.sha256).digest()
        return "whsec_" + base64.b64encode(raw).decode()


    def sign_link(self, key: str, expires: int) -> str:
        """A token naming one stored object until ``expires`` (unix seconds)."""
        body = f"{_b64e(key.encode())}.{expires}"
        mac = hmac.new(self._link_key, body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64e(mac)}"

    def open_link(self, token: str, now: float) -> str:
        """The object key a link token names; raises CryptoError if forged or expired."""
        try:
            encoded, expires, mac = token.split(".")
            wanted = hmac.new(self._link_key, f"{encoded}.{expires}".encode(),
                              hashlib.sha256).digest()
            if not hmac.compare_digest(wanted, _b64d(mac)):
                raise CryptoError("link signature does not match")
            if int(expires) < now:
                raise CryptoError("link expired")
            return _b64d(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            raise CryptoError("not a link token") from None


def is_envelope(data: bytes | str) -> bool:
    head = data[:3] if isinstance(data, str) else data[:3].decode("latin-1")
    return head == f"{VERSION}."
