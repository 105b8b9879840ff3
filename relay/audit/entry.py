"""Audit log entries (issue 7): what one leaf of the relay's audit log says, and its exact
bytes.

An entry records one query or admin call: who called (principal, role, court or institution
code, certificate fingerprint), for which court and case, which method and a digest of the
request, how the call ended (gRPC code and ErrorInfo reason) and digests of the answer and
of the evidence it carried, and when. The raw request is never stored: it names parties
(identity numbers) and the log is exported and shown to courts. Its digest is an
HMAC-SHA256 under a relay-local salt (derived from the relay's private key, never
exported), so nobody can test a guessed party identifier against the log, while the relay
itself can still show that a given request is the one recorded.

Encoding: canonical JSON (RFC 8785-like: UTF-8, object keys sorted, no insignificant
whitespace, only strings, integers, lists and objects). The RFC 6962 leaf is exactly these
bytes. :func:`decode_entry` accepts only canonical bytes, so an entry has one encoding.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from relay.verify.errors import LimitExceededError, MalformedInputError

ENTRY_VERSION = 1
MAX_ENTRY_BYTES = 16 * 1024
MAX_FIELD_CHARS = 512
MAX_DIGESTS = 256

# Fields every entry has, with their JSON types.
ENTRY_FIELDS: Mapping[str, type] = {
    "v": int,
    "time_ns": int,
    "kind": str,  # "query" or "admin"
    "method": str,  # full RPC name, e.g. /relay.v1.QueryService/GetOwnership
    "actor": str,  # role:code/name of the caller
    "role": str,
    "actor_code": str,
    "actor_fingerprint": str,
    "court": str,  # the court whose record this is ("" for non-court callers)
    "case_court": str,  # case_ref.court as sent
    "case_number": str,
    "case_purpose": int,
    "target": str,  # admin calls: chain or proposal id
    "request_digest": str,  # hex HMAC-SHA256(salt, method || 0x00 || request bytes)
    "outcome": str,  # gRPC status code name, "OK" for success
    "reason": str,  # ErrorInfo.reason of a failure, "" on success
    "result_digest": str,  # hex SHA-256 of the answer(s) sent, "" when none
    "evidence_digests": list,  # hex SHA-256 of each Evidence message sent
}


# One encoder for every entry (json.dumps would build a new one per call: this is on the
# query path).
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """The one byte encoding of ``value`` (sorted keys, no spaces, UTF-8)."""
    return _ENCODER.encode(value).encode("utf-8")


def request_digest(*, salt: bytes, method: str, request: bytes) -> str:
    """The salted digest recorded instead of a request (see the module docstring)."""
    # hmac.digest is the one-shot C implementation (hmac.new(...).hexdigest() copies state).
    return hmac.digest(salt, method.encode("utf-8") + b"\x00" + request, "sha256").hex()


def _clip(text: str) -> str:
    return text[:MAX_FIELD_CHARS]


def make_entry(
    *,
    time_ns: int,
    kind: str,
    method: str,
    actor: str,
    role: str,
    actor_code: str,
    actor_fingerprint: str,
    court: str,
    case_court: str = "",
    case_number: str = "",
    case_purpose: int = 0,
    target: str = "",
    request_digest: str,
    outcome: str,
    reason: str = "",
    result_digest: str = "",
    evidence_digests: Sequence[str] = (),
) -> bytes:
    """The canonical bytes of one entry (text fields clipped to MAX_FIELD_CHARS)."""
    return canonical_json(
        {
            "v": ENTRY_VERSION,
            "time_ns": int(time_ns),
            "kind": kind,
            "method": _clip(method),
            "actor": _clip(actor),
            "role": _clip(role),
            "actor_code": _clip(actor_code),
            "actor_fingerprint": _clip(actor_fingerprint),
            "court": _clip(court),
            "case_court": _clip(case_court),
            "case_number": _clip(case_number),
            "case_purpose": int(case_purpose),
            "target": _clip(target),
            "request_digest": request_digest,
            "outcome": _clip(outcome),
            "reason": _clip(reason),
            "result_digest": result_digest,
            "evidence_digests": list(evidence_digests)[:MAX_DIGESTS],
        }
    )


def decode_entry(data: bytes) -> dict[str, Any]:
    """Parse and check one entry. Raises LimitExceededError (too large) or
    MalformedInputError (not JSON, not canonical, a missing, extra or mistyped field)."""
    if len(data) > MAX_ENTRY_BYTES:
        raise LimitExceededError(
            "audit entry is too large", length=len(data), limit=MAX_ENTRY_BYTES
        )
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise MalformedInputError("audit entry is not UTF-8", offset=e.start) from None
    except (ValueError, RecursionError) as e:
        raise MalformedInputError("audit entry is not JSON", detail=str(e)[:200]) from None
    if not isinstance(value, dict):
        raise MalformedInputError("audit entry is not a JSON object")
    if set(value) != set(ENTRY_FIELDS):
        raise MalformedInputError(
            "audit entry has the wrong fields",
            missing=sorted(set(ENTRY_FIELDS) - set(value)),
            extra=sorted(set(value) - set(ENTRY_FIELDS))[:10],
        )
    for name, kind in ENTRY_FIELDS.items():
        field = value[name]
        if not isinstance(field, kind) or isinstance(field, bool):
            raise MalformedInputError("audit entry field has the wrong type", field=name)
    if value["v"] != ENTRY_VERSION:
        raise MalformedInputError("unknown audit entry version", version=value["v"])
    if not all(isinstance(d, str) for d in value["evidence_digests"]):
        raise MalformedInputError("audit entry evidence_digests must be strings")
    if canonical_json(value) != data:
        raise MalformedInputError("audit entry is not in canonical JSON form")
    return value
