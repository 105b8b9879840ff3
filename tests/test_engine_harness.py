"""Shared harness of the engine tests (imported by tests/test_engine_*.py and
tests/test_evidence_*.py; it holds no tests itself): a fake clock, worlds of real test
partner chains (relay/testing/partners.py) served in process through LyingAdapter (honest
until a test sets a fault), and an engine over a real SQLiteStore in ``tmp_path``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.engine.adapters import AdapterClient, InProcessAdapterClient
from relay.engine.engine import Engine
from relay.engine.evidence import RelaySigner
from relay.engine.settings import EngineSettings
from relay.pb.relay.v1 import admin_pb2 as a
from relay.pb.relay.v1 import types_pb2 as pb
from relay.store import SQLiteStore
from relay.testing import samples
from relay.testing.partners import (
    BftPartnerChain,
    LyingAdapter,
    PartnerAdapter,
    PartnerChain,
    TlogPartnerRegistry,
    sample_data,
)
from relay.verify.evidence import ChainAnchor, EvidenceReport, RelayKey, verify_evidence

SECOND = 1_000_000_000
START_NS = 1_800_000_000 * SECOND
CASE = pb.CaseRef(
    court="京0105", case_number="(2026)京0105执1234号", purpose=pb.CASE_PURPOSE_INVESTIGATION
)
SIGNER = RelaySigner.ed25519(key_id="relay-test-1", seed=bytes(range(32)))
ENDPOINT = pb.AdapterEndpoint(entry_point="relay-testing-partner")


def run(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body with asyncio.run (no pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


class FakeClock:
    """Nanoseconds since the epoch, moved only by tests."""

    def __init__(self, ns: int = START_NS) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns

    def seconds(self) -> float:
        return self.ns / SECOND

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * SECOND)


def fast_settings(**overrides: Any) -> EngineSettings:
    """Settings with short deadlines and no real waiting, for tests."""
    values: dict[str, Any] = {
        "sync_interval_s": 0.02,
        "sync_jitter": 0.0,
        "sync_backoff_max_s": 0.1,
        "adapter_deadline_s": 0.5,
        "adapter_retries": 1,
        "retry_base_delay_s": 0.001,
        "retry_max_delay_s": 0.005,
        "breaker_failure_threshold": 1000,
        "query_deadline_s": 2.0,
        "verify_threads": 1,
    }
    values.update(overrides)
    return EngineSettings(**values)


CHAIN_IDS = {
    pb.DOMAIN_REAL_ESTATE: "cn-bj-chaoyang-realestate",
    pb.DOMAIN_IP: "cn-cnipa-patents",
    pb.DOMAIN_CREDIT: "cn-credit-list",
    pb.DOMAIN_BANK: "cn-icbc-bj-accounts",
}


def make_chain(
    kind: str, domain: int, clock: FakeClock, people: samples.Population, **kwargs: Any
) -> BftPartnerChain | TlogPartnerRegistry:
    chain_id = kwargs.pop("chain_id", CHAIN_IDS[domain])
    if kind == "bft":
        return BftPartnerChain(chain_id, domain=domain, clock=clock, **kwargs)
    return TlogPartnerRegistry(
        f"{chain_id}.example.cn/log",
        chain_id=chain_id,
        domain=domain,
        clock=clock.seconds,
        **kwargs,
    )


@dataclass
class World:
    """Partner chains, their data and their (switchable) adapters."""

    clock: FakeClock
    people: samples.Population
    chains: dict[str, BftPartnerChain | TlogPartnerRegistry] = field(default_factory=dict)
    data: dict[str, samples.SampleSet] = field(default_factory=dict)
    adapters: dict[str, LyingAdapter] = field(default_factory=dict)
    descriptors: dict[str, pb.ChainDescriptor] = field(default_factory=dict)
    clients: dict[str, AdapterClient] = field(default_factory=dict)

    def add(self, chain: BftPartnerChain | TlogPartnerRegistry, *, data: bool = True) -> None:
        self.chains[chain.chain_id] = chain
        if data:
            self.data[chain.chain_id] = sample_data(chain, people=self.people)
        self.adapters[chain.chain_id] = LyingAdapter(PartnerAdapter(chain), None)

    def descriptor(self, chain_id: str, *, at: int | None = None) -> pb.ChainDescriptor:
        """The chain's descriptor, anchored at ``at`` (default: its first height)."""
        chain = self.chains[chain_id]
        first = chain.heights()[0] if at is None else at
        if isinstance(chain, BftPartnerChain):
            d = chain.descriptor(ENDPOINT, anchor_height=first)
        else:
            d = chain.descriptor(ENDPOINT, anchor_size=first)
        self.descriptors[chain_id] = d
        return d

    def factory(self, settings: EngineSettings) -> Callable[[pb.ChainDescriptor], AdapterClient]:
        def make(descriptor: pb.ChainDescriptor) -> AdapterClient:
            client = InProcessAdapterClient(
                self.adapters[descriptor.chain_id],
                chain_id=descriptor.chain_id,
                settings=settings,
            )
            self.clients[descriptor.chain_id] = client
            return client

        return make

    def anchors(self) -> dict[str, ChainAnchor]:
        return {cid: ChainAnchor.from_descriptor(d) for cid, d in self.descriptors.items()}

    def check(self, evidence: pb.Evidence) -> EvidenceReport:
        """The offline verifier's report on ``evidence`` (relay/verify/evidence.py)."""
        keys: dict[str, RelayKey] = {SIGNER.key_id: SIGNER.relay_key()}
        return verify_evidence(evidence, anchors=self.anchors(), relay_keys=keys)

    def party_with_holdings(self, chain_id: str) -> samples.Party:
        """A party holding at least one asset on the chain."""
        chain = self.chains[chain_id]
        for party in self.people.everyone:
            result = chain.list_by_party(chain.party_key_of(party))
            if len(result) > 1:
                return party
        raise AssertionError("no party holds anything")


