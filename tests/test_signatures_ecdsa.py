"""ECDSA P-256 and secp256k1 schemes, the Ed25519 contract, and the scheme registry."""

from __future__ import annotations

import coincurve
import pytest
import sha3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from relay.verify import signatures
from relay.verify.errors import SignatureError, UnsupportedError
from relay.verify.signatures import (
    ED25519,
    P256_ORDER,
    SECP256K1_ORDER,
    EcdsaP256,
    Secp256k1,
    SignatureEncoding,
    encode_der_signature,
)

MESSAGE = b"judicial relay: parcel 42 belongs to party A\n"


def _raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.fixture(scope="module")
def p256() -> tuple[ec.EllipticCurvePrivateKey, bytes, bytes]:
    key = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
    pub = key.public_key()
    compressed = pub.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    uncompressed = pub.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return key, compressed, uncompressed


def _expect(scheme: object, match: str, **kwargs: bytes) -> SignatureError:
    with pytest.raises(SignatureError, match=match) as info:
        scheme.verify(**kwargs)  # type: ignore[attr-defined]
    assert info.value.context["scheme"] == scheme.name  # type: ignore[attr-defined]
    return info.value


# --- Ed25519 keeps its contract -------------------------------------------------------------


def test_ed25519_protocol_is_unchanged() -> None:
    key = SigningKey(b"\x07" * 32)
    sig = key.sign(MESSAGE).signature
    pub = bytes(key.verify_key)
    ED25519.verify(public_key=pub, message=MESSAGE, signature=sig)
    assert signatures.by_name("ed25519") is ED25519
    with pytest.raises(SignatureError, match="does not verify"):
        ED25519.verify(public_key=pub, message=MESSAGE + b"!", signature=sig)
    with pytest.raises(SignatureError, match="32 bytes"):
        ED25519.verify(public_key=pub[:31], message=MESSAGE, signature=sig)
    with pytest.raises(SignatureError, match="64 bytes"):
        ED25519.verify(public_key=pub, message=MESSAGE, signature=sig + b"\x00")


# --- P-256 ----------------------------------------------------------------------------------


def test_p256_der_and_raw_with_both_key_forms(p256: tuple) -> None:
    key, compressed, uncompressed = p256
    der = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    raw = _raw(*decode_dss_signature(der))
    for pub in (compressed, uncompressed):
        EcdsaP256(encoding=SignatureEncoding.DER).verify(
            public_key=pub, message=MESSAGE, signature=der
        )
        EcdsaP256(encoding=SignatureEncoding.RAW).verify(
            public_key=pub, message=MESSAGE, signature=raw
        )
    # The encoding is a parameter, never guessed: each form fails under the other.
    _expect(
        EcdsaP256(encoding=SignatureEncoding.RAW),
        "64 bytes",
        public_key=compressed,
        message=MESSAGE,
        signature=der,
    )
    _expect(
        EcdsaP256(encoding=SignatureEncoding.DER),
        "malformed DER",
        public_key=compressed,
        message=MESSAGE,
        signature=raw,
    )


