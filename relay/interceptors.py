"""How the relay's ``grpc.aio`` servers take their handlers: the one way the server
interceptors wrap a method's handler, and :class:`GenericHandlersOnly`.

grpc.aio asks every interceptor for the handler of each call. Building a fresh wrapper per
call costs more than some of the work it wraps, so :class:`PerMethodInterceptor` builds one
wrapper per method path and reuses it while the handler behind it stays the same; the
wrapper reads everything of one call (request id, identity, start time) from that call's
context, never from the time it was built. Calls of unknown methods never reach an
interceptor's handler, so the cache holds registered methods only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

# grpc ships no type stubs here, so mypy would see an Any base class; type-check against
# object and subclass the real base at run time (grpc.aio.server insists on it).
if TYPE_CHECKING:
    _Base = object
else:
    _Base = grpc.aio.ServerInterceptor


class PerMethodInterceptor(_Base):
    """A server interceptor whose :meth:`wrap` runs once per method path."""

    def __init__(self) -> None:
        # Per method path: the handler the rest of the chain returned and its wrapper.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        path = handler_call_details.method or ""
        cached = self._wrapped.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(path, handler)
        self._wrapped[path] = (handler, wrapped)
        return wrapped

    def wrap(self, path: str, handler: Any) -> Any:
        """``handler`` of the method ``path`` with this interceptor's work around it (or
        ``handler`` itself where there is nothing to do)."""
        raise NotImplementedError


class GenericHandlersOnly:
    """What the generated ``add_*Servicer_to_server`` functions (and grpc_reflection) are
    given instead of the ``grpc.aio`` server: their generic handler reaches the server,
    their per-method "registered" copy of it does not.

    A grpc.aio server keeps one pending request task per registered method and, for every
    call it accepts, waits on all of them together (``asyncio.wait``): with the relay's ~25
    methods that is ~25 callbacks added and removed per call, a cost every call pays,
    growing with the methods served. One generic handler serves every method the same way
    (grpc looks the method up in it) for one pending task."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        """Dropped: the generic handler added with it serves these methods."""
