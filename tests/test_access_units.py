"""Unit checks of the access layer (relay/access): case-number format, certificate layout to
identity, the token bucket and in-flight cap, signed proposal verification with Ed25519 and
SM2 (wrong key, tampered bytes, audience, nonce, expiry), and ``relay pki init``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.access.control import RateLimiter, check_case_number
from relay.access.identity import Role, identity_from_pem, parse_dev_identity
from relay.access.proposals import (
    InstitutionSigner,
    make_proposal,
    sign_proposal,
    verify_signed_proposal,
)
from relay.cli import main
from relay.config import InstitutionKeyConfig
from relay.pb.relay.v1 import admin_pb2
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.errors import ServiceError
from relay.testing.pki import TestCA

NOW = 1_800_000_000 * 10**9
DAY = 86400 * 10**9


@pytest.mark.parametrize(
    "court,number",
    [
        ("京0105", "(2026)京0105执1234号"),
        ("京0105", "（2025）京0105民初7号"),
        ("沪02", "(2024)沪02执保99号"),
    ],
)
def test_valid_case_numbers(court: str, number: str) -> None:
    check_case_number(court=court, case_number=number)


@pytest.mark.parametrize(
    "court,number",
    [
        ("京0105", "2026京0105执1234号"),  # no year
        ("京0105", "(2026)沪0115执1234号"),  # another court
        ("京0105", "(2026)京0105执1234"),  # no 号
        ("京0105", "(2026)京0105执0号"),  # serial 0
        ("京0105", "(2026)京0105 1234号"),  # no case type
        ("X0105", "(2026)X0105执1号"),  # not a court code
    ],
)
def test_malformed_case_numbers_are_case_invalid(court: str, number: str) -> None:
    with pytest.raises(ServiceError) as info:
        check_case_number(court=court, case_number=number)
    assert info.value.reason == "CASE_INVALID"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=80))
def test_case_check_never_crashes(court: str, number: str) -> None:
    try:
        check_case_number(court=court, case_number=number)
    except ServiceError as e:
        assert e.reason == "CASE_INVALID"


def test_certificate_layout_maps_to_identity() -> None:
    ca = TestCA.create()
    court = ca.issue_client("clerk-1", organization="京0105", organizational_unit="court")
    ident = identity_from_pem(court.cert_pem)
    assert (ident.role, ident.code, ident.name) == (Role.COURT, "京0105", "clerk-1")
    assert ident.principal == "court:京0105/clerk-1"
    for bad, why in [
        (ca.issue_client("x", organization="京0105"), "no subject OU"),
        (ca.issue_client("x", organizational_unit="admin"), "not a role"),
        (ca.issue_client("x", organizational_unit="partner"), "needs the partner's code"),
    ]:
        with pytest.raises(ServiceError) as info:
            identity_from_pem(bad.cert_pem)
        assert info.value.reason == "UNAUTHENTICATED"
        assert why in info.value.message
    server_only = ca.issue("srv", server=True, organizational_unit="operator")
    with pytest.raises(ServiceError, match="clientAuth"):
        identity_from_pem(server_only.cert_pem)
    assert parse_dev_identity("partner:9111:ops").role is Role.PARTNER
    with pytest.raises(ServiceError):
        parse_dev_identity("court::x")


def test_token_bucket_and_in_flight_cap() -> None:
    t = [0.0]
    limiter = RateLimiter(per_second=2.0, burst=3, max_in_flight=2, clock=lambda: t[0])
    limiter.acquire("a")
    limiter.acquire("a")
    with pytest.raises(ServiceError) as info:
        limiter.acquire("a")  # two in flight
    assert info.value.reason == "RATE_LIMITED" and info.value.retry_after_s == 0.1
    limiter.release("a")
    limiter.acquire("a")  # third token
    limiter.release("a")
    limiter.release("a")
    with pytest.raises(ServiceError) as info:
        limiter.acquire("a")  # bucket empty
    assert info.value.retry_after_s == pytest.approx(0.5)
    limiter.acquire("b")  # another identity is unaffected
    t[0] = 0.5
    limiter.acquire("a")  # refilled


def _keys(signer: InstitutionSigner, institution: str) -> list[InstitutionKeyConfig]:
    return [InstitutionKeyConfig.model_validate(signer.config_entry(institution))]


@pytest.mark.parametrize("algorithm", ["ed25519", "sm2"])
def test_signed_proposal_verification(algorithm: str) -> None:
    signer = (
        InstitutionSigner.ed25519(key_id="k1", seed=b"\x01" * 32)
        if algorithm == "ed25519"
        else InstitutionSigner.sm2(key_id="k1", private_key=0x1234567)
    )
    other = InstitutionSigner.ed25519(key_id="k1", seed=b"\x02" * 32)
    keys = _keys(signer, "inst")
    d = pb.ChainDescriptor(chain_id="c", institution="inst")

    def check(signed: admin_pb2.SignedChainProposal, **kw: object) -> admin_pb2.ChainProposal:
        args: dict[str, object] = dict(keys=keys, audience="r", now_ns=NOW, max_lifetime_ns=DAY)
        args.update(kw)
        return verify_signed_proposal(signed, **args)  # type: ignore[arg-type]

    good = sign_proposal(
        make_proposal(institution="inst", audience="r", register=d, now_ns=NOW), signer
    )
    assert check(good).register.chain_id == "c"

    def reason(signed: admin_pb2.SignedChainProposal, **kw: object) -> str:
        with pytest.raises(ServiceError) as info:
            check(signed, **kw)
        return info.value.reason

    wrong_key = sign_proposal(
        make_proposal(institution="inst", audience="r", register=d, now_ns=NOW), other
    )
    wrong_key.algorithm = good.algorithm
    assert reason(wrong_key) == "PROPOSAL_SIGNATURE_INVALID"
    tampered = admin_pb2.SignedChainProposal()
    tampered.CopyFrom(good)
    tampered.proposal = good.proposal.replace(b"inst", b"insu")
    assert reason(tampered) == "PROPOSAL_SIGNATURE_INVALID"  # no key for "insu" / bad sig
    assert reason(good, audience="other") == "INVALID_ARGUMENT"
    assert reason(good, now_ns=NOW + 2 * 3600 * 10**9) == "PROPOSAL_EXPIRED"
    short = sign_proposal(
        make_proposal(institution="inst", audience="r", register=d, now_ns=NOW, nonce=b"x"), signer
    )
    assert reason(short) == "INVALID_ARGUMENT"
    long = sign_proposal(
        make_proposal(institution="inst", audience="r", register=d, now_ns=NOW, lifetime_s=2e5),
        signer,
    )
    assert reason(long) == "PROPOSAL_EXPIRED"
    garbage = admin_pb2.SignedChainProposal(proposal=b"\xff\xff", key_id="k1")
    assert reason(garbage) == "INVALID_ARGUMENT"


def test_pki_init_writes_role_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "init", str(tmp_path / "pki")]) == 0
    out = capsys.readouterr().out
    assert "institution_keys" in out
    court = identity_from_pem((tmp_path / "pki" / "court-bj-chaoyang.pem").read_bytes())
    assert (court.role, court.code) == (Role.COURT, "京0105")
    assert main(["pki", "init", str(tmp_path / "pki")]) == 2  # never overwrites
