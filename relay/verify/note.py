"""C2SP signed notes: the text envelope of transparency-log checkpoints and cosignatures.

Implements https://c2sp.org/signed-note (the format of golang.org/x/mod/sumdb/note): a text
ending in a newline, a blank line, then signature lines ``— <name> base64(key ID || sig)``
(em dash U+2014); verifier keys ``<name>+<hex key ID>+base64(type || public key)`` with
``key ID = SHA-256(name || 0x0A || type || public key)[:4]``. It also verifies the
timestamped witness cosignatures of https://c2sp.org/tlog-cosignature (type 0x04).

Signature types. Registered by the spec and supported: ``0x01`` Ed25519 over the note text,
``0x04`` Ed25519 ``cosignature/v1``. Registered but not supported (refused with
:class:`UnsupportedError`): ``0x02`` (transparency-dev/witness ECDSA), ``0x03`` (reserved),
``0x05`` (RFC 6962 TreeHeadSignature), ``0x06`` (ML-DSA-44 subtree cosignature), and the
reserved ``0xfa``-``0xfe``. Project extensions (for registries that must sign with P-256 or
the GM/T algorithms) use the spec's escape byte ``0xff`` followed by a label, as the spec
recommends for types without an assigned byte, so they can never collide with a future one:

==================================================  ==========================================
type identifier                                     meaning
==================================================  ==========================================
``0xff "judicial-relay/note/ecdsa-p256/v1"``        ECDSA P-256 over SHA-256 of the note text;
                                                    key = SEC 1 point (33 or 65 bytes);
                                                    signature = ``r || s`` (64 bytes)
``0xff "judicial-relay/note/sm2/v1"``               SM2 with SM3 over the note text; key =
                                                    ``u8 len || signer ID || SEC 1 point``;
                                                    signature = ``r || s`` (64 bytes)
``0xff "judicial-relay/cosignature/ecdsa-p256/v1"`` like 0x04 (``cosignature/v1`` message,
                                                    ``u64 timestamp || signature``) but P-256
``0xff "judicial-relay/cosignature/sm2/v1"``        like 0x04 but SM2 (key as for note/sm2)
==================================================  ==========================================

The labels are prefix-free, so ``type || key`` splits unambiguously. The SM2 signer ID is
part of the key material, which makes a vkey alone enough to re-verify a note offline.

Stricter than Go's reader, on purpose: base64 must be canonical (one encoding per signature),
every signature from a known key is verified (Go skips repeats of a known key), and note size,
signature count and line length are bounded (:class:`NoteLimits`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    SignatureError,
    UnsupportedError,
)
from relay.verify.signatures import (
    ED25519,
    EcdsaP256,
    SignatureEncoding,
    SignatureScheme,
    Sm2,
)

SIGNATURE_PREFIX = "— ".encode()
"""Every signature line starts with an em dash (U+2014) and a space."""

ALG_ED25519 = b"\x01"
ALG_COSIGNATURE_V1 = b"\x04"
ALG_RELAY_ECDSA_P256 = b"\xffjudicial-relay/note/ecdsa-p256/v1"
ALG_RELAY_SM2 = b"\xffjudicial-relay/note/sm2/v1"
ALG_RELAY_COSIGNATURE_P256 = b"\xffjudicial-relay/cosignature/ecdsa-p256/v1"
ALG_RELAY_COSIGNATURE_SM2 = b"\xffjudicial-relay/cosignature/sm2/v1"

_REGISTERED_UNSUPPORTED = {
    0x02: "ECDSA as implemented by transparency-dev/witness",
    0x03: "reserved",
    0x05: "RFC 6962 TreeHeadSignature (c2sp.org/static-ct-api)",
    0x06: "ML-DSA-44 subtree cosignature (c2sp.org/tlog-cosignature)",
    **{b: "reserved for future use" for b in range(0xFA, 0xFF)},
}

_EXTENSIONS = (
    ALG_RELAY_ECDSA_P256,
    ALG_RELAY_SM2,
    ALG_RELAY_COSIGNATURE_P256,
    ALG_RELAY_COSIGNATURE_SM2,
)

COSIGNATURE_HEADER = b"cosignature/v1\n"
MAX_COSIGNATURE_TIMESTAMP = (1 << 63) - 1
MAX_VERIFIER_KEY_CHARS = 4096

_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


@dataclass(frozen=True, slots=True)
class NoteLimits:
    """Bounds on what :func:`parse_note` reads. The spec requires accepting at least 16
    signatures; 100 is golang.org/x/mod's limit. A line of 8 KiB fits a post-quantum
    signature (ML-DSA-44: 2,420 bytes, 3.3 KB in base64)."""

    max_note_bytes: int = 256 * 1024
    max_signatures: int = 100
    max_signature_line_bytes: int = 8 * 1024


DEFAULT_NOTE_LIMITS = NoteLimits()


class UnverifiedNoteError(SignatureError):
    """The note is well-formed but no signature from a known key is on it."""

    reason = "NOTE_UNVERIFIED"


class InvalidNoteSignatureError(SignatureError):
    """A signature line from a known key does not verify; the whole note is rejected."""


# --- small codecs ------------------------------------------------------------------------


def decode_base64(text: str, *, what: str) -> bytes:
    """Decode standard (RFC 4648 4) base64, padded and canonical, or raise
    :class:`MalformedInputError` naming ``what``."""
    if len(text) % 4 or _BASE64.fullmatch(text) is None:
        raise MalformedInputError(f"{what} is not padded standard base64", value=text[:100])
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedInputError(f"{what} is not valid base64", value=text[:100]) from e
    if base64.b64encode(raw).decode("ascii") != text:
        # Non-zero padding bits: a second spelling of the same bytes.
        raise MalformedInputError(f"{what} is not canonical base64", value=text[:100])
    return raw


def is_valid_name(name: str) -> bool:
    """A key name is non-empty and has no Unicode space and no ``+`` (signed-note spec)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, type_and_key: bytes) -> int:
    """``SHA-256(name || 0x0A || type || public key)[:4]`` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + type_and_key).digest()
    return int.from_bytes(digest[:4], "big")


def cosignature_message(*, text: bytes, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs: header line, ``time <ts>`` line, then the note text."""
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp + text


