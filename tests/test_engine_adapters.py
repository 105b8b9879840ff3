"""Adapter clients (relay/engine/adapters.py): deadlines, retries with backoff, the circuit
breaker, size and stream limits, status mapping, entry-point loading, and the gRPC client over
TLS (server-authenticated, mutual, with SPKI pins) against a real grpc.aio server."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography.hazmat.primitives import serialization
from test_engine_harness import fast_settings, run

from relay.engine.adapters import (
    AdapterLoadError,
    DefaultAdapterFactory,
    GrpcAdapterClient,
    InProcessAdapterClient,
    check_servicer,
    load_entry_point,
)
from relay.engine.errors import RelayError
from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.adapter.v1 import adapter_pb2_grpc
from relay.pb.relay.v1 import types_pb2 as pb
from relay.testing.partners import BftPartnerChain, PartnerAdapter, sample_data
from relay.testing.pki import TestCA

CHAIN = "test-chain"


class Scripted(adapter_pb2_grpc.AdapterServiceServicer):
    """A servicer whose answers a test scripts; counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_first = 0
        self.fail_code = grpc.StatusCode.UNAVAILABLE
        self.hang = False
        self.raise_error: Exception | None = None
        self.blocks: list[apb.LightBlock] = []
        self.results: list[apb.QueryResult] = []
        self.note = b"note"
        self.hashes: list[bytes] = []

    async def _enter(self, context: Any) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.raise_error is not None:
            raise self.raise_error
        if self.calls <= self.fail_first:
            await context.abort(self.fail_code, "scripted failure")

    async def Describe(self, request: Any, context: Any) -> apb.DescribeResponse:
        await self._enter(context)
        return apb.DescribeResponse(chain_id=CHAIN)

    async def GetLatestHeight(self, request: Any, context: Any) -> apb.GetLatestHeightResponse:
        await self._enter(context)
        return apb.GetLatestHeightResponse(height=7)

    async def GetLightBlocks(self, request: Any, context: Any) -> AsyncIterator[apb.LightBlock]:
        await self._enter(context)
        for block in self.blocks:
            yield block

    async def GetCheckpoint(self, request: Any, context: Any) -> apb.GetCheckpointResponse:
        await self._enter(context)
        return apb.GetCheckpointResponse(signed_note=self.note)

    async def GetConsistencyProof(
        self, request: Any, context: Any
    ) -> apb.GetConsistencyProofResponse:
        await self._enter(context)
        return apb.GetConsistencyProofResponse(hashes=self.hashes)

    async def Query(self, request: Any, context: Any) -> apb.QueryResult:
        await self._enter(context)
        return apb.QueryResult(key=b"k", value=b"v" * 100, height=3)

    async def ListByParty(self, request: Any, context: Any) -> AsyncIterator[apb.QueryResult]:
        await self._enter(context)
        for result in self.results:
            yield result


class Monotonic:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def client(servicer: object, **settings: Any) -> InProcessAdapterClient:
    return InProcessAdapterClient(servicer, chain_id=CHAIN, settings=fast_settings(**settings))


async def reason_of(call: Any) -> RelayError:
    with pytest.raises(RelayError) as e:
        await call
    return e.value


@run
async def test_transient_failures_are_retried_with_backoff() -> None:
    s = Scripted()
    s.fail_first = 2
    c = client(s, adapter_retries=2)
    assert await c.latest_height() == 7
    assert s.calls == 3 and c.stats.retries == 2
    s.calls, s.fail_first = 0, 5
    error = await reason_of(client(s, adapter_retries=1).latest_height())
    assert (error.reason, error.metadata["check"], s.calls) == (
        "ADAPTER_UNAVAILABLE",
        "UNAVAILABLE",
        2,
    )


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (grpc.StatusCode.NOT_FOUND, "HEIGHT_OUT_OF_RANGE"),
        (grpc.StatusCode.UNIMPLEMENTED, "UNSUPPORTED"),
        (grpc.StatusCode.INVALID_ARGUMENT, "ADAPTER_UNAVAILABLE"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"),
    ],
)
@run
async def test_answered_failures_are_mapped_and_not_retried(
    code: grpc.StatusCode, reason: str
) -> None:
    s = Scripted()
    s.fail_first, s.fail_code = 10, code
    error = await reason_of(client(s, adapter_retries=3).query(apb.DomainQuery(), None))
    assert error.reason == reason
    assert error.chain_id == CHAIN
    assert s.calls == 1


