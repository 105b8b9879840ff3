"""Structured logs for ``relay serve`` (issue 8, "Operations"): one JSON object per line with
``time``, ``level``, ``logger``, ``message``, ``request_id``, ``chain``, ``method`` and any
``extra={...}`` fields, so log collectors (Loki, Elasticsearch, Cloud Logging) index them
without parsing prose.

The request id comes from the caller's gRPC metadata ``x-request-id`` (a bounded token; a
missing or odd-looking one is replaced by a generated id), is echoed in the response's
initial metadata, and rides in :mod:`contextvars` through every log line the engine writes
while serving that call (:class:`RequestContextInterceptor`). Sync tasks carry their chain
instead (:func:`bind`). The root level changes at run time through the ops port's
``/loglevel`` (relay/web/ops.py).

Party identifiers (a PartyRef's id: an ID-card number, a credit code) are personal data and
never belong in a log line; the engine logs the chain, case reference and method instead.
As a backstop, tokens shaped like an 18-character resident ID or unified social credit code
are masked in every message (:data:`REDACTED`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

import grpc
import grpc.aio

from relay.interceptors import PerMethodInterceptor

REQUEST_ID_KEY: Final = "x-request-id"
"""gRPC metadata key (and HTTP header) carrying the request id, as most proxies name it."""
REDACTED: Final = "[redacted-id]"
FORMATS: Final = ("json", "text")

request_id_var: ContextVar[str | None] = ContextVar("relay_request_id", default=None)
chain_var: ContextVar[str | None] = ContextVar("relay_chain", default=None)
method_var: ContextVar[str | None] = ContextVar("relay_method", default=None)

# A caller-chosen id lands in every log line of its call: only a short plain token is taken
# as is, so nobody can inject JSON, newlines or megabytes into the logs through it.
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")
# 18-character PRC resident ID numbers and unified social credit codes (GB 32100-2015).
_PARTY_ID: Final = re.compile(
    r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|[0-9A-HJ-NP-RTUW-Y]{2}\d{6}[0-9A-HJ-NP-RTUW-Y]{10})"
    r"(?![0-9A-Za-z])"
)
# LogRecord attributes that are not "extra" fields.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "chain", "method", "taskName"}
)


def new_request_id() -> str:
    """A fresh request id (random, 32 hex digits)."""
    # 16 random bytes as hex: what uuid4().hex gives without building a UUID object per call.
    return os.urandom(16).hex()


def request_id_from(metadata: Any) -> str:
    """The caller's ``x-request-id`` when it is a plain token of at most 128 characters,
    otherwise a new id."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return new_request_id()


def redact(text: str) -> str:
    """``text`` with ID-card- and credit-code-shaped tokens masked."""
    return _PARTY_ID.sub(REDACTED, text)


def bind(
    *, request_id: str | None = None, chain: str | None = None, method: str | None = None
) -> None:
    """Set the log context of the current task (and of tasks it creates from now on)."""
    request_id_var.set(request_id)
    chain_var.set(chain)
    method_var.set(method)


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Set some of ``request_id``, ``chain``, ``method`` for the duration of a block."""
    variables = {"request_id": request_id_var, "chain": chain_var, "method": method_var}
    tokens = [(variables[k], variables[k].set(v)) for k, v in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the log context onto each record (``record.request_id`` ...) unless the call
    passed its own through ``extra``."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id_var), ("chain", chain_var)):
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        if getattr(record, "method", None) is None:
            record.method = method_var.get()
        return True


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (UTF-8 text, no raw newlines)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
            "chain": getattr(record, "chain", None),
            "method": getattr(record, "method", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines with the log context in brackets."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{k}={getattr(record, k)}"
            for k in ("request_id", "chain", "method")
            if getattr(record, k, None)
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return redact(super().format(record))


def configure_logging(
    *, level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None
) -> logging.Handler:
    """Route every log record to one handler on ``stream`` (stderr) in ``fmt`` (json or
    text), replacing the root logger's handlers, and set the root level. Returns the
    handler."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


# ------------------------------------------------------------------------- gRPC


class RequestContextInterceptor(PerMethodInterceptor):
    """Gives every RPC a request id (the caller's ``x-request-id`` or a new one), sends it
    back in the trailing metadata, and sets the log context (request id, ``method`` as
    ``Service/Method``) for everything the call does."""

    def wrap(self, path: str, handler: Any) -> Any:
        return wrap_handler(handler, log_method(path))


def log_method(path: str) -> str:
    """The ``method`` of log lines for an RPC path: ``Service/Method`` (at most 100 chars)."""
    service, _, name = path.lstrip("/").rpartition("/")
    method = f"{service.rsplit('.', 1)[-1]}/{name}" if service else name
    return method[:100]


def start_call(context: Any, method: str) -> None:
    """Begin serving one RPC: take or make its request id, set the log context of the
    calling task, and put the id in the call's trailing metadata."""
    try:
        metadata = context.invocation_metadata()
    except Exception:  # a context without metadata: a new id
        metadata = None
    request_id = request_id_from(metadata)
    request_id_var.set(request_id)
    chain_var.set(None)
    method_var.set(method)
    # The id travels back in the trailing metadata, which goes out with the status anyway:
    # sending initial metadata separately costs an extra transport operation on every call.
    # Errors add it to their own trailers (relay.service.errors.abort).
    try:
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
    except Exception:  # the call is gone: nothing to echo
        logging.getLogger("relay.logs").debug("could not set the request id", exc_info=True)


def wrap_handler(handler: Any, method: str) -> Any:
    """``handler`` (any of the four RPC kinds) starting each call with :func:`start_call`."""

    # Each RPC runs in its own asyncio task, so setting the context variables at the start
    # of the handler scopes them to this call and to the tasks it creates.
    def unary(behaviour: Callable[..., Any]) -> Any:
        async def call(request: Any, context: Any) -> Any:
            start_call(context, method)
            response = behaviour(request, context)
            return await response if inspect.isawaitable(response) else response

        return call

    def streaming(behaviour: Callable[..., Any]) -> Any:
        if not inspect.isasyncgenfunction(behaviour):
            return unary(behaviour)  # a coroutine writing with context.write()

        async def generate(request: Any, context: Any) -> AsyncIterator[Any]:
            start_call(context, method)
            async for response in behaviour(request, context):
                yield response

        return generate

    kinds = (
        ("unary_unary", unary, grpc.unary_unary_rpc_method_handler),
        ("unary_stream", streaming, grpc.unary_stream_rpc_method_handler),
        ("stream_unary", unary, grpc.stream_unary_rpc_method_handler),
        ("stream_stream", streaming, grpc.stream_stream_rpc_method_handler),
    )
    for attribute, wrap, make in kinds:
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            return make(
                wrap(behaviour),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler
