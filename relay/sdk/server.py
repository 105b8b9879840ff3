"""The gRPC server harness of a partner adapter: TLS (optionally mutual), message limits and a
graceful stop on SIGTERM / SIGINT.

``serve_adapter(adapter, listen=..., tls_cert=..., tls_key=..., client_ca=...)`` runs until
the process is told to stop; :func:`start_adapter_server` is the lower-level form for
processes that do more than serve (produce blocks, write descriptor files) and for tests.
TLS is not optional: the relay only talks to adapters over TLS, and with ``client_ca`` the
adapter only accepts callers holding a certificate issued by that CA (the relay's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from relay.interceptors import GenericHandlersOnly
from relay.pb.relay.adapter.v1 import adapter_pb2_grpc
from relay.process import stop_on_signals
from relay.sdk.adapter import AdapterBase

log = logging.getLogger("relay.sdk.server")

MAX_MESSAGE_BYTES = 16 << 20
"""Largest message the harness sends or accepts (the relay's own limits are lower or equal)."""

Pem = bytes | str | Path
"""PEM material: the bytes themselves, or a path (str or Path) to a file holding them."""


class AdapterStartError(Exception):
    """The adapter server cannot start (unreadable TLS files, address in use...)."""


def _pem(value: Pem, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return Path(value).read_bytes()
    except OSError as e:
        raise AdapterStartError(f"cannot read {what} {value}: {e.strerror}") from e


@dataclass
class AdapterServer:
    """A started adapter server."""

    server: grpc.aio.Server
    address: str
    """``host:port`` it listens on (the port resolved when 0 was asked)."""
    adapter: AdapterBase | None = None

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    async def stop(self, grace_s: float = 2.0) -> None:
        """Refuse new calls, let in-flight ones finish for ``grace_s`` seconds."""
        await self.server.stop(grace_s)
        if self.adapter is not None:
            self.adapter.close_blocking()


async def start_adapter_server(
    adapter: AdapterBase,
    *,
    listen: str,
    tls_cert: Pem,
    tls_key: Pem,
    client_ca: Pem | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> AdapterServer:
    """Serve ``adapter`` on ``listen`` (``host:port``, port 0 picks one) with TLS; with
    ``client_ca`` callers must present a certificate issued by it (mutual TLS)."""
    cert = _pem(tls_cert, "TLS certificate")
    key = _pem(tls_key, "TLS key")
    ca = _pem(client_ca, "client CA") if client_ca is not None else None
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
    )
    # One generic handler, no per-method registered ones (relay.interceptors.GenericHandlersOnly).
    adapter_pb2_grpc.add_AdapterServiceServicer_to_server(adapter, GenericHandlersOnly(server))  # type: ignore[no-untyped-call]
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )
    try:
        port = server.add_secure_port(listen, credentials)
    except RuntimeError as e:
        raise AdapterStartError(f"cannot listen on {listen}: {e}") from e
    if not port:
        raise AdapterStartError(f"cannot listen on {listen}")
    await server.start()
    return AdapterServer(server, f"{listen.rpartition(':')[0]}:{port}", adapter)


async def serve_adapter(
    adapter: AdapterBase,
    *,
    listen: str,
    tls_cert: Pem,
    tls_key: Pem,
    client_ca: Pem | None = None,
    grace_s: float = 2.0,
    on_ready: Callable[[AdapterServer], Awaitable[None] | None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``adapter`` until SIGTERM or SIGINT (or ``stop`` is set), then stop gracefully:
    no new calls, in-flight calls get ``grace_s`` seconds. ``on_ready`` is called once the
    port is open (e.g. to print or publish the address)."""
    running = await start_adapter_server(
        adapter, listen=listen, tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca
    )
    try:
        with stop_on_signals(stop) as stopping:
            log.info("adapter listening on %s", running.address)
            if on_ready is not None:
                result = on_ready(running)
                if result is not None:
                    await result
            await stopping.wait()
        log.info("stopping: draining calls for up to %.1f s", grace_s)
    finally:
        await running.stop(grace_s)


def run_adapter(adapter: AdapterBase, **kwargs: object) -> int:
    """``asyncio.run(serve_adapter(adapter, **kwargs))`` for a partner's ``main()``; returns
    0 after a graceful stop, 2 when the server cannot start (the reason on stderr)."""
    import sys

    try:
        asyncio.run(serve_adapter(adapter, **kwargs))  # type: ignore[arg-type]
    except AdapterStartError as e:
        print(f"adapter: {e}", file=sys.stderr)
        return 2
    return 0
