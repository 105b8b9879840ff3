"""Issues 7 and 9 together: one audit log for three relay replicas sharing one PostgreSQL
(a real throwaway cluster, conftest ``pg_cluster``: skipped without PostgreSQL, failed under
CI=true). Three in-process relays (relay/service/app.py, mutual TLS, access control) answer
court queries spread over all three at once: no call fails (the store numbers the entries,
so the replicas' appends never collide); exactly one replica, the audit lease holder, signs
checkpoints, and the others refuse to; every court's entries have inclusion proofs that
verify from every replica, and consistency proofs between checkpoints verify too; the whole
log exports (``relay audit export`` from PostgreSQL) and verifies (``relay audit verify``).
Then an edited row below a checkpoint is still caught: by the export check and by the
holder's next checkpoint, which refuses to sign."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import grpc
import pytest

from relay.audit.checkpoint import TREE_HASHER, open_checkpoint
from relay.audit.entry import decode_entry
from relay.audit.log import AuditIntegrityError, NotCheckpointSignerError
from relay.cli import main
from relay.config import ENV_STORE_DSN, load_config
from relay.engine.adapters import InProcessAdapterClient
from relay.pb.relay.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.app import start_relay
from relay.service.client import ClientTls, aio_channel
from relay.service.devconfig import write_dev_setup
from relay.store.postgres import PostgresStore
from relay.testing.partners import BftPartnerChain, PartnerAdapter, sample_data
from relay.testing.pki import DevPki, TestCA, write_access_pki
from relay.verify.merkle.rfc6962 import verify_consistency, verify_inclusion

BJ, SH = "京0105", "沪0115"
COURTS = {BJ: "court-bj-chaoyang", SH: "court-sh-pudong"}
RE_CHAIN = "cn-bj-chaoyang-realestate"
REPLICAS = 3
QUERIES = 120  # spread round robin over the replicas, 24 in flight


def case(court: str, n: int) -> pb.CaseRef:
    return pb.CaseRef(
        court=court, case_number=f"(2026){court}执{n + 1}号", purpose=pb.CASE_PURPOSE_INVESTIGATION
    )


def test_three_replicas_share_one_audit_log(
    tmp_path: Path, pg_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = pg_cluster.create_database()
    monkeypatch.setenv(ENV_STORE_DSN, dsn)
    ca = TestCA.create("relay audit replicas CA")
    pki = write_access_pki(tmp_path / "pki", ca=ca)
    op_cert, op_key = pki.clients["operator-1"]
    dev = DevPki(pki.directory, pki.ca_cert, pki.server_cert, pki.server_key, op_cert, op_key)
    grants = {"domains": ["real-estate"], "queries": ["ownership"]}
    setups = [
        write_dev_setup(
            tmp_path / f"relay{i}",
            grpc_port=0,
            health_port=0,
            pki=dev,
            overrides={
                "store": {"backend": "postgres", "path": None, "replica_id": f"replica-{i}"},
                "access": {
                    "grants": {BJ: grants, SH: grants},
                    "operators": ["operator-1"],
                    "rate": {"per_second": 1000, "burst": 2000, "max_in_flight": 64},
                },
                "sync": {"interval": "100ms"},
                "audit": {"checkpoint_interval": "300ms"},
            },
        )
        for i in range(REPLICAS)
    ]
    configs = [load_config(s.config) for s in setups]
    chain = BftPartnerChain(RE_CHAIN, domain=pb.DOMAIN_REAL_ESTATE)
    data = sample_data(chain)
    adapter = PartnerAdapter(chain)  # every replica's in-process adapter serves this chain
    assets = [a for a in data.assets if a.kind == pb.ASSET_KIND_REAL_ESTATE]

    def tls(name: str) -> ClientTls:
        cert, key = pki.clients[name]
        return ClientTls(
            ca_pem=pki.ca_cert.read_bytes(), cert_pem=cert.read_bytes(), key_pem=key.read_bytes()
        )

    async def session() -> None:
        runnings: list[Any] = []
        channels: list[dict[str, Any]] = []
        try:
            for config in configs:
                settings = config.engine_settings()

                def factory(d: pb.ChainDescriptor, s: Any = settings) -> InProcessAdapterClient:
                    return InProcessAdapterClient(adapter, chain_id=d.chain_id, settings=s)

                running = await start_relay(config, adapters=factory, insecure_dev=True)
                runnings.append(running)
                port = running.server.grpc_port
                channels.append(
                    {
                        n: aio_channel(f"localhost:{port}", tls(n))
                        for n in (*COURTS.values(), "operator-1", "public")
                    }
                )
            logs = [r.audit.log for r in runnings]
            holders = [log for log in logs if log.holds_lease]
            assert len(holders) == 1, [log.replica_id for log in holders]
            holder = holders[0]
            others = [log for log in logs if log is not holder]
            for log in others:  # the others never sign
                with pytest.raises(NotCheckpointSignerError):
                    await log.checkpoint()

            admin = admin_pb2_grpc.AdminServiceStub(channels[1]["operator-1"])
            descriptor = chain.descriptor(pb.AdapterEndpoint(entry_point="relay-testing"))
            descriptor.institution = "11110105MB0000001X"
            await admin.RegisterChain(
                admin_pb2.RegisterChainRequest(descriptor=descriptor), timeout=10
            )
            for running, ch in zip(runnings, channels, strict=True):
                # Every replica sees the chain (its catalogue refresh, asked for at once
                # here) and its ACTIVE status once the sync lease owner's first sync is in.
                stub = query_pb2_grpc.QueryServiceStub(ch[COURTS[BJ]])
                for _ in range(400):
                    await running.engine.refresh_catalogue()
                    try:
                        info = await stub.GetChain(
                            query_pb2.GetChainRequest(chain_id=RE_CHAIN), timeout=5
                        )
                    except grpc.aio.AioRpcError as e:
                        assert e.code() == grpc.StatusCode.NOT_FOUND, e
                    else:
                        if info.chain.status == pb.CHAIN_STATUS_ACTIVE:
                            break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the chain did not become active on every replica")

            # Concurrent court queries spread over the three replicas: none may fail.
            calls = []
            for n in range(QUERIES):
                court = BJ if n % 2 == 0 else SH
                stub = query_pb2_grpc.QueryServiceStub(channels[n % REPLICAS][COURTS[court]])
                request = query_pb2.GetOwnershipRequest(
                    asset=assets[n % len(assets)], case_ref=case(court, n)
                )
                calls.append((stub, request))
            failures: list[str] = []
            pending = iter(calls)

            async def worker() -> None:
                for stub, request in pending:
                    try:
                        await stub.GetOwnership(request, timeout=30)
                    except grpc.aio.AioRpcError as e:
                        failures.append(f"{e.code().name}: {e.details()}")

            await asyncio.gather(*(worker() for _ in range(24)))
            assert failures == []

            # The holder's checkpoint covers every entry of every replica.
            first = await holder.checkpoint()
            size = first.size
            rows = await holder.leaves()
            assert [r.index for r in rows] == list(range(size))
            queried = [decode_entry(r.entry) for r in rows]
            owned = [e for e in queried if e["method"].endswith("GetOwnership")]
            assert len(owned) == QUERIES and all(e["outcome"] == "OK" for e in owned)
            assert {e["case_number"] for e in owned} == {c.case_ref.case_number for _, c in calls}

            # Every court's entries have inclusion proofs that verify from every replica
            # (the others catch up with the holder's checkpoint and the rows first).
            relay_key = holder._signer.relay_key()
            for court, client in COURTS.items():
                listing = audit_pb2_grpc.AuditServiceStub(channels[2][client])
                mine: list[Any] = []
                start = 0
                while True:
                    page = await listing.ListMyEntries(
                        audit_pb2.ListMyAuditEntriesRequest(start_index=start, page_size=100),
                        timeout=5,
                    )
                    mine.extend(page.entries)
                    if not page.next_index:
                        break
                    start = page.next_index
                assert len(mine) >= QUERIES // 2
                assert all(decode_entry(e.entry)["court"] == court for e in mine)
                stubs = itertools.cycle(
                    audit_pb2_grpc.AuditServiceStub(ch[client]) for ch in channels
                )
                for e in mine:
                    for _ in range(REPLICAS):
                        proof = await next(stubs).GetInclusionProof(
                            audit_pb2.GetAuditInclusionProofRequest(index=e.index, tree_size=size),
                            timeout=10,
                        )
                        cp = open_checkpoint(proof.checkpoint.note, relay_key=relay_key)
                        assert cp.size == size and proof.entry == e.entry
                        verify_inclusion(
                            hasher=TREE_HASHER,
                            index=proof.index,
                            size=cp.size,
                            leaf_hash=TREE_HASHER.hash_leaf(proof.entry),
                            proof=list(proof.hashes),
                            root=cp.root_hash,
                        )

            # More queries through the other replicas, a second checkpoint, and the
            # consistency proof between the two, asked of a replica that did not sign.
            for n in range(6):
                ch = channels[logs.index(others[n % 2])]
                await query_pb2_grpc.QueryServiceStub(ch[COURTS[BJ]]).GetOwnership(
                    query_pb2.GetOwnershipRequest(asset=assets[n], case_ref=case(BJ, QUERIES + n)),
                    timeout=10,
                )
            second = await holder.checkpoint()
            assert second.size >= size + 6
            public = audit_pb2_grpc.AuditServiceStub(channels[logs.index(others[0])]["public"])
            reply = await public.GetConsistencyProof(
                audit_pb2.GetAuditConsistencyProofRequest(first_size=size), timeout=10
            )
            one = open_checkpoint(reply.first.note, relay_key=relay_key)
            two = open_checkpoint(reply.second.note, relay_key=relay_key)
            assert (one.size, two.size) == (size, second.size)
            verify_consistency(
                hasher=TREE_HASHER,
                size1=one.size,
                size2=two.size,
                proof=list(reply.hashes),
                root1=one.root_hash,
                root2=two.root_hash,
            )

            # Only the holder signed; every stored checkpoint is one of its.
            stored = await holder._store.audit_checkpoints()
            assert [log.signed for log in others] == [[], []]
            assert {c.size for c in stored} <= set(holder.signed)
            for log in logs:
                assert log.integrity_error is None, log.replica_id
        finally:
            for chs in channels:
                for c in chs.values():
                    await c.close()
            # The holder last: a replica stopping after it released the lease could take
            # it over for its own final checkpoint.
            for running in sorted(runnings, key=lambda r: r.audit.log.holds_lease):
                await running.stop()

    asyncio.run(session())

    # The log of the whole deployment exports from PostgreSQL and verifies offline.
    export = tmp_path / "audit.json"
    assert main(["audit", "export", "--config", str(setups[0].config), "--out", str(export)]) == 0
    assert main(["audit", "verify", "--export", str(export)]) == 0

    async def tamper_and_checkpoint() -> None:
        store = await PostgresStore.open(dsn, pool_size=1)
        try:
            async with store._pool.acquire() as conn:
                await conn.execute(
                    "UPDATE audit_leaves SET entry = entry || '\\x20'::bytea WHERE idx = 5"
                )
        finally:
            await store.close()
        config = configs[1]

        def factory(d: pb.ChainDescriptor) -> InProcessAdapterClient:
            return InProcessAdapterClient(
                adapter, chain_id=d.chain_id, settings=config.engine_settings()
            )

        running = await start_relay(config, adapters=factory, insecure_dev=True)
        try:
            log = running.audit.log
            assert log.integrity_error is not None and log.integrity_error.index == 5
            before = await log._store.audit_checkpoints()
            with pytest.raises(AuditIntegrityError):
                await log.checkpoint()
            assert await log._store.audit_checkpoints() == before
        finally:
            await running.stop()

    asyncio.run(tamper_and_checkpoint())
    assert main(["audit", "export", "--config", str(setups[2].config), "--out", str(export)]) == 0
    assert main(["audit", "verify", "--export", str(export)]) == 1


def test_audit_lease_hands_over_and_a_paused_signer_stores_nothing(pg_cluster: Any) -> None:
    """Two replicas' AuditLogs on one PostgreSQL sharing the audit lease: rows the other
    replica appended are accepted and proven; the lease moves when its holder stops
    renewing, and the former holder, resumed believing it still holds it, cannot store a
    checkpoint (fenced); an edited row that a replica had read is an alarm even above the
    newest checkpoint."""
    from relay.audit.log import AUDIT_LEASE, AuditLog
    from relay.engine.evidence import RelaySigner

    signer = RelaySigner.ed25519(key_id="relay-test-1", seed=bytes(range(32)))
    dsn = pg_cluster.create_database()

    async def body() -> None:
        sa, sb = [await PostgresStore.open(dsn, pool_size=2) for _ in range(2)]
        a = await AuditLog.open(store=sa, signer=signer, replica_id="replica-a", lease_ttl_s=30)
        b = await AuditLog.open(store=sb, signer=signer, replica_id="replica-b", lease_ttl_s=30)
        try:
            assert await a.hold_lease() and not await b.hold_lease()
            got = await asyncio.gather(
                *(log.append(b'{"n":%d}' % i) for i in range(60) for log in (a, b))
            )
            assert sorted(got) == list(range(120))
            first = await a.checkpoint()
            assert first.size == 120 and a.integrity_error is None
            with pytest.raises(NotCheckpointSignerError):
                await b.checkpoint()
            await b.refresh()
            assert b.latest == first
            for index in (0, 61, 119):
                proof, at = b.inclusion(index)
                leaf = (await sb.audit_leaves(start=index, end=index + 1))[0]
                verify_inclusion(
                    hasher=TREE_HASHER,
                    index=index,
                    size=at.size,
                    leaf_hash=TREE_HASHER.hash_leaf(leaf.entry),
                    proof=proof,
                    root=at.root,
                )
            # a pauses (no renewal) past its lease, which the database's clock ends (set
            # back here rather than waited for): b takes over and signs.
            async with sa._pool.acquire() as conn:
                await conn.execute(
                    "UPDATE sync_leases SET expires_at_ns = 0 WHERE chain_id = $1", AUDIT_LEASE
                )
            assert await b.hold_lease()
            await asyncio.gather(*(b.append(b'{"m":%d}' % i) for i in range(5)))
            second = await b.checkpoint()
            assert second.size == 125 and b.signed == [125]
            # a resumes between its lease check and its write: the write is fenced.
            await a.append(b'{"late":1}')

            async def still_mine() -> bool:
                return True

            a.hold_lease = still_mine  # type: ignore[method-assign]
            with pytest.raises(NotCheckpointSignerError, match="lost"):
                await a.checkpoint()
            assert [c.size for c in await sa.audit_checkpoints()] == [120, 125]
            assert a.signed == [120] and a.integrity_error is None
            # A row a had read (above every checkpoint) edited with a matching leaf hash:
            # only what a read before gives it away.
            forged = b'{"forged":1}'
            async with sa._pool.acquire() as conn:
                await conn.execute(
                    "UPDATE audit_leaves SET entry = $1, leaf_hash = $2 WHERE idx = 125",
                    forged,
                    TREE_HASHER.hash_leaf(forged),
                )
            with pytest.raises(AuditIntegrityError, match="row 125"):
                await a.verify_stored()
            assert a.integrity_error is not None and a.integrity_error.index == 125
        finally:
            for log in (a, b):
                await log.close()
            await sa.close()
            await sb.close()

    asyncio.run(body())
