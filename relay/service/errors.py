"""Error mapping of the court-facing API: a RelayError becomes a ``google.rpc.Status`` whose
code comes from the ``grpc_status`` option of its ErrorReason value (proto/relay/v1/types.proto,
so the mapping has one source) and whose details carry a ``google.rpc.ErrorInfo`` (reason,
domain ``relay.judicial``, metadata chain_id/height/field/...). Anything unexpected becomes
INTERNAL with an incident id that is logged with the traceback; the client never sees one.

Also the client side: :func:`describe_rpc_error` turns a failed call back into its reason,
metadata and message (CLI, tests).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from relay.engine.errors import RelayError
from relay.pb.relay.v1 import types_pb2

log = logging.getLogger("relay.service")

ERROR_DOMAIN: str = (
    types_pb2.ErrorReason.DESCRIPTOR.GetOptions().Extensions[types_pb2.error_domain]
    or "relay.judicial"
)
MAX_MESSAGE_CHARS = 2000
MAX_METADATA_VALUE_CHARS = 512


class ServiceError(Exception):
    """An error the service layer itself raises (request checks, shutting down, and the
    guards of issue 5), with the same shape as the engine's RelayError."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        chain_id: str | None = None,
        height: int | None = None,
        field: str | None = None,
        retry_after_s: float | None = None,
        **metadata: str,
    ) -> None:
        self.reason = reason
        self.message = message
        self.chain_id = chain_id
        self.height = height
        self.field = field
        self.retry_after_s = retry_after_s
        self.metadata = metadata
        super().__init__(message)


@cache
def grpc_code_for_reason(reason: str) -> grpc.StatusCode | None:
    """The status code an ErrorReason is sent with, from its ``grpc_status`` option; None
    for a name that is not an ErrorReason value (or has no option)."""
    try:
        value = types_pb2.ErrorReason.DESCRIPTOR.values_by_name[reason]
    except KeyError:
        return None
    name = value.GetOptions().Extensions[types_pb2.grpc_status]
    if not name:
        return None
    try:
        return grpc.StatusCode[name]
    except KeyError:
        return None


def _numeric(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class ErrorFacts:
    """What an error says, independent of which class carried it."""

    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None


def facts_of(error: BaseException) -> ErrorFacts | None:
    """The reason, message and metadata of a RelayError or ServiceError; None for any
    other exception."""
    if not isinstance(error, RelayError | ServiceError):
        return None
    meta: dict[str, str] = {str(k): str(v) for k, v in error.metadata.items() if v is not None}
    for key in ("chain_id", "height", "field"):
        value = getattr(error, key, None)
        if value is not None and value != "":
            meta[key] = str(value)
    return ErrorFacts(error.reason, error.message, meta, error.retry_after_s)


def status_for_facts(facts: ErrorFacts) -> status_pb2.Status:
    """The google.rpc.Status for an error with a known reason. An unknown reason is a bug:
    INTERNAL (the original reason is kept in ErrorInfo metadata "check")."""
    code = grpc_code_for_reason(facts.reason)
    reason = facts.reason
    metadata = {k: _clip(v, MAX_METADATA_VALUE_CHARS) for k, v in sorted(facts.metadata.items())}
    if code is None or code is grpc.StatusCode.OK:
        metadata["check"] = _clip(facts.reason, MAX_METADATA_VALUE_CHARS)
        reason, code = "INTERNAL", grpc.StatusCode.INTERNAL
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
    details = [_pack(info)]
    if facts.retry_after_s is not None and facts.retry_after_s >= 0:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(facts.retry_after_s * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(
        code=_numeric(code), message=_clip(facts.message, MAX_MESSAGE_CHARS), details=details
    )


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def internal_status(incident: str, *, check: str | None = None) -> status_pb2.Status:
    """INTERNAL with an incident id and nothing else about the failure (``check``: the
    unknown reason a buggy error carried, if that is what happened)."""
    metadata = {"incident": incident}
    if check is not None:
        metadata["check"] = _clip(check, MAX_METADATA_VALUE_CHARS)
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN, metadata=metadata)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error in the relay; incident {incident} is in the relay's log",
        details=[_pack(info)],
    )


def status_for_exception(error: BaseException, *, method: str) -> status_pb2.Status:
    """Map any exception raised while serving ``method``. Unexpected ones (and errors with
    a reason that is not an ErrorReason, which is a bug) are logged with their traceback
    under a fresh incident id; the client gets INTERNAL and the id."""
    facts = facts_of(error)
    if facts is not None and grpc_code_for_reason(facts.reason) is not None:
        return status_for_facts(facts)
    from relay.store import StoreClosedError

    if isinstance(error, StoreClosedError):
        return status_for_facts(
            ErrorFacts("SHUTTING_DOWN", "the relay is shutting down; retry on another replica")
        )
    incident = uuid.uuid4().hex[:16]
    log.error("incident %s: unexpected error in %s", incident, method, exc_info=error)
    return internal_status(incident, check=facts.reason if facts is not None else None)


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status) -> NoReturn:
    """End the call with ``status`` (code, message and details in the trailers, with the
    call's request id beside them)."""
    from relay.logs import REQUEST_ID_KEY, request_id_var

    grpc_status = rpc_status.to_status(status)
    request_id = request_id_var.get()
    if request_id is not None:
        grpc_status = grpc_status._replace(
            trailing_metadata=(*grpc_status.trailing_metadata, (REQUEST_ID_KEY, request_id))
        )
    await context.abort_with_status(grpc_status)
    raise AssertionError("abort_with_status returned")  # pragma: no cover


# --------------------------------------------------------------------------- client side


@dataclass(frozen=True, slots=True)
class RpcFailure:
    """A failed call as the relay described it."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None

    def one_line(self) -> str:
        """``REASON [chain X, height H, field F]: message`` for humans."""
        labels = {"chain_id": "chain", "height": "height", "field": "field", "check": "check"}
        parts = [f"{label} {self.metadata[k]}" for k, label in labels.items() if k in self.metadata]
        where = f" [{', '.join(parts)}]" if parts else ""
        reason = self.reason or self.code.name
        return f"{reason}{where}: {self.message}"


def describe_rpc_error(error: grpc.RpcError) -> RpcFailure:
    """Decode a failed call's google.rpc.Status details. Works for sync and aio errors; a
    status without details (e.g. from gRPC itself: deadline, unreachable) gives only the
    code and message."""
    code_fn = getattr(error, "code", None)
    details_fn = getattr(error, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    message = (details_fn() if callable(details_fn) else "") or ""
    trailers_fn = getattr(error, "trailing_metadata", None)
    trailers = trailers_fn() if callable(trailers_fn) else None
    for key, value in trailers or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a garbled trailer: fall back to the plain status
            break
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                retry = None
                for other in status.details:
                    r = error_details_pb2.RetryInfo()
                    if other.Is(r.DESCRIPTOR) and other.Unpack(r):
                        retry = r.retry_delay.ToNanoseconds() / 1e9
                return RpcFailure(
                    code, status.message or message, info.reason, info.domain,
                    dict(info.metadata), retry,
                )  # fmt: skip
        break
    return RpcFailure(code, message)
