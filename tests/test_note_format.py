"""C2SP signed notes: verifier keys, signature types (spec and project extensions), opening
notes with known and unknown keys, limits, malformed input, and fuzzing of the decoders."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.testing.tlog import (
    NoteSigner,
    ed25519_signer,
    p256_signer,
    sign_note,
    signer_from_skey,
    sm2_signer,
)
from relay.verify import note
from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    UnsupportedError,
    VerificationError,
)
from relay.verify.note import (
    InvalidNoteSignatureError,
    NoteLimits,
    NoteSignature,
    UnverifiedNoteError,
)
from relay.verify.signatures import ED25519

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
OFF_CURVE = b"\x04" + b"\x01" * 64
TEXT = b"registry.example/land\n42\nroot hash goes here\n"


def _vkey(name: str, type_and_key: bytes, kid: int | None = None) -> str:
    kid = note.key_id(name, type_and_key) if kid is None else kid
    return f"{name}+{kid:08x}+{base64.b64encode(type_and_key).decode()}"


# --- verifier keys --------------------------------------------------------------------------


def test_key_id_is_the_spec_hash() -> None:
    v = note.parse_verifier_key(PETER_VKEY)
    material = base64.b64decode(PETER_VKEY.split("+")[2])
    digest = hashlib.sha256(b"PeterNeumann\n" + material).digest()
    assert v.key_id == int.from_bytes(digest[:4], "big") == 0xC74F20A3
    assert (v.name, v.algorithm, v.public_key) == ("PeterNeumann", b"\x01", material[1:])
    assert v.vkey == PETER_VKEY  # type: ignore[attr-defined]
    assert signer_from_skey(PETER_SKEY).vkey == PETER_VKEY


def test_uppercase_hex_key_id_is_accepted_like_go() -> None:
    upper = PETER_VKEY.replace("c74f20a3", "C74F20A3")
    assert note.parse_verifier_key(upper).key_id == 0xC74F20A3


SIGNERS = {
    "ed25519": ed25519_signer("log.example/ed"),
    "ed25519 cosignature": ed25519_signer("witness.example/ed", cosigner=True),
    "p256": p256_signer("log.example/p256"),
    "p256 cosignature": p256_signer("witness.example/p256", cosigner=True),
    "sm2": sm2_signer("log.example/sm2", signer_id=b"land-registry"),
    "sm2 cosignature": sm2_signer("witness.example/sm2", cosigner=True),
}


@pytest.mark.parametrize("kind", SIGNERS)
def test_every_type_round_trips_and_verifies(kind: str) -> None:
    signer = SIGNERS[kind]
    v = note.parse_verifier_key(signer.vkey)
    assert (v.name, v.key_id, v.algorithm) == (signer.name, signer.key_id, signer.algorithm)
    assert v.vkey == signer.vkey  # type: ignore[attr-defined]
    msg = sign_note(TEXT, [signer], timestamp=1_700_000_000 if signer.cosigner else None)
    opened = note.open_note(msg, verifiers=[v])
    assert opened.text == TEXT
    assert [s.name for s in opened.verified] == [signer.name]
    tampered = msg.replace(b"42", b"43", 1)
    with pytest.raises(InvalidNoteSignatureError) as info:
        note.open_note(tampered, verifiers=[v])
    assert info.value.context["signer"] == signer.name


def test_extension_types_use_the_escape_byte_and_are_prefix_free() -> None:
    labels = [
        note.ALG_RELAY_ECDSA_P256,
        note.ALG_RELAY_SM2,
        note.ALG_RELAY_COSIGNATURE_P256,
        note.ALG_RELAY_COSIGNATURE_SM2,
    ]
    for a in labels:
        assert a[:1] == b"\xff"
        assert all(a == b or not b.startswith(a) for b in labels)


def test_sm2_signer_id_is_bound_into_the_key() -> None:
    a = sm2_signer("log.example/sm2", seed="same", signer_id=b"registry-a")
    b = sm2_signer("log.example/sm2", seed="same", signer_id=b"registry-b")
    assert a.key.public_key == b.key.public_key
    assert a.key_id != b.key_id
    # Same point, different signer ID: a different key, and a's signature is not b's.
    relabelled = NoteSignature(b.name, b.key_id, a.sign(TEXT).signature)
    with pytest.raises(InvalidNoteSignatureError):
        note.open_note(note.format_note(TEXT, [relabelled]), verifiers=[b.verifier()])
    note.open_note(sign_note(TEXT, [b]), verifiers=[b.verifier()])


@pytest.mark.parametrize(
    ("type_byte", "meaning"),
    [
        (0x02, "transparency-dev"),
        (0x03, "reserved"),
        (0x05, "TreeHeadSignature"),
        (0x06, "ML-DSA"),
        (0xFA, "reserved"),
    ],
)
def test_registered_types_we_do_not_verify_are_unsupported(type_byte: int, meaning: str) -> None:
    with pytest.raises(UnsupportedError, match="registered but not supported") as info:
        note.parse_verifier_key(_vkey("w.example", bytes([type_byte]) + b"\x01" * 32))
    assert meaning in str(info.value.context["meaning"])


@pytest.mark.parametrize(
    "type_and_key",
    [b"\x07" + b"\x01" * 32, b"\xffsomeone-else/v1" + b"\x01" * 32, b"\xff"],
)
def test_unknown_types_are_unsupported(type_and_key: bytes) -> None:
    with pytest.raises(UnsupportedError):
        note.parse_verifier_key(_vkey("w.example", type_and_key))


@pytest.mark.parametrize(
    ("vkey", "error"),
    [
        # Go's "wrong length key with adjusted key hash", with canonical base64 so that the
        # length check (not our base64 strictness) is what refuses it.
        (_vkey("PeterNeumann", b"\x01" + b"\x1a" * 33), MalformedInputError),
        (_vkey("PeterNeumann", b"\x01" + b"\x1a" * 31), MalformedInputError),
        (_vkey("p.example", note.ALG_RELAY_ECDSA_P256 + b"\x02" * 32), MalformedInputError),
        (
            _vkey("p.example", note.ALG_RELAY_ECDSA_P256 + b"\x04" + b"\x01" * 64),
            MalformedInputError,
        ),
        (_vkey("s.example", note.ALG_RELAY_SM2 + b"\x00" + b"\x04" * 65), MalformedInputError),
        (_vkey("s.example", note.ALG_RELAY_SM2 + b"\x40abc"), MalformedInputError),
        (PETER_VKEY.replace("c74f20a3", "c74f20a4"), MalformedInputError),
        (PETER_VKEY.replace("c74f20a3", "c74f20a"), MalformedInputError),
        (PETER_VKEY.replace("c74f20a3", "c74f20ag"), MalformedInputError),
        (PETER_VKEY.replace("c74f20a3", "+c74f20a"), MalformedInputError),
        (PETER_VKEY[:-1], MalformedInputError),
        (PETER_VKEY + "=", MalformedInputError),
        ("Peter Neumann+c74f20a3+" + PETER_VKEY.split("+")[2], MalformedInputError),
        ("+c74f20a3+" + PETER_VKEY.split("+")[2], MalformedInputError),
        ("PeterNeumann", MalformedInputError),
        ("PeterNeumann+c74f20a3+", MalformedInputError),
        ("x" * 5000, LimitExceededError),
    ],
)
def test_bad_verifier_keys(vkey: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        note.parse_verifier_key(vkey)


# --- opening notes --------------------------------------------------------------------------

LOG = ed25519_signer("log.example")
OTHER = ed25519_signer("other.example")


def test_known_and_unknown_signers() -> None:
    msg = sign_note(TEXT, [OTHER, LOG])
    opened = note.open_note(msg, verifiers=[LOG.verifier()])
    assert [s.name for s in opened.verified] == ["log.example"]
    assert [s.name for s in opened.unverified] == ["other.example"]
    with pytest.raises(UnverifiedNoteError) as info:
        note.open_note(msg, verifiers=[])
    assert info.value.reason == "NOTE_UNVERIFIED"


def test_same_name_other_key_is_ignored_not_trusted() -> None:
    impostor = ed25519_signer("log.example", seed="impostor")
    msg = sign_note(TEXT, [impostor])
    with pytest.raises(UnverifiedNoteError):
        note.open_note(msg, verifiers=[LOG.verifier()])


def test_duplicates_are_recorded_once() -> None:
    line_log = LOG.sign(TEXT)
    line_other = OTHER.sign(TEXT)
    msg = note.format_note(TEXT, [line_log, line_other, line_log, line_other])
    opened = note.open_note(msg, verifiers=[LOG.verifier()])
    assert len(opened.verified) == 1 and len(opened.unverified) == 1


def test_a_bad_signature_from_a_known_key_rejects_the_note_even_after_a_good_one() -> None:
    good = LOG.sign(TEXT)
    bad = NoteSignature(good.name, good.key_id, bytes(64))
    with pytest.raises(InvalidNoteSignatureError):
        note.open_note(note.format_note(TEXT, [good, bad]), verifiers=[LOG.verifier()])


def test_text_may_contain_blank_lines() -> None:
    text = b"first\n\nsecond paragraph\n\nthird\n"
    opened = note.open_note(sign_note(text, [LOG]), verifiers=[LOG.verifier()])
    assert opened.text == text


def test_sixteen_signatures_are_accepted_and_the_limit_is_enforced() -> None:
    cosigners = [ed25519_signer(f"w{i}.example") for i in range(15)]
    msg = sign_note(TEXT, [LOG, *cosigners])
    assert len(note.open_note(msg, verifiers=[LOG.verifier()]).unverified) == 15
    with pytest.raises(LimitExceededError):
        note.parse_note(msg, limits=NoteLimits(max_signatures=15))
    with pytest.raises(LimitExceededError):
        note.parse_note(msg, limits=NoteLimits(max_note_bytes=len(msg) - 1))
    with pytest.raises(LimitExceededError):
        note.parse_note(msg, limits=NoteLimits(max_signature_line_bytes=40))


def test_ambiguous_known_keys_are_refused() -> None:
    v = LOG.verifier()
    twin = note.SignatureVerifier(
        v.name, v.key_id, v.algorithm, b"\x02" * 32, ED25519, b"\x02" * 32
    )
    with pytest.raises(MalformedInputError, match="share a name and key ID"):
        note.open_note(sign_note(TEXT, [LOG]), verifiers=[v, twin])


def test_cosignature_shape_is_checked() -> None:
    w = ed25519_signer("w.example", cosigner=True)
    good = w.sign(TEXT, timestamp=5)
    for bad_sig in (good.signature[:-1], b"\xff" * 8 + good.signature[8:]):
        msg = note.format_note(TEXT, [NoteSignature(w.name, w.key_id, bad_sig)])
        with pytest.raises(InvalidNoteSignatureError):
            note.open_note(msg, verifiers=[w.verifier()])
    assert note.cosignature_timestamp(good.signature) == 5
    assert note.cosignature_message(text=TEXT, timestamp=5) == b"cosignature/v1\ntime 5\n" + TEXT


def _signed() -> bytes:
    return sign_note(TEXT, [LOG])


def _with_line(line: bytes) -> bytes:
    return TEXT + b"\n" + line + b"\n"


MALFORMED = {
    "invalid UTF-8": lambda m: b"\xff" + m,
    "overlong UTF-8": lambda m: b"\xc0\xaf" + m,
    "UTF-8 surrogate": lambda m: b"\xed\xa0\x80" + m,
    "carriage return": lambda m: m.replace(b"\n", b"\r\n", 1),
    "tab": lambda m: b"\t" + m,
    "NUL": lambda m: m[:3] + b"\x00" + m[3:],
    "missing final newline": lambda m: m[:-1],
    "no blank line": lambda m: m.replace(b"\n\n", b"\n"),
    "trailing blank line": lambda m: m + b"\n",
    "hyphen instead of em dash": lambda m: m.replace("—".encode(), b"-"),
    "no space after dash": lambda m: m.replace("— ".encode(), "—".encode()),
    "no signature after name": lambda m: _with_line("— log.example".encode()),
    "name only, trailing space": lambda m: _with_line("— log.example ".encode()),
    "empty name": lambda m: m.replace(b"log.example ", b" "),
    "plus in name": lambda m: m.replace(b"log.example ", b"log+example "),
    "non-breaking space in name": lambda m: m.replace(b"log.example", "log\u00a0x".encode()),
    "unpadded base64": lambda m: m.replace(b"=\n", b"\n"),
    "base64 with a space": lambda m: m[:-10] + b" " + m[-10:],
    "short signature": lambda m: _with_line("— log.example AAAAAA==".encode()),
    "empty signature block line": lambda m: m + b"\n" + m[-3:],
    "garbage line": lambda m: m + b"hello\n",
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_notes(case: str) -> None:
    bad = MALFORMED[case](_signed())
    assert bad != _signed()
    with pytest.raises(MalformedInputError):
        note.open_note(bad, verifiers=[LOG.verifier()])


def test_non_canonical_base64_signature_is_malformed() -> None:
    sig = LOG.sign(TEXT)
    blob = base64.b64encode(sig.key_id.to_bytes(4, "big") + sig.signature).decode()
    data_end = len(blob.rstrip("="))
    assert data_end < len(blob)  # 68 bytes leave padding bits in the last character
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(blob[data_end - 1])
    twin = blob[: data_end - 1] + alphabet[last + 1] + blob[data_end:]
    assert base64.b64decode(twin) == base64.b64decode(blob)
    msg = _with_line(f"— log.example {twin}".encode())
    with pytest.raises(MalformedInputError, match="canonical"):
        note.open_note(msg, verifiers=[LOG.verifier()])
    note.open_note(_with_line(f"— log.example {blob}".encode()), verifiers=[LOG.verifier()])


def test_format_note_preconditions() -> None:
    with pytest.raises(MalformedInputError):
        note.format_note(b"no newline", [LOG.sign(b"no newline")])
    with pytest.raises(MalformedInputError):
        note.format_note(TEXT, [])
    with pytest.raises(MalformedInputError):
        note.format_note(TEXT, [NoteSignature("bad name", 1, b"x")])


# --- fuzz -----------------------------------------------------------------------------------


def _signers_for_fuzz() -> list[NoteSigner]:
    return [LOG, SIGNERS["p256"], SIGNERS["sm2 cosignature"]]


@pytest.mark.fuzz
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    verifiers = [s.verifier() for s in _signers_for_fuzz()]
    try:
        opened = note.open_note(data, verifiers=verifiers)
    except VerificationError:
        return
    assert opened.verified  # acceptance means a known key really signed it


@pytest.mark.fuzz
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_valid_notes(data: st.DataObject) -> None:
    signers = _signers_for_fuzz()
    msg = bytearray(
        note.format_note(TEXT, [s.sign(TEXT, timestamp=9 if s.cosigner else None) for s in signers])
    )
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(0, len(msg) - 1)))
        if op == "flip" and msg:
            msg[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            msg[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and msg:
            del msg[pos]
        else:
            del msg[pos:]
    verifiers = [s.verifier() for s in signers]
    try:
        opened = note.open_note(bytes(msg), verifiers=verifiers)
    except VerificationError:
        return
    # Whatever survived mutation must still carry the original signed text.
    assert opened.text == TEXT


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_verifier_keys(vkey: str) -> None:
    try:
        v = note.parse_verifier_key(vkey)
    except VerificationError:
        return
    assert note.key_id(v.name, v.algorithm + v.public_key) == v.key_id