@run
async def test_adapter_bugs_and_missing_methods() -> None:
    s = Scripted()
    s.raise_error = ValueError("adapter bug")
    error = await reason_of(client(s, adapter_retries=0).describe())
    assert (error.reason, error.metadata["check"]) == ("ADAPTER_UNAVAILABLE", "UNKNOWN")
    s.raise_error = NotImplementedError("nope")
    assert (await reason_of(client(s).describe())).reason == "UNSUPPORTED"


@run
async def test_deadline_bounds_a_hanging_adapter() -> None:
    s = Scripted()
    s.hang = True
    started = time.monotonic()
    error = await reason_of(client(s, adapter_deadline_s=0.1, adapter_retries=1).describe())
    elapsed = time.monotonic() - started
    assert (error.reason, error.metadata["check"]) == ("ADAPTER_UNAVAILABLE", "DEADLINE_EXCEEDED")
    assert 0.2 <= elapsed < 5.0  # waited both deadlines; the upper bound only rules out a hang
    assert s.calls == 2


@run
async def test_circuit_breaker_opens_and_half_opens() -> None:
    s = Scripted()
    s.fail_first = 2
    clock = Monotonic()
    c = InProcessAdapterClient(
        s,
        chain_id=CHAIN,
        settings=fast_settings(breaker_failure_threshold=2, breaker_reset_s=30, adapter_retries=0),
        monotonic=clock,
    )
    for _ in range(2):
        await reason_of(c.describe())
    assert c.breaker.state == "open"
    fast = await reason_of(c.describe())
    assert fast.metadata["check"] == "CIRCUIT_OPEN" and fast.retry_after_s == pytest.approx(30)
    assert s.calls == 2  # refused without calling the adapter
    clock.t += 31
    assert c.breaker.state == "half-open"
    await c.describe()  # the trial call succeeds and closes the breaker
    assert c.breaker.state == "closed" and s.calls == 3
    s.calls, s.fail_first = 0, 10
    for _ in range(2):
        await reason_of(c.describe())
    clock.t += 31
    await reason_of(c.describe())  # the trial fails: open again at once
    assert c.breaker.state == "open" and c.breaker.opened_count == 3


@run
async def test_size_and_stream_limits() -> None:
    s = Scripted()
    big = await reason_of(client(s, max_message_bytes=50).query(apb.DomainQuery(), None))
    assert big.reason == "LIMIT_EXCEEDED"
    s.results = [apb.QueryResult(key=b"%d" % i) for i in range(6)]
    many = await reason_of(client(s, max_stream_items=5).list_by_party(b"p", [], None))
    assert many.reason == "LIMIT_EXCEEDED"
    assert len(await client(s, max_stream_items=6).list_by_party(b"p", [], None)) == 6
    # The whole stream has a byte budget too, not only each message: items within the
    # message limit add up to a refusal, and the item that crosses it ends the stream.
    s.results = [apb.QueryResult(key=b"k", value=b"v" * 40) for _ in range(6)]
    each = s.results[0].ByteSize()
    total = await reason_of(
        client(s, max_message_bytes=each, max_stream_bytes=each * 5).list_by_party(b"p", [], None)
    )
    assert total.reason == "LIMIT_EXCEEDED" and "bytes" in total.message
    fits = client(s, max_message_bytes=each, max_stream_bytes=each * 6)
    assert len(await fits.list_by_party(b"p", [], None)) == 6
    s.hashes = [b"\x00" * 32] * 65
    assert (await reason_of(client(s).consistency_proof(1, 2))).reason == "LIMIT_EXCEEDED"
    s.note = b""
    assert (await reason_of(client(s).checkpoint(None))).reason == "MALFORMED_INPUT"


@run
async def test_light_block_streams_are_checked() -> None:
    s = Scripted()
    proto = apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO
    s.blocks = [apb.LightBlock(height=h, light_block=b"x", encoding=proto) for h in (5, 6)]
    assert await client(s).light_blocks(5, 6) == [b"x", b"x"]
    truncated = await reason_of(client(s).light_blocks(5, 7))
    assert (truncated.reason, truncated.height) == ("STREAM_TRUNCATED", 7)
    assert (await reason_of(client(s).light_blocks(5, 5))).reason == "LIMIT_EXCEEDED"
    s.blocks = [apb.LightBlock(height=9, light_block=b"x", encoding=proto)]
    assert (await reason_of(client(s).light_blocks(5, 5))).reason == "MALFORMED_INPUT"
    json_enc = apb.LIGHT_BLOCK_ENCODING_COMETBFT_JSON
    s.blocks = [apb.LightBlock(height=5, light_block=b"{}", encoding=json_enc)]
    assert (await reason_of(client(s).light_blocks(5, 5))).reason == "MALFORMED_INPUT"
    with pytest.raises(ValueError):
        await client(s, max_light_blocks_per_fetch=2).light_blocks(1, 3)


