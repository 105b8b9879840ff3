"""Issue 5, "what it must show" 1-3, over real mutual-TLS sockets: a relay started by
relay/service/app.py with an ``access:`` section, role certificates from
relay/testing/pki.py (subject OU = role, O = code), test partner chains behind in-process
adapters, and the proposal flow of relay/access/proposals.py.

1. Refusals: no client certificate, another CA, an expired certificate (the TLS handshake
   fails: UNAVAILABLE), a partner calling a court query, a court outside its grants, a court
   query without a case, a partner updating another partner's chain, a replayed proposal, an
   unapproved chain; each with its documented status and ErrorInfo reason, none changing
   the chains or proposals.
2. Propose, approve k of n (2 of 2), sync starts; reject; a wrong-key signature refused.
3. One identity over its rate limit gets RESOURCE_EXHAUSTED with RetryInfo while another is
   still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from relay.access.proposals import (
    AccessRecords,
    InstitutionSigner,
    make_proposal,
    sign_proposal,
)
from relay.config import load_config
from relay.engine.adapters import InProcessAdapterClient
from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc, query_pb2, query_pb2_grpc
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.app import Running, start_relay
from relay.service.client import ClientTls, aio_channel
from relay.service.devconfig import write_dev_setup
from relay.service.errors import RpcFailure, describe_rpc_error
from relay.testing.partners import BftPartnerChain, PartnerAdapter, sample_data
from relay.testing.pki import AccessPki, DevPki, TestCA, write_access_pki

COURT = "京0105"
RE_INST = "11110105MB0000001X"  # partner-realestate
BANK_INST = "91110000100000000A"  # partner-bank
CASE = pb.CaseRef(
    court=COURT, case_number="(2026)京0105执1234号", purpose=pb.CASE_PURPOSE_INVESTIGATION
)
AUDIENCE = "relay-test"


@dataclass
class World:
    pki: AccessPki
    running: Running
    chains: dict[str, BftPartnerChain]
    channels: dict[str, grpc.aio.Channel]
    port: int
    signers: dict[str, InstitutionSigner]
    ca: TestCA
    data: dict[str, Any]

    def tls(self, name: str | None) -> ClientTls:
        ca = self.pki.ca_cert.read_bytes()
        if name is None:
            return ClientTls(ca_pem=ca)
        cert, key = self.pki.clients[name]
        return ClientTls(ca_pem=ca, cert_pem=cert.read_bytes(), key_pem=key.read_bytes())

    def channel(self, name: str) -> grpc.aio.Channel:
        if name not in self.channels:
            self.channels[name] = aio_channel(f"localhost:{self.port}", self.tls(name))
        return self.channels[name]

    def query(self, name: str) -> query_pb2_grpc.QueryServiceStub:
        return query_pb2_grpc.QueryServiceStub(self.channel(name))

    def admin(self, name: str) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel(name))

    def descriptor(self, chain_id: str, institution: str) -> pb.ChainDescriptor:
        d = self.chains[chain_id].descriptor(pb.AdapterEndpoint(entry_point="relay-testing"))
        d.institution = institution
        return d

    async def snapshot(self) -> tuple[Any, ...]:
        """Chains (id, status, adapter) and proposals (id, state, decisions)."""
        chains = await self.admin("operator-1").ListChains(
            admin_pb2.AdminListChainsRequest(), timeout=5
        )
        props = await self.admin("operator-1").ListProposals(
            admin_pb2.ListProposalsRequest(), timeout=5
        )
        return (
            tuple(
                (c.info.chain_id, c.descriptor.adapter.SerializeToString()) for c in chains.chains
            ),
            tuple((p.proposal_id, p.state, len(p.decisions)) for p in props.proposals),
        )

    async def wait_active(self, chain_id: str, timeout_s: float = 10.0) -> None:
        end = asyncio.get_running_loop().time() + timeout_s
        while True:
            reply = await self.query("court-sh-pudong").GetChain(
                query_pb2.GetChainRequest(chain_id=chain_id), timeout=5
            )
            if reply.chain.status == pb.CHAIN_STATUS_ACTIVE:
                return
            assert asyncio.get_running_loop().time() < end, reply
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def world(tmp: Path, *, rate: dict[str, Any] | None = None) -> AsyncIterator[World]:
    ca = TestCA.create("relay test CA")
    pki = write_access_pki(tmp / "pki", ca=ca)
    signers = {
        code: InstitutionSigner.from_seed_file(key_id=f"{code}-k1", path=path)
        for code, path in pki.institution_keys.items()
    }
    operator_cert, operator_key = pki.clients["operator-1"]
    dev = DevPki(
        pki.directory, pki.ca_cert, pki.server_cert, pki.server_key, operator_cert, operator_key
    )
    access: dict[str, Any] = {
        "audience": AUDIENCE,
        "grants": {COURT: {"domains": ["real-estate"], "queries": ["ownership", "credit"]}},
        "institution_keys": [s.config_entry(code) for code, s in signers.items()],
        "approvals_required": 2,
        "operators": ["operator-1", "operator-2"],
        "rate": rate or {"per_second": 200, "burst": 400, "max_in_flight": 16},
    }
    setup = write_dev_setup(
        tmp / "relay",
        grpc_port=0,
        health_port=0,
        pki=dev,
        overrides={
            "access": access,
            "sync": {"interval": "100ms"},
            "listen": {"ops": "127.0.0.1:0"},
        },
    )
    config = load_config(setup.config)
    settings = config.engine_settings()
    chains = {
        "cn-bj-chaoyang-realestate": BftPartnerChain(
            "cn-bj-chaoyang-realestate", domain=pb.DOMAIN_REAL_ESTATE
        ),
        "cn-credit": BftPartnerChain("cn-credit", domain=pb.DOMAIN_CREDIT, validators=3),
    }
    data = {k: sample_data(c) for k, c in chains.items()}
    adapters = {k: PartnerAdapter(c) for k, c in chains.items()}

    def factory(descriptor: pb.ChainDescriptor) -> InProcessAdapterClient:
        return InProcessAdapterClient(
            adapters[descriptor.chain_id], chain_id=descriptor.chain_id, settings=settings
        )

    running = await start_relay(config, adapters=factory)
    w = World(pki, running, chains, {}, running.server.grpc_port, signers, ca, data)
    try:
        # The real-estate chain: proposed by its partner, approved by two operators (with
        # approvals_required 2 no operator registers a chain alone).
        proposed = await w.admin("partner-realestate").ProposeChain(
            admin_pb2.ProposeChainRequest(
                signed=propose(
                    w, RE_INST, register=w.descriptor("cn-bj-chaoyang-realestate", RE_INST)
                )
            ),
            timeout=10,
        )
        for operator in ("operator-1", "operator-2"):
            await w.admin(operator).ApproveProposal(
                admin_pb2.ApproveProposalRequest(proposal_id=proposed.proposal.proposal_id),
                timeout=10,
            )
        await w.wait_active("cn-bj-chaoyang-realestate")
        yield w
    finally:
        for ch in w.channels.values():
            await ch.close()
        await running.stop()


async def failure_of(call: Any) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return describe_rpc_error(info.value)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def propose(
    w: World, institution: str, *, signer: str | None = None, **action: Any
) -> admin_pb2.SignedChainProposal:
    proposal = make_proposal(institution=institution, audience=AUDIENCE, **action)
    return sign_proposal(proposal, w.signers[signer or institution])


async def tls_refused(w: World, tls: ClientTls) -> RpcFailure:
    async with aio_channel(f"localhost:{w.port}", tls) as ch:
        return await failure_of(
            query_pb2_grpc.QueryServiceStub(ch).ListChains(query_pb2.ListChainsRequest(), timeout=5)
        )


def test_refusals_have_their_status_and_reason_and_change_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            data = w.data["cn-bj-chaoyang-realestate"]
            asset = data.assets[0]
            p0 = data.parties[0]
            party = pb.PartyRef(kind=p0.kind, id_type=p0.id_type, id=p0.id)
            before = await w.snapshot()
            ca_pem = w.pki.ca_cert.read_bytes()

            # The TLS handshake refuses: no certificate, another CA, an expired certificate.
            foreign = TestCA.create("another CA").issue_client(
                "court-x", organization=COURT, organizational_unit="court"
            )
            expired = w.ca.issue_client(
                "court-old",
                organization=COURT,
                organizational_unit="court",
                not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
            )
            for label, tls in {
                "no certificate": ClientTls(ca_pem=ca_pem),
                "another CA": ClientTls(
                    ca_pem=ca_pem, cert_pem=foreign.cert_pem, key_pem=foreign.key_pem
                ),
                "expired": ClientTls(
                    ca_pem=ca_pem, cert_pem=expired.cert_pem, key_pem=expired.key_pem
                ),
            }.items():
                f = await tls_refused(w, tls)
                assert f.code == grpc.StatusCode.UNAVAILABLE, (label, f)

            # A court query answers for the court within its grants (positive control).
            ok = await w.query("court-bj-chaoyang").GetOwnership(
                query_pb2.GetOwnershipRequest(asset=asset, case_ref=CASE), timeout=10
            )
            assert ok.outcome == pb.OUTCOME_FOUND

            denied = grpc.StatusCode.PERMISSION_DENIED
            refusals: list[tuple[str, Any, grpc.StatusCode, str]] = [
                (
                    "partner calling a court query",
                    w.query("partner-realestate").GetOwnership(
                        query_pb2.GetOwnershipRequest(asset=asset, case_ref=CASE), timeout=5
                    ),
                    denied,
                    "ROLE_FORBIDDEN",
                ),
                (
                    "operator calling a court query",
                    w.query("operator-1").GetOwnership(
                        query_pb2.GetOwnershipRequest(asset=asset, case_ref=CASE), timeout=5
                    ),
                    denied,
                    "ROLE_FORBIDDEN",
                ),
                (
                    "court outside its domains (credit)",
                    w.query("court-bj-chaoyang").GetCreditStatus(
                        query_pb2.GetCreditStatusRequest(party=party, case_ref=CASE), timeout=5
                    ),
                    denied,
                    "GRANT_MISSING",
                ),
                (
                    "court outside its query kinds (history)",
                    w.query("court-bj-chaoyang").GetHistory(
                        query_pb2.GetHistoryRequest(asset=asset, case_ref=CASE), timeout=5
                    ),
                    denied,
                    "GRANT_MISSING",
                ),
                (
                    "court without any grant",
                    w.query("court-sh-pudong").GetOwnership(
                        query_pb2.GetOwnershipRequest(
                            asset=asset,
                            case_ref=pb.CaseRef(
                                court="沪0115",
                                case_number="(2026)沪0115执9号",
                                purpose=pb.CASE_PURPOSE_ENFORCEMENT,
                            ),
                        ),
                        timeout=5,
                    ),
                    denied,
                    "GRANT_MISSING",
                ),
                (
                    "court query without a case",
                    w.query("court-bj-chaoyang").GetOwnership(
                        query_pb2.GetOwnershipRequest(asset=asset), timeout=5
                    ),
                    denied,
                    "CASE_REQUIRED",
                ),
                (
                    "malformed case number",
                    w.query("court-bj-chaoyang").GetOwnership(
                        query_pb2.GetOwnershipRequest(
                            asset=asset,
                            case_ref=pb.CaseRef(
                                court=COURT,
                                case_number="2026-1234",
                                purpose=pb.CASE_PURPOSE_INVESTIGATION,
                            ),
                        ),
                        timeout=5,
                    ),
                    denied,
                    "CASE_INVALID",
                ),
                (
                    "case of another court",
                    w.query("court-bj-chaoyang").GetOwnership(
                        query_pb2.GetOwnershipRequest(
                            asset=asset,
                            case_ref=pb.CaseRef(
                                court="沪0115",
                                case_number="(2026)沪0115执9号",
                                purpose=pb.CASE_PURPOSE_INVESTIGATION,
                            ),
                        ),
                        timeout=5,
                    ),
                    denied,
                    "CASE_INVALID",
                ),
                (
                    "partner updating another partner's chain",
                    w.admin("partner-bank").ProposeEndpointUpdate(
                        admin_pb2.ProposeEndpointUpdateRequest(
                            signed=propose(
                                w,
                                BANK_INST,
                                update_endpoint=admin_pb2.EndpointUpdate(
                                    chain_id="cn-bj-chaoyang-realestate",
                                    endpoint=pb.AdapterEndpoint(grpc_address="evil:443"),
                                ),
                            )
                        ),
                        timeout=5,
                    ),
                    denied,
                    "NOT_OWNER",
                ),
                (
                    "partner proposing for another institution",
                    w.admin("partner-bank").ProposeChain(
                        admin_pb2.ProposeChainRequest(
                            signed=propose(w, RE_INST, register=w.descriptor("cn-credit", RE_INST))
                        ),
                        timeout=5,
                    ),
                    denied,
                    "NOT_OWNER",
                ),
                (
                    "partner registering directly",
                    w.admin("partner-bank").RegisterChain(
                        admin_pb2.RegisterChainRequest(
                            descriptor=w.descriptor("cn-credit", BANK_INST)
                        ),
                        timeout=5,
                    ),
                    denied,
                    "ROLE_FORBIDDEN",
                ),
                (
                    "court approving a proposal",
                    w.admin("court-bj-chaoyang").ApproveProposal(
                        admin_pb2.ApproveProposalRequest(proposal_id="00" * 32), timeout=5
                    ),
                    denied,
                    "ROLE_FORBIDDEN",
                ),
            ]
            for label, call, code, reason in refusals:
                f = await failure_of(call)
                assert (f.code, f.reason) == (code, reason), (label, f)
                assert f.message, label
            assert await w.snapshot() == before

            # A replayed proposal: the first is stored, the same signed bytes again refused.
            signed = propose(w, BANK_INST, register=w.descriptor("cn-credit", BANK_INST))
            bank = w.admin("partner-bank")
            first = await bank.ProposeChain(admin_pb2.ProposeChainRequest(signed=signed), timeout=5)
            assert first.proposal.state == admin_pb2.PROPOSAL_STATE_PENDING
            after_first = await w.snapshot()
            f = await failure_of(
                bank.ProposeChain(admin_pb2.ProposeChainRequest(signed=signed), timeout=5)
            )
            assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "PROPOSAL_REPLAYED")
            # The unapproved chain is not followed: unknown to queries and to the engine.
            f = await failure_of(
                w.query("public").GetChain(query_pb2.GetChainRequest(chain_id="cn-credit"))
            )
            assert (f.code, f.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
            assert "cn-credit" not in w.running.engine.registry
            # One approval of two is not enough.
            one = await w.admin("operator-1").ApproveProposal(
                admin_pb2.ApproveProposalRequest(proposal_id=first.proposal.proposal_id),
                timeout=5,
            )
            assert one.proposal.state == admin_pb2.PROPOSAL_STATE_PENDING
            assert not one.HasField("chain")
            assert "cn-credit" not in w.running.engine.registry
            assert after_first[0] == (await w.snapshot())[0]

    run(main())


def test_propose_approve_k_of_n_sync_starts_reject_and_wrong_key(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            bank = w.admin("partner-bank")
            op1, op2 = w.admin("operator-1"), w.admin("operator-2")

            # A proposal signed with another institution's key is refused.
            bad = propose(
                w, BANK_INST, signer=RE_INST, register=w.descriptor("cn-credit", BANK_INST)
            )
            bad.key_id = w.signers[BANK_INST].key_id
            f = await failure_of(bank.ProposeChain(admin_pb2.ProposeChainRequest(signed=bad)))
            assert (f.code, f.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "PROPOSAL_SIGNATURE_INVALID",
            )
            # An expired proposal is refused.
            old = make_proposal(
                institution=BANK_INST,
                audience=AUDIENCE,
                register=w.descriptor("cn-credit", BANK_INST),
                lifetime_s=-1,
            )
            f = await failure_of(
                bank.ProposeChain(
                    admin_pb2.ProposeChainRequest(signed=sign_proposal(old, w.signers[BANK_INST]))
                )
            )
            assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PROPOSAL_EXPIRED")

            # Propose, approve 2 of 2, sync starts.
            signed = propose(w, BANK_INST, register=w.descriptor("cn-credit", BANK_INST))
            p = (await bank.ProposeChain(admin_pb2.ProposeChainRequest(signed=signed))).proposal
            assert p.submitted_by.startswith(f"partner:{BANK_INST}/")
            pid = p.proposal_id
            r1 = await op1.ApproveProposal(admin_pb2.ApproveProposalRequest(proposal_id=pid))
            assert r1.proposal.state == admin_pb2.PROPOSAL_STATE_PENDING
            f = await failure_of(
                op1.ApproveProposal(admin_pb2.ApproveProposalRequest(proposal_id=pid))
            )
            assert f.reason == "PROPOSAL_CLOSED"  # the same operator cannot count twice
            r2 = await op2.ApproveProposal(
                admin_pb2.ApproveProposalRequest(proposal_id=pid, comment="checked the anchor")
            )
            assert r2.proposal.state == admin_pb2.PROPOSAL_STATE_APPLIED, r2
            assert r2.chain.chain_id == "cn-credit"
            # decisions are counted per configured operator name (certificate CN)
            assert [d.operator_id for d in r2.proposal.decisions] == ["operator-1", "operator-2"]
            await w.wait_active("cn-credit")

            # The partner moves its own chain's endpoint through a proposal.
            upd = propose(
                w,
                BANK_INST,
                update_endpoint=admin_pb2.EndpointUpdate(
                    chain_id="cn-credit",
                    endpoint=pb.AdapterEndpoint(entry_point="relay-testing", tls_server_name="b"),
                ),
            )
            u = (
                await bank.ProposeEndpointUpdate(admin_pb2.ProposeEndpointUpdateRequest(signed=upd))
            ).proposal
            await op1.ApproveProposal(admin_pb2.ApproveProposalRequest(proposal_id=u.proposal_id))
            done = await op2.ApproveProposal(
                admin_pb2.ApproveProposalRequest(proposal_id=u.proposal_id)
            )
            assert done.proposal.state == admin_pb2.PROPOSAL_STATE_APPLIED
            assert (
                w.running.engine.registry.get("cn-credit").descriptor.adapter.tls_server_name == "b"
            )

            # Reject: one rejection ends a proposal; later approvals are refused.
            again = propose(
                w,
                BANK_INST,
                update_endpoint=admin_pb2.EndpointUpdate(
                    chain_id="cn-credit",
                    endpoint=pb.AdapterEndpoint(entry_point="relay-testing", tls_server_name="c"),
                ),
            )
            q = (
                await bank.ProposeEndpointUpdate(
                    admin_pb2.ProposeEndpointUpdateRequest(signed=again)
                )
            ).proposal
            rej = await op1.RejectProposal(
                admin_pb2.RejectProposalRequest(proposal_id=q.proposal_id, comment="no")
            )
            assert rej.proposal.state == admin_pb2.PROPOSAL_STATE_REJECTED
            f = await failure_of(
                op2.ApproveProposal(admin_pb2.ApproveProposalRequest(proposal_id=q.proposal_id))
            )
            assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PROPOSAL_CLOSED")

            # A partner lists only its own institution's proposals.
            mine = await bank.ListProposals(admin_pb2.ListProposalsRequest())
            assert {x.institution for x in mine.proposals} == {BANK_INST}
            assert len(mine.proposals) == 3
            other = await w.admin("partner-realestate").ListProposals(
                admin_pb2.ListProposalsRequest()
            )
            # Only its own (the world's registration of its chain), none of the bank's.
            assert [x.institution for x in other.proposals] == [RE_INST]

            # Every admin action is on record with who did it.
            actions = await AccessRecords(w.running.store).actions()
            who = {(a[1], a[3]) for a in actions}
            assert (f"partner:{BANK_INST}/partner-bank", "propose_register") in who
            assert ("operator:/operator-2", "apply") in who
            assert ("operator:/operator-1", "reject") in who

    run(main())


def test_rate_limit_refuses_one_identity_while_another_is_served(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path, rate={"per_second": 0.5, "burst": 25, "max_in_flight": 8}) as w:
            public = w.query("public")
            refused = None
            for _ in range(40):
                try:
                    await public.ListChains(query_pb2.ListChainsRequest(), timeout=5)
                except grpc.aio.AioRpcError as e:
                    refused = describe_rpc_error(e)
                    break
            assert refused is not None, "the limit never applied"
            assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.reason == "RATE_LIMITED"
            assert refused.retry_after_s is not None and refused.retry_after_s > 0
            # Another identity is still served.
            other = await w.query("court-bj-chaoyang").ListChains(
                query_pb2.ListChainsRequest(), timeout=5
            )
            assert other.chains

    run(main())


def test_the_ops_port_takes_a_log_level_change_only_from_an_operator(tmp_path: Path) -> None:
    """THREATS row 4 on the ops port of a relay with access control: /metrics and /readyz
    answer without a client certificate (Prometheus, probes), but PUT /loglevel needs an
    operator's: 401 without a certificate, 403 for a court's, 200 for an operator's."""
    import logging
    import ssl

    import aiohttp

    async def main() -> None:
        async with world(tmp_path) as w:
            assert w.running.ops is not None
            base = f"https://localhost:{w.running.ops.port}"
            root = logging.getLogger()
            before = root.level

            async def call(who: str | None, method: str, path: str) -> int:
                context = ssl.create_default_context(cafile=str(w.pki.ca_cert))
                if who is not None:
                    context.load_cert_chain(*map(str, w.pki.clients[who]))
                connector = aiohttp.TCPConnector(ssl=context)
                async with aiohttp.ClientSession(connector=connector) as http:
                    body = {"level": "ERROR"} if method == "PUT" else None
                    async with http.request(method, base + path, json=body) as resp:
                        return resp.status

            try:
                assert await call(None, "GET", "/metrics") == 200
                assert await call(None, "GET", "/readyz") == 200
                assert await call(None, "PUT", "/loglevel") == 401
                assert await call("court-sh-pudong", "PUT", "/loglevel") == 403
                assert root.level == before
                assert await call("operator-1", "PUT", "/loglevel") == 200
                assert root.level == logging.ERROR
            finally:
                root.setLevel(before)

    run(main())


