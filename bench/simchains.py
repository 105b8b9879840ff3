"""Many lightweight simulated CometBFT chains behind one adapter endpoint, for
bench/bench_scale.py (issue 9, "what it must show" 3).

Each chain is a :class:`relay.testing.partners.BftPartnerChain` (real Ed25519 validator keys,
real CometBFT headers linked to their parents, real precommit signatures, protobuf light
blocks) without records. Chain ``i`` makes one block per second on its own phase: block ``h``
has the time ``start_i + (h - 1) s`` and exists from that instant on. Blocks are made lazily,
when a request shows the clock passed them, with exactly their scheduled times; headers are
hashed and light blocks signed when first asked for. What the relay sees is what a live chain
shows: the head moves one block per second, every header time is its creation time.

One gRPC server (TLS, the dev PKI's server certificate) serves every chain. AdapterService
requests carry no chain id, so the relay's gRPC adapter client names the chain in the
``relay-chain-id`` call metadata (relay.engine.adapters.CHAIN_ID_METADATA) and this server
routes by it; every chain's descriptor has the same ``grpc_address``. Only the calls sync
needs are served (Describe, GetLatestHeight, GetLightBlocks); the others answer
UNIMPLEMENTED, as a header-only adapter would.

Run as a process by bench_scale.py (``--serve sim``), so its CPU is not the relay's.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from relay.engine.adapters import CHAIN_ID_METADATA
from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import types_pb2 as pb
from relay.testing.partners import BftPartnerChain, PartnerAdapter

SECOND = 1_000_000_000
SERVICE = "relay.adapter.v1.AdapterService"
KEEP_BLOCKS = 16
"""Cached headers and light blocks kept per chain below the head (older ones are dropped so
a long run does not grow the simulator's memory; the relay only asks near the head)."""


def chain_id(index: int) -> str:
    return f"sim-{index:04d}"


class SimChain:
    """One simulated chain: a BftPartnerChain and its one-block-per-second schedule."""

    def __init__(self, index: int, *, validators: int, start_ns: int) -> None:
        self.index = index
        self.start_ns = start_ns
        self.chain = BftPartnerChain(
            chain_id(index),
            validators=validators,
            registry_codes=[f"SIM{index:04d}"],
            clock=time.time_ns,
        )
        self.adapter = PartnerAdapter(self.chain)
        self.trimmed_below = 1
        self.catch_up(start_ns)

    def block_time(self, height: int) -> int:
        return self.start_ns + (height - 1) * SECOND

    def catch_up(self, now_ns: int) -> int:
        """Make every block whose time has come; return the head."""
        due = 1 + (now_ns - self.start_ns) // SECOND
        chain = self.chain
        while chain.height < due:
            chain.commit(time_ns=self.block_time(chain.height + 1))
        if chain.height - self.trimmed_below > 4 * KEEP_BLOCKS:
            self._trim()
        return chain.height

    def _trim(self) -> None:
        """Drop cached headers and blocks below head - KEEP_BLOCKS (they can be remade)."""
        chain = self.chain
        floor = chain.height - KEEP_BLOCKS
        for cache in (chain._blocks, chain._encoded, chain.chain._headers):
            for h in [h for h in cache if h < floor]:
                del cache[h]
        self.trimmed_below = floor


class SimChains:
    """``count`` chains with random phases, and the gRPC handler serving all of them."""

    def __init__(
        self,
        count: int,
        *,
        validators: int,
        seed: int = 1,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        rng = random.Random(seed)
        now = clock()
        self.clock = clock
        # Every chain already has block 1 (the registration anchor), made within the last
        # second, so the chains' blocks are spread evenly over each second.
        self.chains = {
            chain_id(i): SimChain(
                i, validators=validators, start_ns=now - math.floor(rng.random() * SECOND)
            )
            for i in range(count)
        }
        self.calls = 0

    def descriptors(self, endpoint: pb.AdapterEndpoint) -> list[pb.ChainDescriptor]:
        return [c.chain.descriptor(endpoint) for c in self.chains.values()]

    def _chain(self, context: grpc.aio.ServicerContext) -> SimChain:
        self.calls += 1
        for key, value in context.invocation_metadata() or ():
            if key == CHAIN_ID_METADATA:
                found = self.chains.get(str(value))
                if found is not None:
                    return found
                break
        raise _Abort(grpc.StatusCode.NOT_FOUND, "no such chain (relay-chain-id metadata)")

    async def describe(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        sim = await self._guard(context)
        return sim.adapter.describe().SerializeToString()

    async def latest_height(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        sim = await self._guard(context)
        sim.catch_up(self.clock())
        return sim.adapter.latest_height().SerializeToString()

    async def light_blocks(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        sim = await self._guard(context)
        req = apb.GetLightBlocksRequest.FromString(request)
        head = sim.catch_up(self.clock())
        if not 1 <= req.from_height <= req.to_height or req.to_height - req.from_height > 256:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad height range")
        if req.to_height > head:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"head is {head}")
        if req.encoding != apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "protobuf light blocks only")
        for h in range(req.from_height, req.to_height + 1):
            yield apb.LightBlock(
                height=h,
                light_block=sim.chain.light_block_bytes(h),
                encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO,
            ).SerializeToString()

    async def unimplemented(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the simulator serves headers only")
        raise AssertionError("unreachable")

    async def unimplemented_stream(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the simulator serves headers only")
        yield b""  # pragma: no cover - abort raises

    async def _guard(self, context: grpc.aio.ServicerContext) -> SimChain:
        try:
            return self._chain(context)
        except _Abort as e:
            await context.abort(e.code, e.details)
            raise AssertionError("unreachable") from e

    def handler(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        methods: dict[str, Any] = {
            "Describe": unary(self.describe),
            "GetLatestHeight": unary(self.latest_height),
            "GetLightBlocks": grpc.unary_stream_rpc_method_handler(self.light_blocks),
        }
        for name in ("GetCheckpoint", "GetConsistencyProof", "Query"):
            methods[name] = unary(self.unimplemented)
        methods["ListByParty"] = grpc.unary_stream_rpc_method_handler(self.unimplemented_stream)
        return grpc.method_handlers_generic_handler(SERVICE, methods)


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


async def start_server(
    sims: SimChains, *, cert_pem: bytes, key_pem: bytes, host: str = "127.0.0.1"
) -> tuple[grpc.aio.Server, int]:
    """Serve every chain of ``sims`` over TLS on a free port of ``host``."""
    server = grpc.aio.server(
        options=[("grpc.so_reuseport", 0), ("grpc.max_concurrent_streams", 4096)]
    )
    server.add_generic_rpc_handlers((sims.handler(),))
    port = server.add_secure_port(f"{host}:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    await server.start()
    return server, port
