"""Signature schemes behind one narrow protocol, chosen per chain by its descriptor.

Each scheme verifies ``signature`` over ``message`` under ``public_key`` and raises
:class:`~relay.verify.errors.SignatureError` naming the scheme (never returns a bare boolean).

- ``ed25519``: RFC 8032, through libsodium (PyNaCl).
- ``ecdsa-p256``: ECDSA (FIPS 186-5) on NIST P-256 over SHA-256 of the message, through OpenSSL
  (``cryptography``). Keys are SEC 1 (2.3.3) points, compressed or uncompressed.
- ``secp256k1`` / ``secp256k1-keccak256``: ECDSA on SEC 2 secp256k1 through libsecp256k1
  (``coincurve``), over SHA-256 of the message, or over Keccak-256 of it as Ethereum-style
  chains sign. Policy: high-S signatures are rejected by default (BIP 62/146, EIP-2), because
  libsecp256k1 and those chains treat ``(r, n-s)`` as a forgery of ``(r, s)``.
- ``sm2``: SM2 signatures (GM/T 0003.2-2012, GB/T 32918.2-2016) with SM3 (GM/T 0004-2012):
  ``e = SM3(Z || M)`` where ``Z`` binds the signer ID and public key; the signer ID is a per-chain
  parameter, default ``1234567812345678`` (GM/T 0009-2012). Verified by Tongsuo (``tongsuopy``).

Signature encodings are an explicit parameter, never guessed from the length: ``der`` is the
X.9.62 ``ECDSA-Sig-Value`` SEQUENCE in strict DER; ``raw`` is ``r || s`` as fixed 32-byte
big-endian integers; ``rsv`` (secp256k1 only) is ``r || s || v`` with the recovery byte ``v``
in {0, 1, 27, 28}, which must recover the given key.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import coincurve
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from relay.verify.errors import SignatureError, UnsupportedError
from relay.verify.hashing import KECCAK256, SHA256, SM3, Hasher


class SignatureScheme(Protocol):
    """Verifies signatures of one algorithm. ``verify`` raises :class:`SignatureError`."""

    @property
    def name(self) -> str: ...

    def verify(self, *, public_key: bytes, message: bytes, signature: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Ed25519:
    """Ed25519 (RFC 8032) through libsodium (PyNaCl): 32-byte keys, 64-byte signatures."""

    name: str = "ed25519"

    def check_public_key(self, public_key: bytes) -> None:
        """Raise :class:`SignatureError` unless ``public_key`` has the Ed25519 key length."""
        if len(public_key) != 32:
            raise SignatureError(
                "ed25519 public key must be 32 bytes", scheme=self.name, length=len(public_key)
            )

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


class SignatureEncoding(enum.StrEnum):
    """How an ECDSA-family signature is laid out on the wire."""

    DER = "der"
    RAW = "raw"
    RSV = "rsv"


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SM2_ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123

DEFAULT_SM2_SIGNER_ID = b"1234567812345678"
"""The default signer ID of GM/T 0009-2012, used when a chain does not configure its own."""

MAX_SM2_SIGNER_ID_BYTES = 8191
"""ENTL is a 16-bit count of *bits*, so an ID is at most 8191 bytes (GM/T 0003.2 5.5)."""

_MAX_DER_SIGNATURE = 72  # SEQUENCE of two INTEGERs of at most 33 bytes each, short lengths


# --- shared ECDSA-family helpers ---------------------------------------------------------


def _parse_der(scheme: str, signature: bytes) -> tuple[int, int]:
    """Strict DER ``SEQUENCE { INTEGER r, INTEGER s }`` for 256-bit curves.

    Strict because BER leniency (long-form lengths, padding, trailing bytes) gives one
    signature many encodings, which lets anyone alter bytes a relayer or an audit log hashes.
    """

    def fail(why: str) -> SignatureError:
        return SignatureError(
            f"malformed DER signature: {why}", scheme=scheme, length=len(signature)
        )

    if not 8 <= len(signature) <= _MAX_DER_SIGNATURE:
        raise fail("length out of range")
    if signature[0] != 0x30:
        raise fail("not a SEQUENCE")
    if signature[1] != len(signature) - 2:
        raise fail("SEQUENCE length does not match the signature length")
    pos = 2
    values: list[int] = []
    for part in ("r", "s"):
        if pos + 2 > len(signature) or signature[pos] != 0x02:
            raise fail(f"{part} is not an INTEGER")
        length = signature[pos + 1]
        start, end = pos + 2, pos + 2 + length
        if length == 0 or length > 33 or end > len(signature):
            raise fail(f"{part} has a bad length")
        content = signature[start:end]
        if content[0] & 0x80:
            raise fail(f"{part} is negative")
        if length > 1 and content[0] == 0 and not content[1] & 0x80:
            raise fail(f"{part} is not minimally encoded")
        values.append(int.from_bytes(content, "big"))
        pos = end
    if pos != len(signature):
        raise fail("trailing bytes after the SEQUENCE")
    return values[0], values[1]


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + bytes([len(body)]) + body


def encode_der_signature(r: int, s: int) -> bytes:
    """DER ``ECDSA-Sig-Value`` of non-negative ``r`` and ``s`` below 2**256."""
    if not (0 <= r < 1 << 256 and 0 <= s < 1 << 256):
        raise ValueError("r and s must be non-negative 256-bit integers")
    body = _der_integer(r) + _der_integer(s)
    return b"\x30" + bytes([len(body)]) + body


def _parse_raw(scheme: str, signature: bytes) -> tuple[int, int]:
    if len(signature) != 64:
        raise SignatureError(
            "raw signature must be r || s, 64 bytes", scheme=scheme, length=len(signature)
        )
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")


def _decode_rs(scheme: str, encoding: SignatureEncoding, signature: bytes) -> tuple[int, int]:
    if encoding is SignatureEncoding.DER:
        return _parse_der(scheme, signature)
    return _parse_raw(scheme, signature)


def _check_range(scheme: str, r: int, s: int, order: int) -> None:
    if not 0 < r < order:
        raise SignatureError("signature r is out of range [1, n-1]", scheme=scheme, r=r)
    if not 0 < s < order:
        raise SignatureError("signature s is out of range [1, n-1]", scheme=scheme, s=s)


def _check_point_encoding(scheme: str, public_key: bytes) -> None:
    """SEC 1 2.3.3: 0x02/0x03 || X (33 bytes) or 0x04 || X || Y (65 bytes)."""
    if len(public_key) == 33 and public_key[0] in (2, 3):
        return
    if len(public_key) == 65 and public_key[0] == 4:
        return
    if not public_key or public_key[0] not in (2, 3, 4):
        raise SignatureError(
            "unknown public key type: expected a SEC 1 point (0x02, 0x03 or 0x04 prefix)",
            scheme=scheme,
            length=len(public_key),
            prefix=public_key[:1],
        )
    raise SignatureError(
        "bad public key length for a SEC 1 point (33 compressed or 65 uncompressed)",
        scheme=scheme,
        length=len(public_key),
    )


def _encoding(scheme: str, value: SignatureEncoding | str, *, allow_rsv: bool) -> SignatureEncoding:
    try:
        encoding = SignatureEncoding(value)
    except ValueError as e:
        raise UnsupportedError("unknown signature encoding", scheme=scheme, encoding=value) from e
    if encoding is SignatureEncoding.RSV and not allow_rsv:
        raise UnsupportedError(
            "the rsv encoding exists only for secp256k1", scheme=scheme, encoding=value
        )
    return encoding


# --- ECDSA P-256 -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _p256_key(public_key: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)


_P256_ALGORITHM = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class EcdsaP256:
    """ECDSA on NIST P-256 over SHA-256 of the message (OpenSSL via ``cryptography``).

    ``encoding`` is required: ``der`` or ``raw``. ``low_s`` (default off, as FIPS 186-5 and
    OpenSSL accept both) additionally rejects ``s > n/2``.
    """

    encoding: SignatureEncoding
    low_s: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoding", _encoding(self.name, self.encoding, allow_rsv=False))

    @property
    def name(self) -> str:
        return "ecdsa-p256"

    def check_public_key(self, public_key: bytes) -> None:
        """Raise :class:`SignatureError` unless ``public_key`` is a SEC 1 point on P-256."""
        self._load(public_key)

    def _load(self, public_key: bytes) -> ec.EllipticCurvePublicKey:
        _check_point_encoding(self.name, public_key)
        try:
            return _p256_key(bytes(public_key))
        except ValueError as e:
            raise SignatureError(
                "public key is not a point on P-256", scheme=self.name, public_key=public_key
            ) from e

    def verify(self, *, public_key: bytes, message: bytes, signature: bytes) -> None:
        key = self._load(public_key)
        r, s = _decode_rs(self.name, self.encoding, signature)
        _check_range(self.name, r, s, P256_ORDER)
        if self.low_s and s > P256_ORDER // 2:
            raise SignatureError("high-S signature rejected by policy", scheme=self.name, s=s)
        try:
            key.verify(encode_der_signature(r, s), message, _P256_ALGORITHM)
        except InvalidSignature as e:
            raise SignatureError(
                "ecdsa-p256 signature does not verify", scheme=self.name, public_key=public_key
            ) from e


# --- secp256k1 ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _k1_key(public_key: bytes) -> coincurve.PublicKey:
    return coincurve.PublicKey(public_key)


@dataclass(frozen=True, slots=True)
class Secp256k1:
    """ECDSA on secp256k1 (libsecp256k1 via ``coincurve``).

    The scheme hashes the message itself: ``hash`` is ``sha256`` (Bitcoin-style, Fabric,
    FISCO BCOS non-GM) or ``keccak256`` (Ethereum, Besu/QBFT seals, which sign a Keccak-256
    digest). To verify an already-hashed 32-byte digest, the caller passes the preimage.
    ``encoding`` is required: ``der``, ``raw`` or ``rsv``. ``low_s`` (default on) rejects
    ``s > n/2``; with it off, a high-S signature is normalised before verification.
    """

    encoding: SignatureEncoding
    hash: str = "sha256"
    low_s: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoding", _encoding(self.name, self.encoding, allow_rsv=True))
        if self.hash not in _K1_HASHES:
            raise UnsupportedError(
                "secp256k1 message hash must be sha256 or keccak256",
                scheme="secp256k1",
                hash=self.hash,
            )

    @property
    def name(self) -> str:
        return "secp256k1" if self.hash == "sha256" else f"secp256k1-{self.hash}"

    def check_public_key(self, public_key: bytes) -> None:
        """Raise :class:`SignatureError` unless ``public_key`` is a SEC 1 point on secp256k1."""
        self._load(public_key)

    def _load(self, public_key: bytes) -> coincurve.PublicKey:
        _check_point_encoding(self.name, public_key)
        try:
            return _k1_key(bytes(public_key))
        except (ValueError, TypeError) as e:
            raise SignatureError(
                "public key is not a point on secp256k1", scheme=self.name, public_key=public_key
            ) from e

    def verify(self, *, public_key: bytes, message: bytes, signature: bytes) -> None:
        key = self._load(public_key)
        recid: int | None = None
        if self.encoding is SignatureEncoding.RSV:
            if len(signature) != 65:
                raise SignatureError(
                    "rsv signature must be r || s || v, 65 bytes",
                    scheme=self.name,
                    length=len(signature),
                )
            v = signature[64]
            if v not in (0, 1, 27, 28):
                raise SignatureError(
                    "recovery byte v must be 0, 1, 27 or 28", scheme=self.name, v=v
                )
            recid = v - 27 if v >= 27 else v
            r, s = _parse_raw(self.name, signature[:64])
        else:
            r, s = _decode_rs(self.name, self.encoding, signature)
        _check_range(self.name, r, s, SECP256K1_ORDER)
        if s > SECP256K1_ORDER // 2:
            if self.low_s:
                raise SignatureError(
                    "high-S signature rejected by policy (BIP 62, EIP-2)", scheme=self.name, s=s
                )
            # libsecp256k1 verifies only the lower-S form; (r, n-s) is the same signature,
            # and for recovery the flip mirrors R, so the parity bit flips with it.
            s = SECP256K1_ORDER - s
            if recid is not None:
                recid ^= 1
        digest = _K1_HASHES[self.hash].hash(message)
        if recid is not None:
            compact = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recid])
            try:
                recovered = coincurve.PublicKey.from_signature_and_message(
                    compact, digest, hasher=None
                )
            except ValueError as e:
                raise SignatureError(
                    "secp256k1 signature does not recover a key", scheme=self.name
                ) from e
            if recovered.format(compressed=False) != key.format(compressed=False):
                raise SignatureError(
                    "secp256k1 signature does not verify: it recovers another key",
                    scheme=self.name,
                    public_key=public_key,
                )
            return
        if not key.verify(encode_der_signature(r, s), digest, hasher=None):
            raise SignatureError(
                f"{self.name} signature does not verify", scheme=self.name, public_key=public_key
            )


_K1_HASHES: dict[str, Hasher] = {"sha256": SHA256, "keccak256": KECCAK256}


# --- SM2 ---------------------------------------------------------------------------------

_SM2_A = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
_SM2_B = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
_SM2_GX = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
_SM2_GY = bytes.fromhex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")


def _tongsuo() -> Any:
    # Imported lazily: chains that never use SM2 should not load a second OpenSSL.
    from tongsuopy.backends.tongsuo import backend

    return backend


@functools.lru_cache(maxsize=1024)
def _sm2_key(public_key: bytes) -> tuple[Any, bytes]:
    """The Tongsuo key object and the uncompressed ``x || y`` that ``Z`` hashes."""
    from tongsuopy.crypto.asymciphers import ec as sm2_ec

    key = sm2_ec.EllipticCurvePublicKey.from_encoded_point(sm2_ec.SM2(), public_key)
    numbers = key.public_numbers()
    return key, numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


@functools.lru_cache(maxsize=1024)
def _sm2_z(xy: bytes, signer_id: bytes) -> bytes:
    entl = (len(signer_id) * 8).to_bytes(2, "big")
    return SM3.hash(entl + signer_id + _SM2_A + _SM2_B + _SM2_GX + _SM2_GY + xy)


def sm2_z(*, public_key: bytes, signer_id: bytes = DEFAULT_SM2_SIGNER_ID) -> bytes:
    """``Z_A = SM3(ENTL || ID || a || b || x_G || y_G || x_A || y_A)`` (GM/T 0003.2 5.5).

    Raises :class:`SignatureError` for a key that is not an SM2 point.
    """
    return _sm2_load("sm2", public_key, signer_id)[1]


def sm2_digest(
    *, public_key: bytes, message: bytes, signer_id: bytes = DEFAULT_SM2_SIGNER_ID
) -> bytes:
    """``e = SM3(Z_A || M)``, the value an SM2 signature actually signs (GM/T 0003.2 6.1)."""
    return SM3.hash(sm2_z(public_key=public_key, signer_id=signer_id) + message)


def _sm2_load(scheme: str, public_key: bytes, signer_id: bytes) -> tuple[Any, bytes]:
    _check_point_encoding(scheme, public_key)
    if len(signer_id) > MAX_SM2_SIGNER_ID_BYTES:
        raise SignatureError("sm2 signer ID is too long", scheme=scheme, length=len(signer_id))
    try:
        key, xy = _sm2_key(bytes(public_key))
    except ValueError as e:
        raise SignatureError(
            "public key is not a point on the SM2 curve", scheme=scheme, public_key=public_key
        ) from e
    return key, _sm2_z(xy, bytes(signer_id))


@dataclass(frozen=True, slots=True)
class Sm2:
    """SM2 signatures with SM3 and a signer ID (GM/T 0003.2-2012), verified by Tongsuo.

    ``encoding`` is required: ``der`` (GM/T 0009 ``SM2Signature``, which is the same
    SEQUENCE of two INTEGERs) or ``raw`` ``r || s``. ``signer_id`` is the chain's configured
    user ID; ``Z`` is computed here and Tongsuo verifies ``(r, s)`` against ``e`` directly.
    """

    encoding: SignatureEncoding
    signer_id: bytes = DEFAULT_SM2_SIGNER_ID

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoding", _encoding(self.name, self.encoding, allow_rsv=False))
        if isinstance(self.signer_id, str):
            object.__setattr__(self, "signer_id", self.signer_id.encode("utf-8"))
        if not isinstance(self.signer_id, bytes) or len(self.signer_id) > MAX_SM2_SIGNER_ID_BYTES:
            raise UnsupportedError(
                "sm2 signer ID must be bytes of at most 8191 bytes", scheme=self.name
            )

    @property
    def name(self) -> str:
        return "sm2"

    def check_public_key(self, public_key: bytes) -> None:
        """Raise :class:`SignatureError` unless ``public_key`` is a SEC 1 point on SM2."""
        _sm2_load(self.name, public_key, self.signer_id)

    def verify(self, *, public_key: bytes, message: bytes, signature: bytes) -> None:
        key, z = _sm2_load(self.name, public_key, self.signer_id)
        r, s = _decode_rs(self.name, self.encoding, signature)
        _check_range(self.name, r, s, SM2_ORDER)
        digest = SM3.hash(z + message)
        if not _sm2_verify_digest(key, digest, encode_der_signature(r, s)):
            raise SignatureError(
                "sm2 signature does not verify",
                scheme=self.name,
                public_key=public_key,
                signer_id=self.signer_id,
            )


def _sm2_verify_digest(key: Any, digest: bytes, der: bytes) -> bool:
    # tongsuopy's public verify() always uses the default signer ID; EVP_PKEY_verify on an
    # SM2 key checks (r, s) against a precomputed e, which lets the chain choose the ID.
    backend = _tongsuo()
    lib, ffi = backend._lib, backend._ffi
    ctx = lib.EVP_PKEY_CTX_new(key._evp_pkey, ffi.NULL)
    if ctx == ffi.NULL:
        backend._consume_errors()
        return False
    ctx = ffi.gc(ctx, lib.EVP_PKEY_CTX_free)
    if lib.EVP_PKEY_verify_init(ctx) != 1:
        backend._consume_errors()
        return False
    result = lib.EVP_PKEY_verify(ctx, der, len(der), digest, len(digest))
    if result != 1:
        backend._consume_errors()
    return bool(result == 1)


# --- registry ----------------------------------------------------------------------------


def _flag(scheme: str, params: dict[str, object], key: str, default: bool) -> bool:
    value = params.pop(key, default)
    if not isinstance(value, bool):
        raise UnsupportedError(f"parameter {key} must be a boolean", scheme=scheme, value=value)
    return value


def _required_encoding(
    scheme: str, params: dict[str, object], *, allow_rsv: bool = False
) -> SignatureEncoding:
    if "encoding" not in params:
        raise UnsupportedError(
            "the signature encoding must be chosen explicitly (der, raw or rsv)", scheme=scheme
        )
    value = params.pop("encoding")
    if not isinstance(value, str):
        raise UnsupportedError("encoding must be a string", scheme=scheme, value=value)
    return _encoding(scheme, value, allow_rsv=allow_rsv)


def _make_ed25519(params: dict[str, object]) -> SignatureScheme:
    return ED25519


def _make_p256(params: dict[str, object]) -> SignatureScheme:
    encoding = _required_encoding("ecdsa-p256", params)
    return EcdsaP256(encoding=encoding, low_s=_flag("ecdsa-p256", params, "low_s", False))


def _make_k1(default_hash: str) -> Callable[[dict[str, object]], SignatureScheme]:
    def make(params: dict[str, object]) -> SignatureScheme:
        encoding = _required_encoding("secp256k1", params, allow_rsv=True)
        hash_name = params.pop("hash", default_hash)
        if not isinstance(hash_name, str):
            raise UnsupportedError("hash must be a string", scheme="secp256k1", value=hash_name)
        return Secp256k1(
            encoding=encoding,
            hash=hash_name,
            low_s=_flag("secp256k1", params, "low_s", True),
        )

    return make


def _make_sm2(params: dict[str, object]) -> SignatureScheme:
    encoding = _required_encoding("sm2", params)
    signer_id = params.pop("signer_id", DEFAULT_SM2_SIGNER_ID)
    if isinstance(signer_id, str):
        signer_id = signer_id.encode("utf-8")
    if not isinstance(signer_id, bytes):
        raise UnsupportedError("signer_id must be bytes or str", scheme="sm2", value=signer_id)
    return Sm2(encoding=encoding, signer_id=signer_id)


_FACTORIES: dict[str, Callable[[dict[str, object]], SignatureScheme]] = {
    "ed25519": _make_ed25519,
    "ecdsa-p256": _make_p256,
    "secp256k1": _make_k1("sha256"),
    "secp256k1-keccak256": _make_k1("keccak256"),
    "sm2": _make_sm2,
}

SCHEME_NAMES = tuple(_FACTORIES)


def by_name(name: str, **params: object) -> SignatureScheme:
    """Return the scheme ``name`` configured by ``params``.

    ``ed25519`` takes none. ``ecdsa-p256`` takes ``encoding`` (required) and ``low_s``;
    ``secp256k1`` takes ``encoding`` (required), ``hash`` (``sha256`` or ``keccak256``) and
    ``low_s``; ``secp256k1-keccak256`` is ``secp256k1`` with ``hash="keccak256"``; ``sm2``
    takes ``encoding`` (required) and ``signer_id`` (bytes or UTF-8 str). Raises
    :class:`UnsupportedError` for an unknown name, parameter or value.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise UnsupportedError("unknown signature scheme", scheme=name, known=SCHEME_NAMES)
    remaining = dict(params)
    scheme = factory(remaining)
    if remaining:
        raise UnsupportedError(
            "unknown parameters for signature scheme", scheme=name, parameters=sorted(remaining)
        )
    return scheme
