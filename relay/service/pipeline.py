"""The relay's per-call work in one grpc.aio server interceptor (issue 4, "what it must show"
5: query throughput; issue 7, point 4: audit cost).

Every RPC goes through, in this order: the request context (request id, log context, the id
in the trailing metadata; relay/logs.py), the go-grpc-prometheus series (relay/metrics.py),
access control when configured (identity, rate limits, admin record; relay/access/control.py)
and the audit record (committed before the answer leaves; relay/audit/recorder.py). The
four used to be four chained interceptors, i.e. four ``intercept_service`` coroutines and
four nested wrappers per call; here a unary call runs one wrapper whose per-method parts
(log method name, metric children, whether access and audit apply) are resolved once, when
the method is first called. Streaming calls (ListHoldings, health Watch, reflection) are
rarer: they run the steps' own wrappers, composed in the same order.

The behaviour is each step's own: the steps are methods of the step classes, which can
still be used as separate interceptors.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from relay import logs
from relay.access.control import IDENTITY_VAR
from relay.interceptors import PerMethodInterceptor
from relay.metrics import MethodCounters, RelayMetrics, grpc_labels, wrap_handler

if TYPE_CHECKING:
    from relay.access.control import AccessInterceptor
    from relay.audit.recorder import AuditInterceptor


class RequestPipeline(PerMethodInterceptor):
    """Request context, metrics, access (optional) and audit (optional) around every RPC.
    One wrapper per method path is built and reused while the handler behind it stays the
    same (nothing of one call is kept in it)."""

    def __init__(
        self,
        *,
        metrics: RelayMetrics | None = None,
        access: AccessInterceptor | None = None,
        audit: AuditInterceptor | None = None,
    ) -> None:
        super().__init__()
        self._metrics = metrics
        self._access = access
        self._audit = audit

    def wrap(self, path: str, handler: Any) -> Any:
        """``handler`` of the method ``path`` with every step around it."""
        labels = grpc_labels(path, handler)
        counters = (
            MethodCounters(self._metrics, labels)
            if self._metrics is not None and labels is not None
            else None
        )
        access = self._access if self._access is not None and self._access.applies(path) else None
        audit = self._audit if self._audit is not None and self._audit.applies(path) else None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(path, handler.unary_unary, counters, access, audit),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner = handler
        if audit is not None:
            inner = audit.wrap_handler(path, inner)
        if access is not None:
            inner = access.wrap_handler(path, inner)
        if counters is not None and self._metrics is not None and labels is not None:
            inner = wrap_handler(inner, labels, self._metrics)
        return logs.wrap_handler(inner, logs.log_method(path))


def _unary(
    path: str,
    behaviour: Callable[..., Any],
    counters: MethodCounters | None,
    access: AccessInterceptor | None,
    audit: AuditInterceptor | None,
) -> Callable[..., Any]:
    """The one wrapper of a unary method. The order of the steps is the order the separate
    interceptors ran in: context, metrics, access, audit, servicer."""
    method = logs.log_method(path)
    admin = access is not None and access.is_admin(path)
    start_call = logs.start_call
    perf_counter = time.perf_counter
    isawaitable = inspect.isawaitable

    async def call(request: Any, context: Any) -> Any:
        start_call(context, method)
        if counters is not None:
            counters.started.inc()
            counters.received.inc()
        t0 = perf_counter()
        try:
            ident = None
            if access is not None:
                ident = await access.enter(path, context)  # aborts the call if refused
                token = IDENTITY_VAR.set(ident)
            outcome = "error"
            try:
                try:
                    result = behaviour(request, context)
                    if isawaitable(result):
                        result = await result
                except BaseException as e:
                    if audit is not None:
                        await audit.record_failed(path, request, context, [], e)
                    raise
                if audit is not None:
                    try:  # nothing is answered unrecorded
                        await audit.record(path, request, context, [result], None)
                    except Exception as e:
                        await audit.fail(path, context, e)
                outcome = "ok"
            finally:
                if access is not None and ident is not None:
                    IDENTITY_VAR.reset(token)
                    access.leave(ident)
                    if admin:
                        await access.record_admin(ident, path, request, context, outcome)
        except BaseException as e:
            if counters is not None:
                counters.done(context, t0, e)
            raise
        if counters is not None:
            counters.sent.inc()
            counters.done(context, t0, None)
        return result

    return call
