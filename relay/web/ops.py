"""The operations port: ``/metrics`` (Prometheus text or OpenMetrics, from
:mod:`relay.metrics`), ``/healthz`` (liveness), ``/readyz`` (readiness, decided by a callable
the caller supplies) and ``/loglevel`` (read or change the root log level at run time).

This port is for operators and Prometheus only: it is never exposed with the court-facing
API, and ``/loglevel`` changes process state, so it exists on no other port. TLS comes from
an ``ssl.SSLContext`` passed to :func:`start_ops_server`; with ``operator_changes`` (a relay
with access control) a change (``PUT``/``POST /loglevel``) needs a client certificate of the
operator role, verified in the handshake (the context asks for one without requiring it, so
Prometheus and probes read without one): 401 without a certificate, 403 for another role.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from relay.metrics import RelayMetrics

log = logging.getLogger("relay.web.ops")

#: Log levels ``/loglevel`` accepts, as the logging module names them.
LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# A level name fits in a few bytes; refuse anything larger before reading it.
MAX_BODY_BYTES: Final = 1024
READINESS_TIMEOUT_S: Final = 2.0

#: Says whether the relay can serve: True when ready. It may also return a short reason
#: ``(False, "store closed")``. Exceptions and timeouts count as not ready.
Readiness = Callable[[], Awaitable[bool | tuple[bool, str]]]


async def _always_ready() -> bool:
    return True


def _text(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body + "\n", content_type="text/plain")


def _level_of(data: bytes, content_type: str) -> str | None:
    """The level named by a ``/loglevel`` body: JSON ``{"level": "DEBUG"}`` or plain text."""
    text = data.decode("utf-8", errors="replace").strip()
    if content_type == "application/json" or text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            return None
        level = value.get("level") if isinstance(value, dict) else None
        return level if isinstance(level, str) else None
    return text


def _operator_refusal(request: web.Request) -> web.Response | None:
    """None when the caller presented an operator's certificate (verified by the TLS
    handshake against the client CA), else the 401/403 answer naming what is missing."""
    from cryptography import x509

    from relay.access.identity import Role, identity_from_certificate
    from relay.service.errors import ServiceError

    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return _text(401, "a change needs an operator's client certificate (mutual TLS)")
    try:
        identity = identity_from_certificate(x509.load_der_x509_certificate(der))
    except (ServiceError, ValueError) as e:
        return _text(403, f"client certificate not accepted: {e}")
    if identity.role is not Role.OPERATOR:
        return _text(
            403, f"a change needs the operator role; {identity.principal} is {identity.role}"
        )
    return None


def ops_app(
    *,
    metrics: RelayMetrics,
    readiness: Readiness | None = None,
    readiness_timeout_s: float = READINESS_TIMEOUT_S,
    operator_changes: bool = False,
) -> web.Application:
    """The aiohttp application of the operations port; with ``operator_changes`` only an
    operator's client certificate may change the log level."""
    ready = readiness if readiness is not None else _always_ready

    async def get_metrics(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        # Set the header verbatim: the exposition format's version parameter matters.
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def healthz(request: web.Request) -> web.Response:
        # Answering at all shows the event loop is alive, which is what liveness asks.
        return _text(200, "ok")

    async def readyz(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(readiness_timeout_s):
                answer = await ready()
        except TimeoutError:
            return _text(503, f"not ready: readiness check took over {readiness_timeout_s} s")
        except Exception:
            log.exception("readiness check failed")
            return _text(503, "not ready: readiness check failed (see the relay's log)")
        ok, reason = answer if isinstance(answer, tuple) else (answer, "")
        if ok is True:
            return _text(200, "ready")
        return _text(503, f"not ready: {reason}" if reason else "not ready")

    async def get_level(request: web.Request) -> web.Response:
        root = logging.getLogger()
        return web.json_response({"level": logging.getLevelName(root.getEffectiveLevel())})

    async def set_level(request: web.Request) -> web.Response:
        if operator_changes:
            refused = _operator_refusal(request)
            if refused is not None:
                log.warning("log level change refused on the ops port: %s", refused.text)
                return refused
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _text(413, f"body larger than {MAX_BODY_BYTES} bytes")
        data = await request.content.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            return _text(413, f"body larger than {MAX_BODY_BYTES} bytes")
        level = request.query.get("level") or _level_of(data, request.content_type)
        name = level.strip().upper() if isinstance(level, str) else ""
        if name not in LEVELS:
            return web.json_response(
                {"error": f"level must be one of {', '.join(LEVELS)}"}, status=400
            )
        root = logging.getLogger()
        old = logging.getLevelName(root.getEffectiveLevel())
        root.setLevel(name)
        log.warning("root log level changed from %s to %s via the ops port", old, name)
        return web.json_response({"level": name, "previous": old})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.add_routes(
        [
            web.get("/metrics", get_metrics),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/loglevel", get_level),
            web.put("/loglevel", set_level),
            web.post("/loglevel", set_level),
        ]
    )
    return app


@dataclass
class OpsServer:
    """A started operations server; ``port`` is the bound port (useful with port 0)."""

    runner: web.AppRunner
    host: str
    port: int

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        await self.runner.cleanup()


async def start_ops_server(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout_s: float = 5.0,
) -> OpsServer:
    """Serve ``app`` on ``host:port`` (HTTPS when ``ssl_context`` is given). Raises OSError
    when the address cannot be bound."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = next((int(a[1]) for a in runner.addresses if isinstance(a, tuple)), port)
    scheme = "https" if ssl_context is not None else "http"
    log.info("ops port listening on %s://%s:%d (/metrics /healthz /readyz)", scheme, host, bound)
    return OpsServer(runner=runner, host=host, port=bound)