def test_p256_wrong_message_or_key(p256: tuple) -> None:
    key, compressed, _ = p256
    der = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    scheme = EcdsaP256(encoding=SignatureEncoding.DER)
    _expect(scheme, "does not verify", public_key=compressed, message=MESSAGE[:-1], signature=der)
    other = (
        ec.derive_private_key(99, ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    )
    _expect(scheme, "does not verify", public_key=other, message=MESSAGE, signature=der)


@pytest.mark.parametrize(
    ("public_key", "match"),
    [
        (b"", "unknown public key type"),
        (b"\x05" + b"\x01" * 32, "unknown public key type"),
        (b"\x02" * 32, "bad public key length"),
        (b"\x04" + b"\x01" * 32, "bad public key length"),
        (b"\x02" + b"\x01" * 64, "bad public key length"),
        (b"\x04" + b"\x01" * 64, "not a point"),
    ],
)
def test_p256_bad_keys(p256: tuple, public_key: bytes, match: str) -> None:
    key, _, _ = p256
    der = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    _expect(
        EcdsaP256(encoding=SignatureEncoding.DER),
        match,
        public_key=public_key,
        message=MESSAGE,
        signature=der,
    )


def _content(x: int) -> bytes:
    return x.to_bytes(x.bit_length() // 8 + 1, "big")  # minimal positive INTEGER content


def _seq(*contents: bytes) -> bytes:
    body = b"".join(b"\x02" + bytes([len(c)]) + c for c in contents)
    return b"\x30" + bytes([len(body)]) + body


def _der_variants(der: bytes) -> dict[str, bytes]:
    r, s = decode_dss_signature(der)
    rc, sc = _content(r), _content(s)
    assert _seq(rc, sc) == der
    return {
        "trailing byte": der + b"\x00",
        "long-form length": b"\x30\x81" + bytes([len(der) - 2]) + der[2:],
        "wrong sequence tag": b"\x31" + der[1:],
        "sequence length off by one": der[:1] + bytes([der[1] + 1]) + der[2:],
        "not minimally encoded": _seq(b"\x00" + rc, sc),
        "negative r": _seq(b"\x80\x01", sc),
        "zero-length r": _seq(b"", sc),
        "three integers": _seq(rc, sc, b"\x01"),
        "truncated": der[:-1],
        "empty": b"",
    }


def test_p256_strict_der(p256: tuple) -> None:
    key, compressed, _ = p256
    der = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    scheme = EcdsaP256(encoding=SignatureEncoding.DER)
    for what, bad in _der_variants(der).items():
        assert bad != der, what
        _expect(scheme, "malformed DER", public_key=compressed, message=MESSAGE, signature=bad)


@pytest.mark.parametrize(
    ("r", "s", "match"),
    [
        (0, 1, "r is out"),
        (P256_ORDER, 1, "r is out"),
        (1, 0, "s is out"),
        (1, P256_ORDER, "s is out"),
    ],
)
def test_p256_scalar_range(p256: tuple, r: int, s: int, match: str) -> None:
    _, compressed, _ = p256
    _expect(
        EcdsaP256(encoding=SignatureEncoding.RAW),
        match,
        public_key=compressed,
        message=MESSAGE,
        signature=_raw(r, s),
    )


def test_p256_high_s_policy(p256: tuple) -> None:
    key, compressed, _ = p256
    r, s = decode_dss_signature(key.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))
    low, high = min(s, P256_ORDER - s), max(s, P256_ORDER - s)
    EcdsaP256(encoding=SignatureEncoding.RAW).verify(
        public_key=compressed, message=MESSAGE, signature=_raw(r, high)
    )
    strict = EcdsaP256(encoding=SignatureEncoding.RAW, low_s=True)
    strict.verify(public_key=compressed, message=MESSAGE, signature=_raw(r, low))
    _expect(strict, "high-S", public_key=compressed, message=MESSAGE, signature=_raw(r, high))


def test_p256_refuses_rsv_and_unknown_encodings() -> None:
    with pytest.raises(UnsupportedError):
        EcdsaP256(encoding="rsv")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedError):
        EcdsaP256(encoding="base64")  # type: ignore[arg-type]


# --- secp256k1 ------------------------------------------------------------------------------

K1 = coincurve.PrivateKey(bytes.fromhex("11" * 32))
K1_PUB = K1.public_key.format(compressed=True)


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()  # type: ignore[no-any-return]


def _compact(der: bytes) -> tuple[int, int]:
    return decode_dss_signature(der)


def test_secp256k1_sha256_all_encodings() -> None:
    der = K1.sign(MESSAGE)  # coincurve hashes with SHA-256 by default
    r, s = _compact(der)
    rsv = K1.sign_recoverable(MESSAGE)
    for pub in (K1_PUB, K1.public_key.format(compressed=False)):
        Secp256k1(encoding=SignatureEncoding.DER).verify(
            public_key=pub, message=MESSAGE, signature=der
        )
        Secp256k1(encoding=SignatureEncoding.RAW).verify(
            public_key=pub, message=MESSAGE, signature=_raw(r, s)
        )
        Secp256k1(encoding=SignatureEncoding.RSV).verify(
            public_key=pub, message=MESSAGE, signature=rsv
        )


def test_secp256k1_keccak256_is_a_different_scheme() -> None:
    digest = _keccak(MESSAGE)
    rsv = K1.sign_recoverable(digest, hasher=None)
    eth = signatures.by_name("secp256k1-keccak256", encoding="rsv")
    assert eth.name == "secp256k1-keccak256"
    eth.verify(public_key=K1_PUB, message=MESSAGE, signature=rsv)
    # Ethereum writes v as 27/28.
    eth.verify(public_key=K1_PUB, message=MESSAGE, signature=rsv[:64] + bytes([rsv[64] + 27]))
    same = signatures.by_name("secp256k1", encoding="rsv", hash="keccak256")
    same.verify(public_key=K1_PUB, message=MESSAGE, signature=rsv)
    _expect(
        signatures.by_name("secp256k1", encoding="rsv"),
        "does not verify|recovers another",
        public_key=K1_PUB,
        message=MESSAGE,
        signature=rsv,
    )


def test_secp256k1_high_s_rejected_by_default() -> None:
    r, s = _compact(K1.sign(MESSAGE))
    assert s <= SECP256K1_ORDER // 2  # libsecp256k1 signs low-S
    high = _raw(r, SECP256K1_ORDER - s)
    _expect(
        Secp256k1(encoding=SignatureEncoding.RAW),
        "high-S",
        public_key=K1_PUB,
        message=MESSAGE,
        signature=high,
    )
    Secp256k1(encoding=SignatureEncoding.RAW, low_s=False).verify(
        public_key=K1_PUB, message=MESSAGE, signature=high
    )
    rsv = K1.sign_recoverable(MESSAGE)
    flipped = high + bytes([rsv[64] ^ 1])
    _expect(
        Secp256k1(encoding=SignatureEncoding.RSV),
        "high-S",
        public_key=K1_PUB,
        message=MESSAGE,
        signature=flipped,
    )
    Secp256k1(encoding=SignatureEncoding.RSV, low_s=False).verify(
        public_key=K1_PUB, message=MESSAGE, signature=flipped
    )


