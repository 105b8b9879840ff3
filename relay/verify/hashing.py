"""Hash functions behind one narrow protocol, so every verifier is hash-agile.

SHA-256/SHA-512 come from OpenSSL via :mod:`hashlib`; Keccak-256 (the original Keccak padding
Ethereum uses, not FIPS 202 SHA3-256) from ``safe-pysha3``, the fastest well-kept C binding
(about 4.6x pycryptodome here, see ``bench/bench_proofs.py``); SM3 (GM/T 0004-2012) from
OpenSSL through :mod:`hashlib` when the linked OpenSSL has it, else from ``cryptography``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sha3

from relay.verify.errors import UnsupportedError


class Hasher(Protocol):
    """A hash function. ``hash`` must be pure and return exactly ``digest_size`` bytes."""

    @property
    def name(self) -> str: ...

    @property
    def digest_size(self) -> int: ...

    def hash(self, data: bytes, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class _FnHasher:
    name: str
    digest_size: int
    hash: Callable[[bytes], bytes]


def _hashlib_fn(name: str) -> Callable[[bytes], bytes] | None:
    try:
        hashlib.new(name, b"")
    except (ValueError, TypeError):
        return None
    ctor = getattr(hashlib, name, None)
    if ctor is not None:
        return lambda data: ctor(data).digest()
    return lambda data: hashlib.new(name, data).digest()


def _sm3_fn() -> Callable[[bytes], bytes]:
    fn = _hashlib_fn("sm3")
    if fn is not None:
        return fn
    from cryptography.hazmat.primitives import hashes

    def sm3_cryptography(data: bytes) -> bytes:
        h = hashes.Hash(hashes.SM3())
        h.update(data)
        return h.finalize()

    return sm3_cryptography


def _keccak256(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()  # type: ignore[no-any-return]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


SHA256: Hasher = _FnHasher("sha256", 32, _sha256)
SHA512: Hasher = _FnHasher("sha512", 64, _sha512)
KECCAK256: Hasher = _FnHasher("keccak256", 32, _keccak256)
SM3: Hasher = _FnHasher("sm3", 32, _sm3_fn())

_OPTIONAL = {
    "sha512_256": ("sha512_256", 32),
    "ripemd160": ("ripemd160", 20),
    "blake2b_512": ("blake2b", 64),
    "blake2s_256": ("blake2s", 32),
}

_REGISTRY: dict[str, Hasher] = {h.name: h for h in (SHA256, SHA512, KECCAK256, SM3)}


def by_name(name: str) -> Hasher:
    """Return the hasher called ``name`` (``sha256``, ``sha512``, ``keccak256``, ``sm3``,
    ``sha512_256``, ``ripemd160``, ``blake2b_512``, ``blake2s_256``).

    Raises :class:`UnsupportedError` for an unknown name or one the linked OpenSSL lacks.
    """
    hasher = _REGISTRY.get(name)
    if hasher is not None:
        return hasher
    if name in _OPTIONAL:
        algo, size = _OPTIONAL[name]
        fn = _hashlib_fn(algo)
        if fn is not None:
            hasher = _FnHasher(name, size, fn)
            _REGISTRY[name] = hasher
            return hasher
        raise UnsupportedError("hash algorithm not available in this build", algorithm=name)
    raise UnsupportedError("unknown hash algorithm", algorithm=name)
