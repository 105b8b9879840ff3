"""Signature schemes behind one narrow protocol, chosen per chain by its descriptor.

Each scheme verifies ``signature`` over ``message`` under ``public_key`` and raises
:class:`~relay.verify.errors.SignatureError` (never returns a bare boolean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from relay.verify.errors import SignatureError


class SignatureScheme(Protocol):
    """Verifies signatures of one algorithm. ``verify`` raises :class:`SignatureError`."""

    @property
    def name(self) -> str: ...

    def verify(self, *, public_key: bytes, message: bytes, signature: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Ed25519:
    """Ed25519 (RFC 8032) through libsodium (PyNaCl): 32-byte keys, 64-byte signatures."""

    name: str = "ed25519"

    def verify(self, *, public_key: bytes, message: bytes, signature: bytes) -> None:
        if len(public_key) != 32:
            raise SignatureError(
                "ed25519 public key must be 32 bytes", scheme=self.name, length=len(public_key)
            )
        if len(signature) != 64:
            raise SignatureError(
                "ed25519 signature must be 64 bytes", scheme=self.name, length=len(signature)
            )
        try:
            VerifyKey(public_key).verify(message, signature)
        except (BadSignatureError, ValueError, TypeError) as e:
            raise SignatureError(
                "ed25519 signature does not verify", scheme=self.name, public_key=public_key
            ) from e


ED25519 = Ed25519()