def test_secp256k1_rsv_errors() -> None:
    rsv = K1.sign_recoverable(MESSAGE)
    scheme = Secp256k1(encoding=SignatureEncoding.RSV)
    _expect(scheme, "v must be", public_key=K1_PUB, message=MESSAGE, signature=rsv[:64] + b"\x02")
    _expect(scheme, "v must be", public_key=K1_PUB, message=MESSAGE, signature=rsv[:64] + b"\x1d")
    _expect(
        scheme,
        "recover",
        public_key=K1_PUB,
        message=MESSAGE,
        signature=rsv[:64] + bytes([rsv[64] ^ 1]),
    )
    _expect(scheme, "65 bytes", public_key=K1_PUB, message=MESSAGE, signature=rsv[:64])
    other = coincurve.PrivateKey(bytes.fromhex("22" * 32)).public_key.format()
    _expect(scheme, "recovers another key", public_key=other, message=MESSAGE, signature=rsv)


def test_secp256k1_bad_keys_and_signatures() -> None:
    der = K1.sign(MESSAGE)
    scheme = Secp256k1(encoding=SignatureEncoding.DER)
    _expect(
        scheme,
        "unknown public key type",
        public_key=b"\x07" + K1_PUB[1:],
        message=MESSAGE,
        signature=der,
    )
    _expect(scheme, "bad public key length", public_key=K1_PUB[:-1], message=MESSAGE, signature=der)
    _expect(
        scheme, "not a point", public_key=b"\x04" + b"\x00" * 64, message=MESSAGE, signature=der
    )
    _expect(scheme, "malformed DER", public_key=K1_PUB, message=MESSAGE, signature=der + b"\x00")
    _expect(scheme, "does not verify", public_key=K1_PUB, message=b"other", signature=der)
    _expect(
        scheme,
        "r is out",
        public_key=K1_PUB,
        message=MESSAGE,
        signature=encode_der_signature(SECP256K1_ORDER, 5),
    )
    with pytest.raises(UnsupportedError):
        Secp256k1(encoding=SignatureEncoding.DER, hash="sha512")


# --- registry -------------------------------------------------------------------------------


def test_registry_builds_configured_schemes() -> None:
    assert signatures.by_name("ecdsa-p256", encoding="raw") == EcdsaP256(
        encoding=SignatureEncoding.RAW
    )
    k1 = signatures.by_name("secp256k1", encoding="der", low_s=False)
    assert k1 == Secp256k1(encoding=SignatureEncoding.DER, low_s=False)
    sm2 = signatures.by_name("sm2", encoding="raw", signer_id="court@example")
    assert sm2 == signatures.Sm2(encoding=SignatureEncoding.RAW, signer_id=b"court@example")
    assert set(signatures.SCHEME_NAMES) == {
        "ed25519",
        "ecdsa-p256",
        "secp256k1",
        "secp256k1-keccak256",
        "sm2",
    }


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("rsa", {}),
        ("ecdsa-p256", {}),  # the encoding must be explicit
        ("ecdsa-p256", {"encoding": "pem"}),
        ("ecdsa-p256", {"encoding": "der", "curve": "p384"}),
        ("ecdsa-p256", {"encoding": "der", "low_s": "yes"}),
        ("secp256k1", {"encoding": "der", "hash": "md5"}),
        ("sm2", {"encoding": "rsv"}),
        ("sm2", {"encoding": "raw", "signer_id": 7}),
        ("ed25519", {"encoding": "raw"}),
    ],
)
def test_registry_refuses_unknown_names_and_parameters(name: str, params: dict) -> None:
    with pytest.raises(UnsupportedError):
        signatures.by_name(name, **params)


SCHEMES = [
    ED25519,
    EcdsaP256(encoding=SignatureEncoding.DER),
    EcdsaP256(encoding=SignatureEncoding.RAW),
    Secp256k1(encoding=SignatureEncoding.DER),
    Secp256k1(encoding=SignatureEncoding.RSV, hash="keccak256"),
    signatures.Sm2(encoding=SignatureEncoding.DER),
    signatures.Sm2(encoding=SignatureEncoding.RAW),
]


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(SCHEMES),
    public_key=st.one_of(
        st.binary(max_size=70),
        st.sampled_from([K1_PUB, bytes(SigningKey(b"\x01" * 32).verify_key)]),
    ),
    signature=st.binary(max_size=80),
)
def test_garbage_only_ever_raises_signature_error(
    scheme: signatures.SignatureScheme, public_key: bytes, signature: bytes
) -> None:
    with pytest.raises(SignatureError) as info:
        scheme.verify(public_key=public_key, message=MESSAGE, signature=signature)
    assert info.value.context.get("scheme") == scheme.name
