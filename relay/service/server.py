"""The relay's gRPC servers: the court-facing API (QueryService, AdminService, health and
server reflection) on a TLS port, and ``grpc.health.v1`` alone on a separate plaintext port
for probes. Health says SERVING only between :meth:`RelayServer.set_serving` and the start of
:meth:`RelayServer.stop`; stopping drains in-flight calls within a grace period.

Authentication (issue 5) slots in through ``interceptors`` (identity from the TLS peer) and
the servicers' ``guard`` (roles, grants, case checks); nothing here changes for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from relay.config import TlsMaterial
from relay.interceptors import GenericHandlersOnly
from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc, query_pb2, query_pb2_grpc
from relay.service.servicers import (
    ADMIN_SERVICE,
    QUERY_SERVICE,
    AdminBackend,
    AdminServicer,
    CallGuard,
    OnboardingBackend,
    QueryBackend,
    QueryServicer,
    default_guard,
)

log = logging.getLogger("relay.service")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVICE_NAMES = (
    query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    HEALTH_SERVICE,
    reflection.SERVICE_NAME,
)
assert SERVICE_NAMES[0] == QUERY_SERVICE and SERVICE_NAMES[1] == ADMIN_SERVICE

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    """How the servers listen. ``tls=None`` serves plaintext (only ``--insecure-dev``)."""

    grpc_address: str
    health_address: str
    tls: TlsMaterial | None
    require_client_cert: bool = False
    max_request_bytes: int = 1 << 20
    max_response_bytes: int = 32 << 20
    query_deadline_s: float | None = 10.0
    max_concurrent_rpcs: int | None = None
    keepalive_time_ms: int = 60_000


class Backend(QueryBackend, AdminBackend, Protocol):
    """The engine as the servers see it."""


def _bind(what: str, address: str, add: Callable[[], int]) -> int:
    """Bind a port; gRPC says RuntimeError (or port 0) when it cannot."""
    try:
        port = add()
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(
            f"cannot listen on {what} address {address}: the port is in use or the address "
            "is not one of this host's"
        )
    return port


class RelayServer:
    """Both servers. Use :meth:`start`, :meth:`set_serving`, :meth:`stop`."""

    def __init__(
        self,
        backend: Backend,
        options: ServerOptions,
        *,
        guard: CallGuard = default_guard,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        onboarding: OnboardingBackend | None = None,
        extra_services: Sequence[tuple[str, Callable[[Any, CallGuard], None]]] = (),
    ) -> None:
        self.options = options
        self._onboarding = onboarding
        # (full service name, add(server, guard)): e.g. relay.v1.AuditService (issue 7).
        self._extra_services = tuple(extra_services)
        self.health = HealthServicer()
        self._backend = backend
        self._guard = guard
        self._interceptors = tuple(interceptors)
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self.grpc_port = 0
        self.health_port = 0
        self._stopping = False
        self._serving = False

    async def _set_all(self, status: Any) -> None:
        for service in ("", QUERY_SERVICE, ADMIN_SERVICE):
            await self.health.set(service, status)

    async def start(self) -> None:
        """Bind both ports and start serving; health is NOT_SERVING until set_serving."""
        o = self.options
        await self._set_all(_NOT_SERVING)

        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(
            self.health, GenericHandlersOnly(health_server)
        )
        self.health_port = _bind(
            "health", o.health_address, lambda: health_server.add_insecure_port(o.health_address)
        )

        server_options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", o.max_request_bytes),
            ("grpc.max_send_message_length", o.max_response_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", o.keepalive_time_ms),
        ]
        server = grpc.aio.server(
            interceptors=self._interceptors,
            options=server_options,
            maximum_concurrent_rpcs=o.max_concurrent_rpcs,
        )
        query = QueryServicer(self._backend, guard=self._guard, deadline_s=o.query_deadline_s)
        admin = AdminServicer(
            self._backend,
            guard=self._guard,
            deadline_s=o.query_deadline_s,
            onboarding=self._onboarding,
        )
        # Every service as one generic handler (see GenericHandlersOnly: a registered
        # method costs every call of the server a little).
        handlers = GenericHandlersOnly(server)
        query_pb2_grpc.add_QueryServiceServicer_to_server(query, handlers)  # type: ignore[no-untyped-call]
        admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, handlers)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, handlers)
        for _, add_service in self._extra_services:
            add_service(handlers, self._guard)
        extra_names = tuple(name for name, _ in self._extra_services)
        # What reflection.enable_server_reflection does for an aio server, through the
        # handlers wrapper (it picks the servicer by the server's type).
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer((*SERVICE_NAMES, *extra_names)), handlers
        )
        if o.tls is None:
            self.grpc_port = _bind(
                "gRPC", o.grpc_address, lambda: server.add_insecure_port(o.grpc_address)
            )
        else:
            credentials = grpc.ssl_server_credentials(
                [(o.tls.private_key, o.tls.cert_chain)],
                root_certificates=o.tls.root_certificates,
                require_client_auth=o.require_client_cert,
            )
            self.grpc_port = _bind(
                "gRPC", o.grpc_address, lambda: server.add_secure_port(o.grpc_address, credentials)
            )
        await health_server.start()
        self._health_server = health_server
        await server.start()
        self._server = server
        log.info(
            "listening: gRPC on port %d (%s), health on port %d (plaintext)",
            self.grpc_port,
            "TLS" if o.tls is not None else "PLAINTEXT",
            self.health_port,
        )

    async def set_serving(self, serving: bool) -> None:
        """Report SERVING (store open, engine started) or NOT_SERVING."""
        if not self._stopping:
            self._serving = serving
            await self._set_all(_SERVING if serving else _NOT_SERVING)

    @property
    def serving(self) -> bool:
        """What health reports: True between set_serving(True) and the start of stop()
        (the ops port's /readyz answers the same)."""
        return self._serving and not self._stopping

    async def stop(self, grace_s: float) -> None:
        """Health NOT_SERVING, stop accepting calls, let in-flight calls finish within
        ``grace_s`` (then cancel them), then close the health port. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            log.info("draining in-flight calls (grace %.1f s)", grace_s)
            await self._server.stop(grace_s)
        if self._health_server is not None:
            await self._health_server.stop(0)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
