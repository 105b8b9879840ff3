"""The server interceptors build one wrapped handler per method and reuse it (issue 4's
per-call cost), so nothing of one call may leak into another: concurrent calls of one
method over a real socket each get their own request id (in the log context and the
trailers) and are each counted, and a new handler from the rest of the chain gets a new
wrapper."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
from prometheus_client.parser import text_string_to_metric_families

from relay.logs import REQUEST_ID_KEY, RequestContextInterceptor, method_var, request_id_var
from relay.metrics import GrpcServerMetrics, RelayMetrics

SERVICE = "relay.test.Probe"
HEX32 = re.compile(r"[0-9a-f]{32}")


async def _echo_context(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    # Yield first, so the concurrent calls interleave inside the shared wrappers.
    await asyncio.sleep(0.01 * (request[0] % 3))
    return f"{request_id_var.get()}|{method_var.get()}".encode()


async def _serve_and_call(metrics: RelayMetrics) -> list[tuple[str | None, str, str]]:
    server = grpc.aio.server(interceptors=[RequestContextInterceptor(), GrpcServerMetrics(metrics)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo_context)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    sent: list[str | None] = [f"court-req-{i:04d}" if i % 3 else None for i in range(12)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary(f"/{SERVICE}/Echo")

            async def one(i: int, request_id: str | None) -> tuple[str | None, str, str]:
                metadata = ((REQUEST_ID_KEY, request_id),) if request_id else None
                call = echo(bytes([i]), metadata=metadata, timeout=10)
                body = (await call).decode()
                trailers = dict(tuple(await call.trailing_metadata()))
                return request_id, body, str(trailers[REQUEST_ID_KEY])

            return list(await asyncio.gather(*(one(i, rid) for i, rid in enumerate(sent))))
    finally:
        await server.stop(0)


def _started(metrics: RelayMetrics) -> float | None:
    for family in text_string_to_metric_families(metrics.exposition()[0].decode()):
        for s in family.samples:
            if s.name == "grpc_server_started_total" and s.labels.get("grpc_method") == "Echo":
                return float(s.value)
    return None


def test_concurrent_calls_of_one_method_keep_their_own_request_ids() -> None:
    metrics = RelayMetrics(process_collectors=False)
    results = asyncio.run(_serve_and_call(metrics))
    generated: set[str] = set()
    for sent, body, trailer in results:
        request_id, method = body.split("|")
        assert method == "Probe/Echo"
        assert request_id == trailer  # the log context and the trailers agree
        if sent is not None:
            assert request_id == sent
        else:
            assert HEX32.fullmatch(request_id), request_id
            generated.add(request_id)
    assert len(generated) == 4  # a fresh id per call that sent none
    assert _started(metrics) == 12


def test_a_wrapper_is_reused_per_method_and_rebuilt_for_a_new_handler() -> None:
    first = grpc.unary_unary_rpc_method_handler(_echo_context)
    second = grpc.unary_unary_rpc_method_handler(_echo_context)
    interceptors = (
        RequestContextInterceptor(),
        GrpcServerMetrics(RelayMetrics(process_collectors=False)),
    )

    async def run() -> None:
        for interceptor in interceptors:
            handlers = iter((first, first, second))

            async def continuation(_: Any, handlers: Iterator[Any] = handlers) -> Any:
                return next(handlers)

            a = await interceptor.intercept_service(continuation, _Details(f"/{SERVICE}/Echo"))
            b = await interceptor.intercept_service(continuation, _Details(f"/{SERVICE}/Echo"))
            c = await interceptor.intercept_service(continuation, _Details(f"/{SERVICE}/Echo"))
            assert a is b and a is not first
            assert c is not a and c is not second

            async def nothing(_: Any) -> Any:
                return None

            assert await interceptor.intercept_service(nothing, _Details("/x.Y/Z")) is None

    asyncio.run(run())


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()