def test_servicers_must_implement_every_method() -> None:
    class Half(adapter_pb2_grpc.AdapterServiceServicer):
        async def Describe(self, request: Any, context: Any) -> None: ...

    with pytest.raises(AdapterLoadError, match="GetLatestHeight"):
        check_servicer(Half(), name="half")
    with pytest.raises(AdapterLoadError, match="missing"):
        check_servicer(object(), name="nothing")
    check_servicer(Scripted(), name="scripted")


# --- entry points ---------------------------------------------------------------------------


def make_partner(*, descriptor: pb.ChainDescriptor) -> PartnerAdapter:
    """An entry-point target: a partner adapter for the descriptor's chain."""
    return PartnerAdapter(BftPartnerChain(descriptor.chain_id))


def make_nothing(*, descriptor: pb.ChainDescriptor) -> object:
    return object()


def make_broken(*, descriptor: pb.ChainDescriptor) -> object:
    raise RuntimeError("cannot start")


def points(*pairs: tuple[str, str]):  # type: ignore[no-untyped-def]
    eps = [importlib.metadata.EntryPoint(n, v, "relay.adapters") for n, v in pairs]

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in eps if ep.group == group]

    return entry_points


def test_entry_point_loading_fails_loudly() -> None:
    ok = points(("partner", "test_engine_adapters:make_partner"))
    assert load_entry_point("partner", entry_points=ok) is make_partner
    with pytest.raises(AdapterLoadError, match=r"no adapter named 'other'.*partner"):
        load_entry_point("other", entry_points=ok)
    dup = points(("p", "test_engine_adapters:make_partner"), ("p", "test_engine_adapters:x"))
    with pytest.raises(AdapterLoadError, match="more than once"):
        load_entry_point("p", entry_points=dup)
    same = points(
        ("p", "test_engine_adapters:make_partner"), ("p", "test_engine_adapters:make_partner")
    )
    assert load_entry_point("p", entry_points=same) is make_partner
    broken = points(("b", "no_such_module_xyz:factory"))
    with pytest.raises(AdapterLoadError, match=r"'b'.*failed to load.*ModuleNotFoundError"):
        load_entry_point("b", entry_points=broken)
    not_callable = points(("n", "relay.engine.adapters:ENTRY_POINT_GROUP"))
    with pytest.raises(AdapterLoadError, match="not callable"):
        load_entry_point("n", entry_points=not_callable)


@run
async def test_default_factory_builds_in_process_and_grpc_clients() -> None:
    eps = points(
        ("partner", "test_engine_adapters:make_partner"),
        ("nothing", "test_engine_adapters:make_nothing"),
        ("broken", "test_engine_adapters:make_broken"),
    )
    factory = DefaultAdapterFactory(fast_settings(), entry_points=eps)
    d = pb.ChainDescriptor(chain_id="c1", adapter=pb.AdapterEndpoint(entry_point="partner"))
    made = factory(d)
    assert isinstance(made, InProcessAdapterClient)
    assert (await made.describe()).chain_id == "c1"
    for name, pattern in (("nothing", "does not implement"), ("broken", "failed to start")):
        with pytest.raises(AdapterLoadError, match=pattern):
            factory(pb.ChainDescriptor(chain_id="c1", adapter=pb.AdapterEndpoint(entry_point=name)))
    remote = pb.AdapterEndpoint(grpc_address="127.0.0.1:1", ca_certificates_pem="PEM")
    assert isinstance(factory(pb.ChainDescriptor(chain_id="c", adapter=remote)), GrpcAdapterClient)
    with pytest.raises(AdapterLoadError, match="has no adapter endpoint"):
        factory(pb.ChainDescriptor(chain_id="c"))
    with pytest.raises(AdapterLoadError, match="TLS is mandatory"):
        factory(pb.ChainDescriptor(chain_id="c", adapter=pb.AdapterEndpoint(grpc_address="h:1")))


# --- gRPC over TLS --------------------------------------------------------------------------


def spki_pin(cert_pem: bytes) -> bytes:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