def cosignature_timestamp(signature: bytes) -> int:
    """The ``u64`` timestamp that starts a ``timestamped_signature``; raises
    :class:`SignatureError` if it is missing or above 2**63-1."""
    if len(signature) < 8:
        raise SignatureError("cosignature is shorter than its timestamp", length=len(signature))
    timestamp = int.from_bytes(signature[:8], "big")
    if timestamp > MAX_COSIGNATURE_TIMESTAMP:
        raise SignatureError("cosignature timestamp exceeds 2**63-1", timestamp=timestamp)
    return timestamp


# --- verifiers ---------------------------------------------------------------------------


class NoteVerifier(Protocol):
    """A known key: its name and key ID select the signature lines it must verify."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    @property
    def algorithm(self) -> bytes: ...

    @property
    def public_key(self) -> bytes: ...

    def verify(self, *, text: bytes, signature: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class SignatureVerifier:
    """A plain note signature: ``scheme`` over the note text."""

    name: str
    key_id: int
    algorithm: bytes
    public_key: bytes
    scheme: SignatureScheme
    scheme_public_key: bytes

    def verify(self, *, text: bytes, signature: bytes) -> None:
        self.scheme.verify(public_key=self.scheme_public_key, message=text, signature=signature)

    @property
    def vkey(self) -> str:
        return _vkey(self.name, self.key_id, self.algorithm + self.public_key)


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A tlog-cosignature witness key: ``timestamp || scheme(cosignature/v1 message)``."""

    name: str
    key_id: int
    algorithm: bytes
    public_key: bytes
    scheme: SignatureScheme
    scheme_public_key: bytes
    signature_size: int = 64

    def verify(self, *, text: bytes, signature: bytes) -> None:
        if len(signature) != 8 + self.signature_size:
            raise SignatureError(
                "cosignature has the wrong length",
                scheme=self.scheme.name,
                expected=8 + self.signature_size,
                calculated=len(signature),
            )
        timestamp = cosignature_timestamp(signature)
        self.scheme.verify(
            public_key=self.scheme_public_key,
            message=cosignature_message(text=text, timestamp=timestamp),
            signature=signature[8:],
        )

    @property
    def vkey(self) -> str:
        return _vkey(self.name, self.key_id, self.algorithm + self.public_key)


def _vkey(name: str, kid: int, type_and_key: bytes) -> str:
    return f"{name}+{kid:08x}+{base64.b64encode(type_and_key).decode('ascii')}"


def _split_sm2_key(key: bytes) -> tuple[bytes, bytes]:
    if not key or key[0] == 0 or len(key) < 1 + key[0]:
        raise MalformedInputError("sm2 key material must be u8 len || signer ID || point")
    return key[1 : 1 + key[0]], key[1 + key[0] :]


