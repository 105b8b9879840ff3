"""The grpc.aio metrics interceptor over a real socket: the go-grpc-prometheus series
(started, handled by code, messages, handling-time histogram) for unary and server-streaming
calls, including failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from prometheus_client.parser import text_string_to_metric_families

from relay.metrics import GRPC_CODE_NAMES, GrpcServerMetrics, RelayMetrics

HEALTH = "grpc.health.v1.Health"
TEST_SERVICE = "relay.test.Probe"


def sample(metrics: RelayMetrics, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics.exposition()[0].decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


async def _fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"abort":
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no grant")
    if request == b"code":
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        return b""
    raise RuntimeError("a bug escaped the servicer")


async def _numbers(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(int(request)):
        yield bytes([i])
    if int(request) == 2:
        raise RuntimeError("stream broke after two items")


async def _run(metrics: RelayMetrics) -> dict[str, Any]:
    interceptor = GrpcServerMetrics(metrics)
    interceptor.initialize([health_pb2.DESCRIPTOR.services_by_name["Health"]])
    server = grpc.aio.server(interceptors=[interceptor])
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                TEST_SERVICE,
                {
                    "Fail": grpc.unary_unary_rpc_method_handler(_fail),
                    "Numbers": grpc.unary_stream_rpc_method_handler(_numbers),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(3):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            try:
                await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
            except grpc.aio.AioRpcError as e:
                out["unknown_service"] = e.code()
            # Server streaming: Watch sends the current status, then waits; cancel after one.
            call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
            first = await call.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            call.cancel()
            fail = channel.unary_unary(f"/{TEST_SERVICE}/Fail")
            for request in (b"abort", b"code", b"bug"):
                try:
                    await fail(request)
                except grpc.aio.AioRpcError as e:
                    out[request.decode()] = e.code()
            numbers = channel.unary_stream(f"/{TEST_SERVICE}/Numbers")
            out["three"] = [m async for m in numbers(b"3")]
            try:
                _ = [m async for m in numbers(b"2")]
            except grpc.aio.AioRpcError as e:
                out["broken"] = e.code()
            try:
                await channel.unary_unary(f"/{TEST_SERVICE}/Missing")(b"")
            except grpc.aio.AioRpcError as e:
                out["missing"] = e.code()
        # Cancellation reaches the server asynchronously; wait until Watch is accounted.
        for _ in range(100):
            done = sample(
                metrics,
                "grpc_server_handling_seconds_count",
                grpc_type="server_stream",
                grpc_service=HEALTH,
                grpc_method="Watch",
            )
            if done:
                break
            await asyncio.sleep(0.02)
    finally:
        await server.stop(0)
    return out


def test_interceptor_counts_real_calls_with_go_grpc_prometheus_labels() -> None:
    metrics = RelayMetrics(process_collectors=False)
    out = asyncio.run(_run(metrics))
    assert out["unknown_service"] == grpc.StatusCode.NOT_FOUND
    assert out["abort"] == grpc.StatusCode.PERMISSION_DENIED
    assert out["code"] == grpc.StatusCode.FAILED_PRECONDITION
    assert out["bug"] == grpc.StatusCode.UNKNOWN
    assert out["three"] == [b"\x00", b"\x01", b"\x02"]
    assert out["broken"] == grpc.StatusCode.UNKNOWN
    assert out["missing"] == grpc.StatusCode.UNIMPLEMENTED

    check = {"grpc_type": "unary", "grpc_service": HEALTH, "grpc_method": "Check"}
    assert sample(metrics, "grpc_server_started_total", **check) == 4
    assert sample(metrics, "grpc_server_handled_total", **check, grpc_code="OK") == 3
    assert sample(metrics, "grpc_server_handled_total", **check, grpc_code="NotFound") == 1
    assert sample(metrics, "grpc_server_msg_received_total", **check) == 4
    assert sample(metrics, "grpc_server_msg_sent_total", **check) == 3
    assert sample(metrics, "grpc_server_handling_seconds_count", **check) == 4
    assert sample(metrics, "grpc_server_handling_seconds_bucket", **check, le="+Inf") == 4

    watch = {"grpc_type": "server_stream", "grpc_service": HEALTH, "grpc_method": "Watch"}
    assert sample(metrics, "grpc_server_started_total", **watch) == 1
    assert sample(metrics, "grpc_server_msg_sent_total", **watch) >= 1  # type: ignore[operator]
    assert sample(metrics, "grpc_server_handled_total", **watch, grpc_code="Canceled") == 1

    fail = {"grpc_type": "unary", "grpc_service": TEST_SERVICE, "grpc_method": "Fail"}
    assert sample(metrics, "grpc_server_handled_total", **fail, grpc_code="PermissionDenied") == 1
    assert sample(metrics, "grpc_server_handled_total", **fail, grpc_code="FailedPrecondition") == 1
    assert sample(metrics, "grpc_server_handled_total", **fail, grpc_code="Unknown") == 1
    assert sample(metrics, "grpc_server_msg_sent_total", **fail) == 1  # only the set_code one

    numbers = {"grpc_type": "server_stream", "grpc_service": TEST_SERVICE, "grpc_method": "Numbers"}
    assert sample(metrics, "grpc_server_started_total", **numbers) == 2
    assert sample(metrics, "grpc_server_msg_sent_total", **numbers) == 5
    assert sample(metrics, "grpc_server_handled_total", **numbers, grpc_code="OK") == 1
    assert sample(metrics, "grpc_server_handled_total", **numbers, grpc_code="Unknown") == 1

    # A method nobody registered is answered UNIMPLEMENTED by grpc and never labelled.
    assert "Missing" not in metrics.exposition()[0].decode()


def test_initialize_creates_every_series_at_zero() -> None:
    metrics = RelayMetrics(process_collectors=False)
    GrpcServerMetrics(metrics).initialize([health_pb2.DESCRIPTOR.services_by_name["Health"]])
    watch = {"grpc_type": "server_stream", "grpc_service": HEALTH, "grpc_method": "Watch"}
    assert sample(metrics, "grpc_server_started_total", **watch) == 0
    assert sample(metrics, "grpc_server_handling_seconds_count", **watch) == 0
    for code in GRPC_CODE_NAMES.values():
        assert sample(metrics, "grpc_server_handled_total", **watch, grpc_code=code) == 0
    assert len(set(GRPC_CODE_NAMES.values())) == 17
