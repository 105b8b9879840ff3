"""SM2 (GM/T 0003.2) through Tongsuo, cross-checked against gmssl, an independent pure-Python
implementation: sign with one, verify with the other, both ways, default and chain signer IDs.

gmssl is test-only. Its Z computation is hard-wired to the default ID, so for other IDs the
test computes ``Z`` and ``e`` itself with gmssl's own SM3 and uses gmssl's raw sign/verify;
nothing on that side touches the code under test.
"""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from gmssl import func as gm_func
from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3

from relay.testing.tlog import Sm2Key
from relay.verify import signatures
from relay.verify.errors import SignatureError, UnsupportedError
from relay.verify.signatures import (
    DEFAULT_SM2_SIGNER_ID,
    SM2_ORDER,
    SignatureEncoding,
    Sm2,
    encode_der_signature,
)

# GM/T 0003.5-2012 A.2 sample (recommended curve), default ID, message "message digest".
KAT_PUBLIC = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
KAT_Z = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
KAT_E = bytes.fromhex("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
KAT_R = int("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3", 16)
KAT_S = int("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA", 16)
KAT_MESSAGE = b"message digest"

CHAIN_ID = b"registry.example/court-relay"


def _raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_gmt_0003_known_answer() -> None:
    assert signatures.sm2_z(public_key=KAT_PUBLIC) == KAT_Z
    assert signatures.sm2_digest(public_key=KAT_PUBLIC, message=KAT_MESSAGE) == KAT_E
    Sm2(encoding=SignatureEncoding.RAW).verify(
        public_key=KAT_PUBLIC, message=KAT_MESSAGE, signature=_raw(KAT_R, KAT_S)
    )
    Sm2(encoding=SignatureEncoding.DER).verify(
        public_key=KAT_PUBLIC, message=KAT_MESSAGE, signature=encode_der_signature(KAT_R, KAT_S)
    )
    with pytest.raises(SignatureError, match="does not verify"):
        Sm2(encoding=SignatureEncoding.RAW, signer_id=b"ALICE123@YAHOO.COM").verify(
            public_key=KAT_PUBLIC, message=KAT_MESSAGE, signature=_raw(KAT_R, KAT_S)
        )


# --- the independent side: gmssl ----------------------------------------------------------


def _gm(key: Sm2Key) -> gm_sm2.CryptSM2:
    xy = key.public_key[1:].hex()
    crypt = gm_sm2.CryptSM2(private_key=f"{key.secret:064x}", public_key=xy)
    crypt.public_key = xy  # its constructor strips leading '0'/'4' characters, not a prefix
    return crypt


def _gm_e(crypt: gm_sm2.CryptSM2, signer_id: bytes, message: bytes) -> bytes:
    table = crypt.ecc_table
    z_input = (
        (len(signer_id) * 8).to_bytes(2, "big")
        + signer_id
        + bytes.fromhex(table["a"] + table["b"] + table["g"] + crypt.public_key)
    )
    z = bytes.fromhex(gm_sm3.sm3_hash(gm_func.bytes_to_list(z_input)))
    return bytes.fromhex(gm_sm3.sm3_hash(gm_func.bytes_to_list(z + message)))


def _gm_sign(crypt: gm_sm2.CryptSM2, signer_id: bytes, message: bytes) -> tuple[int, int]:
    e = _gm_e(crypt, signer_id, message)
    while True:
        out = crypt.sign(e, secrets.token_hex(32))
        if out is not None:
            return int(out[:64], 16), int(out[64:], 16)


def _gm_verify(crypt: gm_sm2.CryptSM2, signer_id: bytes, message: bytes, r: int, s: int) -> bool:
    return bool(crypt.verify(f"{r:064x}{s:064x}", _gm_e(crypt, signer_id, message)))


KEYS = ["court-witness-1", "registry-log"]
IDS = [DEFAULT_SM2_SIGNER_ID, CHAIN_ID]


@pytest.mark.parametrize("seed", KEYS)
@pytest.mark.parametrize("signer_id", IDS)
def test_tongsuo_signs_gmssl_verifies(seed: str, signer_id: bytes) -> None:
    key = Sm2Key.from_seed(seed, signer_id=signer_id)
    crypt = _gm(key)
    message = b"checkpoint body\n" + seed.encode()
    r, s = decode_dss_signature(key.sign_der(message))
    assert _gm_verify(crypt, signer_id, message, r, s)
    assert not _gm_verify(crypt, signer_id, message + b"x", r, s)
    other = DEFAULT_SM2_SIGNER_ID if signer_id != DEFAULT_SM2_SIGNER_ID else CHAIN_ID
    assert not _gm_verify(crypt, other, message, r, s)
    # gmssl's own default-ID path (its hard-wired Z) agrees for the default ID.
    if signer_id == DEFAULT_SM2_SIGNER_ID:
        assert crypt.verify_with_sm3(f"{r:064x}{s:064x}", message)


@pytest.mark.parametrize("seed", KEYS)
@pytest.mark.parametrize("signer_id", IDS)
def test_gmssl_signs_relay_verifies(seed: str, signer_id: bytes) -> None:
    key = Sm2Key.from_seed(seed, signer_id=signer_id)
    crypt = _gm(key)
    message = b"entry 7 of the land registry\n" + seed.encode()
    r, s = _gm_sign(crypt, signer_id, message)
    Sm2(encoding=SignatureEncoding.RAW, signer_id=signer_id).verify(
        public_key=key.public_key, message=message, signature=_raw(r, s)
    )
    Sm2(encoding=SignatureEncoding.DER, signer_id=signer_id).verify(
        public_key=key.public_key, message=message, signature=encode_der_signature(r, s)
    )
    by_name = signatures.by_name("sm2", encoding="raw", signer_id=signer_id.decode())
    by_name.verify(public_key=key.public_key, message=message, signature=_raw(r, s))
    other = DEFAULT_SM2_SIGNER_ID if signer_id != DEFAULT_SM2_SIGNER_ID else CHAIN_ID
    with pytest.raises(SignatureError, match="does not verify") as info:
        Sm2(encoding=SignatureEncoding.RAW, signer_id=other).verify(
            public_key=key.public_key, message=message, signature=_raw(r, s)
        )
    assert info.value.context["scheme"] == "sm2"
    if signer_id == DEFAULT_SM2_SIGNER_ID:
        r2, s2 = (int(h, 16) for h in _split(crypt.sign_with_sm3(message)))
        Sm2(encoding=SignatureEncoding.RAW).verify(
            public_key=key.public_key, message=message, signature=_raw(r2, s2)
        )


def _split(hex_sig: str) -> tuple[str, str]:
    return hex_sig[:64], hex_sig[64:]


def test_compressed_key_gives_the_same_z() -> None:
    key = Sm2Key.from_seed("compressed")
    xy = key.public_key[1:]
    compressed = bytes([2 + (xy[-1] & 1)]) + xy[:32]
    assert signatures.sm2_z(public_key=compressed, signer_id=CHAIN_ID) == signatures.sm2_z(
        public_key=key.public_key, signer_id=CHAIN_ID
    )
    sig = Sm2Key.from_seed("compressed", signer_id=CHAIN_ID).sign(b"m")
    Sm2(encoding=SignatureEncoding.RAW, signer_id=CHAIN_ID).verify(
        public_key=compressed, message=b"m", signature=sig
    )


@pytest.mark.parametrize(
    ("public_key", "signature", "match"),
    [
        (KAT_PUBLIC[:-1], _raw(KAT_R, KAT_S), "bad public key length"),
        (b"\x06" + KAT_PUBLIC[1:], _raw(KAT_R, KAT_S), "unknown public key type"),
        (b"\x04" + b"\x01" * 64, _raw(KAT_R, KAT_S), "not a point on the SM2 curve"),
        (KAT_PUBLIC, _raw(KAT_R, KAT_S)[:-1], "64 bytes"),
        (KAT_PUBLIC, _raw(0, KAT_S), "r is out"),
        (KAT_PUBLIC, _raw(KAT_R, SM2_ORDER), "s is out"),
        (KAT_PUBLIC, _raw(KAT_R, KAT_S ^ 1), "does not verify"),
    ],
)
def test_sm2_failures_are_typed(public_key: bytes, signature: bytes, match: str) -> None:
    with pytest.raises(SignatureError, match=match) as info:
        Sm2(encoding=SignatureEncoding.RAW).verify(
            public_key=public_key, message=KAT_MESSAGE, signature=signature
        )
    assert info.value.context["scheme"] == "sm2"


def test_sm2_der_is_strict() -> None:
    der = encode_der_signature(KAT_R, KAT_S)
    for bad in (der + b"\x00", b"\x30\x81" + der[1:], der[:-1]):
        with pytest.raises(SignatureError, match="malformed DER"):
            Sm2(encoding=SignatureEncoding.DER).verify(
                public_key=KAT_PUBLIC, message=KAT_MESSAGE, signature=bad
            )


def test_sm2_signer_id_limits() -> None:
    with pytest.raises(UnsupportedError):
        Sm2(encoding=SignatureEncoding.RAW, signer_id=b"x" * 8192)
    Sm2(encoding=SignatureEncoding.RAW, signer_id=b"x" * 8191)  # ENTL still fits 16 bits