def make_verifier(*, name: str, algorithm: bytes, public_key: bytes) -> NoteVerifier:
    """The verifier for ``public_key`` of signature type ``algorithm`` under ``name``.

    Raises :class:`MalformedInputError` for an invalid name or key and
    :class:`UnsupportedError` for a type this build does not verify.
    """
    if not is_valid_name(name):
        raise MalformedInputError("invalid key name", name=name)
    kid = key_id(name, algorithm + public_key)
    try:
        if algorithm in (ALG_ED25519, ALG_COSIGNATURE_V1):
            ED25519.check_public_key(public_key)
            cls = SignatureVerifier if algorithm == ALG_ED25519 else CosignatureVerifier
            return cls(name, kid, algorithm, public_key, ED25519, public_key)
        if algorithm in (ALG_RELAY_ECDSA_P256, ALG_RELAY_COSIGNATURE_P256):
            p256 = EcdsaP256(encoding=SignatureEncoding.RAW)
            p256.check_public_key(public_key)
            if algorithm == ALG_RELAY_ECDSA_P256:
                return SignatureVerifier(name, kid, algorithm, public_key, p256, public_key)
            return CosignatureVerifier(name, kid, algorithm, public_key, p256, public_key)
        if algorithm in (ALG_RELAY_SM2, ALG_RELAY_COSIGNATURE_SM2):
            signer_id, point = _split_sm2_key(public_key)
            sm2 = Sm2(encoding=SignatureEncoding.RAW, signer_id=signer_id)
            sm2.check_public_key(point)
            if algorithm == ALG_RELAY_SM2:
                return SignatureVerifier(name, kid, algorithm, public_key, sm2, point)
            return CosignatureVerifier(name, kid, algorithm, public_key, sm2, point)
    except SignatureError as e:
        raise MalformedInputError(
            "invalid public key for its signature type", name=name, detail=e.message
        ) from e
    first = algorithm[0] if algorithm else -1
    if first in _REGISTERED_UNSUPPORTED:
        raise UnsupportedError(
            "signature type is registered but not supported",
            type=first,
            meaning=_REGISTERED_UNSUPPORTED[first],
        )
    raise UnsupportedError("unknown signature type", type=algorithm[:40])


def sm2_key_material(*, signer_id: bytes, point: bytes) -> bytes:
    """The SM2 extension's key encoding: ``u8 len(signer ID) || signer ID || SEC 1 point``."""
    if not 0 < len(signer_id) < 256:
        raise MalformedInputError("sm2 signer ID must be 1 to 255 bytes in a note key")
    return bytes([len(signer_id)]) + signer_id + point


def _split_type(type_and_key: bytes) -> tuple[bytes, bytes]:
    if type_and_key[0] != 0xFF:
        return type_and_key[:1], type_and_key[1:]
    for label in _EXTENSIONS:
        if type_and_key.startswith(label):
            return label, type_and_key[len(label) :]
    raise UnsupportedError("unknown 0xff-escaped signature type", type=type_and_key[:40])


def parse_verifier_key(vkey: str) -> NoteVerifier:
    """Parse ``<name>+<8 hex>+<base64(type || key)>`` and check the key ID it claims.

    Raises :class:`MalformedInputError` (bad syntax, key, or a key ID that does not match),
    :class:`LimitExceededError` (over 4096 characters), :class:`UnsupportedError` (type).
    """
    if len(vkey) > MAX_VERIFIER_KEY_CHARS:
        raise LimitExceededError(
            "verifier key too long", length=len(vkey), limit=MAX_VERIFIER_KEY_CHARS
        )
    name, _, rest = vkey.partition("+")
    hex_id, _, key64 = rest.partition("+")
    if not is_valid_name(name):
        raise MalformedInputError("verifier key has an invalid name", vkey=vkey[:100])
    if _HEX8.fullmatch(hex_id) is None:
        raise MalformedInputError("verifier key ID must be 8 hex digits", vkey=vkey[:100])
    type_and_key = decode_base64(key64, what="verifier key material")
    if not type_and_key:
        raise MalformedInputError("verifier key material is empty", vkey=vkey[:100])
    claimed, calculated = int(hex_id, 16), key_id(name, type_and_key)
    if claimed != calculated:
        raise MalformedInputError(
            "verifier key ID does not match its name and key",
            name=name,
            expected=f"{claimed:08x}",
            calculated=f"{calculated:08x}",
        )
    algorithm, key = _split_type(type_and_key)
    return make_verifier(name=name, algorithm=algorithm, public_key=key)


# --- notes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes after the key ID."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> bytes:
        """The signature line, newline included."""
        blob = base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature)
        return SIGNATURE_PREFIX + self.name.encode("utf-8") + b" " + blob + b"\n"


@dataclass(frozen=True, slots=True)
class ParsedNote:
    """A syntactically valid note whose signatures have not been checked."""

    text: bytes
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class Note:
    """An opened note: its text and the signatures checked (``verified``) or skipped because
    no known key matches their name and key ID (``unverified``), duplicates removed."""

    text: bytes
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]

    def verified_by(self, verifier: NoteVerifier) -> NoteSignature | None:
        for sig in self.verified:
            if sig.name == verifier.name and sig.key_id == verifier.key_id:
                return sig
        return None


