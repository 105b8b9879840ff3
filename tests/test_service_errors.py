"""Error mapping of the API (relay/service/errors.py): every ErrorReason is sent with the
status code its ``grpc_status`` option names, ErrorInfo carries reason, domain and metadata,
and nothing unexpected ever reaches a client as more than INTERNAL and an incident id."""

from __future__ import annotations

import logging

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.engine.errors import RelayError
from relay.pb.relay.v1 import types_pb2
from relay.service.errors import (
    ERROR_DOMAIN,
    ServiceError,
    describe_rpc_error,
    grpc_code_for_reason,
    status_for_exception,
)

REASONS = [v.name for v in types_pb2.ErrorReason.DESCRIPTOR.values if v.number != 0]


def _info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo:
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, status
    return infos[0]


def test_error_domain_comes_from_the_enum_option() -> None:
    assert ERROR_DOMAIN == "relay.judicial"


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_maps_to_the_code_its_option_names(reason: str) -> None:
    option = (
        types_pb2.ErrorReason.DESCRIPTOR.values_by_name[reason]
        .GetOptions()
        .Extensions[types_pb2.grpc_status]
    )
    code = grpc_code_for_reason(reason)
    assert code is not None and code.name == option
    error = RelayError(reason, f"{reason} happened", chain_id="c-1", height=7, field="asset")
    status = status_for_exception(error, method="/relay.v1.QueryService/GetOwnership")
    assert status.code == code.value[0]
    assert status.message == f"{reason} happened"
    info = _info(status)
    assert info.reason == reason
    assert info.domain == "relay.judicial"
    assert dict(info.metadata) == {"chain_id": "c-1", "height": "7", "field": "asset"}


def test_reason_specific_codes() -> None:
    # Spot checks against the documented table (types.proto), independent of the option
    # reading code above.
    assert grpc_code_for_reason("CASE_REQUIRED") is grpc.StatusCode.PERMISSION_DENIED
    assert grpc_code_for_reason("NOT_FOUND") is grpc.StatusCode.NOT_FOUND
    assert grpc_code_for_reason("CHAIN_FROZEN") is grpc.StatusCode.FAILED_PRECONDITION
    assert grpc_code_for_reason("ADAPTER_UNAVAILABLE") is grpc.StatusCode.UNAVAILABLE
    assert grpc_code_for_reason("HEIGHT_OUT_OF_RANGE") is grpc.StatusCode.OUT_OF_RANGE
    assert grpc_code_for_reason("RATE_LIMITED") is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_code_for_reason("ERROR_REASON_UNSPECIFIED") is None
    assert grpc_code_for_reason("NO_SUCH_REASON") is None


def test_extra_metadata_and_retry_hint_are_carried() -> None:
    error = RelayError(
        "ADAPTER_UNAVAILABLE",
        "breaker open",
        chain_id="bank-1",
        retry_after_s=2.5,
        check="BREAKER_OPEN",
    )
    status = status_for_exception(error, method="m")
    info = _info(status)
    assert dict(info.metadata) == {"chain_id": "bank-1", "check": "BREAKER_OPEN"}
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    unpacked = error_details_pb2.RetryInfo()
    retry[0].Unpack(unpacked)
    assert unpacked.retry_delay.ToNanoseconds() == 2_500_000_000


def test_service_error_maps_like_relay_error() -> None:
    status = status_for_exception(
        ServiceError("CASE_INVALID", "case_ref.court is empty", field="case_ref.court"),
        method="m",
    )
    assert status.code == code_pb2.PERMISSION_DENIED
    assert dict(_info(status).metadata) == {"field": "case_ref.court"}


def test_unexpected_exception_is_internal_with_incident_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "Traceback-secret-detail /etc/relay/key"
    with caplog.at_level(logging.ERROR, logger="relay.service"):
        status = status_for_exception(KeyError(secret), method="/relay.v1.QueryService/GetState")
    assert status.code == code_pb2.INTERNAL
    assert secret not in status.message and "Traceback" not in status.message
    info = _info(status)
    assert info.reason == "INTERNAL"
    incident = info.metadata["incident"]
    assert len(incident) == 16 and incident in status.message
    logged = [r for r in caplog.records if incident in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log only


def test_an_error_with_an_unknown_reason_is_internal(caplog: pytest.LogCaptureFixture) -> None:
    error = ServiceError("NOT_A_REASON", "oops: internal detail")
    with caplog.at_level(logging.ERROR, logger="relay.service"):
        status = status_for_exception(error, method="m")
    assert status.code == code_pb2.INTERNAL
    assert "internal detail" not in status.message
    info = _info(status)
    assert info.reason == "INTERNAL" and info.metadata["check"] == "NOT_A_REASON"
    assert any(info.metadata["incident"] in r.getMessage() for r in caplog.records)


def test_a_closed_store_means_shutting_down() -> None:
    from relay.store import StoreClosedError

    status = status_for_exception(StoreClosedError("store closed"), method="m")
    assert status.code == code_pb2.UNAVAILABLE
    assert _info(status).reason == "SHUTTING_DOWN"


class _FakeRpcError(grpc.RpcError):
    def __init__(self, status: status_pb2.Status | None, code: grpc.StatusCode) -> None:
        self._status = status
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._status.message if self._status else "plain"

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        if self._status is None:
            return ()
        return (("grpc-status-details-bin", self._status.SerializeToString()),)


def test_describe_rpc_error_round_trip() -> None:
    error = RelayError("PROOF_INVALID", "bad proof", chain_id="re-1", height=42, check="X")
    status = status_for_exception(error, method="m")
    failure = describe_rpc_error(_FakeRpcError(status, grpc.StatusCode.UNAVAILABLE))
    assert failure.reason == "PROOF_INVALID"
    assert failure.metadata == {"chain_id": "re-1", "height": "42", "check": "X"}
    line = failure.one_line()
    assert line.startswith("PROOF_INVALID [chain re-1, height 42")
    assert line.endswith(": bad proof")
    plain = describe_rpc_error(_FakeRpcError(None, grpc.StatusCode.DEADLINE_EXCEEDED))
    assert plain.reason == "" and plain.one_line() == "DEADLINE_EXCEEDED: plain"


@settings(max_examples=200, deadline=None)
@given(
    reason=st.sampled_from(REASONS),
    message=st.text(max_size=3000),
    meta=st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=1000), max_size=5),
)
def test_mapping_never_fails_and_bounds_sizes(
    reason: str, message: str, meta: dict[str, str]
) -> None:
    error = ServiceError(reason, message, **{f"k_{k}": v for k, v in meta.items()})
    status = status_for_exception(error, method="m")
    assert len(status.message) <= 2000
    info = _info(status)
    assert info.reason == reason
    assert all(len(v) <= 512 for v in info.metadata.values())
