"""Offline verification of evidence files: the bytes of one file and an anchors file in, an
:class:`~relay.verify.evidence.EvidenceReport` out. What ``relay verify`` and the public
verification page run, and the API other programs call (``relay.verify.verify_evidence_bytes``).

An evidence file is the proto3 JSON form of a ``relay.v1.Evidence`` (as ``relay query
--evidence-out`` writes it) or its binary encoding. Either must be the *canonical* encoding
of the message it carries, so that the file stands for exactly one Evidence and changing any
byte of it changes the evidence or makes it unreadable:

- JSON: UTF-8 without a byte-order mark, no duplicate keys, and every value written exactly
  as proto3 JSON writes it (lowerCamelCase field names, enum names, canonical base64,
  64-bit integers as strings, RFC 3339 times); insignificant whitespace is free.
- binary: the deterministic encoding (fields in number order, minimal varints).

A file that is neither fails the ``format`` check; the report names it (the bundle's other
checks are not run). Pure: the caller reads the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify.anchors import AnchorSet
from relay.verify.errors import LimitExceededError, MalformedInputError
from relay.verify.evidence import (
    MAX_EVIDENCE_BYTES,
    STEP_NAMES,
    Check,
    EvidenceReport,
    verify_evidence,
)
from relay.verify.structure import structure_problem

MAX_JSON_DEPTH: Final = 64


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _looks_like_json(data: bytes) -> bool:
    return data.lstrip(b" \t\r\n")[:1] == b"{"


def evidence_from_canonical_json(
    data: bytes, *, max_bytes: int = MAX_EVIDENCE_BYTES
) -> pb.Evidence:
    """Parse the canonical proto3 JSON form of an Evidence (see the module docstring).
    Raises MalformedInputError naming what is wrong, LimitExceededError."""
    if len(data) > max_bytes:
        raise LimitExceededError("evidence is too large", length=len(data), limit=max_bytes)
    if data.startswith(b"\xef\xbb\xbf"):
        raise MalformedInputError("evidence JSON starts with a byte-order mark")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedInputError("evidence JSON is not UTF-8", byte=e.start) from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError as e:
        raise MalformedInputError(f"evidence JSON has a {e}") from None
    except json.JSONDecodeError as e:
        raise MalformedInputError(
            f"not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except (RecursionError, ValueError) as e:
        raise MalformedInputError("not JSON", detail=str(e)[:200]) from None
    if not isinstance(value, dict):
        raise MalformedInputError("evidence JSON must be an object")
    if structure_problem(value, max_depth=MAX_JSON_DEPTH) is not None:
        raise LimitExceededError(
            "evidence JSON nests too deeply", length=MAX_JSON_DEPTH + 1, limit=MAX_JSON_DEPTH
        )
    message = pb.Evidence()
    try:
        json_format.ParseDict(
            value, message, ignore_unknown_fields=False, max_recursion_depth=MAX_JSON_DEPTH
        )
    except (json_format.ParseError, RecursionError, ValueError, TypeError, AttributeError) as e:
        raise MalformedInputError(
            "not the JSON form of a relay.v1.Evidence (or it has fields this checker does not "
            "know)",
            detail=str(e)[:300],
        ) from None
    # The same message written canonically must be exactly what the file holds: otherwise
    # a different file (another base64 spelling, snake_case names, numbers for enums) would
    # stand for the same evidence and edits to it would go unnoticed.
    canonical = json_format.MessageToDict(message)
    if canonical != value:
        raise MalformedInputError(
            "evidence JSON is not in canonical proto3 JSON form (as the relay writes it)",
            differs_at=_first_difference(canonical, value),
        )
    return message


def _first_difference(expected: object, got: object, path: str = "") -> str:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in sorted(set(expected) | set(got)):
            if key not in expected or key not in got or expected[key] != got[key]:
                if key in expected and key in got:
                    return _first_difference(expected[key], got[key], f"{path}.{key}")
                return f"{path}.{key}"
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return path or "(top level)"


def evidence_from_canonical_bytes(
    data: bytes, *, max_bytes: int = MAX_EVIDENCE_BYTES
) -> pb.Evidence:
    """Parse the deterministic binary encoding of an Evidence (MalformedInputError when the
    bytes are not exactly that, LimitExceededError)."""
    if len(data) > max_bytes:
        raise LimitExceededError("evidence is too large", length=len(data), limit=max_bytes)
    message = pb.Evidence()
    try:
        message.ParseFromString(data)
    except (DecodeError, RecursionError, ValueError) as e:
        raise MalformedInputError(
            "bytes are not a relay.v1.Evidence", detail=str(e)[:300]
        ) from None
    if message.SerializeToString(deterministic=True) != data:
        raise MalformedInputError(
            "evidence is not in deterministic binary form (or has fields this checker does not "
            "know)"
        )
    return message


def parse_evidence(data: bytes, *, max_bytes: int = MAX_EVIDENCE_BYTES) -> pb.Evidence:
    """An evidence file's bytes, JSON (starting with ``{``) or binary, as one Evidence."""
    if _looks_like_json(data):
        return evidence_from_canonical_json(data, max_bytes=max_bytes)
    return evidence_from_canonical_bytes(data, max_bytes=max_bytes)


@dataclass(frozen=True, slots=True)
class FileReport:
    """The report on one evidence file and, when it parsed, the Evidence it holds."""

    report: EvidenceReport
    evidence: pb.Evidence | None


def verify_evidence_bytes(
    data: bytes, *, anchors: AnchorSet, max_bytes: int = MAX_EVIDENCE_BYTES
) -> FileReport:
    """Verify the evidence file ``data`` against ``anchors``. Never raises for a bad file:
    bytes that are no canonical Evidence give a report whose ``format`` check failed (with
    the parser's reason code); the anchors are already checked by
    :func:`~relay.verify.anchors.parse_anchors`."""
    try:
        evidence = parse_evidence(data, max_bytes=max_bytes)
    except MalformedInputError as e:
        check = Check(STEP_NAMES[0], False, f"evidence file: {e.reason}: {e}", e.reason)
        empty = EvidenceReport(
            checks=(check,),
            chain_id="",
            height=0,
            assurance=pb.ASSURANCE_UNSPECIFIED,
            record_kind=None,
        )
        return FileReport(empty, None)
    report = verify_evidence(evidence, anchors=anchors.anchors, relay_keys=anchors.relay_keys)
    return FileReport(report, evidence)


def report_dict(report: EvidenceReport) -> dict[str, Any]:
    """A JSON-ready summary: ``ok``, ``first_failed_check``, and every check run."""
    failed = report.first_failure
    return {
        "ok": report.ok,
        "chain_verified": report.chain_verified,
        "first_failed_check": failed.name if failed is not None else None,
        "chain_id": report.chain_id,
        "height": report.height,
        "assurance": _enum_name(pb.Assurance, report.assurance),
        "record_kind": report.record_kind,
        "checks": [
            {"name": c.name, "passed": c.passed, "detail": c.detail, "reason": c.reason}
            for c in report.checks
        ],
    }


def _enum_name(enum: Any, value: int) -> str:
    item = enum.DESCRIPTOR.values_by_number.get(value)
    return str(item.name) if item is not None else str(value)