async def serve(
    servicer: object, *, ca: TestCA, mutual: bool = False
) -> tuple[grpc.aio.Server, int, bytes]:
    server_cert = ca.issue_server("localhost")
    server = grpc.aio.server()
    adapter_pb2_grpc.add_AdapterServiceServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(server_cert.key_pem, server_cert.cert_pem)],
        root_certificates=ca.cert_pem if mutual else None,
        require_client_auth=mutual,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port, server_cert.cert_pem


@run
async def test_grpc_client_over_tls() -> None:
    ca = TestCA.create()
    chain = BftPartnerChain("remote-chain")
    sample_data(chain)
    server, port, cert_pem = await serve(PartnerAdapter(chain), ca=ca)
    try:
        endpoint = pb.AdapterEndpoint(
            grpc_address=f"127.0.0.1:{port}",
            tls_server_name="localhost",
            ca_certificates_pem=ca.cert_pem.decode(),
        )
        c = GrpcAdapterClient(endpoint, chain_id=chain.chain_id, settings=fast_settings())
        assert (await c.describe()).chain_id == chain.chain_id
        assert await c.latest_height() == chain.height
        blocks = await c.light_blocks(1, chain.height)
        assert blocks == [chain.light_block_bytes(h) for h in range(1, chain.height + 1)]
        party = chain.party_key_of(_a_holder(chain))
        results = await c.list_by_party(party, [], None)
        assert results[0].height == chain.height and len(results) > 1
        missing = await reason_of(c.light_blocks(chain.height + 5, chain.height + 5))
        assert missing.reason == "HEIGHT_OUT_OF_RANGE"
        small = GrpcAdapterClient(
            endpoint, chain_id=chain.chain_id, settings=fast_settings(max_message_bytes=100)
        )
        assert (await reason_of(small.light_blocks(1, 1))).reason == "LIMIT_EXCEEDED"
        await small.close()
        await c.close()

        pinned = pb.AdapterEndpoint()
        pinned.CopyFrom(endpoint)
        pinned.spki_sha256_pins.append(spki_pin(cert_pem))
        ok = GrpcAdapterClient(pinned, chain_id=chain.chain_id, settings=fast_settings())
        assert await ok.latest_height() == chain.height
        await ok.close()
        wrong_pin = pb.AdapterEndpoint()
        wrong_pin.CopyFrom(endpoint)
        wrong_pin.spki_sha256_pins.append(b"\x00" * 32)
        bad = GrpcAdapterClient(
            wrong_pin, chain_id=chain.chain_id, settings=fast_settings(adapter_retries=0)
        )
        refused = await reason_of(bad.latest_height())
        assert refused.reason == "ADAPTER_UNAVAILABLE" and "pinned" in refused.message
        await bad.close()

        other_ca = TestCA.create("another CA")
        untrusted = pb.AdapterEndpoint()
        untrusted.CopyFrom(endpoint)
        untrusted.ca_certificates_pem = other_ca.cert_pem.decode()
        stranger = GrpcAdapterClient(
            untrusted,
            chain_id=chain.chain_id,
            settings=fast_settings(adapter_retries=0, adapter_deadline_s=2),
        )
        assert (await reason_of(stranger.describe())).reason == "ADAPTER_UNAVAILABLE"
        await stranger.close()
    finally:
        await server.stop(None)


def _a_holder(chain: BftPartnerChain):  # type: ignore[no-untyped-def]
    from relay.testing import samples

    for party in samples.population().everyone:
        if len(chain.list_by_party(chain.party_key_of(party))) > 1:
            return party
    raise AssertionError


@run
async def test_grpc_client_with_mutual_tls() -> None:
    ca = TestCA.create()
    chain = BftPartnerChain("mtls-chain")
    chain.commit()
    server, port, _ = await serve(PartnerAdapter(chain), ca=ca, mutual=True)
    relay_cert = ca.issue_client("relay")
    try:
        endpoint = pb.AdapterEndpoint(
            grpc_address=f"127.0.0.1:{port}",
            tls_server_name="localhost",
            ca_certificates_pem=ca.cert_pem.decode(),
        )
        with_cert = fast_settings(
            adapter_client_cert_pem=relay_cert.cert_pem, adapter_client_key_pem=relay_cert.key_pem
        )
        c = GrpcAdapterClient(endpoint, chain_id=chain.chain_id, settings=with_cert)
        assert await c.latest_height() == 1
        await c.close()
        without = GrpcAdapterClient(
            endpoint, chain_id=chain.chain_id, settings=fast_settings(adapter_retries=0)
        )
        assert (await reason_of(without.latest_height())).reason == "ADAPTER_UNAVAILABLE"
        await without.close()
    finally:
        await server.stop(None)