def test_k_of_n_binds_every_chain_change_recovery_included(tmp_path: Path) -> None:
    """With approvals_required 2, one operator registers, moves or recovers nothing
    (ROLE_FORBIDDEN, nothing changes); freezing (which only stops trust) stays one
    operator's call; the chain's own partner proposes its recovery with a fresh anchor,
    another institution may not, and two approvals apply it: the chain verifies again."""

    async def main() -> None:
        async with world(tmp_path) as w:
            estate = "cn-bj-chaoyang-realestate"
            op1, op2 = w.admin("operator-1"), w.admin("operator-2")
            chain = w.chains[estate]
            before = await w.snapshot()
            fresh_descriptor = w.descriptor(estate, RE_INST)
            endpoint = pb.AdapterEndpoint(entry_point="relay-testing")
            attempts = [
                op1.RegisterChain(
                    admin_pb2.RegisterChainRequest(descriptor=w.descriptor("cn-credit", RE_INST)),
                    timeout=5,
                ),
                op1.UpdateAdapterEndpoint(
                    admin_pb2.UpdateAdapterEndpointRequest(chain_id=estate, endpoint=endpoint),
                    timeout=5,
                ),
                op1.RecoverChain(
                    admin_pb2.RecoverChainRequest(
                        chain_id=estate,
                        new_anchor=pb.TrustAnchor(tendermint=fresh_descriptor.tendermint.anchor),
                        reason="one operator",
                    ),
                    timeout=5,
                ),
            ]
            for attempt in attempts:
                f = await failure_of(attempt)
                assert (f.code, f.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN")
                assert "approvals_required 2" in f.message
            assert await w.snapshot() == before
            # Freezing is still one operator's call.
            frozen = await op1.FreezeChain(
                admin_pb2.FreezeChainRequest(chain_id=estate, reason="fork drill"), timeout=5
            )
            assert frozen.chain.status == pb.CHAIN_STATUS_FROZEN
            # A fresh anchor from the partner's chain, proposed by the partner.
            chain.commit()
            chain.commit()
            fresh = w.descriptor(estate, RE_INST)
            recover = admin_pb2.RecoveryRequest(
                chain_id=estate,
                new_anchor=pb.TrustAnchor(tendermint=fresh.tendermint.anchor),
                reason="registry incident 7; anchor read from the registry's own node",
            )
            stranger = await failure_of(
                w.admin("partner-bank").ProposeRecovery(
                    admin_pb2.ProposeRecoveryRequest(signed=propose(w, BANK_INST, recover=recover)),
                    timeout=5,
                )
            )
            assert stranger.reason == "NOT_OWNER"
            proposed = await w.admin("partner-realestate").ProposeRecovery(
                admin_pb2.ProposeRecoveryRequest(signed=propose(w, RE_INST, recover=recover)),
                timeout=5,
            )
            pid = proposed.proposal.proposal_id
            assert proposed.proposal.kind == admin_pb2.PROPOSAL_KIND_RECOVER
            first = await op1.ApproveProposal(
                admin_pb2.ApproveProposalRequest(proposal_id=pid), timeout=5
            )
            assert first.proposal.state == admin_pb2.PROPOSAL_STATE_PENDING
            still = await w.query("court-sh-pudong").GetChain(
                query_pb2.GetChainRequest(chain_id=estate), timeout=5
            )
            assert still.chain.status == pb.CHAIN_STATUS_FROZEN  # one approval changes nothing
            second = await op2.ApproveProposal(
                admin_pb2.ApproveProposalRequest(proposal_id=pid), timeout=10
            )
            assert second.proposal.state == admin_pb2.PROPOSAL_STATE_APPLIED
            assert second.chain.anchor_height == fresh.tendermint.anchor.height
            await w.wait_active(estate)

    run(main())
