"""The relay's evidence signer (relay/engine/evidence.py RelaySigner): Ed25519 and SM2 keys,
from seeds, scalars and PEM; signatures verify with the offline checker's rule and cover
exactly the attestation input."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from relay.engine.evidence import RelaySigner
from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify.errors import SignatureError, VerificationError
from relay.verify.evidence import RelayKey, attestation_input, verify_attestation


def bundle() -> pb.Evidence:
    return pb.Evidence(version=1, chain_id="c", height=5, key=b"k", value=b"v")


@pytest.mark.parametrize(
    "signer",
    [
        RelaySigner.ed25519(key_id="ed", seed=b"\x07" * 32),
        RelaySigner.sm2(key_id="sm2-default", private_key=123456789),
        RelaySigner.sm2(key_id="sm2-id", private_key=987654321, signer_id=b"court-relay"),
    ],
    ids=["ed25519", "sm2", "sm2-signer-id"],
)
def test_signatures_verify_and_cover_the_bundle(signer: RelaySigner) -> None:
    ev = signer.sign(bundle())
    key = signer.relay_key()
    verify_attestation(ev, key=key)
    assert ev.relay_attestation.key_id == signer.key_id
    assert attestation_input(ev).startswith(b"relay.v1.Evidence\n")
    # The attestation itself is not signed over; everything else is.
    again = pb.Evidence()
    again.CopyFrom(ev)
    again.relay_attestation.signature = b""
    assert attestation_input(again) == attestation_input(ev)
    tampered = pb.Evidence()
    tampered.CopyFrom(ev)
    tampered.height = 6
    with pytest.raises(SignatureError):
        verify_attestation(tampered, key=key)
    if signer.algorithm == pb.SIGNATURE_ALGORITHM_SM2:
        other_id = RelayKey(
            key_id=key.key_id,
            algorithm=key.algorithm,
            public_key=key.public_key,
            sm2_signer_id=b"someone-else",
        )
        with pytest.raises(SignatureError):
            verify_attestation(ev, key=other_id)


def test_re_signing_a_signed_bundle_signs_the_same_input() -> None:
    """sign() encodes an unsigned bundle directly and strips an existing attestation first:
    both give the attestation input the offline checker recomputes."""
    first = RelaySigner.ed25519(key_id="first", seed=b"\x01" * 32)
    second = RelaySigner.ed25519(key_id="second", seed=b"\x02" * 32)
    unsigned = bundle()
    ev = first.sign(bundle())
    assert attestation_input(ev) == attestation_input(unsigned)
    second.sign(ev)  # replaces the first attestation
    assert ev.relay_attestation.key_id == "second"
    verify_attestation(ev, key=second.relay_key())
    with pytest.raises(VerificationError):
        verify_attestation(ev, key=first.relay_key())
    assert ev.relay_attestation.signature == second.sign(bundle()).relay_attestation.signature


def test_keys_from_pem() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = RelaySigner.from_pem(key_id="pem", pem=pem)
    assert signer.public_key == private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    verify_attestation(signer.sign(bundle()), key=signer.relay_key())

    from tongsuopy.crypto import serialization as tser
    from tongsuopy.crypto.asymciphers import ec as sm2_ec

    sm2_private = sm2_ec.derive_private_key(424242, sm2_ec.SM2())
    sm2_pem = sm2_private.private_bytes(
        tser.Encoding.PEM, tser.PrivateFormat.PKCS8, tser.NoEncryption()
    )
    sm2 = RelaySigner.from_pem(key_id="sm2-pem", pem=sm2_pem, sm2_signer_id=b"x")
    assert sm2.algorithm == pb.SIGNATURE_ALGORITHM_SM2
    assert sm2.public_key == RelaySigner.sm2(key_id="a", private_key=424242).public_key
    verify_attestation(sm2.sign(bundle()), key=sm2.relay_key())
    with pytest.raises(ValueError, match="not an Ed25519 or SM2"):
        RelaySigner.from_pem(key_id="junk", pem=b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END")


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        RelaySigner.ed25519(key_id="x", seed=b"short")
    with pytest.raises(ValueError):
        RelaySigner.sm2(key_id="x", private_key=0)
    with pytest.raises(ValueError):
        RelaySigner.ed25519(key_id="", seed=b"\x00" * 32)
