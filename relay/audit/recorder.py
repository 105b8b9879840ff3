"""Recording every query and admin call into the audit log (issue 7).

:class:`AuditInterceptor` is the last grpc.aio server interceptor before the servicers
(relay/service/app.py puts it after the access interceptor, so the caller's identity is
known). For every ``relay.v1.QueryService`` and ``relay.v1.AdminService`` call it builds one
entry (relay/audit/entry.py) once the servicer has finished and commits it to the audit log
*before* the answer leaves the relay: a unary answer is returned only after the append has
committed; a server-streaming answer (ListHoldings) is collected, recorded, then sent. If
the entry cannot be committed the call fails with INTERNAL instead of being answered
unrecorded. Refused calls (role, grant, case checks) are recorded with their reason too;
calls turned away before they reach the service (no client certificate, rate limits) are
logged by the access layer only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from relay.audit.entry import (
    make_entry,
    request_digest,
)
from relay.audit.log import AuditLog
from relay.interceptors import PerMethodInterceptor
from relay.service.errors import ServiceError, abort, status_for_exception

log = logging.getLogger("relay.audit")

QUERY_PREFIX = "/relay.v1.QueryService/"
ADMIN_PREFIX = "/relay.v1.AdminService/"
_STATUS_DETAILS = "grpc-status-details-bin"


def _no_identity() -> Any:
    return None


_EVIDENCE = "relay.v1.Evidence"
# Per answer type: (field, repeated, evidence fields inside it or None if it is Evidence).
_Plan = tuple[tuple[str, bool, tuple[str, ...] | None], ...]
_PLANS: dict[str, _Plan] = {}


def _plan(descriptor: Any) -> _Plan:
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        steps: list[tuple[str, bool, tuple[str, ...] | None]] = []
        for f in descriptor.fields:
            kind = f.message_type
            if kind is None:
                continue
            if kind.full_name == _EVIDENCE:
                steps.append((f.name, f.is_repeated, None))
                continue
            inner = tuple(
                g.name
                for g in kind.fields
                if g.message_type is not None
                and g.message_type.full_name == _EVIDENCE
                and not g.is_repeated
            )
            if inner:
                steps.append((f.name, f.is_repeated, inner))
        plan = _PLANS[descriptor.full_name] = tuple(steps)
    return plan


# Per request type: (has a case_ref message field, the string fields naming the target).
_Fields = tuple[bool, tuple[str, ...]]
_REQUEST_FIELDS: dict[str, _Fields] = {}
_TARGET_FIELDS = ("chain_id", "proposal_id")


def _request_fields(descriptor: Any) -> _Fields:
    # Looked up once per request type: getattr() of a field a message does not have raises
    # (and catches) an AttributeError, which cost more than the rest of the entry's fields.
    fields = _REQUEST_FIELDS.get(descriptor.full_name)
    if fields is None:
        by_name = descriptor.fields_by_name
        case = by_name.get("case_ref")
        targets = tuple(
            name
            for name in _TARGET_FIELDS
            if name in by_name
            and by_name[name].type == by_name[name].TYPE_STRING
            and not by_name[name].is_repeated
        )
        fields = (case is not None and case.message_type is not None, targets)
        _REQUEST_FIELDS[descriptor.full_name] = fields
    return fields


def _digest(message: Message) -> str:
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


def evidence_digests(answer: Message) -> list[str]:
    """SHA-256 (hex) of every Evidence message of ``answer``: its own Evidence fields
    (``evidence``, ``index_evidence``) and those of its message fields one level down (e.g.
    each credit finding's), in field order. The plan per answer type is computed once: this
    runs on the query path."""
    out: list[str] = []
    for name, repeated, inner in _plan(answer.DESCRIPTOR):
        if repeated:
            items = list(getattr(answer, name))
        elif answer.HasField(name):
            items = [getattr(answer, name)]
        else:
            continue
        for item in items:
            if inner is None:
                out.append(_digest(item))
                continue
            for sub in inner:
                if item.HasField(sub):
                    out.append(_digest(getattr(item, sub)))
    return out


def _reason_of(context: Any) -> str:
    try:
        trailers = context.trailing_metadata() or ()
    except Exception:  # pragma: no cover - older grpc
        return ""
    for key, value in trailers:
        if key != _STATUS_DETAILS:
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:
            return ""
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return str(info.reason)
    return ""


def _code_of(context: Any, error: BaseException | None) -> str:
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    try:
        code = context.code()
    except Exception:  # pragma: no cover
        code = None
    name = getattr(code, "name", None)
    return str(name) if name else "UNKNOWN"


class AuditInterceptor(PerMethodInterceptor):
    """Appends one audit entry per Query/Admin call before its answer is sent."""

    def __init__(
        self,
        audit: AuditLog,
        *,
        salt: bytes,
        identity: Callable[[], Any] = _no_identity,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__()
        self._audit = audit
        self._salt = salt
        self._identity = identity
        self._clock = clock

    def entry_for(
        self,
        method: str,
        request: Message,
        *,
        outcome: str,
        reason: str,
        answers: list[Message],
    ) -> tuple[bytes, str]:
        """The entry's bytes and the court it belongs to."""
        ident = self._identity()
        role = ident.role.value if ident is not None else ""
        code = ident.code if ident is not None else ""
        court = code if role == "court" else ""
        case_field, target_fields = _request_fields(request.DESCRIPTOR)
        has_case = case_field and request.HasField("case_ref")
        case: Any = request.case_ref if has_case else None  # type: ignore[attr-defined]
        target = ""
        for name in target_fields:
            value = getattr(request, name)
            if value:
                target = value
                break
        digests: list[str] = []
        result = hashlib.sha256()
        for answer in answers:
            encoded = answer.SerializeToString(deterministic=True)
            result.update(hashlib.sha256(encoded).digest())
            digests.extend(evidence_digests(answer))
        entry = make_entry(
            time_ns=self._clock(),
            kind="admin" if method.startswith(ADMIN_PREFIX) else "query",
            method=method,
            actor=ident.principal if ident is not None else "unidentified",
            role=role,
            actor_code=code,
            actor_fingerprint=ident.fingerprint if ident is not None else "",
            court=court,
            case_court=case.court if has_case else "",
            case_number=case.case_number if has_case else "",
            case_purpose=int(case.purpose) if has_case else 0,
            target=target,
            request_digest=request_digest(
                salt=self._salt,
                method=method,
                request=request.SerializeToString(deterministic=True),
            ),
            outcome=outcome,
            reason=reason,
            result_digest=result.hexdigest() if answers else "",
            evidence_digests=digests,
        )
        return entry, court

    @staticmethod
    def applies(method: str) -> bool:
        """Whether calls of ``method`` (a full RPC path) are recorded."""
        return method.startswith((QUERY_PREFIX, ADMIN_PREFIX))

    async def record_failed(
        self,
        method: str,
        request: Message,
        context: Any,
        answers: list[Message],
        error: BaseException,
    ) -> None:
        """Record a call that failed with ``error``; a commit failure is only logged (the
        call fails anyway)."""
        try:
            await self.record(method, request, context, answers, error)
        except Exception:
            log.exception("audit entry for failed %s could not be committed", method)

    async def record(
        self,
        method: str,
        request: Message,
        context: Any,
        answers: list[Message],
        error: BaseException | None,
    ) -> None:
        """Build the call's entry and return once it is committed (raises if it is not)."""
        entry, court = self.entry_for(
            method,
            request,
            outcome=_code_of(context, error),
            reason="" if error is None else _reason_of(context),
            answers=answers,
        )

        await self._audit.append(entry, court=court)

    async def fail(self, method: str, context: Any, error: BaseException) -> None:
        """Abort a call whose entry could not be committed (it is not answered)."""
        log.error("audit entry for %s could not be committed: %s", method, error)
        await abort(
            context,
            status_for_exception(
                ServiceError("INTERNAL", "the audit log could not record this call; retry later"),
                method=method,
            ),
        )

    def wrap(self, path: str, handler: Any) -> Any:
        return self.wrap_handler(path, handler) if self.applies(path) else handler

    def wrap_handler(self, method: str, handler: Any) -> Any:
        """``handler`` recording each call before it answers (unary and server-streaming;
        other kinds are returned as they are)."""
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                try:
                    result = await inner(request, context)
                except BaseException as e:
                    await self.record_failed(method, request, context, [], e)
                    raise
                try:
                    await self.record(method, request, context, [result], None)
                except Exception as e:
                    await self.fail(method, context, e)
                return result

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                items: list[Any] = []
                try:
                    async for item in inner_stream(request, context):
                        items.append(item)
                except BaseException as e:
                    await self.record_failed(method, request, context, items, e)
                    raise
                try:
                    await self.record(method, request, context, items, None)
                except Exception as e:
                    await self.fail(method, context, e)
                for item in items:
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
