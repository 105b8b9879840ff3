"""The API contract in proto/relay/ (issue "Relay service"): every RPC with its streaming
shape, a doc comment on every element, the documented error reasons and their gRPC codes,
the compatibility rules stated in relay/v1/types.proto, privacy rules of the adapter API,
and round trips of representative messages, including the evidence attestation input."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import TypeVar

import grpc
import grpc_tools
import pytest
from conftest import ROOT
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import EnumValueDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_tools import protoc
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.pb.relay.adapter.v1 import adapter_pb2, adapter_pb2_grpc
from relay.pb.relay.sink.v1 import sink_pb2, sink_pb2_grpc
from relay.pb.relay.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
    types_pb2,
)
from relay.verify import errors as verify_errors

FDP = descriptor_pb2.FileDescriptorProto
DP = descriptor_pb2.DescriptorProto
EDP = descriptor_pb2.EnumDescriptorProto
FieldDP = descriptor_pb2.FieldDescriptorProto

PROTO_DIR = ROOT / "proto"
MODULES = {
    "relay/v1/types.proto": types_pb2,
    "relay/v1/query.proto": query_pb2,
    "relay/v1/admin.proto": admin_pb2,
    "relay/v1/audit.proto": audit_pb2,
    "relay/adapter/v1/adapter.proto": adapter_pb2,
    "relay/sink/v1/sink.proto": sink_pb2,
}


def _compile(files: list[str], include: Path, out: Path) -> dict[str, FDP]:
    """Parse .proto sources with protoc, keeping comments (SourceCodeInfo)."""
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{include}",
            f"-I{well_known}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *files,
        ]
    )
    assert rc == 0, f"protoc failed on {files}"
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f for f in fds.file}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FDP]:
    out = tmp_path_factory.mktemp("api") / "api.binpb"
    return _compile(list(MODULES), PROTO_DIR, out)


def _without_json_names(f: FDP) -> FDP:
    # --descriptor_set_out fills in json_name; the descriptors embedded by python_out do not.
    copy = FDP()
    copy.CopyFrom(f)
    copy.ClearField("source_code_info")

    def clear(m: DP) -> None:
        for field in [*m.field, *m.extension]:
            field.ClearField("json_name")
        for nested in m.nested_type:
            clear(nested)

    for m in copy.message_type:
        clear(m)
    for x in copy.extension:
        x.ClearField("json_name")
    return copy


def test_generated_modules_are_built_from_these_sources(sources: dict[str, FDP]) -> None:
    for name, module in MODULES.items():
        generated = _without_json_names(FDP.FromString(module.DESCRIPTOR.serialized_pb))
        fresh = _without_json_names(sources[name])
        assert generated == fresh, f"relay/pb is stale for {name}: run proto/generate.py"


# --- RPCs ---------------------------------------------------------------------------------

# service -> rpc -> (request, response, server-streaming); no RPC streams from the client.
RPCS: dict[str, dict[str, tuple[str, str, bool]]] = {
    "relay.v1.QueryService": {
        "GetOwnership": ("relay.v1.GetOwnershipRequest", "relay.v1.OwnershipAnswer", False),
        "ListHoldings": ("relay.v1.ListHoldingsRequest", "relay.v1.HoldingsAnswer", True),
        "GetCreditStatus": ("relay.v1.GetCreditStatusRequest", "relay.v1.CreditAnswer", False),
        "GetAccount": ("relay.v1.GetAccountRequest", "relay.v1.AccountAnswer", False),
        "GetHistory": ("relay.v1.GetHistoryRequest", "relay.v1.HistoryAnswer", False),
        "GetState": ("relay.v1.GetStateRequest", "relay.v1.StateAnswer", False),
        "ListChains": ("relay.v1.ListChainsRequest", "relay.v1.ListChainsResponse", False),
        "GetChain": ("relay.v1.GetChainRequest", "relay.v1.GetChainResponse", False),
    },
    "relay.v1.AuditService": {
        "GetCheckpoint": ("relay.v1.GetAuditCheckpointRequest", "relay.v1.AuditCheckpoint", False),
        "GetInclusionProof": (
            "relay.v1.GetAuditInclusionProofRequest",
            "relay.v1.AuditInclusionProof",
            False,
        ),
        "GetConsistencyProof": (
            "relay.v1.GetAuditConsistencyProofRequest",
            "relay.v1.AuditConsistencyProof",
            False,
        ),
        "ListMyEntries": (
            "relay.v1.ListMyAuditEntriesRequest",
            "relay.v1.ListMyAuditEntriesResponse",
            False,
        ),
    },
    "relay.v1.AdminService": {
        "RegisterChain": (
            "relay.v1.RegisterChainRequest",
            "relay.v1.RegisterChainResponse",
            False,
        ),
        "FreezeChain": ("relay.v1.FreezeChainRequest", "relay.v1.FreezeChainResponse", False),
        "RecoverChain": ("relay.v1.RecoverChainRequest", "relay.v1.RecoverChainResponse", False),
        "UpdateAdapterEndpoint": (
            "relay.v1.UpdateAdapterEndpointRequest",
            "relay.v1.UpdateAdapterEndpointResponse",
            False,
        ),
        "ListChains": (
            "relay.v1.AdminListChainsRequest",
            "relay.v1.AdminListChainsResponse",
            False,
        ),
        "ProposeChain": ("relay.v1.ProposeChainRequest", "relay.v1.ProposeChainResponse", False),
        "ProposeEndpointUpdate": (
            "relay.v1.ProposeEndpointUpdateRequest",
            "relay.v1.ProposeEndpointUpdateResponse",
            False,
        ),
        "ProposeRecovery": (
            "relay.v1.ProposeRecoveryRequest",
            "relay.v1.ProposeRecoveryResponse",
            False,
        ),
        "ApproveProposal": (
            "relay.v1.ApproveProposalRequest",
            "relay.v1.ApproveProposalResponse",
            False,
        ),
        "RejectProposal": (
            "relay.v1.RejectProposalRequest",
            "relay.v1.RejectProposalResponse",
            False,
        ),
        "ListProposals": (
            "relay.v1.ListProposalsRequest",
            "relay.v1.ListProposalsResponse",
            False,
        ),
    },
    "relay.adapter.v1.AdapterService": {
        "Describe": (
            "relay.adapter.v1.DescribeRequest",
            "relay.adapter.v1.DescribeResponse",
            False,
        ),
        "GetLatestHeight": (
            "relay.adapter.v1.GetLatestHeightRequest",
            "relay.adapter.v1.GetLatestHeightResponse",
            False,
        ),
        "GetLightBlocks": (
            "relay.adapter.v1.GetLightBlocksRequest",
            "relay.adapter.v1.LightBlock",
            True,
        ),
        "GetCheckpoint": (
            "relay.adapter.v1.GetCheckpointRequest",
            "relay.adapter.v1.GetCheckpointResponse",
            False,
        ),
        "GetConsistencyProof": (
            "relay.adapter.v1.GetConsistencyProofRequest",
            "relay.adapter.v1.GetConsistencyProofResponse",
            False,
        ),
        "Query": ("relay.adapter.v1.QueryRequest", "relay.adapter.v1.QueryResult", False),
        "ListByParty": (
            "relay.adapter.v1.ListByPartyRequest",
            "relay.adapter.v1.QueryResult",
            True,
        ),
    },
    "relay.sink.v1.SinkService": {
        "Publish": ("relay.sink.v1.PublishRequest", "relay.sink.v1.PublishResponse", False),
        "GetPublished": (
            "relay.sink.v1.GetPublishedRequest",
            "relay.sink.v1.GetPublishedResponse",
            False,
        ),
    },
}
SERVICE_MODULES = {
    "relay.v1.QueryService": (query_pb2, query_pb2_grpc),
    "relay.v1.AdminService": (admin_pb2, admin_pb2_grpc),
    "relay.v1.AuditService": (audit_pb2, audit_pb2_grpc),
    "relay.adapter.v1.AdapterService": (adapter_pb2, adapter_pb2_grpc),
    "relay.sink.v1.SinkService": (sink_pb2, sink_pb2_grpc),
}
# The one response shared by two RPCs (compatibility rule 4 in types.proto).
SHARED_RESPONSES = {"relay.adapter.v1.QueryResult"}


@pytest.mark.parametrize("service", sorted(RPCS))
def test_every_rpc_exists_with_its_streaming_shape(service: str) -> None:
    pb2, pb2_grpc = SERVICE_MODULES[service]
    desc = pb2.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]]
    got = {
        m.name: (m.input_type.full_name, m.output_type.full_name, m.server_streaming)
        for m in desc.methods
    }
    assert got == RPCS[service]
    assert not any(m.client_streaming for m in desc.methods)
    short = desc.name
    for attr in (f"{short}Stub", f"{short}Servicer", f"add_{short}Servicer_to_server"):
        assert hasattr(pb2_grpc, attr), f"{pb2_grpc.__name__} lacks {attr}"


def test_each_rpc_has_its_own_request_and_response() -> None:
    requests: dict[str, str] = {}
    responses: dict[str, str] = {}
    for service, rpcs in RPCS.items():
        for name, (request, response, _) in rpcs.items():
            where = f"{service}.{name}"
            assert request not in requests, f"{where} shares {request} with {requests[request]}"
            requests[request] = where
            if response in responses and response not in SHARED_RESPONSES:
                pytest.fail(f"{where} shares {response} with {responses[response]}")
            responses[response] = where
    assert not set(requests) & set(responses), "a message is both a request and a response"


QUERIES_WITHOUT_CASE = {"ListChains", "GetChain"}  # chain metadata, no personal data


def test_every_record_query_carries_a_case_ref() -> None:
    service = query_pb2.DESCRIPTOR.services_by_name["QueryService"]
    for method in service.methods:
        fields = method.input_type.fields_by_name
        if method.name in QUERIES_WITHOUT_CASE:
            assert "case_ref" not in fields
            continue
        assert "case_ref" in fields, f"{method.name} has no case_ref"
        assert fields["case_ref"].message_type is types_pb2.CaseRef.DESCRIPTOR


# Answers of the court API: single-chain answers fail the whole call with a status, so only
# multi-chain ones carry a per-chain Failure (types.proto, enum Outcome).
ANSWERS = {
    query_pb2.OwnershipAnswer: False,
    query_pb2.AccountAnswer: False,
    query_pb2.HistoryAnswer: False,
    query_pb2.StateAnswer: False,
    query_pb2.HoldingsAnswer: True,
    query_pb2.CreditFinding: True,
}


@pytest.mark.parametrize("answer", list(ANSWERS), ids=lambda a: a.DESCRIPTOR.name)
def test_answers_carry_outcome_and_evidence(answer: type[Message]) -> None:
    fields = answer.DESCRIPTOR.fields_by_name
    assert fields["outcome"].enum_type is types_pb2.Outcome.DESCRIPTOR
    assert fields["chain_id"].type == FieldDP.TYPE_STRING
    assert fields["detail"].type == FieldDP.TYPE_STRING
    evidence = fields.get("evidence") or fields["index_evidence"]
    assert evidence.message_type is types_pb2.Evidence.DESCRIPTOR
    assert ("failure" in fields) is ANSWERS[answer]
    if ANSWERS[answer]:
        assert fields["failure"].message_type is types_pb2.Failure.DESCRIPTOR


def test_outcomes_are_those_of_design_principle_4() -> None:
    names = {v.name for v in types_pb2.Outcome.DESCRIPTOR.values}
    assert names == {
        "OUTCOME_UNSPECIFIED",
        "OUTCOME_FOUND",
        "OUTCOME_NONE_PROVEN",
        "OUTCOME_UNPROVEN",
        "OUTCOME_FAILED",
    }


# --- documentation: every element has a leading comment -------------------------------------


# A documentable element: its SourceCodeInfo path and a readable label.
Element = tuple[tuple[int, ...], str]


def _message_elements(m: DP, path: tuple[int, ...], name: str) -> Iterator[Element]:
    if m.options.map_entry:  # synthesized by protoc for a map field; documented on the field
        return
    yield path, f"message {name}"
    for i, f in enumerate(m.field):
        yield (*path, DP.FIELD_FIELD_NUMBER, i), f"field {name}.{f.name}"
    synthetic = {f.oneof_index for f in m.field if f.proto3_optional}
    for i, o in enumerate(m.oneof_decl):
        if i not in synthetic:  # `optional` fields get a synthetic oneof with no source text
            yield (*path, DP.ONEOF_DECL_FIELD_NUMBER, i), f"oneof {name}.{o.name}"
    for i, n in enumerate(m.nested_type):
        yield from _message_elements(n, (*path, DP.NESTED_TYPE_FIELD_NUMBER, i), f"{name}.{n.name}")
    for i, e in enumerate(m.enum_type):
        yield from _enum_elements(e, (*path, DP.ENUM_TYPE_FIELD_NUMBER, i), f"{name}.{e.name}")


def _enum_elements(e: EDP, path: tuple[int, ...], name: str) -> Iterator[Element]:
    yield path, f"enum {name}"
    for i, v in enumerate(e.value):
        yield (*path, EDP.VALUE_FIELD_NUMBER, i), f"enum value {name}.{v.name}"


def _file_elements(f: FDP) -> Iterator[Element]:
    pkg = f.package
    for i, m in enumerate(f.message_type):
        yield from _message_elements(m, (FDP.MESSAGE_TYPE_FIELD_NUMBER, i), f"{pkg}.{m.name}")
    for i, e in enumerate(f.enum_type):
        yield from _enum_elements(e, (FDP.ENUM_TYPE_FIELD_NUMBER, i), f"{pkg}.{e.name}")
    for i, s in enumerate(f.service):
        yield (FDP.SERVICE_FIELD_NUMBER, i), f"service {pkg}.{s.name}"
        for j, rpc in enumerate(s.method):
            path = (
                FDP.SERVICE_FIELD_NUMBER,
                i,
                descriptor_pb2.ServiceDescriptorProto.METHOD_FIELD_NUMBER,
                j,
            )
            yield path, f"rpc {pkg}.{s.name}.{rpc.name}"
    for i, x in enumerate(f.extension):
        yield (FDP.EXTENSION_FIELD_NUMBER, i), f"extension {pkg}.{x.name}"


def _undocumented(f: FDP) -> list[str]:
    """Elements of a parsed file without a leading comment of at least two words."""
    comments = {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}
    missing = []
    for path, label in _file_elements(f):
        if len(comments.get(path, "").split()) < 2:
            missing.append(f"{f.name}: {label}")
    return missing


def test_every_element_has_a_doc_comment(sources: dict[str, FDP]) -> None:
    missing = [m for name in MODULES for m in _undocumented(sources[name])]
    assert not missing, "undocumented:\n  " + "\n  ".join(missing)


def test_doc_comment_check_catches_a_missing_comment(tmp_path: Path) -> None:
    (tmp_path / "probe.proto").write_text(
        'syntax = "proto3";\npackage probe;\n'
        "// A documented message.\nmessage Probe {\n"
        "  // A documented field.\n  string good = 1;\n"
        "  string bad = 2; // a trailing comment does not count\n"
        "  // A documented oneof.\n  oneof choice {\n    // Documented alternative.\n"
        "    int32 a = 3;\n    int32 b = 4;\n  }\n"
        "  // A documented map.\n  map<string, string> labels = 5;\n"
        "  // A documented optional.\n  optional uint64 height = 6;\n}\n"
        "enum Colour {\n  // Documented zero value.\n  COLOUR_UNSPECIFIED = 0;\n"
        "  COLOUR_RED = 1;\n}\n"
    )
    parsed = _compile(["probe.proto"], tmp_path, tmp_path / "probe.binpb")
    assert sorted(_undocumented(parsed["probe.proto"])) == [
        "probe.proto: enum probe.Colour",
        "probe.proto: enum value probe.Colour.COLOUR_RED",
        "probe.proto: field probe.Probe.b",
        "probe.proto: field probe.Probe.bad",
    ]


# --- error reasons --------------------------------------------------------------------------

# The documented reason codes and the gRPC status each is sent with (see ErrorReason in
# relay/v1/types.proto, where each value's comment says when it is used).
DOCUMENTED_REASONS = {
    "INVALID_ARGUMENT": "INVALID_ARGUMENT",
    "CASE_REQUIRED": "PERMISSION_DENIED",
    "CASE_INVALID": "PERMISSION_DENIED",
    "UNAUTHENTICATED": "UNAUTHENTICATED",
    "PERMISSION_DENIED": "PERMISSION_DENIED",
    "RATE_LIMITED": "RESOURCE_EXHAUSTED",
    "NOT_FOUND": "NOT_FOUND",
    "ALREADY_EXISTS": "ALREADY_EXISTS",
    "HEIGHT_OUT_OF_RANGE": "OUT_OF_RANGE",
    "UNSUPPORTED": "UNIMPLEMENTED",
    "CHAIN_PENDING": "FAILED_PRECONDITION",
    "CHAIN_FROZEN": "FAILED_PRECONDITION",
    "CHAIN_EXPIRED": "FAILED_PRECONDITION",
    "MISBEHAVIOUR_DETECTED": "FAILED_PRECONDITION",
    "ADAPTER_UNAVAILABLE": "UNAVAILABLE",
    "STREAM_TRUNCATED": "UNAVAILABLE",
    "STALE_HEIGHT": "UNAVAILABLE",
    "HEADER_UNVERIFIED": "UNAVAILABLE",
    "KEY_MISMATCH": "UNAVAILABLE",
    "VERIFICATION_FAILED": "UNAVAILABLE",
    "MALFORMED_INPUT": "UNAVAILABLE",
    "LIMIT_EXCEEDED": "UNAVAILABLE",
    "PROOF_SPEC_MISMATCH": "UNAVAILABLE",
    "PROOF_INVALID": "UNAVAILABLE",
    "VALUE_MISMATCH": "UNAVAILABLE",
    "ROOT_MISMATCH": "UNAVAILABLE",
    "SIGNATURE_INVALID": "UNAVAILABLE",
    "KEY_ABSENT": "UNAVAILABLE",
    "KEY_PRESENT": "UNAVAILABLE",
    "RECORD_INVALID": "UNAVAILABLE",
    "INTERNAL": "INTERNAL",
    "SHUTTING_DOWN": "UNAVAILABLE",
    "ROLE_FORBIDDEN": "PERMISSION_DENIED",
    "GRANT_MISSING": "PERMISSION_DENIED",
    "NOT_OWNER": "PERMISSION_DENIED",
    "PROPOSAL_SIGNATURE_INVALID": "PERMISSION_DENIED",
    "PROPOSAL_REPLAYED": "ALREADY_EXISTS",
    "PROPOSAL_EXPIRED": "FAILED_PRECONDITION",
    "PROPOSAL_CLOSED": "FAILED_PRECONDITION",
}

# Issue "Relay service", must-show 2: each lie of an adapter has its own reason code.
LYING_ADAPTER_REASONS = {
    "wrong value": "VALUE_MISMATCH",
    "proof for another key": "KEY_MISMATCH",
    "proof against an unverified height": "HEADER_UNVERIFIED",
    "a header from a fork": "MISBEHAVIOUR_DETECTED",
    "a stale height": "STALE_HEIGHT",
    "a truncated stream": "STREAM_TRUNCATED",
    "garbage bytes": "MALFORMED_INPUT",
    "an adapter that hangs": "ADAPTER_UNAVAILABLE",
}


def _reason_status(value: EnumValueDescriptor) -> str:
    return str(value.GetOptions().Extensions[types_pb2.grpc_status])


def test_error_reasons_match_the_documented_list() -> None:
    enum = types_pb2.ErrorReason.DESCRIPTOR
    zero = enum.values_by_number[0]
    assert zero.name == "ERROR_REASON_UNSPECIFIED"
    assert _reason_status(zero) == "", "the zero value is never sent"
    got = {v.name: _reason_status(v) for v in enum.values if v.number}
    assert got == DOCUMENTED_REASONS


def test_error_reasons_map_to_real_grpc_codes() -> None:
    for reason, code in DOCUMENTED_REASONS.items():
        assert code in grpc.StatusCode.__members__, f"{reason}: {code} is not a gRPC code"
        assert code not in {"OK", "UNKNOWN"}, f"{reason} must map to a specific failure code"


def test_error_domain_is_declared_on_the_enum() -> None:
    options = types_pb2.ErrorReason.DESCRIPTOR.GetOptions()
    assert options.Extensions[types_pb2.error_domain] == "relay.judicial"


def test_each_adapter_lie_has_its_own_reason() -> None:
    reasons = list(LYING_ADAPTER_REASONS.values())
    assert len(set(reasons)) == len(reasons)
    assert set(reasons) <= set(DOCUMENTED_REASONS)


def _subclasses(
    cls: type[verify_errors.VerificationError],
) -> Iterator[type[verify_errors.VerificationError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_core_verifier_reasons_pass_through_unchanged() -> None:
    base = verify_errors.VerificationError
    classes: list[type[verify_errors.VerificationError]] = [
        base,
        *(c for c in _subclasses(base) if c.__module__ == verify_errors.__name__),
    ]
    reasons = {c.reason for c in classes}
    assert len(classes) >= 9, "relay/verify/errors.py lost its error classes"
    assert reasons <= set(DOCUMENTED_REASONS), reasons - set(DOCUMENTED_REASONS)


# --- naming and compatibility rules ---------------------------------------------------------


def _index(files: dict[str, FDP]) -> tuple[dict[str, DP], dict[str, EDP]]:
    messages: dict[str, DP] = {}
    enums: dict[str, EDP] = {}

    def visit(m: DP, name: str) -> None:
        messages[name] = m
        for n in m.nested_type:
            visit(n, f"{name}.{n.name}")
        for e in m.enum_type:
            enums[f"{name}.{e.name}"] = e

    for f in files.values():
        for m in f.message_type:
            visit(m, f"{f.package}.{m.name}")
        for e in f.enum_type:
            enums[f"{f.package}.{e.name}"] = e
    return messages, enums


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_enum_zero_values_and_prefixes(sources: dict[str, FDP]) -> None:
    _, enums = _index(sources)
    for name, enum in enums.items():
        prefix = _upper_snake(enum.name)
        assert enum.value[0].number == 0
        assert enum.value[0].name == f"{prefix}_UNSPECIFIED", name
        if name == "relay.v1.ErrorReason":  # value names are the ErrorInfo.reason strings
            continue
        for value in enum.value:
            assert value.name.startswith(prefix + "_"), f"{name}.{value.name}"


def test_names_are_idiomatic_and_usable_from_python(sources: dict[str, FDP]) -> None:
    messages, _ = _index(sources)
    for name, message in messages.items():
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", message.name), name
        for field in message.field:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", field.name), f"{name}.{field.name}"
            # A keyword would make the generated attribute unreachable as `msg.from`.
            assert not keyword.iskeyword(field.name), f"{name}.{field.name}"
            assert not keyword.issoftkeyword(field.name), f"{name}.{field.name}"


def _reserved(m: DP) -> tuple[set[int], set[str]]:
    numbers = {n for r in m.reserved_range for n in range(r.start, r.end)}
    return numbers, set(m.reserved_name)


# Room left for signed partner proposals and operator approvals (issue "Access and
# onboarding"): numbers and names reserved, and the payload already inside a oneof that the
# proposal alternative can join.
RESERVED_FOR_ONBOARDING = {
    "relay.v1.RegisterChainRequest": ({2, 3}, {"proposal_id", "approvals"}, "submission"),
    "relay.v1.UpdateAdapterEndpointRequest": ({2, 3}, {"proposal_id", "approvals"}, "update"),
    "relay.v1.RecoverChainRequest": ({4}, {"approvals"}, None),
}


def test_room_is_reserved_for_signed_proposals(sources: dict[str, FDP]) -> None:
    messages, _ = _index(sources)
    for name, (numbers, names, oneof) in RESERVED_FOR_ONBOARDING.items():
        got_numbers, got_names = _reserved(messages[name])
        assert numbers <= got_numbers, name
        assert names <= got_names, name
        if oneof is not None:
            assert oneof in {o.name for o in messages[name].oneof_decl}, name
    for future in ("ChainProposal", "SignedChainProposal", "ProposalApproval"):
        assert f"relay.v1.{future}" in messages


def _reachable(message: object) -> set[str]:
    """Full names of every message type reachable from a message descriptor."""
    seen: set[str] = set()
    todo = [message]
    while todo:
        m = todo.pop()
        if m.full_name in seen:  # type: ignore[attr-defined]
            continue
        seen.add(m.full_name)  # type: ignore[attr-defined]
        todo.extend(f.message_type for f in m.fields if f.message_type)  # type: ignore[attr-defined]
    return seen


def test_adapters_never_see_raw_party_identifiers() -> None:
    service = adapter_pb2.DESCRIPTOR.services_by_name["AdapterService"]
    for method in service.methods:
        for side in (method.input_type, method.output_type):
            assert "relay.v1.PartyRef" not in _reachable(side), method.name


def test_court_answers_never_reveal_the_party_key_salt() -> None:
    service = query_pb2.DESCRIPTOR.services_by_name["QueryService"]
    for method in service.methods:
        reachable = _reachable(method.output_type)
        assert "relay.v1.PartyKeySpec" not in reachable, method.name
        assert "relay.v1.ChainDescriptor" not in reachable, method.name


def test_an_adapter_never_says_verified() -> None:
    claims = {"verified", "valid", "trusted", "ok", "checked"}
    _, enums = _index({"a": FDP.FromString(adapter_pb2.DESCRIPTOR.serialized_pb)})
    names = [m.name for m in adapter_pb2.DESCRIPTOR.message_types_by_name.values()]
    names += [
        f.name for m in adapter_pb2.DESCRIPTOR.message_types_by_name.values() for f in m.fields
    ]
    names += [v.name for e in enums.values() for v in e.value]
    for name in names:
        words = set(_upper_snake(name).lower().split("_"))
        assert not words & claims, f"relay.adapter.v1 element {name} claims verification"


# Field numbers, types and enum numbers as published. A published element may never change
# number or type; it may be removed only if its number and name are reserved (rule 1). New
# elements need no entry here. Regenerate lines for new elements with _lock_lines().
LOCK = """
relay.v1.AssetRef.kind 1 relay.v1.AssetKind
relay.v1.AssetRef.registry 2 string
relay.v1.AssetRef.id 3 string
relay.v1.PartyRef.kind 1 relay.v1.PartyKind
relay.v1.PartyRef.id_type 2 relay.v1.IdType
relay.v1.PartyRef.id 3 string
relay.v1.CaseRef.court 1 string
relay.v1.CaseRef.case_number 2 string
relay.v1.CaseRef.purpose 3 relay.v1.CasePurpose
relay.v1.CaseRef.officer 4 string
relay.v1.Money.minor_units 1 int64
relay.v1.Money.currency 2 string
relay.v1.RecordParty.party_key 1 bytes
relay.v1.RecordParty.kind 2 relay.v1.PartyKind
relay.v1.RecordParty.name 3 string
relay.v1.Share.basis_points 1 uint32 oneof portion
relay.v1.Share.fraction 2 string oneof portion
relay.v1.Owner.party 1 relay.v1.RecordParty
relay.v1.Owner.share 2 relay.v1.Share
relay.v1.Owner.co_ownership 3 relay.v1.CoOwnership
relay.v1.Encumbrance.kind 1 relay.v1.EncumbranceKind
relay.v1.Encumbrance.holder 2 relay.v1.RecordParty
relay.v1.Encumbrance.amount 3 relay.v1.Money
relay.v1.Encumbrance.court 4 string
relay.v1.Encumbrance.case_number 5 string
relay.v1.Encumbrance.since 6 google.protobuf.Timestamp
relay.v1.Encumbrance.until 7 google.protobuf.Timestamp
relay.v1.Encumbrance.status 8 relay.v1.RegistrationStatus
relay.v1.Encumbrance.registered_at 9 google.protobuf.Timestamp
relay.v1.Encumbrance.rank 10 uint32
relay.v1.Encumbrance.reference 11 string
relay.v1.OwnershipRecord.asset 1 relay.v1.AssetRef
relay.v1.OwnershipRecord.description 2 string
relay.v1.OwnershipRecord.owners 3 repeated relay.v1.Owner
relay.v1.OwnershipRecord.encumbrances 4 repeated relay.v1.Encumbrance
relay.v1.OwnershipRecord.status 5 relay.v1.RegistrationStatus
relay.v1.OwnershipRecord.registered_at 6 google.protobuf.Timestamp
relay.v1.OwnershipRecord.certificate_number 7 string
relay.v1.DishonestListing.court 1 string
relay.v1.DishonestListing.case_number 2 string
relay.v1.DishonestListing.obligation 3 string
relay.v1.DishonestListing.circumstance 4 string
relay.v1.DishonestListing.listed_at 5 google.protobuf.Timestamp
relay.v1.DishonestListing.removed_at 6 google.protobuf.Timestamp
relay.v1.ConsumptionRestriction.court 1 string
relay.v1.ConsumptionRestriction.case_number 2 string
relay.v1.ConsumptionRestriction.issued_at 3 google.protobuf.Timestamp
relay.v1.ConsumptionRestriction.lifted_at 4 google.protobuf.Timestamp
relay.v1.CreditRecord.party 1 relay.v1.RecordParty
relay.v1.CreditRecord.listings 2 repeated relay.v1.DishonestListing
relay.v1.CreditRecord.restrictions 3 repeated relay.v1.ConsumptionRestriction
relay.v1.AccountFreeze.court 1 string
relay.v1.AccountFreeze.case_number 2 string
relay.v1.AccountFreeze.amount 3 relay.v1.Money
relay.v1.AccountFreeze.since 4 google.protobuf.Timestamp
relay.v1.AccountFreeze.until 5 google.protobuf.Timestamp
relay.v1.AccountFreeze.status 6 relay.v1.RegistrationStatus
relay.v1.AccountFreeze.rank 7 uint32
relay.v1.AccountRecord.account 1 relay.v1.AssetRef
relay.v1.AccountRecord.holder 2 relay.v1.RecordParty
relay.v1.AccountRecord.bank 3 string
relay.v1.AccountRecord.balance 4 relay.v1.Money
relay.v1.AccountRecord.status 5 relay.v1.AccountStatus
relay.v1.AccountRecord.freezes 6 repeated relay.v1.AccountFreeze
relay.v1.HistoryEntry.kind 1 relay.v1.HistoryEventKind
relay.v1.HistoryEntry.from_parties 2 repeated relay.v1.RecordParty
relay.v1.HistoryEntry.to_parties 3 repeated relay.v1.RecordParty
relay.v1.HistoryEntry.at 4 google.protobuf.Timestamp
relay.v1.HistoryEntry.reference 5 string
relay.v1.HistoryEntry.licence_type 6 relay.v1.LicenceType
relay.v1.HistoryEntry.until 7 google.protobuf.Timestamp
relay.v1.AssetHistory.asset 1 relay.v1.AssetRef
relay.v1.AssetHistory.entries 2 repeated relay.v1.HistoryEntry
relay.v1.PartyHoldings.party_key 1 bytes
relay.v1.PartyHoldings.assets 2 repeated relay.v1.AssetRef
relay.v1.RecordKey.ownership 1 relay.v1.AssetRef oneof record
relay.v1.RecordKey.credit_party_key 2 bytes oneof record
relay.v1.RecordKey.account 3 relay.v1.AssetRef oneof record
relay.v1.RecordKey.history 4 relay.v1.AssetRef oneof record
relay.v1.RecordKey.holdings_party_key 5 bytes oneof record
relay.v1.Rfc6962InclusionProof.leaf_index 1 uint64
relay.v1.Rfc6962InclusionProof.tree_size 2 uint64
relay.v1.Rfc6962InclusionProof.path 3 repeated bytes
relay.v1.MptProof.address 1 bytes
relay.v1.MptProof.account_proof 2 repeated bytes
relay.v1.MptProof.storage_key 3 bytes
relay.v1.MptProof.storage_proof 4 repeated bytes
relay.v1.TrustStep.height 1 uint64
relay.v1.TrustStep.format 2 relay.v1.HeaderFormat
relay.v1.TrustStep.header 3 bytes
relay.v1.TrustStep.consistency_proof 4 repeated bytes
relay.v1.TrustStep.verified_at 5 google.protobuf.Timestamp
relay.v1.RelayAttestation.key_id 1 string
relay.v1.RelayAttestation.algorithm 2 relay.v1.SignatureAlgorithm
relay.v1.RelayAttestation.signature 3 bytes
relay.v1.RelayAttestation.sm2_signer_id 4 string
relay.v1.Evidence.version 1 uint32
relay.v1.Evidence.chain_id 2 string
relay.v1.Evidence.client_type 3 relay.v1.ClientType
relay.v1.Evidence.height 4 uint64
relay.v1.Evidence.header_format 5 relay.v1.HeaderFormat
relay.v1.Evidence.header 6 bytes
relay.v1.Evidence.header_time 7 google.protobuf.Timestamp
relay.v1.Evidence.trust_path 8 repeated relay.v1.TrustStep
relay.v1.Evidence.header_consistency_proof 9 repeated bytes
relay.v1.Evidence.header_verified_at 10 google.protobuf.Timestamp
relay.v1.Evidence.state_root 11 bytes
relay.v1.Evidence.key 12 bytes
relay.v1.Evidence.value 13 optional bytes
relay.v1.Evidence.proof_format 14 relay.v1.ProofFormat
relay.v1.Evidence.proof 15 bytes
relay.v1.Evidence.proof_spec 16 relay.v1.ProofSpec
relay.v1.Evidence.ownership 17 relay.v1.OwnershipRecord oneof record
relay.v1.Evidence.credit 18 relay.v1.CreditRecord oneof record
relay.v1.Evidence.account 19 relay.v1.AccountRecord oneof record
relay.v1.Evidence.history 20 relay.v1.AssetHistory oneof record
relay.v1.Evidence.holdings 21 relay.v1.PartyHoldings oneof record
relay.v1.Evidence.assurance 22 relay.v1.Assurance
relay.v1.Evidence.verified_at 23 google.protobuf.Timestamp
relay.v1.Evidence.relay_attestation 24 relay.v1.RelayAttestation
relay.v1.Failure.reason 1 relay.v1.ErrorReason
relay.v1.Failure.message 2 string
relay.v1.Failure.metadata 3 repeated relay.v1.Failure.MetadataEntry
relay.v1.Failure.MetadataEntry.key 1 string
relay.v1.Failure.MetadataEntry.value 2 string
relay.v1.Fraction.numerator 1 uint64
relay.v1.Fraction.denominator 2 uint64
relay.v1.TendermintAnchor.light_block 1 bytes
relay.v1.TendermintAnchor.height 2 uint64
relay.v1.TendermintAnchor.header_hash 3 bytes
relay.v1.TlogAnchor.checkpoint 1 bytes
relay.v1.TrustAnchor.tendermint 1 relay.v1.TendermintAnchor oneof anchor
relay.v1.TrustAnchor.tlog 2 relay.v1.TlogAnchor oneof anchor
relay.v1.TendermintClientParams.anchor 1 relay.v1.TendermintAnchor
relay.v1.TendermintClientParams.trust_level 2 relay.v1.Fraction
relay.v1.TendermintClientParams.trusting_period 3 google.protobuf.Duration
relay.v1.TendermintClientParams.unbonding_period 4 google.protobuf.Duration
relay.v1.TendermintClientParams.max_clock_drift 5 google.protobuf.Duration
relay.v1.TendermintClientParams.hash_algorithm 6 relay.v1.HashAlgorithm
relay.v1.TendermintClientParams.signature_algorithm 7 relay.v1.SignatureAlgorithm
relay.v1.TendermintClientParams.sm2_signer_id 8 string
relay.v1.TlogClientParams.origin 1 string
relay.v1.TlogClientParams.log_verifier_key 2 string
relay.v1.TlogClientParams.hash_algorithm 3 relay.v1.HashAlgorithm
relay.v1.TlogClientParams.witness_verifier_keys 4 repeated string
relay.v1.TlogClientParams.witness_threshold 5 uint32
relay.v1.TlogClientParams.anchor 6 relay.v1.TlogAnchor
relay.v1.TlogClientParams.trusting_period 7 google.protobuf.Duration
relay.v1.PartyKeySpec.hash_algorithm 1 relay.v1.HashAlgorithm
relay.v1.PartyKeySpec.salt 2 bytes
relay.v1.AdapterEndpoint.grpc_address 1 string oneof target
relay.v1.AdapterEndpoint.entry_point 2 string oneof target
relay.v1.AdapterEndpoint.tls_server_name 3 string
relay.v1.AdapterEndpoint.ca_certificates_pem 4 string
relay.v1.AdapterEndpoint.spki_sha256_pins 5 repeated bytes
relay.v1.ChainDescriptor.chain_id 1 string
relay.v1.ChainDescriptor.institution 2 string
relay.v1.ChainDescriptor.domain 3 relay.v1.Domain
relay.v1.ChainDescriptor.display_name_zh 4 string
relay.v1.ChainDescriptor.display_name_en 5 string
relay.v1.ChainDescriptor.tendermint 6 relay.v1.TendermintClientParams oneof client
relay.v1.ChainDescriptor.tlog 7 relay.v1.TlogClientParams oneof client
relay.v1.ChainDescriptor.proof_spec 8 relay.v1.ProofSpec
relay.v1.ChainDescriptor.adapter 9 relay.v1.AdapterEndpoint
relay.v1.ChainDescriptor.record_schema_version 10 uint32
relay.v1.ChainDescriptor.party_key 11 relay.v1.PartyKeySpec
relay.v1.ChainDescriptor.registry_codes 12 repeated string
relay.v1.ChainDescriptor.asset_kinds 13 repeated relay.v1.AssetKind
relay.v1.ChainInfo.chain_id 1 string
relay.v1.ChainInfo.institution 2 string
relay.v1.ChainInfo.domain 3 relay.v1.Domain
relay.v1.ChainInfo.display_name_zh 4 string
relay.v1.ChainInfo.display_name_en 5 string
relay.v1.ChainInfo.client_type 6 relay.v1.ClientType
relay.v1.ChainInfo.proof_spec 7 relay.v1.ProofSpec
relay.v1.ChainInfo.registry_codes 8 repeated string
relay.v1.ChainInfo.asset_kinds 9 repeated relay.v1.AssetKind
relay.v1.ChainInfo.record_schema_version 10 uint32
relay.v1.ChainInfo.status 11 relay.v1.ChainStatus
relay.v1.ChainInfo.status_reason 12 relay.v1.ErrorReason
relay.v1.ChainInfo.status_message 13 string
relay.v1.ChainInfo.status_since 14 google.protobuf.Timestamp
relay.v1.ChainInfo.anchor_height 15 uint64
relay.v1.ChainInfo.trusted_height 16 uint64
relay.v1.ChainInfo.trusted_time 17 google.protobuf.Timestamp
relay.v1.ChainInfo.partner_head_height 18 uint64
relay.v1.ChainInfo.partner_head_seen_at 19 google.protobuf.Timestamp
relay.v1.ChainInfo.trust_expires_at 20 google.protobuf.Timestamp
relay.v1.ChainInfo.seconds_until_trust_expiry 21 int64
relay.v1.ChainInfo.assurance 22 relay.v1.Assurance
relay.v1.GetOwnershipRequest.asset 1 relay.v1.AssetRef
relay.v1.GetOwnershipRequest.case_ref 2 relay.v1.CaseRef
relay.v1.GetOwnershipRequest.at_height 3 optional uint64
relay.v1.OwnershipAnswer.chain_id 1 string
relay.v1.OwnershipAnswer.outcome 2 relay.v1.Outcome
relay.v1.OwnershipAnswer.record 3 relay.v1.OwnershipRecord
relay.v1.OwnershipAnswer.evidence 4 relay.v1.Evidence
relay.v1.OwnershipAnswer.detail 5 string
relay.v1.ListHoldingsRequest.party 1 relay.v1.PartyRef
relay.v1.ListHoldingsRequest.kinds 2 repeated relay.v1.AssetKind
relay.v1.ListHoldingsRequest.case_ref 3 relay.v1.CaseRef
relay.v1.Holding.asset 1 relay.v1.AssetRef
relay.v1.Holding.ownership 2 relay.v1.OwnershipRecord oneof record
relay.v1.Holding.account 3 relay.v1.AccountRecord oneof record
relay.v1.Holding.evidence 4 relay.v1.Evidence
relay.v1.HoldingsAnswer.chain_id 1 string
relay.v1.HoldingsAnswer.domain 2 relay.v1.Domain
relay.v1.HoldingsAnswer.outcome 3 relay.v1.Outcome
relay.v1.HoldingsAnswer.holdings 4 repeated relay.v1.Holding
relay.v1.HoldingsAnswer.index_evidence 5 relay.v1.Evidence
relay.v1.HoldingsAnswer.failure 6 relay.v1.Failure
relay.v1.HoldingsAnswer.detail 7 string
relay.v1.GetCreditStatusRequest.party 1 relay.v1.PartyRef
relay.v1.GetCreditStatusRequest.case_ref 2 relay.v1.CaseRef
relay.v1.CreditFinding.chain_id 1 string
relay.v1.CreditFinding.outcome 2 relay.v1.Outcome
relay.v1.CreditFinding.record 3 relay.v1.CreditRecord
relay.v1.CreditFinding.evidence 4 relay.v1.Evidence
relay.v1.CreditFinding.failure 5 relay.v1.Failure
relay.v1.CreditFinding.detail 6 string
relay.v1.CreditAnswer.findings 1 repeated relay.v1.CreditFinding
relay.v1.GetAccountRequest.account 1 relay.v1.AssetRef
relay.v1.GetAccountRequest.case_ref 2 relay.v1.CaseRef
relay.v1.GetAccountRequest.at_height 3 optional uint64
relay.v1.AccountAnswer.chain_id 1 string
relay.v1.AccountAnswer.outcome 2 relay.v1.Outcome
relay.v1.AccountAnswer.record 3 relay.v1.AccountRecord
relay.v1.AccountAnswer.evidence 4 relay.v1.Evidence
relay.v1.AccountAnswer.detail 5 string
relay.v1.GetHistoryRequest.asset 1 relay.v1.AssetRef
relay.v1.GetHistoryRequest.case_ref 2 relay.v1.CaseRef
relay.v1.GetHistoryRequest.at_height 3 optional uint64
relay.v1.HistoryAnswer.chain_id 1 string
relay.v1.HistoryAnswer.outcome 2 relay.v1.Outcome
relay.v1.HistoryAnswer.entries 3 repeated relay.v1.HistoryEntry
relay.v1.HistoryAnswer.evidence 4 relay.v1.Evidence
relay.v1.HistoryAnswer.detail 5 string
relay.v1.GetStateRequest.chain_id 1 string
relay.v1.GetStateRequest.key 2 bytes
relay.v1.GetStateRequest.at_height 3 optional uint64
relay.v1.GetStateRequest.case_ref 4 relay.v1.CaseRef
relay.v1.StateAnswer.chain_id 1 string
relay.v1.StateAnswer.outcome 2 relay.v1.Outcome
relay.v1.StateAnswer.value 3 optional bytes
relay.v1.StateAnswer.evidence 4 relay.v1.Evidence
relay.v1.StateAnswer.detail 5 string
relay.v1.ListChainsRequest.domain 1 relay.v1.Domain
relay.v1.ListChainsResponse.chains 1 repeated relay.v1.ChainInfo
relay.v1.GetChainRequest.chain_id 1 string
relay.v1.GetChainResponse.chain 1 relay.v1.ChainInfo
relay.v1.RegisterChainRequest.descriptor 1 relay.v1.ChainDescriptor oneof submission
relay.v1.RegisterChainResponse.chain 1 relay.v1.ChainInfo
relay.v1.FreezeChainRequest.chain_id 1 string
relay.v1.FreezeChainRequest.reason 2 string
relay.v1.FreezeChainResponse.chain 1 relay.v1.ChainInfo
relay.v1.RecoverChainRequest.chain_id 1 string
relay.v1.RecoverChainRequest.new_anchor 2 relay.v1.TrustAnchor
relay.v1.RecoverChainRequest.reason 3 string
relay.v1.RecoverChainResponse.chain 1 relay.v1.ChainInfo
relay.v1.UpdateAdapterEndpointRequest.chain_id 1 string
relay.v1.UpdateAdapterEndpointRequest.endpoint 4 relay.v1.AdapterEndpoint oneof update
relay.v1.UpdateAdapterEndpointResponse.chain 1 relay.v1.ChainInfo
relay.v1.AdminListChainsRequest.domain 1 relay.v1.Domain
relay.v1.RegisteredChain.info 1 relay.v1.ChainInfo
relay.v1.RegisteredChain.descriptor 2 relay.v1.ChainDescriptor
relay.v1.RegisteredChain.registered_at 3 google.protobuf.Timestamp
relay.v1.RegisteredChain.registered_by 4 string
relay.v1.AdminListChainsResponse.chains 1 repeated relay.v1.RegisteredChain
relay.v1.ChainProposal.institution 1 string
relay.v1.ChainProposal.register 2 relay.v1.ChainDescriptor oneof action
relay.v1.ChainProposal.update_endpoint 3 relay.v1.EndpointUpdate oneof action
relay.v1.ChainProposal.recover 8 relay.v1.RecoveryRequest oneof action
relay.v1.ChainProposal.nonce 4 bytes
relay.v1.ChainProposal.created_at 5 google.protobuf.Timestamp
relay.v1.ChainProposal.expires_at 6 google.protobuf.Timestamp
relay.v1.ChainProposal.audience 7 string
relay.v1.EndpointUpdate.chain_id 1 string
relay.v1.EndpointUpdate.endpoint 2 relay.v1.AdapterEndpoint
relay.v1.RecoveryRequest.chain_id 1 string
relay.v1.RecoveryRequest.new_anchor 2 relay.v1.TrustAnchor
relay.v1.RecoveryRequest.reason 3 string
relay.v1.SignedChainProposal.proposal 1 bytes
relay.v1.SignedChainProposal.key_id 2 string
relay.v1.SignedChainProposal.algorithm 3 relay.v1.SignatureAlgorithm
relay.v1.SignedChainProposal.signature 4 bytes
relay.v1.SignedChainProposal.sm2_signer_id 5 string
relay.v1.ProposalApproval.proposal_digest 1 bytes
relay.v1.ProposalApproval.decision 2 relay.v1.ProposalDecision
relay.v1.ProposalApproval.operator_id 3 string
relay.v1.ProposalApproval.decided_at 4 google.protobuf.Timestamp
relay.v1.ProposalApproval.comment 5 string
relay.v1.GetAuditCheckpointRequest.size 1 uint64
relay.v1.AuditCheckpoint.note 1 bytes
relay.v1.AuditCheckpoint.origin 2 string
relay.v1.AuditCheckpoint.size 3 uint64
relay.v1.AuditCheckpoint.root_hash 4 bytes
relay.v1.AuditCheckpoint.signed_at 5 google.protobuf.Timestamp
relay.v1.GetAuditInclusionProofRequest.index 1 uint64
relay.v1.GetAuditInclusionProofRequest.tree_size 2 uint64
relay.v1.AuditInclusionProof.index 1 uint64
relay.v1.AuditInclusionProof.entry 2 bytes
relay.v1.AuditInclusionProof.leaf_hash 3 bytes
relay.v1.AuditInclusionProof.hashes 4 repeated bytes
relay.v1.AuditInclusionProof.checkpoint 5 relay.v1.AuditCheckpoint
relay.v1.GetAuditConsistencyProofRequest.first_size 1 uint64
relay.v1.GetAuditConsistencyProofRequest.second_size 2 uint64
relay.v1.AuditConsistencyProof.first 1 relay.v1.AuditCheckpoint
relay.v1.AuditConsistencyProof.second 2 relay.v1.AuditCheckpoint
relay.v1.AuditConsistencyProof.hashes 3 repeated bytes
relay.v1.ListMyAuditEntriesRequest.start_index 1 uint64
relay.v1.ListMyAuditEntriesRequest.page_size 2 uint32
relay.v1.AuditEntry.index 1 uint64
relay.v1.AuditEntry.entry 2 bytes
relay.v1.AuditEntry.leaf_hash 3 bytes
relay.v1.ListMyAuditEntriesResponse.entries 1 repeated relay.v1.AuditEntry
relay.v1.ListMyAuditEntriesResponse.next_index 2 uint64
relay.sink.v1.PublishRequest.note 1 bytes
relay.sink.v1.PublishRequest.consistency_proof 2 repeated bytes
relay.sink.v1.PublishResponse.height 1 uint64
relay.sink.v1.PublishResponse.key 2 bytes
relay.sink.v1.PublishResponse.size 3 uint64
relay.sink.v1.GetPublishedResponse.size 1 uint64
relay.sink.v1.GetPublishedResponse.note 2 bytes
relay.sink.v1.GetPublishedResponse.key 3 bytes
relay.sink.v1.GetPublishedResponse.height 4 uint64
relay.adapter.v1.DescribeResponse.chain_id 1 string
relay.adapter.v1.DescribeResponse.client_type 2 relay.v1.ClientType
relay.adapter.v1.DescribeResponse.capabilities 3 repeated relay.adapter.v1.Capability
relay.adapter.v1.DescribeResponse.adapter_version 4 string
relay.adapter.v1.DescribeResponse.record_schema_version 5 uint32
relay.adapter.v1.GetLatestHeightResponse.height 1 uint64
relay.adapter.v1.GetLatestHeightResponse.time 2 google.protobuf.Timestamp
relay.adapter.v1.GetLightBlocksRequest.from_height 1 uint64
relay.adapter.v1.GetLightBlocksRequest.to_height 2 uint64
relay.adapter.v1.GetLightBlocksRequest.encoding 3 relay.adapter.v1.LightBlockEncoding
relay.adapter.v1.LightBlock.height 1 uint64
relay.adapter.v1.LightBlock.light_block 2 bytes
relay.adapter.v1.LightBlock.encoding 3 relay.adapter.v1.LightBlockEncoding
relay.adapter.v1.GetCheckpointRequest.size 1 optional uint64
relay.adapter.v1.GetCheckpointResponse.signed_note 1 bytes
relay.adapter.v1.GetConsistencyProofRequest.size1 1 uint64
relay.adapter.v1.GetConsistencyProofRequest.size2 2 uint64
relay.adapter.v1.GetConsistencyProofResponse.hashes 1 repeated bytes
relay.adapter.v1.DomainQuery.ownership 1 relay.v1.AssetRef oneof query
relay.adapter.v1.DomainQuery.credit_party_key 2 bytes oneof query
relay.adapter.v1.DomainQuery.account 3 relay.v1.AssetRef oneof query
relay.adapter.v1.DomainQuery.history 4 relay.v1.AssetRef oneof query
relay.adapter.v1.DomainQuery.raw_key 5 bytes oneof query
relay.adapter.v1.QueryRequest.query 1 relay.adapter.v1.DomainQuery
relay.adapter.v1.QueryRequest.height 2 optional uint64
relay.adapter.v1.QueryResult.key 1 bytes
relay.adapter.v1.QueryResult.value 2 optional bytes
relay.adapter.v1.QueryResult.proof 3 bytes
relay.adapter.v1.QueryResult.proof_format 4 relay.v1.ProofFormat
relay.adapter.v1.QueryResult.height 5 uint64
relay.adapter.v1.ListByPartyRequest.party_key 1 bytes
relay.adapter.v1.ListByPartyRequest.kinds 2 repeated relay.v1.AssetKind
relay.adapter.v1.ListByPartyRequest.height 3 optional uint64
relay.v1.AssetKind.ASSET_KIND_UNSPECIFIED = 0
relay.v1.AssetKind.ASSET_KIND_REAL_ESTATE = 1
relay.v1.AssetKind.ASSET_KIND_VEHICLE = 2
relay.v1.AssetKind.ASSET_KIND_EQUITY = 3
relay.v1.AssetKind.ASSET_KIND_PATENT = 4
relay.v1.AssetKind.ASSET_KIND_TRADEMARK = 5
relay.v1.AssetKind.ASSET_KIND_COPYRIGHT = 6
relay.v1.AssetKind.ASSET_KIND_BANK_ACCOUNT = 7
relay.v1.AssetKind.ASSET_KIND_SECURITIES_ACCOUNT = 8
relay.v1.PartyKind.PARTY_KIND_UNSPECIFIED = 0
relay.v1.PartyKind.PARTY_KIND_PERSON = 1
relay.v1.PartyKind.PARTY_KIND_ORG = 2
relay.v1.IdType.ID_TYPE_UNSPECIFIED = 0
relay.v1.IdType.ID_TYPE_RESIDENT_ID = 1
relay.v1.IdType.ID_TYPE_USCC = 2
relay.v1.IdType.ID_TYPE_PASSPORT = 3
relay.v1.IdType.ID_TYPE_HK_MACAO_PERMIT = 4
relay.v1.IdType.ID_TYPE_TAIWAN_PERMIT = 5
relay.v1.IdType.ID_TYPE_FOREIGN_PERMANENT_RESIDENT = 6
relay.v1.CasePurpose.CASE_PURPOSE_UNSPECIFIED = 0
relay.v1.CasePurpose.CASE_PURPOSE_INVESTIGATION = 1
relay.v1.CasePurpose.CASE_PURPOSE_PRESERVATION = 2
relay.v1.CasePurpose.CASE_PURPOSE_ENFORCEMENT = 3
relay.v1.CasePurpose.CASE_PURPOSE_TRIAL_EVIDENCE = 4
relay.v1.Domain.DOMAIN_UNSPECIFIED = 0
relay.v1.Domain.DOMAIN_REAL_ESTATE = 1
relay.v1.Domain.DOMAIN_IP = 2
relay.v1.Domain.DOMAIN_CREDIT = 3
relay.v1.Domain.DOMAIN_BANK = 4
relay.v1.Domain.DOMAIN_JUDICIAL = 5
relay.v1.CoOwnership.CO_OWNERSHIP_UNSPECIFIED = 0
relay.v1.CoOwnership.CO_OWNERSHIP_SOLE = 1
relay.v1.CoOwnership.CO_OWNERSHIP_JOINT = 2
relay.v1.CoOwnership.CO_OWNERSHIP_BY_SHARES = 3
relay.v1.RegistrationStatus.REGISTRATION_STATUS_UNSPECIFIED = 0
relay.v1.RegistrationStatus.REGISTRATION_STATUS_REGISTERED = 1
relay.v1.RegistrationStatus.REGISTRATION_STATUS_CANCELLED = 2
relay.v1.RegistrationStatus.REGISTRATION_STATUS_EXPIRED = 3
relay.v1.RegistrationStatus.REGISTRATION_STATUS_INVALIDATED = 4
relay.v1.EncumbranceKind.ENCUMBRANCE_KIND_UNSPECIFIED = 0
relay.v1.EncumbranceKind.ENCUMBRANCE_KIND_MORTGAGE = 1
relay.v1.EncumbranceKind.ENCUMBRANCE_KIND_SEIZURE = 2
relay.v1.EncumbranceKind.ENCUMBRANCE_KIND_FREEZE = 3
relay.v1.EncumbranceKind.ENCUMBRANCE_KIND_LIEN = 4
relay.v1.EncumbranceKind.ENCUMBRANCE_KIND_PLEDGE = 5
relay.v1.EncumbranceKind.ENCUMBRANCE_KIND_PRE_SEIZURE = 6
relay.v1.EncumbranceKind.ENCUMBRANCE_KIND_WAITING_SEIZURE = 7
relay.v1.AccountStatus.ACCOUNT_STATUS_UNSPECIFIED = 0
relay.v1.AccountStatus.ACCOUNT_STATUS_OPEN = 1
relay.v1.AccountStatus.ACCOUNT_STATUS_DORMANT = 2
relay.v1.AccountStatus.ACCOUNT_STATUS_CLOSED = 3
relay.v1.HistoryEventKind.HISTORY_EVENT_KIND_UNSPECIFIED = 0
relay.v1.HistoryEventKind.HISTORY_EVENT_KIND_REGISTRATION = 1
relay.v1.HistoryEventKind.HISTORY_EVENT_KIND_TRANSFER = 2
relay.v1.HistoryEventKind.HISTORY_EVENT_KIND_ASSIGNMENT = 3
relay.v1.HistoryEventKind.HISTORY_EVENT_KIND_LICENCE = 4
relay.v1.HistoryEventKind.HISTORY_EVENT_KIND_CHANGE = 5
relay.v1.HistoryEventKind.HISTORY_EVENT_KIND_CANCELLATION = 6
relay.v1.LicenceType.LICENCE_TYPE_UNSPECIFIED = 0
relay.v1.LicenceType.LICENCE_TYPE_EXCLUSIVE = 1
relay.v1.LicenceType.LICENCE_TYPE_SOLE = 2
relay.v1.LicenceType.LICENCE_TYPE_ORDINARY = 3
relay.v1.HashAlgorithm.HASH_ALGORITHM_UNSPECIFIED = 0
relay.v1.HashAlgorithm.HASH_ALGORITHM_SHA256 = 1
relay.v1.HashAlgorithm.HASH_ALGORITHM_SM3 = 2
relay.v1.HashAlgorithm.HASH_ALGORITHM_KECCAK256 = 3
relay.v1.SignatureAlgorithm.SIGNATURE_ALGORITHM_UNSPECIFIED = 0
relay.v1.SignatureAlgorithm.SIGNATURE_ALGORITHM_ED25519 = 1
relay.v1.SignatureAlgorithm.SIGNATURE_ALGORITHM_SM2 = 2
relay.v1.SignatureAlgorithm.SIGNATURE_ALGORITHM_ECDSA_P256 = 3
relay.v1.SignatureAlgorithm.SIGNATURE_ALGORITHM_SECP256K1 = 4
relay.v1.ClientType.CLIENT_TYPE_UNSPECIFIED = 0
relay.v1.ClientType.CLIENT_TYPE_TENDERMINT = 1
relay.v1.ClientType.CLIENT_TYPE_TLOG = 2
relay.v1.ProofSpec.PROOF_SPEC_UNSPECIFIED = 0
relay.v1.ProofSpec.PROOF_SPEC_ICS23_IAVL = 1
relay.v1.ProofSpec.PROOF_SPEC_ICS23_TENDERMINT = 2
relay.v1.ProofSpec.PROOF_SPEC_ICS23_SMT = 3
relay.v1.ProofSpec.PROOF_SPEC_ICS23_SMT_SM3 = 4
relay.v1.ProofSpec.PROOF_SPEC_RFC6962_SHA256 = 5
relay.v1.ProofSpec.PROOF_SPEC_RFC6962_SM3 = 6
relay.v1.ProofSpec.PROOF_SPEC_MPT_KECCAK256 = 7
relay.v1.ProofFormat.PROOF_FORMAT_UNSPECIFIED = 0
relay.v1.ProofFormat.PROOF_FORMAT_ICS23 = 1
relay.v1.ProofFormat.PROOF_FORMAT_RFC6962_INCLUSION = 2
relay.v1.ProofFormat.PROOF_FORMAT_MPT = 3
relay.v1.HeaderFormat.HEADER_FORMAT_UNSPECIFIED = 0
relay.v1.HeaderFormat.HEADER_FORMAT_COMETBFT_LIGHT_BLOCK = 1
relay.v1.HeaderFormat.HEADER_FORMAT_C2SP_CHECKPOINT = 2
relay.v1.Assurance.ASSURANCE_UNSPECIFIED = 0
relay.v1.Assurance.ASSURANCE_FULL = 1
relay.v1.Assurance.ASSURANCE_WITNESS_QUORUM_UNMET = 2
relay.v1.Outcome.OUTCOME_UNSPECIFIED = 0
relay.v1.Outcome.OUTCOME_FOUND = 1
relay.v1.Outcome.OUTCOME_NONE_PROVEN = 2
relay.v1.Outcome.OUTCOME_UNPROVEN = 3
relay.v1.Outcome.OUTCOME_FAILED = 4
relay.v1.ChainStatus.CHAIN_STATUS_UNSPECIFIED = 0
relay.v1.ChainStatus.CHAIN_STATUS_PENDING = 1
relay.v1.ChainStatus.CHAIN_STATUS_ACTIVE = 2
relay.v1.ChainStatus.CHAIN_STATUS_FROZEN = 3
relay.v1.ChainStatus.CHAIN_STATUS_EXPIRED = 4
relay.v1.ErrorReason.ERROR_REASON_UNSPECIFIED = 0
relay.v1.ErrorReason.INVALID_ARGUMENT = 1
relay.v1.ErrorReason.CASE_REQUIRED = 2
relay.v1.ErrorReason.CASE_INVALID = 3
relay.v1.ErrorReason.UNAUTHENTICATED = 4
relay.v1.ErrorReason.PERMISSION_DENIED = 5
relay.v1.ErrorReason.RATE_LIMITED = 6
relay.v1.ErrorReason.NOT_FOUND = 7
relay.v1.ErrorReason.ALREADY_EXISTS = 8
relay.v1.ErrorReason.HEIGHT_OUT_OF_RANGE = 9
relay.v1.ErrorReason.UNSUPPORTED = 10
relay.v1.ErrorReason.CHAIN_PENDING = 11
relay.v1.ErrorReason.CHAIN_FROZEN = 12
relay.v1.ErrorReason.CHAIN_EXPIRED = 13
relay.v1.ErrorReason.MISBEHAVIOUR_DETECTED = 14
relay.v1.ErrorReason.ADAPTER_UNAVAILABLE = 15
relay.v1.ErrorReason.STREAM_TRUNCATED = 16
relay.v1.ErrorReason.STALE_HEIGHT = 17
relay.v1.ErrorReason.HEADER_UNVERIFIED = 18
relay.v1.ErrorReason.KEY_MISMATCH = 19
relay.v1.ErrorReason.VERIFICATION_FAILED = 20
relay.v1.ErrorReason.MALFORMED_INPUT = 21
relay.v1.ErrorReason.LIMIT_EXCEEDED = 22
relay.v1.ErrorReason.PROOF_SPEC_MISMATCH = 23
relay.v1.ErrorReason.PROOF_INVALID = 24
relay.v1.ErrorReason.VALUE_MISMATCH = 25
relay.v1.ErrorReason.ROOT_MISMATCH = 26
relay.v1.ErrorReason.SIGNATURE_INVALID = 27
relay.v1.ErrorReason.KEY_ABSENT = 28
relay.v1.ErrorReason.KEY_PRESENT = 29
relay.v1.ErrorReason.RECORD_INVALID = 30
relay.v1.ErrorReason.INTERNAL = 31
relay.v1.ErrorReason.SHUTTING_DOWN = 32
relay.v1.ProposalDecision.PROPOSAL_DECISION_UNSPECIFIED = 0
relay.v1.ProposalDecision.PROPOSAL_DECISION_APPROVE = 1
relay.v1.ProposalDecision.PROPOSAL_DECISION_REJECT = 2
relay.adapter.v1.Capability.CAPABILITY_UNSPECIFIED = 0
relay.adapter.v1.Capability.CAPABILITY_LIGHT_BLOCKS = 1
relay.adapter.v1.Capability.CAPABILITY_CHECKPOINTS = 2
relay.adapter.v1.Capability.CAPABILITY_CONSISTENCY_PROOFS = 3
relay.adapter.v1.Capability.CAPABILITY_QUERY_OWNERSHIP = 4
relay.adapter.v1.Capability.CAPABILITY_QUERY_CREDIT = 5
relay.adapter.v1.Capability.CAPABILITY_QUERY_ACCOUNT = 6
relay.adapter.v1.Capability.CAPABILITY_QUERY_HISTORY = 7
relay.adapter.v1.Capability.CAPABILITY_QUERY_RAW = 8
relay.adapter.v1.Capability.CAPABILITY_LIST_BY_PARTY = 9
relay.adapter.v1.LightBlockEncoding.LIGHT_BLOCK_ENCODING_UNSPECIFIED = 0
relay.adapter.v1.LightBlockEncoding.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO = 1
relay.adapter.v1.LightBlockEncoding.LIGHT_BLOCK_ENCODING_COMETBFT_JSON = 2
relay.v1.ProposalInfo.proposal_id 1 string
relay.v1.ProposalInfo.institution 2 string
relay.v1.ProposalInfo.kind 3 relay.v1.ProposalKind
relay.v1.ProposalInfo.chain_id 4 string
relay.v1.ProposalInfo.state 5 relay.v1.ProposalState
relay.v1.ProposalInfo.status_message 6 string
relay.v1.ProposalInfo.decisions 7 repeated relay.v1.ProposalApproval
relay.v1.ProposalInfo.approvals_required 8 uint32
relay.v1.ProposalInfo.submitted_by 9 string
relay.v1.ProposalInfo.submitted_at 10 google.protobuf.Timestamp
relay.v1.ProposalInfo.expires_at 11 google.protobuf.Timestamp
relay.v1.ProposalInfo.signed 12 relay.v1.SignedChainProposal
relay.v1.ProposeChainRequest.signed 1 relay.v1.SignedChainProposal
relay.v1.ProposeChainResponse.proposal 1 relay.v1.ProposalInfo
relay.v1.ProposeEndpointUpdateRequest.signed 1 relay.v1.SignedChainProposal
relay.v1.ProposeEndpointUpdateResponse.proposal 1 relay.v1.ProposalInfo
relay.v1.ProposeRecoveryRequest.signed 1 relay.v1.SignedChainProposal
relay.v1.ProposeRecoveryResponse.proposal 1 relay.v1.ProposalInfo
relay.v1.ApproveProposalRequest.proposal_id 1 string
relay.v1.ApproveProposalRequest.comment 2 string
relay.v1.ApproveProposalResponse.proposal 1 relay.v1.ProposalInfo
relay.v1.ApproveProposalResponse.chain 2 relay.v1.ChainInfo
relay.v1.RejectProposalRequest.proposal_id 1 string
relay.v1.RejectProposalRequest.comment 2 string
relay.v1.RejectProposalResponse.proposal 1 relay.v1.ProposalInfo
relay.v1.ListProposalsRequest.state 1 relay.v1.ProposalState
relay.v1.ListProposalsResponse.proposals 1 repeated relay.v1.ProposalInfo
relay.v1.ErrorReason.ROLE_FORBIDDEN = 33
relay.v1.ErrorReason.GRANT_MISSING = 34
relay.v1.ErrorReason.NOT_OWNER = 35
relay.v1.ErrorReason.PROPOSAL_SIGNATURE_INVALID = 36
relay.v1.ErrorReason.PROPOSAL_REPLAYED = 37
relay.v1.ErrorReason.PROPOSAL_EXPIRED = 38
relay.v1.ErrorReason.PROPOSAL_CLOSED = 39
relay.v1.ProposalState.PROPOSAL_STATE_UNSPECIFIED = 0
relay.v1.ProposalState.PROPOSAL_STATE_PENDING = 1
relay.v1.ProposalState.PROPOSAL_STATE_APPLIED = 2
relay.v1.ProposalState.PROPOSAL_STATE_REJECTED = 3
relay.v1.ProposalState.PROPOSAL_STATE_FAILED = 4
relay.v1.ProposalState.PROPOSAL_STATE_EXPIRED = 5
relay.v1.ProposalKind.PROPOSAL_KIND_UNSPECIFIED = 0
relay.v1.ProposalKind.PROPOSAL_KIND_REGISTER = 1
relay.v1.ProposalKind.PROPOSAL_KIND_UPDATE_ENDPOINT = 2
relay.v1.ProposalKind.PROPOSAL_KIND_RECOVER = 3
"""


def _field_signature(m: DP, f: FieldDP) -> str:
    kind = f.type_name.lstrip(".") if f.type_name else FieldDP.Type.Name(f.type)[5:].lower()
    if f.label == FieldDP.LABEL_REPEATED:
        kind = "repeated " + kind
    elif f.proto3_optional:
        kind = "optional " + kind
    if f.HasField("oneof_index") and not f.proto3_optional:
        kind += " oneof " + m.oneof_decl[f.oneof_index].name
    return kind


def _lock_lines(files: dict[str, FDP]) -> list[str]:
    messages, enums = _index(files)
    lines = []
    for name, m in messages.items():
        lines += [f"{name}.{f.name} {f.number} {_field_signature(m, f)}" for f in m.field]
    for name, e in enums.items():
        lines += [f"{name}.{v.name} = {v.number}" for v in e.value]
    return lines


def _lock_violations(lock: str, files: dict[str, FDP]) -> list[str]:
    messages, enums = _index(files)
    problems = []
    for line in filter(None, (raw.strip() for raw in lock.splitlines())):
        element, rest = line.split(" ", 1)
        parent, name = element.rsplit(".", 1)
        if rest.startswith("= "):
            enum = enums.get(parent)
            if enum is None:
                problems.append(f"enum {parent} was removed")
                continue
            number = int(rest[2:])
            current = {v.name: v.number for v in enum.value}
            reserved_numbers = {n for r in enum.reserved_range for n in range(r.start, r.end + 1)}
            if name in current:
                if current[name] != number:
                    problems.append(f"{element} renumbered {number} -> {current[name]}")
            elif number not in reserved_numbers or name not in enum.reserved_name:
                problems.append(f"{element} removed without reserving {number} and its name")
            continue
        message = messages.get(parent)
        if message is None:
            problems.append(f"message {parent} was removed")
            continue
        number_text, signature = rest.split(" ", 1)
        number = int(number_text)
        fields = {f.name: f for f in message.field}
        if name in fields:
            field = fields[name]
            if field.number != number:
                problems.append(f"{element} renumbered {number} -> {field.number}")
            if _field_signature(message, field) != signature:
                problems.append(
                    f"{element} changed type {signature!r} -> {_field_signature(message, field)!r}"
                )
        else:
            numbers, names = _reserved(message)
            if number not in numbers or name not in names:
                problems.append(f"{element} removed without reserving {number} and its name")
    return problems


def test_published_numbers_and_types_never_change(sources: dict[str, FDP]) -> None:
    assert len(LOCK.split("\n")) > 400, "the compatibility lock is missing"
    problems = _lock_violations(LOCK, sources)
    assert not problems, "breaking changes:\n  " + "\n  ".join(problems)


def test_every_current_element_is_locked(sources: dict[str, FDP]) -> None:
    locked = {line.strip() for line in LOCK.splitlines()}
    new = [line for line in _lock_lines(sources) if line not in locked]
    assert not new, "add to LOCK (after review):\n" + "\n".join(new)


def test_lock_check_catches_breaking_changes(sources: dict[str, FDP]) -> None:
    def mutated(change: str) -> dict[str, FDP]:
        files = {}
        for name, f in sources.items():
            copy = FDP()
            copy.CopyFrom(f)
            files[name] = copy
        messages, enums = _index(files)
        asset = messages["relay.v1.AssetRef"]
        if change == "renumber":
            asset.field[2].number = 9
        elif change == "retype":
            asset.field[2].type = FieldDP.TYPE_BYTES
        elif change == "remove":
            del asset.field[2]
        elif change == "remove and reserve":
            del asset.field[2]
            asset.reserved_range.add(start=3, end=4)
            asset.reserved_name.append("id")
        elif change == "renumber enum value":
            enums["relay.v1.IdType"].value[1].number = 42
        return files

    assert _lock_violations(LOCK, sources) == []
    assert _lock_violations(LOCK, mutated("renumber")) == ["relay.v1.AssetRef.id renumbered 3 -> 9"]
    assert _lock_violations(LOCK, mutated("retype")) == [
        "relay.v1.AssetRef.id changed type 'string' -> 'bytes'"
    ]
    assert _lock_violations(LOCK, mutated("remove")) == [
        "relay.v1.AssetRef.id removed without reserving 3 and its name"
    ]
    assert _lock_violations(LOCK, mutated("remove and reserve")) == []
    assert _lock_violations(LOCK, mutated("renumber enum value")) == [
        "relay.v1.IdType.ID_TYPE_RESIDENT_ID renumbered 1 -> 42"
    ]


# --- round trips ----------------------------------------------------------------------------

T0 = Timestamp(seconds=1_767_225_600)  # 2026-01-01T00:00:00Z
T1 = Timestamp(seconds=1_767_312_000, nanos=123_000_000)


def _asset() -> types_pb2.AssetRef:
    return types_pb2.AssetRef(
        kind=types_pb2.ASSET_KIND_REAL_ESTATE,
        registry="110105",
        id="110105003002GB00017F00010001",
    )


def _case() -> types_pb2.CaseRef:
    return types_pb2.CaseRef(
        court="京0105",
        case_number="(2026)京0105执1234号",
        purpose=types_pb2.CASE_PURPOSE_ENFORCEMENT,
        officer="J0105-0042",
    )


def _party(name: str, key: bytes) -> types_pb2.RecordParty:
    return types_pb2.RecordParty(party_key=key, kind=types_pb2.PARTY_KIND_PERSON, name=name)


def _ownership(owner_name: str = "张三", amount: int = 1_500_000_00) -> types_pb2.OwnershipRecord:
    return types_pb2.OwnershipRecord(
        asset=_asset(),
        description="北京市朝阳区某路1号院2号楼3单元401",
        owners=[
            types_pb2.Owner(
                party=_party(owner_name, b"\x01" * 32),
                share=types_pb2.Share(basis_points=5000),
                co_ownership=types_pb2.CO_OWNERSHIP_BY_SHARES,
            ),
            types_pb2.Owner(
                party=_party("李四", b"\x02" * 32),
                share=types_pb2.Share(fraction="1/2"),
                co_ownership=types_pb2.CO_OWNERSHIP_BY_SHARES,
            ),
        ],
        encumbrances=[
            types_pb2.Encumbrance(
                kind=types_pb2.ENCUMBRANCE_KIND_MORTGAGE,
                holder=types_pb2.RecordParty(kind=types_pb2.PARTY_KIND_ORG, name="某银行"),
                amount=types_pb2.Money(minor_units=amount, currency="CNY"),
                since=T0,
                status=types_pb2.REGISTRATION_STATUS_REGISTERED,
                registered_at=T0,
                rank=1,
                reference="京(2026)朝阳区不动产证明第0001234号",
            ),
            types_pb2.Encumbrance(
                kind=types_pb2.ENCUMBRANCE_KIND_SEIZURE,
                court="京0105",
                case_number="(2026)京0105执1234号",
                since=T1,
                until=Timestamp(seconds=T1.seconds + 3 * 365 * 86400),
                status=types_pb2.REGISTRATION_STATUS_REGISTERED,
                rank=1,
            ),
        ],
        status=types_pb2.REGISTRATION_STATUS_REGISTERED,
        registered_at=T0,
        certificate_number="京(2026)朝阳区不动产权第0005678号",
    )


def _evidence(record: types_pb2.OwnershipRecord | None = None) -> types_pb2.Evidence:
    record = record if record is not None else _ownership()
    return types_pb2.Evidence(
        version=1,
        chain_id="bdc-beijing-chaoyang",
        client_type=types_pb2.CLIENT_TYPE_TENDERMINT,
        height=1042,
        header_format=types_pb2.HEADER_FORMAT_COMETBFT_LIGHT_BLOCK,
        header=b"\x0a\x02light-block-1042",
        header_time=T1,
        trust_path=[
            types_pb2.TrustStep(
                height=512,
                format=types_pb2.HEADER_FORMAT_COMETBFT_LIGHT_BLOCK,
                header=b"\x0a\x02light-block-512",
                verified_at=T0,
            )
        ],
        header_verified_at=T1,
        state_root=bytes(range(32)),
        key=types_pb2.RecordKey(ownership=record.asset).SerializeToString(deterministic=True),
        value=record.SerializeToString(deterministic=True),
        proof_format=types_pb2.PROOF_FORMAT_ICS23,
        proof=b"\x0a\x20" + b"\x33" * 32,
        proof_spec=types_pb2.PROOF_SPEC_ICS23_SMT,
        ownership=record,
        assurance=types_pb2.ASSURANCE_FULL,
        verified_at=T1,
    )


def _descriptor() -> types_pb2.ChainDescriptor:
    return types_pb2.ChainDescriptor(
        chain_id="bdc-beijing-chaoyang",
        institution="11110105MB0000000X",
        domain=types_pb2.DOMAIN_REAL_ESTATE,
        display_name_zh="北京市朝阳区不动产登记链",
        display_name_en="Beijing Chaoyang real-estate registry chain",
        tendermint=types_pb2.TendermintClientParams(
            anchor=types_pb2.TendermintAnchor(
                light_block=b"\x0a\x01anchor", height=1, header_hash=b"\xaa" * 32
            ),
            trust_level=types_pb2.Fraction(numerator=1, denominator=3),
            trusting_period=Duration(seconds=14 * 86400),
            unbonding_period=Duration(seconds=21 * 86400),
            max_clock_drift=Duration(seconds=10),
            hash_algorithm=types_pb2.HASH_ALGORITHM_SHA256,
            signature_algorithm=types_pb2.SIGNATURE_ALGORITHM_ED25519,
        ),
        proof_spec=types_pb2.PROOF_SPEC_ICS23_SMT,
        adapter=types_pb2.AdapterEndpoint(
            grpc_address="adapter.bdc.example:7443",
            tls_server_name="adapter.bdc.example",
            ca_certificates_pem="-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
            spki_sha256_pins=[b"\x55" * 32],
        ),
        record_schema_version=1,
        party_key=types_pb2.PartyKeySpec(
            hash_algorithm=types_pb2.HASH_ALGORITHM_SM3, salt=b"\x07" * 16
        ),
        registry_codes=["110105"],
        asset_kinds=[types_pb2.ASSET_KIND_REAL_ESTATE],
    )


def _samples() -> list[Message]:
    evidence = _evidence()
    tlog = _descriptor()
    tlog.tlog.CopyFrom(
        types_pb2.TlogClientParams(
            origin="ip-registry.example.cn/log",
            log_verifier_key="ip-registry.example.cn/log+01234567+AbCdEf==",
            hash_algorithm=types_pb2.HASH_ALGORITHM_SHA256,
            witness_verifier_keys=["w1+89abcdef+Zm9v", "w2+fedcba98+YmFy"],
            witness_threshold=2,
            anchor=types_pb2.TlogAnchor(checkpoint=b"ip-registry.example.cn/log\n7\nAAAA\n"),
        )
    )
    failed = query_pb2.HoldingsAnswer(
        chain_id="bank-icbc-bj",
        domain=types_pb2.DOMAIN_BANK,
        outcome=types_pb2.OUTCOME_FAILED,
        failure=types_pb2.Failure(
            reason=types_pb2.CHAIN_FROZEN,
            message="chain bank-icbc-bj is frozen since height 99: two headers at one height",
            metadata={"chain_id": "bank-icbc-bj", "height": "99"},
        ),
    )
    return [
        evidence,
        query_pb2.GetOwnershipRequest(asset=_asset(), case_ref=_case(), at_height=0),
        query_pb2.OwnershipAnswer(
            chain_id=evidence.chain_id,
            outcome=types_pb2.OUTCOME_FOUND,
            record=evidence.ownership,
            evidence=evidence,
        ),
        query_pb2.HoldingsAnswer(
            chain_id=evidence.chain_id,
            domain=types_pb2.DOMAIN_REAL_ESTATE,
            outcome=types_pb2.OUTCOME_FOUND,
            holdings=[query_pb2.Holding(asset=_asset(), ownership=_ownership(), evidence=evidence)],
            index_evidence=evidence,
        ),
        failed,
        query_pb2.HistoryAnswer(
            chain_id="ip-cnipa",
            outcome=types_pb2.OUTCOME_FOUND,
            entries=[
                types_pb2.HistoryEntry(
                    kind=types_pb2.HISTORY_EVENT_KIND_LICENCE,
                    from_parties=[_party("某公司", b"\x03" * 32)],
                    to_parties=[_party("另一公司", b"\x04" * 32)],
                    at=T0,
                    reference="2026990000123",
                    licence_type=types_pb2.LICENCE_TYPE_EXCLUSIVE,
                    until=T1,
                )
            ],
        ),
        query_pb2.StateAnswer(chain_id="x", outcome=types_pb2.OUTCOME_NONE_PROVEN),
        admin_pb2.RegisterChainRequest(descriptor=_descriptor()),
        admin_pb2.RegisterChainRequest(descriptor=tlog),
        admin_pb2.RecoverChainRequest(
            chain_id="bdc-beijing-chaoyang",
            new_anchor=types_pb2.TrustAnchor(
                tendermint=types_pb2.TendermintAnchor(light_block=b"\x0a", height=7)
            ),
            reason="fork at height 99; new anchor from the registry's letter of 2026-02-01",
        ),
        admin_pb2.SignedChainProposal(
            proposal=admin_pb2.ChainProposal(
                institution="11110105MB0000000X",
                register=_descriptor(),
                nonce=b"\x09" * 16,
                created_at=T0,
                expires_at=T1,
                audience="relay-bj",
            ).SerializeToString(deterministic=True),
            key_id="bdc-2026",
            algorithm=types_pb2.SIGNATURE_ALGORITHM_SM2,
            signature=b"\x30\x44" + b"\x01" * 68,
        ),
        adapter_pb2.QueryRequest(
            query=adapter_pb2.DomainQuery(credit_party_key=b"\x05" * 32), height=1042
        ),
        adapter_pb2.QueryResult(
            key=evidence.key,
            value=evidence.value,
            proof=evidence.proof,
            proof_format=types_pb2.PROOF_FORMAT_ICS23,
            height=1042,
        ),
        adapter_pb2.LightBlock(
            height=5,
            light_block=b"\x0a\x00",
            encoding=adapter_pb2.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO,
        ),
    ]


@pytest.mark.parametrize("sample", _samples(), ids=lambda m: m.DESCRIPTOR.name)
def test_representative_messages_round_trip(sample: Message) -> None:
    wire = sample.SerializeToString(deterministic=True)
    decoded = type(sample).FromString(wire)
    assert decoded == sample
    assert decoded.SerializeToString(deterministic=True) == wire
    from_json = json_format.Parse(json_format.MessageToJson(sample), type(sample)())
    assert from_json == sample


M = TypeVar("M", bound=Message)


def _decoded(message: M) -> tuple[M, M]:
    """The message after a binary and after a JSON round trip."""
    from_wire = type(message).FromString(message.SerializeToString())
    from_json = json_format.Parse(json_format.MessageToJson(message), type(message)())
    return from_wire, from_json


def test_presence_of_optional_fields_survives_encoding() -> None:
    asked_at_zero = query_pb2.GetOwnershipRequest(asset=_asset(), case_ref=_case(), at_height=0)
    newest = query_pb2.GetOwnershipRequest(asset=_asset(), case_ref=_case())
    absent = _evidence()
    absent.ClearField("value")
    absent.ClearField("ownership")
    empty = _evidence()
    empty.value = b""
    for request, present in ((asked_at_zero, True), (newest, False)):
        for decoded_request in _decoded(request):
            assert decoded_request.HasField("at_height") is present
    for evidence, present in ((absent, False), (empty, True)):
        for decoded_evidence in _decoded(evidence):
            assert decoded_evidence.HasField("value") is present


# The attestation input documented on relay.v1.Evidence.
ATTESTATION_PREFIX = b"relay.v1.Evidence\n"


def _attestation_input(evidence: types_pb2.Evidence) -> bytes:
    unsigned = types_pb2.Evidence()
    unsigned.CopyFrom(evidence)
    unsigned.ClearField("relay_attestation")
    return ATTESTATION_PREFIX + unsigned.SerializeToString(deterministic=True)


def test_attestation_verifies_after_a_json_evidence_file(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    evidence = _evidence()
    evidence.relay_attestation.CopyFrom(
        types_pb2.RelayAttestation(
            key_id="relay-test",
            algorithm=types_pb2.SIGNATURE_ALGORITHM_ED25519,
            signature=key.sign(_attestation_input(evidence)),
        )
    )
    path = tmp_path / "evidence.json"
    path.write_text(json_format.MessageToJson(evidence), encoding="utf-8")
    loaded = json_format.Parse(path.read_text(encoding="utf-8"), types_pb2.Evidence())
    key.public_key().verify(loaded.relay_attestation.signature, _attestation_input(loaded))
    loaded.ownership.owners[0].share.basis_points = 10000
    with pytest.raises(InvalidSignature):
        key.public_key().verify(loaded.relay_attestation.signature, _attestation_input(loaded))


_text = st.text(st.characters(codec="utf-8"), max_size=40)  # no lone surrogates


@settings(max_examples=150, deadline=None)
@given(name=_text, amount=st.integers(-(2**63), 2**63 - 1), nanos=st.integers(0, 999_999_999))
def test_attestation_input_is_stable_through_json(name: str, amount: int, nanos: int) -> None:
    evidence = _evidence(_ownership(owner_name=name, amount=amount))
    evidence.verified_at.nanos = nanos
    reloaded = json_format.Parse(json_format.MessageToJson(evidence), types_pb2.Evidence())
    assert _attestation_input(reloaded) == _attestation_input(evidence)


_assets = st.builds(
    types_pb2.AssetRef,
    kind=st.sampled_from(list(types_pb2.AssetKind.values())),
    registry=_text,
    id=_text,
)


@settings(max_examples=200, deadline=None)
@given(a=_assets, b=_assets)
def test_record_keys_are_injective_and_canonical(
    a: types_pb2.AssetRef, b: types_pb2.AssetRef
) -> None:
    def key(asset: types_pb2.AssetRef) -> bytes:
        return types_pb2.RecordKey(ownership=asset).SerializeToString(deterministic=True)

    # Built field by field in the opposite order, the key is the same bytes.
    rebuilt = types_pb2.AssetRef()
    rebuilt.id = a.id
    rebuilt.registry = a.registry
    rebuilt.kind = a.kind
    assert key(rebuilt) == key(a)
    assert (key(a) == key(b)) is (a == b)
    other_record = types_pb2.RecordKey(history=a).SerializeToString(deterministic=True)
    assert other_record != key(a), "ownership and history keys of one asset must differ"


# --- the stubs work over a real socket, with their streaming shapes --------------------------


class _Query(query_pb2_grpc.QueryServiceServicer):
    def GetChain(self, request, context):  # type: ignore[no-untyped-def]
        return query_pb2.GetChainResponse(chain=types_pb2.ChainInfo(chain_id=request.chain_id))

    def ListHoldings(self, request, context):  # type: ignore[no-untyped-def]
        assert request.case_ref.case_number == _case().case_number
        yield query_pb2.HoldingsAnswer(chain_id="a", outcome=types_pb2.OUTCOME_NONE_PROVEN)
        yield query_pb2.HoldingsAnswer(chain_id="b", outcome=types_pb2.OUTCOME_FAILED)


class _Adapter(adapter_pb2_grpc.AdapterServiceServicer):
    def GetLightBlocks(self, request, context):  # type: ignore[no-untyped-def]
        for height in range(request.from_height, request.to_height + 1):
            yield adapter_pb2.LightBlock(height=height, encoding=request.encoding)


def test_stubs_serve_unary_and_streaming_calls() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    query_pb2_grpc.add_QueryServiceServicer_to_server(_Query(), server)
    adapter_pb2_grpc.add_AdapterServiceServicer_to_server(_Adapter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            query = query_pb2_grpc.QueryServiceStub(channel)
            chain = query.GetChain(query_pb2.GetChainRequest(chain_id="c1"), timeout=10)
            assert chain.chain.chain_id == "c1"
            answers = list(
                query.ListHoldings(
                    query_pb2.ListHoldingsRequest(case_ref=_case()),
                    timeout=10,
                )
            )
            assert [(a.chain_id, a.outcome) for a in answers] == [
                ("a", types_pb2.OUTCOME_NONE_PROVEN),
                ("b", types_pb2.OUTCOME_FAILED),
            ]
            adapter = adapter_pb2_grpc.AdapterServiceStub(channel)
            blocks = adapter.GetLightBlocks(
                adapter_pb2.GetLightBlocksRequest(
                    from_height=3,
                    to_height=5,
                    encoding=adapter_pb2.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO,
                ),
                timeout=10,
            )
            assert [b.height for b in blocks] == [3, 4, 5]
            with pytest.raises(grpc.RpcError) as unimplemented:
                adapter.Describe(adapter_pb2.DescribeRequest(), timeout=10)
            assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)
