"""relay.sdk runs the answer methods of an adapter with ``blocking_io = True`` in worker
threads: an answer blocked on its node does not stall the adapter's other calls (the
reference adapters call their node over HTTP)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import pytest

from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.adapter.v1 import adapter_pb2_grpc
from relay.pb.relay.v1 import types_pb2 as pb
from relay.sdk import StateSource, describe_response, start_adapter_server
from relay.service.client import ClientTls, aio_channel
from relay.testing.pki import TestCA


class SlowNodeAdapter(StateSource):
    blocking_io = True

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def describe(self) -> apb.DescribeResponse:
        return describe_response(
            chain_id="slow", client_type=pb.CLIENT_TYPE_TENDERMINT, capabilities=[],
            adapter_version="test/1",
        )  # fmt: skip

    def latest_height(self) -> apb.GetLatestHeightResponse:
        return apb.GetLatestHeightResponse(height=7)

    def query(self, request: apb.QueryRequest) -> apb.QueryResult:
        self.entered.set()
        assert self.release.wait(timeout=30), "never released"
        return apb.QueryResult(key=b"k", height=7)


def test_a_blocked_answer_does_not_stall_other_calls() -> None:
    async def main() -> None:
        ca = TestCA.create()
        server_cert = ca.issue_server("localhost")
        adapter = SlowNodeAdapter()
        server = await start_adapter_server(
            adapter, listen="127.0.0.1:0", tls_cert=server_cert.cert_pem,
            tls_key=server_cert.key_pem,
        )  # fmt: skip
        channel = aio_channel(f"localhost:{server.port}", ClientTls(ca_pem=ca.cert_pem))
        try:
            stub = adapter_pb2_grpc.AdapterServiceStub(channel)
            query = asyncio.ensure_future(
                stub.Query(apb.QueryRequest(query=apb.DomainQuery(raw_key=b"k")), timeout=30)
            )
            while not adapter.entered.is_set():
                await asyncio.sleep(0.01)
            # The query's thread is blocked; the event loop still answers other calls.
            described = await stub.Describe(apb.DescribeRequest(), timeout=10)
            latest = await stub.GetLatestHeight(apb.GetLatestHeightRequest(), timeout=10)
            assert described.chain_id == "slow" and latest.height == 7
            assert not query.done() and not adapter.release.is_set()
            adapter.release.set()
            answer = await query
            assert answer.key == b"k" and answer.height == 7
        except grpc.RpcError:
            adapter.release.set()
            raise
        finally:
            adapter.release.set()
            await channel.close()
            await server.stop(0)

    asyncio.run(main())


class SlowStreamAdapter(SlowNodeAdapter):
    """Each light block takes a node round trip (here: 50 ms)."""

    def __init__(self) -> None:
        super().__init__()
        self.produced = 0
        self.finished = threading.Event()

    def stream_light_blocks(self, request: apb.GetLightBlocksRequest) -> Iterator[apb.LightBlock]:
        try:
            for height in range(request.from_height, request.to_height + 1):
                self.release.wait(0.05)
                self.produced += 1
                yield apb.LightBlock(height=height)
        finally:
            self.finished.set()


def test_a_cancelled_stream_stops_collecting_in_its_worker() -> None:
    """A deadline ends the call and the worker stops at its next item, instead of fetching
    all 1,000 blocks (50 s) for nobody."""

    async def main() -> None:
        ca = TestCA.create()
        server_cert = ca.issue_server("localhost")
        adapter = SlowStreamAdapter()
        server = await start_adapter_server(
            adapter, listen="127.0.0.1:0", tls_cert=server_cert.cert_pem,
            tls_key=server_cert.key_pem,
        )  # fmt: skip
        channel = aio_channel(f"localhost:{server.port}", ClientTls(ca_pem=ca.cert_pem))
        try:
            stub = adapter_pb2_grpc.AdapterServiceStub(channel)
            request = apb.GetLightBlocksRequest(from_height=1, to_height=1000)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                async for _ in stub.GetLightBlocks(request, timeout=0.5):
                    pass
            assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            for _ in range(200):  # the worker notices within one item
                if adapter.finished.is_set():
                    break
                await asyncio.sleep(0.05)
            assert adapter.finished.is_set() and adapter.produced < 1000, adapter.produced
        finally:
            adapter.release.set()
            await channel.close()
            await server.stop(0)

    asyncio.run(main())