def parse_note(msg: bytes, *, limits: NoteLimits = DEFAULT_NOTE_LIMITS) -> ParsedNote:
    """Split a signed note into text and signature lines, checking the syntax only.

    Raises :class:`LimitExceededError` past ``limits`` and :class:`MalformedInputError` for
    anything that is not a signed note (invalid UTF-8, control characters, no blank line
    before the signatures, a missing final newline, a bad signature line).
    """
    if len(msg) > limits.max_note_bytes:
        raise LimitExceededError("note is too large", length=len(msg), limit=limits.max_note_bytes)
    try:
        msg.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedInputError("note is not valid UTF-8", offset=e.start) from e
    control = _CONTROL.search(msg)
    if control is not None:
        raise MalformedInputError(
            "note contains an ASCII control character", offset=control.start()
        )
    split = msg.rfind(b"\n\n")
    if split < 0:
        raise MalformedInputError("note has no blank line before its signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block or not block.endswith(b"\n"):
        raise MalformedInputError("note signature block is empty or lacks its final newline")
    lines = block[:-1].split(b"\n")
    if len(lines) > limits.max_signatures:
        raise LimitExceededError(
            "note has too many signatures", count=len(lines), limit=limits.max_signatures
        )
    return ParsedNote(text, tuple(_parse_signature_line(line, limits) for line in lines))


def _parse_signature_line(line: bytes, limits: NoteLimits) -> NoteSignature:
    if len(line) > limits.max_signature_line_bytes:
        raise LimitExceededError(
            "signature line is too long",
            length=len(line),
            limit=limits.max_signature_line_bytes,
        )
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedInputError("signature line does not start with an em dash and a space")
    name, _, b64 = line[len(SIGNATURE_PREFIX) :].decode("utf-8").partition(" ")
    if not is_valid_name(name):
        raise MalformedInputError("signature line has an invalid key name", name=name[:100])
    blob = decode_base64(b64, what="signature")
    if len(blob) < 5:
        raise MalformedInputError("signature is shorter than a key ID and one byte", name=name)
    return NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:])


def _index(verifiers: Iterable[NoteVerifier]) -> dict[tuple[str, int], NoteVerifier]:
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        slot = (v.name, v.key_id)
        if slot in known and known[slot] != v:
            raise MalformedInputError(
                "two known keys share a name and key ID", name=v.name, key_id=f"{v.key_id:08x}"
            )
        known[slot] = v
    return known


def open_note(
    msg: bytes,
    *,
    verifiers: Iterable[NoteVerifier],
    limits: NoteLimits = DEFAULT_NOTE_LIMITS,
) -> Note:
    """Parse ``msg`` and verify every signature whose name and key ID match a known key.

    Unknown signatures are ignored (kept in ``unverified``), as the spec requires. Raises
    :class:`InvalidNoteSignatureError` if a known key's signature fails (the whole note is
    rejected), :class:`UnverifiedNoteError` if no known key signed, and the errors of
    :func:`parse_note`.
    """
    parsed = parse_note(msg, limits=limits)
    known = _index(verifiers)
    verified: dict[tuple[str, int], NoteSignature] = {}
    unverified: dict[NoteSignature, None] = {}
    for sig in parsed.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unverified.setdefault(sig, None)
            continue
        try:
            verifier.verify(text=parsed.text, signature=sig.signature)
        except SignatureError as e:
            raise InvalidNoteSignatureError(
                "note signature from a known key does not verify",
                signer=sig.name,
                key_id=f"{sig.key_id:08x}",
                scheme=e.context.get("scheme"),
                detail=e.message,
            ) from e
        verified.setdefault((sig.name, sig.key_id), sig)
    if not verified:
        raise UnverifiedNoteError(
            "note has no signature from a known key",
            unverified=[f"{s.name}+{s.key_id:08x}" for s in unverified],
        )
    return Note(parsed.text, tuple(verified.values()), tuple(unverified))


def format_note(text: bytes, signatures: Sequence[NoteSignature]) -> bytes:
    """Assemble ``text``, a blank line and ``signatures`` into a signed note.

    Requires ``text`` to end in a newline and at least one signature with a valid name.
    """
    if not text.endswith(b"\n"):
        raise MalformedInputError("note text must end with a newline")
    if not signatures:
        raise MalformedInputError("a signed note needs at least one signature")
    for sig in signatures:
        if not is_valid_name(sig.name):
            raise MalformedInputError("invalid key name", name=sig.name)
    return text + b"\n" + b"".join(sig.line() for sig in signatures)
