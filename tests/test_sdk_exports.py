"""The public surface of relay.sdk is pinned: a partner's adapter imports these names, so
removing or renaming one is a breaking change that must show up here."""

from __future__ import annotations

import relay.sdk
import relay.sdk.testing

EXPECTED = {
    "AdapterBase",
    "AdapterServer",
    "AdapterStartError",
    "CheckpointSource",
    "FailedPrecondition",
    "HeaderSource",
    "InvalidArgument",
    "NotFound",
    "PartnerError",
    "StateSource",
    "Unavailable",
    "Unimplemented",
    "WitnessClient",
    "describe_response",
    "optional_field",
    "records",
    "run_adapter",
    "schema1_key",
    "serve_adapter",
    "start_adapter_server",
    "timestamp",
}


def test_public_exports_are_pinned() -> None:
    assert set(relay.sdk.__all__) == EXPECTED
    assert len(relay.sdk.__all__) == len(EXPECTED)  # no duplicates
    for name in EXPECTED:
        assert getattr(relay.sdk, name) is not None


def test_testing_exports_are_pinned() -> None:
    assert set(relay.sdk.testing.__all__) == {"AdapterConformance", "ConformanceTarget"}


def test_records_is_record_schema_1() -> None:
    from relay.verify import records

    assert relay.sdk.records is records
    assert relay.sdk.records.SCHEMA_VERSION == 1


def test_refusals_carry_the_contract_codes() -> None:
    import grpc

    codes = {
        relay.sdk.NotFound: grpc.StatusCode.NOT_FOUND,
        relay.sdk.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        relay.sdk.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
        relay.sdk.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
        relay.sdk.Unavailable: grpc.StatusCode.UNAVAILABLE,
    }
    for cls, code in codes.items():
        assert issubclass(cls, relay.sdk.PartnerError)
        assert cls("x").code == code


def test_capability_classes_compose() -> None:
    class Both(relay.sdk.HeaderSource, relay.sdk.StateSource):
        pass

    mro = Both.__mro__
    assert mro.index(relay.sdk.HeaderSource) < mro.index(relay.sdk.AdapterBase)
    assert mro.index(relay.sdk.StateSource) < mro.index(relay.sdk.AdapterBase)
