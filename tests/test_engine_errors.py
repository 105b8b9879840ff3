"""RelayError and the mapping of verifier failures (relay/engine/errors.py), and the checks
of EngineSettings (relay/engine/settings.py)."""

from __future__ import annotations

import pytest

from relay.engine.errors import REASONS, RelayError, from_verification, reason_of
from relay.engine.settings import EngineSettings
from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    RootMismatchError,
    SignatureError,
    VerificationError,
)
from relay.verify.evidence import KeyAbsentError, RecordInvalidError
from relay.verify.lightclient.tendermint import HeaderMismatch, NotEnoughTrust, TrustExpired


def test_reasons_are_the_error_reason_enum() -> None:
    names = set(pb.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    assert names == REASONS
    with pytest.raises(ValueError):
        RelayError("NOT_A_REASON", "x")


def test_metadata_and_failure() -> None:
    e = RelayError(
        "KEY_MISMATCH",
        "answered another key",
        chain_id="c",
        height=7,
        field="asset",
        expected=b"\x01\x02".hex(),
        calculated="x" * 1000,
    )
    meta = e.all_metadata()
    assert meta["chain_id"] == "c" and meta["height"] == "7" and meta["field"] == "asset"
    assert meta["expected"] == "0102"
    assert len(meta["calculated"]) == 256  # labels are bounded
    failure = e.to_failure()
    assert failure.reason == pb.KEY_MISMATCH
    assert failure.message == "answered another key"
    assert dict(failure.metadata) == meta
    assert "KEY_MISMATCH" in str(e) and "chain_id=c" in str(e)


@pytest.mark.parametrize(
    ("error", "header", "reason"),
    [
        (MalformedInputError("bad"), False, "MALFORMED_INPUT"),
        (LimitExceededError("big"), True, "LIMIT_EXCEEDED"),
        (MismatchError("v", expected=b"a", calculated=b"b"), False, "VALUE_MISMATCH"),
        (RootMismatchError("r", expected=b"a", calculated=b"b"), False, "ROOT_MISMATCH"),
        (SignatureError("s"), False, "SIGNATURE_INVALID"),
        (KeyAbsentError("absent"), False, "KEY_ABSENT"),
        (RecordInvalidError("r", expected=b"a", calculated=b"b"), False, "RECORD_INVALID"),
        (TrustExpired("old"), True, "HEADER_UNVERIFIED"),
        (HeaderMismatch("h", expected=b"a", calculated=b"b"), True, "HEADER_UNVERIFIED"),
        (NotEnoughTrust("t", needed=1, tallied=0, total=3), True, "HEADER_UNVERIFIED"),
        (SignatureError("s"), True, "HEADER_UNVERIFIED"),
        (TrustExpired("old"), False, "VERIFICATION_FAILED"),
    ],
)
def test_verifier_reasons_map_to_error_reasons(
    error: VerificationError, header: bool, reason: str
) -> None:
    assert reason_of(error, header=header) == reason
    mapped = from_verification(error, chain_id="c", height=9, header=header, what="thing")
    assert mapped.reason == reason
    assert mapped.metadata["check"] == error.reason
    assert mapped.chain_id == "c" and mapped.height == 9
    assert mapped.message.startswith("thing: ") and "chain 'c' at height 9" in mapped.message
    if "expected" in error.context:
        assert (mapped.metadata["expected"], mapped.metadata["calculated"]) == ("61", "62")


def test_settings_defaults_and_checks() -> None:
    s = EngineSettings()
    assert s.adapter_deadline_s < s.query_deadline_s
    assert s.on_demand_verification
    for bad in (
        {"sync_interval_s": 0},
        {"adapter_deadline_s": -1},
        {"base_window": 0},
        {"base_window": 1.5},
        {"sync_jitter": 2},
        {"verify_threads": 0},
        {"adapter_client_cert_pem": b"cert"},
    ):
        with pytest.raises(ValueError):
            EngineSettings(**bad)  # type: ignore[arg-type]
