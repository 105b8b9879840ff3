"""A transparency log that really signs: C2SP checkpoints signed by a log key and cosigned by
witnesses (tlog-checkpoint, tlog-cosignature), in Ed25519 or the project's P-256 / SM2 note
extensions (see :mod:`relay.verify.note`).

For tests now and reference registries later. It holds private keys, so nothing under
``relay.verify`` may import it. Keys are derived from seed strings so runs are reproducible;
they are test keys, not secrets.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from nacl.signing import SigningKey

from relay.verify import note
from relay.verify.merkle import rfc6962
from relay.verify.merkle.rfc6962 import RFC6962_SHA256, TreeHasher
from relay.verify.signatures import (
    DEFAULT_SM2_SIGNER_ID,
    P256_ORDER,
    SM2_ORDER,
    sm2_digest,
)

# --- raw keys ----------------------------------------------------------------------------


class RawKey(Protocol):
    """A private key that signs messages with one algorithm (fixed-size raw signatures)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


def _scalar(seed: str | bytes, order: int) -> int:
    data = seed.encode() if isinstance(seed, str) else seed
    return (
        int.from_bytes(hashlib.sha256(b"relay.testing scalar\n" + data).digest()) % (order - 1) + 1
    )


@dataclass(frozen=True)
class Ed25519Key:
    """An Ed25519 key from a 32-byte seed (RFC 8032)."""

    seed: bytes

    @classmethod
    def from_seed(cls, seed: str | bytes) -> Ed25519Key:
        data = seed.encode() if isinstance(seed, str) else seed
        return cls(hashlib.sha256(b"relay.testing ed25519\n" + data).digest())

    @property
    def public_key(self) -> bytes:
        return bytes(SigningKey(self.seed).verify_key)

    def sign(self, message: bytes) -> bytes:
        return SigningKey(self.seed).sign(message).signature


