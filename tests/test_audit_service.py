"""Issue 7 over real mutual-TLS sockets: a relay started by relay/service/app.py with
``access:`` and ``audit:`` sections records every query and admin call of a session in its
audit log before answering; AuditService gives a court inclusion proofs for its own entries
(and refuses another court's), anyone checkpoints and consistency proofs that verify with
relay.verify; checkpoints land on the in-process judicial chain; ``relay audit export`` and
``relay audit verify`` check the whole log, and catch a row deleted from the database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path

import grpc
import pytest

from relay.audit.checkpoint import TREE_HASHER, open_checkpoint
from relay.audit.entry import decode_entry
from relay.audit.sink import checkpoint_key
from relay.cli import main
from relay.config import load_config
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
from relay.service.errors import describe_rpc_error
from relay.testing.partners import BftPartnerChain, PartnerAdapter, sample_data
from relay.testing.pki import DevPki, TestCA, write_access_pki
from relay.verify.merkle.rfc6962 import verify_consistency, verify_inclusion

BJ, SH = "京0105", "沪0115"
RE_CHAIN = "cn-bj-chaoyang-realestate"


def case(court: str, n: int) -> pb.CaseRef:
    return pb.CaseRef(
        court=court, case_number=f"({2026}){court}执{n}号", purpose=pb.CASE_PURPOSE_INVESTIGATION
    )


def test_session_is_recorded_and_proven(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = TestCA.create("relay audit test CA")
    pki = write_access_pki(tmp_path / "pki", ca=ca)
    op_cert, op_key = pki.clients["operator-1"]
    dev = DevPki(pki.directory, pki.ca_cert, pki.server_cert, pki.server_key, op_cert, op_key)
    grants = {"domains": ["real-estate"], "queries": ["ownership"]}
    setup = write_dev_setup(
        tmp_path / "relay",
        grpc_port=0,
        health_port=0,
        pki=dev,
        overrides={
            "access": {
                "grants": {BJ: grants, SH: grants},
                "operators": ["operator-1"],
                "rate": {"per_second": 500, "burst": 1000, "max_in_flight": 32},
            },
            "sync": {"interval": "100ms"},
            "audit": {"checkpoint_interval": "1h", "sink": {"chain_id": "judicial-test"}},
        },
    )
    config = load_config(setup.config)
    settings = config.engine_settings()
    chain = BftPartnerChain(RE_CHAIN, domain=pb.DOMAIN_REAL_ESTATE)
    data = sample_data(chain)
    adapter = PartnerAdapter(chain)

    def factory(descriptor: pb.ChainDescriptor) -> InProcessAdapterClient:
        return InProcessAdapterClient(adapter, chain_id=descriptor.chain_id, settings=settings)

    def tls(name: str) -> ClientTls:
        cert, key = pki.clients[name]
        return ClientTls(
            ca_pem=pki.ca_cert.read_bytes(), cert_pem=cert.read_bytes(), key_pem=key.read_bytes()
        )

    async def session() -> None:
        running = await start_relay(config, adapters=factory, insecure_dev=True)
        port = running.server.grpc_port
        channels = {
            n: aio_channel(f"localhost:{port}", tls(n))
            for n in ("court-bj-chaoyang", "court-sh-pudong", "operator-1", "public")
        }
        try:
            audit = running.audit.log
            admin = admin_pb2_grpc.AdminServiceStub(channels["operator-1"])
            descriptor = chain.descriptor(pb.AdapterEndpoint(entry_point="relay-testing"))
            descriptor.institution = "11110105MB0000001X"
            await admin.RegisterChain(
                admin_pb2.RegisterChainRequest(descriptor=descriptor), timeout=10
            )
            bj = query_pb2_grpc.QueryServiceStub(channels["court-bj-chaoyang"])
            sh = query_pb2_grpc.QueryServiceStub(channels["court-sh-pudong"])
            for _ in range(200):
                info = await bj.GetChain(query_pb2.GetChainRequest(chain_id=RE_CHAIN), timeout=5)
                if info.chain.status == pb.CHAIN_STATUS_ACTIVE:
                    break
                await asyncio.sleep(0.05)
            asset = data.assets[0]
            answers = []
            for n in (1, 2, 3):
                answers.append(
                    await bj.GetOwnership(
                        query_pb2.GetOwnershipRequest(asset=asset, case_ref=case(BJ, n)), timeout=10
                    )
                )
            await sh.GetOwnership(
                query_pb2.GetOwnershipRequest(asset=asset, case_ref=case(SH, 9)), timeout=10
            )
            with pytest.raises(grpc.aio.AioRpcError):  # a refused query is recorded too
                await bj.GetOwnership(
                    query_pb2.GetOwnershipRequest(asset=asset, case_ref=case(SH, 9)), timeout=10
                )
            await admin.FreezeChain(
                admin_pb2.FreezeChainRequest(chain_id=RE_CHAIN, reason="audit test"), timeout=10
            )
            first = await audit.checkpoint()

            # Every call of the session is in the log, in order, recorded before its answer.
            rows = [decode_entry(r.entry) for r in await audit.leaves()]
            calls = [
                (r["method"].rsplit("/", 1)[1], r["actor"], r["outcome"], r["reason"]) for r in rows
            ]
            assert [c for c in calls if c[0] != "GetChain"] == [
                ("RegisterChain", "operator:/operator-1", "OK", ""),
                ("GetOwnership", f"court:{BJ}/court-bj-chaoyang", "OK", ""),
                ("GetOwnership", f"court:{BJ}/court-bj-chaoyang", "OK", ""),
                ("GetOwnership", f"court:{BJ}/court-bj-chaoyang", "OK", ""),
                ("GetOwnership", f"court:{SH}/court-sh-pudong", "OK", ""),
                (
                    "GetOwnership",
                    f"court:{BJ}/court-bj-chaoyang",
                    "PERMISSION_DENIED",
                    "CASE_INVALID",
                ),
                ("FreezeChain", "operator:/operator-1", "OK", ""),
            ]
            owned = [
                r for r in rows if r["method"].endswith("GetOwnership") and r["outcome"] == "OK"
            ]
            assert [r["case_number"] for r in owned] == [
                case(BJ, n).case_number for n in (1, 2, 3)
            ] + [case(SH, 9).case_number]
            # The evidence digest in the entry is the digest of the evidence the court got.
            assert owned[0]["evidence_digests"] == [
                hashlib.sha256(
                    answers[0].evidence.SerializeToString(deterministic=True)
                ).hexdigest()
            ]
            # Party identifiers never reach the log.
            blob = b"".join(r.entry for r in await audit.leaves())
            for p in data.parties:
                assert p.id.encode() not in blob

            # AuditService: the court lists and proves its own entries only.
            bj_audit = audit_pb2_grpc.AuditServiceStub(channels["court-bj-chaoyang"])
            sh_audit = audit_pb2_grpc.AuditServiceStub(channels["court-sh-pudong"])
            public = audit_pb2_grpc.AuditServiceStub(channels["public"])
            mine = await bj_audit.ListMyEntries(audit_pb2.ListMyAuditEntriesRequest(), timeout=5)
            assert len(mine.entries) >= 4 and all(
                decode_entry(e.entry)["court"] == BJ for e in mine.entries
            )
            relay_key = running.audit.log._signer.relay_key()
            for e in mine.entries:
                proof = await bj_audit.GetInclusionProof(
                    audit_pb2.GetAuditInclusionProofRequest(index=e.index), timeout=5
                )
                cp = open_checkpoint(proof.checkpoint.note, relay_key=relay_key)
                verify_inclusion(
                    hasher=TREE_HASHER,
                    index=proof.index,
                    size=cp.size,
                    leaf_hash=TREE_HASHER.hash_leaf(proof.entry),
                    proof=list(proof.hashes),
                    root=cp.root_hash,
                )
            sh_index = next(i for i, r in enumerate(rows) if r["court"] == SH)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await bj_audit.GetInclusionProof(
                    audit_pb2.GetAuditInclusionProofRequest(index=sh_index), timeout=5
                )
            assert describe_rpc_error(refused.value).reason == "NOT_OWNER"
            await sh_audit.GetInclusionProof(
                audit_pb2.GetAuditInclusionProofRequest(index=sh_index), timeout=5
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await public.ListMyEntries(audit_pb2.ListMyAuditEntriesRequest(), timeout=5)
            assert describe_rpc_error(refused.value).reason == "ROLE_FORBIDDEN"

            # Consistency between two checkpoints, for anyone.
            await bj.GetChain(query_pb2.GetChainRequest(chain_id=RE_CHAIN), timeout=5)
            second = await audit.checkpoint()
            assert second.size > first.size
            reply = await public.GetConsistencyProof(
                audit_pb2.GetAuditConsistencyProofRequest(first_size=first.size), timeout=5
            )
            one = open_checkpoint(reply.first.note, relay_key=relay_key)
            two = open_checkpoint(reply.second.note, relay_key=relay_key)
            verify_consistency(
                hasher=TREE_HASHER,
                size1=one.size,
                size2=two.size,
                proof=list(reply.hashes),
                root1=one.root_hash,
                root2=two.root_hash,
            )
            latest = await public.GetCheckpoint(audit_pb2.GetAuditCheckpointRequest(), timeout=5)
            assert (
                latest.size == second.size
                and latest.origin == f"relay.judicial/{relay_key.key_id}/audit"
            )

            # Both checkpoints are on the judicial chain.
            judicial = running.audit.judicial.chain
            for c in (first, second):
                assert judicial.query(checkpoint_key(c.size)).value == c.note
        finally:
            for ch in channels.values():
                await ch.close()
            await running.stop()

    asyncio.run(session())

    # Offline: export and verify; then delete one row and see both checks catch it.
    export = tmp_path / "audit.json"
    assert main(["audit", "export", "--config", str(setup.config), "--out", str(export)]) == 0
    assert main(["audit", "verify", "--export", str(export)]) == 0
    assert "audit log verified" in capsys.readouterr().out
    db = sqlite3.connect(config.store.path)
    with db:
        db.execute("DELETE FROM audit_leaves WHERE idx = 2")
    db.close()
    assert main(["audit", "export", "--config", str(setup.config), "--out", str(export)]) == 0
    assert main(["audit", "verify", "--export", str(export)]) == 1
    assert "leaf 2 is missing" in capsys.readouterr().out
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    leaves = [line for line in lines if "index" in line]
    assert leaves[2]["index"] == 3 and "end" in lines[-1]
