"""Issue 9, "what it must show" 2. In process, fast: two engines sharing one store take turns
syncing a chain through its lease (the non-owner follows, asks the partner's head for its
lag figures, and verifies on demand, unfenced); a graceful close hands the lease over at
once; a lost lease is counted and ends syncing at once. With real processes: three ``relay
serve`` processes share one PostgreSQL (a real throwaway cluster, conftest ``pg_cluster``:
skipped without PostgreSQL, failed under CI=true) and follow two reference deployments
(adapters/, real processes, mutual TLS) with a 3 s sync lease. The three start at once, so
their migrations race too.

The lease owner of a chain is SIGKILLed: another replica takes the lease and the chain's
head moves on; every state stored before the kill is still there with the same header, one
row per height; the survivors and the restarted replica give the same verified answer,
whose evidence verifies offline with the anchors. Then the owner is SIGSTOPped past its
lease: once another replica owns the chain and wrote under its term, the paused one is
resumed, and no consensus state carries its old token beyond what it wrote before it lost
the lease; it logs the loss and goes on as a non-owner."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf import json_format
from test_engine_harness import CASE as ENGINE_CASE
from test_engine_harness import SIGNER, asset_of, fast_settings, make_world

from adapters import DEPLOYMENTS
from adapters.launch import Child, Partner, start_partners, terminate
from relay.audit.export import export_store, verify_export
from relay.demo import CASE, choose
from relay.engine.engine import Engine
from relay.engine.evidence import RelaySigner
from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc, query_pb2, query_pb2_grpc
from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.client import ClientTls, channel
from relay.service.devconfig import DevSetup, wait_serving, write_dev_setup
from relay.store import SQLiteStore
from relay.store.base import ConsensusStateRecord, Lease
from relay.store.postgres import PostgresStore
from relay.verify.evidence import ChainAnchor, verify_evidence

T = TypeVar("T")
LEASE_TTL_S = 3.0
MARGIN_S = 25.0  # generous: two cores shared with other test workers
NAMES = ("realestate", "bank")
CASE_REF = pb.CaseRef(purpose=pb.CASE_PURPOSE_INVESTIGATION, **CASE)  # type: ignore[arg-type]


def lease_metric(engine: Engine, name: str, chain_id: str) -> float:
    labels = {"chain": chain_id, "domain": "real_estate"}
    found = engine.metrics.registry.get_sample_value(name, labels)
    assert found is not None, (name, labels)
    return float(found)


async def eventually(what: str, check: Callable[[], Any], *, timeout_s: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > end:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.02)


def test_engines_sharing_a_store_take_turns_through_the_lease(tmp_path: Path) -> None:
    world = make_world()
    estate = next(c for c in world.chains if "realestate" in c)
    chain = world.chains[estate]
    asset = asset_of(world, estate)

    async def open_engine(store: SQLiteStore, replica: str) -> Engine:
        settings = fast_settings(lease_ttl_s=0.6, replica_id=replica)
        return await Engine.open(
            settings=settings,
            store=store,
            signer=SIGNER,
            adapters=world.factory(settings),
            clock=world.clock,
        )

    async def body() -> None:
        # The store's clock is the world's: leases expire only when the test says so.
        store = await SQLiteStore.open(tmp_path / "relay.db", clock=world.clock)
        a = await open_engine(store, "replica-a")
        b = await open_engine(store, "replica-b")
        try:
            for chain_id in world.chains:
                await a.register_chain(q_register(world, chain_id))
            await a.start_sync()
            await eventually("a owns the chain", lambda: a.registry.get(estate).lease)
            await b.start_sync()  # b learns the chains from the store
            await eventually("b loads the chain", lambda: estate in b.registry)
            rb = b.registry.get(estate)
            lease = await store.get_lease(estate)
            assert lease is not None and lease.owner == "replica-a"
            # a syncs; b does no rounds but follows what a commits.
            world.clock.advance(0.1)  # less than the lease: a jump expires nothing
            target = chain.commit()

            async def b_sees(height: int) -> bool:
                info = await b.chain_info(b.registry.get(estate))
                return info.trusted_height >= height

            await eventually("b follows a's commits", lambda: b_sees(target))

            # b also asks the partner's head itself: its ChainInfo and lag series say how
            # far the trusted state trails the chain, without a sync round of its own.
            async def b_knows_head(height: int) -> bool:
                info = await b.chain_info(b.registry.get(estate))
                return info.partner_head_height >= height

            await eventually("b knows the partner's head", lambda: b_knows_head(target))
            labels = {"chain": estate, "domain": "real_estate"}
            head_series = b.metrics.registry.get_sample_value(
                "relay_chain_partner_head_height", labels
            )
            assert head_series is not None and head_series >= target
            assert rb.stats.rounds == 0 and rb.lease is None
            assert lease_metric(a, "relay_sync_lease_held", estate) == 1
            assert lease_metric(b, "relay_sync_lease_held", estate) == 0
            # b verifies on demand a height a query needs: an unfenced write.
            world.clock.advance(0.1)  # less than the lease: a jump expires nothing
            chain.commit()
            top = chain.commit()
            answer = await b.get_ownership(
                q.GetOwnershipRequest(asset=asset, case_ref=ENGINE_CASE, at_height=top)
            )
            assert answer.evidence.height == top and world.check(answer.evidence).ok
            written = await store.get_consensus_state(estate, top)
            assert written is not None  # by b or by a, whichever came first: both succeed
            # Graceful close hands the lease over at once (no waiting for it to run out).
            await a.close()
            lease = await eventually(
                "b takes over",
                lambda: rb.lease if rb.lease is not None else None,
                timeout_s=5,
            )
            assert lease.token > 1
            world.clock.advance(0.1)  # less than the lease: a jump expires nothing
            synced = chain.commit()
            await eventually(
                "b syncs under its term",
                lambda: _written_under(store, estate, synced, lease.token),
            )
            # A pause past the lease: another owner takes it in the store; b loses it,
            # counts it, and writes nothing more under its old term.
            world.clock.advance(5)
            taken = await store.acquire_lease(estate, owner="replica-c", ttl_s=3600)
            assert taken is not None and taken.token > lease.token
            await eventually("b notices", lambda: rb.stats.leases_lost >= 1, timeout_s=5)
            assert lease_metric(b, "relay_sync_leases_lost_total", estate) == 1
            assert lease_metric(b, "relay_sync_lease_held", estate) == 0
            before = {
                s.height for s in await store.list_consensus_states(estate)
                if s.lease_token == lease.token
            }  # fmt: skip
            assert synced in before
            world.clock.advance(0.1)  # less than the lease: a jump expires nothing
            chain.commit()
            await asyncio.sleep(0.5)
            after = {
                s.height for s in await store.list_consensus_states(estate)
                if s.lease_token == lease.token
            }  # fmt: skip
            assert after == before and rb.lease is None
            current = await store.get_lease(estate)
            assert current is not None and current.owner == "replica-c"
        finally:
            await a.close()
            await b.close()
            await store.close()

    asyncio.run(body())


def test_sqlite_restart_does_not_wait_out_the_previous_process_lease(tmp_path: Path) -> None:
    """One relay on SQLite (the only writer): a lease left running by a process that died is
    ended when the database is opened again, so the next process syncs at once, under a
    greater token."""
    from relay.store import ChainRecord, ChainStatus, ClientType

    async def body() -> None:
        store = await SQLiteStore.open(tmp_path / "relay.db")
        await store.upsert_chain(
            ChainRecord(
                chain_id="c1",
                domain="real_estate",
                client_type=ClientType.TENDERMINT,
                descriptor=b"d",
                status=ChainStatus.ACTIVE,
                anchor_height=1,
            )
        )
        old = await store.acquire_lease("c1", owner="host-111", ttl_s=3600)
        assert old is not None
        await store.close()  # as if the process crashed holding it
        store = await SQLiteStore.open(tmp_path / "relay.db")
        try:
            new = await store.acquire_lease("c1", owner="host-222", ttl_s=3600)
            assert new is not None and new.token > old.token
        finally:
            await store.close()

    asyncio.run(body())


def q_register(world: Any, chain_id: str) -> Any:
    from relay.pb.relay.v1 import admin_pb2 as a

    return a.RegisterChainRequest(descriptor=world.descriptor(chain_id))


async def _written_under(store: SQLiteStore, chain_id: str, height: int, token: int) -> bool:
    states = await store.list_consensus_states(chain_id, from_height=height)
    return any(s.lease_token == token for s in states)


class Db:
    """The test's own view of the shared database, through the store's API."""

    def __init__(self, dsn: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = self.run(PostgresStore.open(dsn, pool_size=1))

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def lease(self, chain_id: str) -> Lease | None:
        lease: Lease | None = self.run(self.store.get_lease(chain_id))
        return lease

    def states(self, chain_id: str) -> list[ConsensusStateRecord]:
        out: list[ConsensusStateRecord] = []
        while True:
            start = out[-1].height + 1 if out else 0
            page = self.run(self.store.list_consensus_states(chain_id, from_height=start))
            out += page
            if len(page) < 1000:
                return out

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.close()


class Replicas:
    def __init__(self, root: Path, pki: Any, dsn: str) -> None:
        self.setups: dict[str, DevSetup] = {}
        self.children: dict[str, Child] = {}
        for i in (1, 2, 3):
            name = f"replica-{i}"
            self.setups[name] = write_dev_setup(
                root / name,
                pki=pki,
                overrides={
                    "store": {
                        "backend": "postgres",
                        "path": None,
                        "lease_ttl": LEASE_TTL_S,
                        "replica_id": name,
                        "pool_size": 4,
                    },
                    "sync": {"interval": "200ms"},
                    "adapters": {"deadline": "3s", "retries": 1, "breaker_reset": "1s"},
                    # The replicas share one audit log too (one lease holder signs).
                    "audit": {"checkpoint_interval": "2s"},
                },
            )
        self.dsn = dsn

    def start(self, name: str) -> Child:
        setup = self.setups[name]
        log = setup.directory / "relay.log"
        child = Child(
            name, ["-m", "relay.cli", "serve", "--config", str(setup.config), "--insecure-dev"], log
        )  # no access: section (development setup)
        os.environ["RELAY_STORE_DSN"] = self.dsn  # Child passes the environment on
        self.children[name] = child.start()
        return child

    def wait(self, name: str) -> None:
        child = self.children[name]
        assert child.process is not None
        try:
            wait_serving(self.setups[name].health_address, timeout_s=60, process=child.process)
        except (RuntimeError, TimeoutError) as e:  # say why: the replica's own log
            raise AssertionError(f"replica {name}: {e}\n{self.log(name)[-4000:]}") from e

    def stub(self, name: str) -> tuple[Any, Any]:
        setup = self.setups[name]
        tls = ClientTls.from_files(
            ca=setup.pki.ca_cert,
            cert=setup.pki.client_cert,
            key=setup.pki.client_key,
            server_name="localhost",
        )
        ch = channel(setup.grpc_address, tls)
        return ch, ch

    def query(self, name: str) -> tuple[Any, Any]:
        ch, _ = self.stub(name)
        return ch, query_pb2_grpc.QueryServiceStub(ch)  # type: ignore[no-untyped-call]

    def log(self, name: str) -> str:
        return self.children[name].tail(200_000)


def until(what: str, check: Callable[[], T | None], *, timeout_s: float) -> T:
    end = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout_s} s (last: {last!r})")


@pytest.fixture
def stack(tmp_path: Path, pg_cluster: Any) -> Iterator[tuple[Replicas, dict[str, Partner], Db]]:
    dsn = pg_cluster.create_database("replicas")
    first = write_dev_setup(tmp_path / "pki-owner")
    partners: dict[str, Partner] = {}
    replicas = Replicas(tmp_path, first.pki, dsn)
    saved = os.environ.get("RELAY_STORE_DSN")
    db: Db | None = None
    try:
        partners = start_partners(tmp_path / "partners", first.pki, names=NAMES, block_interval=0.5)
        for name in replicas.setups:  # all at once: their migrations race
            replicas.start(name)
        for name in replicas.setups:
            replicas.wait(name)
        db = Db(dsn)
        yield replicas, partners, db
    finally:
        if db is not None:
            db.close()
        children = [c for p in partners.values() for c in p.children()]
        for child in replicas.children.values():
            if child.process is not None and child.process.poll() is None:
                os.kill(child.process.pid, signal.SIGCONT)
        terminate([*replicas.children.values(), *children])
        if saved is None:
            os.environ.pop("RELAY_STORE_DSN", None)
        else:
            os.environ["RELAY_STORE_DSN"] = saved


def descriptor_of(partner: Partner) -> pb.ChainDescriptor:
    return json_format.Parse(partner.descriptor.read_text(), pb.ChainDescriptor())


def chain_infos(replicas: Replicas, name: str) -> list[pb.ChainInfo]:
    ch, stub = replicas.query(name)
    with ch:
        return list(stub.ListChains(query_pb2.ListChainsRequest(), timeout=5).chains)


def ownership(replicas: Replicas, name: str, height: int) -> query_pb2.OwnershipAnswer:
    flat = choose(DEPLOYMENTS).flat
    ch, stub = replicas.query(name)
    with ch:
        answer: query_pb2.OwnershipAnswer = stub.GetOwnership(
            query_pb2.GetOwnershipRequest(asset=flat, case_ref=CASE_REF, at_height=height),
            timeout=20,
        )
    return answer


@pytest.mark.slow
def test_lease_failover_kill_and_pause(
    stack: tuple[Replicas, dict[str, Partner], Db],
) -> None:
    replicas, partners, db = stack
    descriptors = {p.chain_id: descriptor_of(p) for p in partners.values()}
    anchors = {c: ChainAnchor.from_descriptor(d) for c, d in descriptors.items()}
    setup = replicas.setups["replica-1"]
    signer = RelaySigner.ed25519(key_id=setup.key_id, seed=setup.signing_seed)
    relay_keys = {setup.key_id: signer.relay_key()}

    def verified(answer: query_pb2.OwnershipAnswer) -> query_pb2.OwnershipAnswer:
        report = verify_evidence(answer.evidence, anchors=anchors, relay_keys=relay_keys)
        assert report.ok, [c for c in report.checks if not c.passed]
        return answer

    # Register both chains through one replica; the others load them from the store.
    ch, _ = replicas.stub("replica-1")
    with ch:
        admin = admin_pb2_grpc.AdminServiceStub(ch)  # type: ignore[no-untyped-call]
        for d in descriptors.values():
            admin.RegisterChain(admin_pb2.RegisterChainRequest(descriptor=d), timeout=30)

    def all_synced() -> bool:
        for name in replicas.setups:
            infos = chain_infos(replicas, name)
            if len(infos) != len(descriptors) or not all(
                i.status == pb.CHAIN_STATUS_ACTIVE and i.trusted_height > i.anchor_height
                for i in infos
            ):
                return False
        return True

    until("every replica serving both chains", all_synced, timeout_s=60)
    chain = partners["realestate"].chain_id
    assert {db.lease(c).owner for c in descriptors} <= set(replicas.setups)  # type: ignore[union-attr]

    # --- SIGKILL the owner of the real-estate chain.
    lease = db.lease(chain)
    assert lease is not None
    victim = lease.owner
    before = {s.height: s.header_hash for s in db.states(chain)}
    replicas.children[victim].kill()

    def taken_over() -> Lease | None:
        now = db.lease(chain)
        if now is None or now.owner == victim or now.token <= lease.token:
            return None
        return now if max(s.height for s in db.states(chain)) > max(before) else None

    new = until("another replica owns and advances the chain", taken_over,
                timeout_s=LEASE_TTL_S + MARGIN_S)  # fmt: skip
    after = db.states(chain)
    heights = [s.height for s in after]
    assert len(heights) == len(set(heights))
    stored = {s.height: s.header_hash for s in after}
    for height, header_hash in before.items():
        assert stored.get(height) == header_hash, f"state {height} lost or changed"
    assert any(s.lease_token == new.token for s in after)

    # The survivors answer alike, at one height, with evidence that verifies offline.
    height = max(before)
    survivors = [n for n in replicas.setups if n != victim]
    answers = [verified(ownership(replicas, n, height)) for n in survivors]
    replicas.start(victim)
    replicas.wait(victim)
    answers.append(verified(ownership(replicas, victim, height)))
    for answer in answers:
        assert answer.outcome == pb.OUTCOME_FOUND
        assert answer.evidence.height == height
        assert answer.record == answers[0].record
        assert answer.evidence.header == answers[0].evidence.header
        assert answer.evidence.proof == answers[0].evidence.proof

    # --- SIGSTOP the current owner past its lease, then let it run again.
    owner = db.lease(chain)
    assert owner is not None
    paused = replicas.children[owner.owner]
    assert paused.process is not None
    os.kill(paused.process.pid, signal.SIGSTOP)
    try:

        def written_by_successor() -> Lease | None:
            now = db.lease(chain)
            if now is None or now.owner == owner.owner or now.token <= owner.token:
                return None
            states = db.states(chain)
            return now if any(s.lease_token == now.token for s in states) else None

        successor = until("another replica owns the chain and wrote under its term",
                          written_by_successor, timeout_s=LEASE_TTL_S + MARGIN_S)  # fmt: skip
        old_rows = {s.height for s in db.states(chain) if s.lease_token == owner.token}
    finally:
        os.kill(paused.process.pid, signal.SIGCONT)
    lost_line = f"sync lease term {owner.token} lost"
    until("the resumed replica notices its lost lease",
          lambda: lost_line in replicas.log(owner.owner), timeout_s=MARGIN_S)  # fmt: skip
    time.sleep(LEASE_TTL_S)  # let it run: it must write nothing under its old term
    final = db.states(chain)
    assert {s.height for s in final if s.lease_token == owner.token} == old_rows
    heights = [s.height for s in final]
    assert len(heights) == len(set(heights))
    current = db.lease(chain)
    assert current is not None and current.owner != owner.owner
    assert current.token >= successor.token
    # It goes on as a non-owner: it still answers, from what the owner commits.
    top = max(heights)
    answer = verified(ownership(replicas, owner.owner, top))
    assert answer.evidence.height == top
    assert replicas.children[owner.owner].running
    # Every replica recorded its queries in the one shared audit log, which verifies end to
    # end against the relay key (signed checkpoints included) after the kill and the pause.
    export = db.run(export_store(db.store, relay_key=relay_keys[setup.key_id]))
    report = verify_export(json.dumps(export).encode(), relay_key=relay_keys[setup.key_id])
    assert report.leaves >= 4 and report.checkpoints >= 1, report.lines


def test_the_owners_pruning_keeps_what_another_replica_served(tmp_path: Path) -> None:
    """Issue 4's pruning rule ("keeping what anchors recent evidence") across replicas: a
    non-owner serves evidence at an old height and shares the note through the store; the
    owner's pruning keeps that height while it deletes other old ones."""
    world = make_world()
    estate = next(c for c in world.chains if "realestate" in c)
    chain = world.chains[estate]
    asset = asset_of(world, estate)

    async def body() -> None:
        store = await SQLiteStore.open(tmp_path / "relay.db", clock=world.clock)
        engines = []
        for replica in ("replica-a", "replica-b"):
            settings = fast_settings(lease_ttl_s=3600, replica_id=replica)
            engine = await Engine.open(
                settings=settings,
                store=store,
                signer=SIGNER,
                adapters=world.factory(settings),
                clock=world.clock,
            )
            engines.append(engine)
        a, b = engines
        try:
            await a.register_chain(q_register(world, estate))
            for _ in range(3):  # a (the owner) verifies a few more heights
                chain.commit()
                chain.commit()
                world.clock.advance(1)
                await a.sync_chain_once(estate)
            await b.refresh_catalogue()
            heights = [s.height for s in await store.list_consensus_states(estate)]
            anchor, *middle, latest = heights
            assert len(middle) >= 2, heights
            served = middle[0]
            world.clock.advance(100)  # the states are old now; b serves evidence at one
            answer = await b.get_ownership(
                q.GetOwnershipRequest(asset=asset, case_ref=ENGINE_CASE, at_height=served)
            )
            assert answer.evidence.height == served
            await b.registry.get(estate).share_evidence_notes()
            owner = a.registry.get(estate)
            assert served not in owner.recent_evidence  # a never served it itself
            # Prune as if the trusting period ended 50 s after the states, before the note.
            now = world.clock() + owner.client.trusting_period_ns - 50 * 10**9
            deleted = await owner.prune(now_ns=now)
            left = [s.height for s in await store.list_consensus_states(estate)]
            assert deleted >= 1 and served in left, (heights, left)
            assert anchor in left and latest in left
            assert set(middle[1:]) - set(left), (heights, left)  # unnoted old heights went
        finally:
            for engine in engines:
                await engine.close()
            await store.close()

    asyncio.run(body())