@dataclass(frozen=True)
class P256Key:
    """An ECDSA P-256 key; signs SHA-256 of the message, returns ``r || s``."""

    secret: int
    compressed: bool = True

    @classmethod
    def from_seed(cls, seed: str | bytes, *, compressed: bool = True) -> P256Key:
        return cls(_scalar(seed, P256_ORDER), compressed)

    def _key(self) -> ec.EllipticCurvePrivateKey:
        return ec.derive_private_key(self.secret, ec.SECP256R1())

    @property
    def public_key(self) -> bytes:
        fmt = (
            serialization.PublicFormat.CompressedPoint
            if self.compressed
            else serialization.PublicFormat.UncompressedPoint
        )
        return self._key().public_key().public_bytes(serialization.Encoding.X962, fmt)

    def sign_der(self, message: bytes) -> bytes:
        return self._key().sign(message, ec.ECDSA(hashes.SHA256()))

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self.sign_der(message))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class Sm2Key:
    """An SM2 key (Tongsuo); signs ``SM3(Z || M)`` with its signer ID, returns ``r || s``."""

    secret: int
    signer_id: bytes = DEFAULT_SM2_SIGNER_ID
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_seed(cls, seed: str | bytes, *, signer_id: bytes = DEFAULT_SM2_SIGNER_ID) -> Sm2Key:
        return cls(_scalar(seed, SM2_ORDER), signer_id)

    def _key(self) -> Any:
        if "key" not in self._cache:
            from tongsuopy.crypto.asymciphers import ec as sm2_ec

            self._cache["key"] = sm2_ec.derive_private_key(self.secret, sm2_ec.SM2())
        return self._cache["key"]

    @property
    def public_key(self) -> bytes:
        from tongsuopy.crypto import serialization as tserialization

        point: bytes = (
            self._key()
            .public_key()
            .public_bytes(
                tserialization.Encoding.X962, tserialization.PublicFormat.UncompressedPoint
            )
        )
        return point

    def sign_digest(self, digest: bytes) -> bytes:
        """DER signature of a precomputed ``e`` (Tongsuo ``EVP_PKEY_sign``)."""
        from tongsuopy.backends.tongsuo import backend

        lib, ffi = backend._lib, backend._ffi
        ctx = ffi.gc(lib.EVP_PKEY_CTX_new(self._key()._evp_pkey, ffi.NULL), lib.EVP_PKEY_CTX_free)
        if lib.EVP_PKEY_sign_init(ctx) != 1:
            raise RuntimeError("EVP_PKEY_sign_init failed for SM2")
        size = ffi.new("size_t *")
        if lib.EVP_PKEY_sign(ctx, ffi.NULL, size, digest, len(digest)) != 1:
            raise RuntimeError("EVP_PKEY_sign (size query) failed for SM2")
        buf = ffi.new("unsigned char[]", size[0])
        if lib.EVP_PKEY_sign(ctx, buf, size, digest, len(digest)) != 1:
            raise RuntimeError("EVP_PKEY_sign failed for SM2")
        return bytes(ffi.buffer(buf)[: size[0]])

    def sign_der(self, message: bytes) -> bytes:
        digest = sm2_digest(public_key=self.public_key, message=message, signer_id=self.signer_id)
        return self.sign_digest(digest)

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self.sign_der(message))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# --- note signers ------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSigner:
    """A named key that signs notes (``cosigner=False``) or cosigns checkpoints."""

    name: str
    key: Ed25519Key | P256Key | Sm2Key
    cosigner: bool = False

    @property
    def algorithm(self) -> bytes:
        if isinstance(self.key, Ed25519Key):
            return note.ALG_COSIGNATURE_V1 if self.cosigner else note.ALG_ED25519
        if isinstance(self.key, P256Key):
            return note.ALG_RELAY_COSIGNATURE_P256 if self.cosigner else note.ALG_RELAY_ECDSA_P256
        return note.ALG_RELAY_COSIGNATURE_SM2 if self.cosigner else note.ALG_RELAY_SM2

    @property
    def key_material(self) -> bytes:
        if isinstance(self.key, Sm2Key):
            return note.sm2_key_material(signer_id=self.key.signer_id, point=self.key.public_key)
        return self.key.public_key

    @property
    def key_id(self) -> int:
        return note.key_id(self.name, self.algorithm + self.key_material)

    @property
    def vkey(self) -> str:
        blob = base64.b64encode(self.algorithm + self.key_material).decode()
        return f"{self.name}+{self.key_id:08x}+{blob}"

    def verifier(self) -> note.NoteVerifier:
        return note.make_verifier(
            name=self.name, algorithm=self.algorithm, public_key=self.key_material
        )

    def sign(self, text: bytes, *, timestamp: int | None = None) -> note.NoteSignature:
        """Sign note ``text``; a cosigner needs the cosignature ``timestamp`` (POSIX s)."""
        if self.cosigner:
            if timestamp is None:
                raise ValueError("a cosignature needs a timestamp")
            message = note.cosignature_message(text=text, timestamp=timestamp)
            raw = timestamp.to_bytes(8, "big") + self.key.sign(message)
        else:
            raw = self.key.sign(text)
        return note.NoteSignature(self.name, self.key_id, raw)


def ed25519_signer(
    name: str, *, seed: str | bytes | None = None, cosigner: bool = False
) -> NoteSigner:
    return NoteSigner(name, Ed25519Key.from_seed(seed if seed is not None else name), cosigner)


def p256_signer(
    name: str, *, seed: str | bytes | None = None, cosigner: bool = False
) -> NoteSigner:
    return NoteSigner(name, P256Key.from_seed(seed if seed is not None else name), cosigner)


def sm2_signer(
    name: str,
    *,
    seed: str | bytes | None = None,
    signer_id: bytes = DEFAULT_SM2_SIGNER_ID,
    cosigner: bool = False,
) -> NoteSigner:
    key = Sm2Key.from_seed(seed if seed is not None else name, signer_id=signer_id)
    return NoteSigner(name, key, cosigner)