def make_world(spec: dict[int, str] | None = None, **chain_kwargs: Any) -> World:
    """A world with one chain per domain in ``spec`` (domain -> "bft" | "tlog"); default:
    a BFT real-estate chain and a tlog patent registry."""
    clock = FakeClock()
    world = World(clock=clock, people=samples.population())
    for domain, kind in (spec or {pb.DOMAIN_REAL_ESTATE: "bft", pb.DOMAIN_IP: "tlog"}).items():
        world.add(make_chain(kind, domain, clock, world.people, **chain_kwargs))
    return world


@contextlib.asynccontextmanager
async def engine_for(
    world: World,
    path: Path,
    *,
    settings: EngineSettings | None = None,
    register: bool = True,
    sync: bool = True,
) -> AsyncIterator[Engine]:
    """An engine over a SQLiteStore at ``path``: registers every chain of ``world``
    (``register``) and runs one sync round of each (``sync``); closes both at the end."""
    settings = settings or fast_settings()
    store = await SQLiteStore.open(path, clock=world.clock)
    engine: Engine | None = None
    try:
        engine = await Engine.open(
            settings=settings,
            store=store,
            signer=SIGNER,
            adapters=world.factory(settings),
            clock=world.clock,
        )
        if register:
            for chain_id in world.chains:
                await engine.register_chain(
                    a.RegisterChainRequest(descriptor=world.descriptor(chain_id))
                )
        if sync:
            world.clock.advance(1)
            for chain_id in world.chains:
                await engine.sync_chain_once(chain_id)
        yield engine
    finally:
        if engine is not None:
            await engine.close()
        await store.close()


def asset_of(world: World, chain_id: str, kind_field: str = "ownership") -> pb.AssetRef:
    """An asset with a record of ``kind_field`` on the chain."""
    for key, _ in world.data[chain_id].records:
        if key.WhichOneof("record") == kind_field:
            value: pb.AssetRef = getattr(key, kind_field)
            return value
    raise AssertionError(f"no {kind_field} record on {chain_id}")


def is_partner(chain: object) -> bool:
    return isinstance(chain, PartnerChain)