def signer_from_skey(skey: str) -> NoteSigner:
    """A signer from golang.org/x/mod's ``PRIVATE+KEY+<name>+<hex ID>+base64(0x01 || seed)``.

    Raises ``ValueError`` if the key is malformed or its ID does not match the public key.
    """
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise ValueError("not a PRIVATE+KEY signer key")
    name, hex_id, blob64 = parts[2], parts[3], parts[4]
    blob = note.decode_base64(blob64, what="signer key")
    if len(hex_id) != 8 or len(blob) != 33 or blob[:1] != note.ALG_ED25519:
        raise ValueError("only Ed25519 signer keys with a 32-byte seed are supported")
    signer = NoteSigner(name, Ed25519Key(blob[1:]))
    if signer.key_id != int(hex_id, 16):
        raise ValueError("signer key ID does not match its public key")
    return signer


def sign_note(text: bytes, signers: Iterable[NoteSigner], *, timestamp: int | None = None) -> bytes:
    """A signed note of ``text`` with one signature line per signer, in order."""
    return note.format_note(text, [s.sign(text, timestamp=timestamp) for s in signers])


# --- a log -------------------------------------------------------------------------------


def checkpoint_text(
    *, origin: str, size: int, root: bytes, extensions: Sequence[str] = ()
) -> bytes:
    """The C2SP tlog-checkpoint body: origin, decimal size, base64 root, extension lines."""
    lines = [origin, str(size), base64.b64encode(root).decode(), *extensions]
    return "".join(line + "\n" for line in lines).encode("utf-8")


@dataclass
class SimulatedLog:
    """An in-memory append-only log with a log key and witnesses (mutable; test-only)."""

    origin: str
    log_signer: NoteSigner
    witnesses: Sequence[NoteSigner] = ()
    hasher: TreeHasher = RFC6962_SHA256
    entries: list[bytes] = field(default_factory=list)
    leaf_hashes: list[bytes] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.entries)

    def append(self, *entries: bytes) -> None:
        for entry in entries:
            self.entries.append(entry)
            self.leaf_hashes.append(self.hasher.hash_leaf(entry))

    def root(self, size: int | None = None) -> bytes:
        n = self.size if size is None else size
        return rfc6962.root_hash(hasher=self.hasher, leaf_hashes=self.leaf_hashes[:n])

    def text(self, size: int | None = None, *, extensions: Sequence[str] = ()) -> bytes:
        n = self.size if size is None else size
        return checkpoint_text(origin=self.origin, size=n, root=self.root(n), extensions=extensions)

    def checkpoint(
        self,
        size: int | None = None,
        *,
        timestamp: int,
        witnesses: Sequence[NoteSigner] | None = None,
        extensions: Sequence[str] = (),
        extra: Sequence[note.NoteSignature] = (),
    ) -> bytes:
        """The signed checkpoint at ``size`` (default: current), cosigned by ``witnesses``
        (default: all) at ``timestamp``, followed by any ``extra`` signature lines."""
        body = self.text(size, extensions=extensions)
        cosigners = self.witnesses if witnesses is None else witnesses
        sigs = [self.log_signer.sign(body)]
        sigs += [w.sign(body, timestamp=timestamp) for w in cosigners]
        return note.format_note(body, [*sigs, *extra])

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        n = self.size if size2 is None else size2
        if size1 == 0 or size1 == n:
            return []
        return rfc6962.consistency_proof(
            hasher=self.hasher, leaf_hashes=self.leaf_hashes[:n], size1=size1
        )

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        n = self.size if size is None else size
        return rfc6962.inclusion_proof(
            hasher=self.hasher, leaf_hashes=self.leaf_hashes[:n], index=index
        )

    def fork(self, at_size: int) -> SimulatedLog:
        """A second log with the same keys that shares only the first ``at_size`` entries:
        what a log operator presenting a split view would sign."""
        return SimulatedLog(
            self.origin,
            self.log_signer,
            self.witnesses,
            self.hasher,
            list(self.entries[:at_size]),
            list(self.leaf_hashes[:at_size]),
        )
