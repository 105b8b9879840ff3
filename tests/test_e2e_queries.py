"""Issue 4, "what it must show" 1 and 2, end to end over real TLS sockets: the relay
(relay/service/app.py with the real engine and a real SQLite store) follows test partner
chains (relay/testing/partners.py: CometBFT chains and transparency-log registries with
really signed headers and ICS-23 proofs) through in-process adapters. Every QueryService RPC
answers with a verified record whose evidence passes the offline checker
(relay.verify.evidence.verify_evidence); ListHoldings reports a failing chain with its
reason while the others answer; each lie of a LyingAdapter is caught with its own ErrorInfo
reason, naming the chain and height, without harming other chains; a hanging adapter fails
with ADAPTER_UNAVAILABLE within its deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from relay.config import load_config
from relay.engine.adapters import InProcessAdapterClient
from relay.engine.evidence import RelaySigner
from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc, query_pb2, query_pb2_grpc
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.app import Running, start_relay
from relay.service.client import aio_channel
from relay.service.devconfig import DevSetup, write_dev_setup
from relay.service.errors import RpcFailure, describe_rpc_error
from relay.testing import samples
from relay.testing.partners import (
    BftPartnerChain,
    Fault,
    LyingAdapter,
    PartnerAdapter,
    TlogPartnerRegistry,
    sample_data,
)
from relay.verify import records
from relay.verify.evidence import ChainAnchor, verify_evidence

CASE = pb.CaseRef(
    court="京0105",
    case_number="(2026)京0105执1234号",
    purpose=pb.CASE_PURPOSE_INVESTIGATION,
    officer="officer-7",
)
ADAPTER_DEADLINE_S = 0.5
BREAKER_S = 0.3


def party_ref(p: samples.Party) -> pb.PartyRef:
    return pb.PartyRef(kind=p.kind, id_type=p.id_type, id=p.id)  # type: ignore[arg-type]


@dataclass
class Partner:
    chain: BftPartnerChain | TlogPartnerRegistry
    data: samples.SampleSet
    adapter: LyingAdapter  # fault None: honest

    @property
    def chain_id(self) -> str:
        return self.chain.chain_id


def make_partners() -> dict[str, Partner]:
    """Four chains of both client types: real estate (BFT), patents (log), credit (BFT)
    and a bank (log)."""
    people = samples.population()
    chains: list[BftPartnerChain | TlogPartnerRegistry] = [
        BftPartnerChain("cn-bj-chaoyang-realestate", domain=pb.DOMAIN_REAL_ESTATE),
        TlogPartnerRegistry(chain_id="cn-cnipa-patents"),
        BftPartnerChain("cn-credit", domain=pb.DOMAIN_CREDIT, validators=3),
        TlogPartnerRegistry(
            "icbc.example.cn/accounts", chain_id="cn-icbc-bj", domain=pb.DOMAIN_BANK
        ),
    ]
    out = {}
    for chain in chains:
        data = sample_data(chain, people=people)
        out[chain.chain_id] = Partner(chain, data, LyingAdapter(PartnerAdapter(chain), None))
    return out


class Relay:
    """A started relay with chains registered through AdminService and synced."""

    def __init__(self, setup: DevSetup, running: Running, partners: dict[str, Partner]) -> None:
        self.setup = setup
        self.running = running
        self.partners = partners
        self.descriptors: dict[str, pb.ChainDescriptor] = {}
        tls = setup.client_tls()
        self.channel = aio_channel(f"localhost:{running.server.grpc_port}", tls)
        self.query = query_pb2_grpc.QueryServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        signer = RelaySigner.ed25519(key_id=setup.key_id, seed=setup.signing_seed)
        self.relay_keys = {setup.key_id: signer.relay_key()}

    async def register_all(self) -> None:
        for p in self.partners.values():
            descriptor = p.chain.descriptor(pb.AdapterEndpoint(entry_point="relay-testing"))
            self.descriptors[p.chain_id] = descriptor
            reply = await self.admin.RegisterChain(
                admin_pb2.RegisterChainRequest(descriptor=descriptor), timeout=10
            )
            assert reply.chain.status == pb.CHAIN_STATUS_PENDING
        await self.wait_active()

    async def wait_active(self, timeout_s: float = 10.0) -> list[pb.ChainInfo]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            reply = await self.query.ListChains(query_pb2.ListChainsRequest(), timeout=5)
            if all(c.status == pb.CHAIN_STATUS_ACTIVE for c in reply.chains):
                return list(reply.chains)
            if loop.time() > end:
                raise AssertionError(f"chains not active: {reply}")
            await asyncio.sleep(0.05)

    def verify(self, evidence: pb.Evidence) -> None:
        """The evidence passes all seven offline checks."""
        anchors = {k: ChainAnchor.from_descriptor(d) for k, d in self.descriptors.items()}
        report = verify_evidence(evidence, anchors=anchors, relay_keys=self.relay_keys)
        assert report.ok, [c for c in report.checks if not c.passed]


@contextlib.asynccontextmanager
async def relay(tmp: Path, partners: dict[str, Partner], **sections: Any) -> AsyncIterator[Relay]:
    overrides: dict[str, Any] = {
        "sync": {"interval": "100ms"},
        "adapters": {"deadline": ADAPTER_DEADLINE_S, "retries": 0, "breaker_reset": BREAKER_S},
        "limits": {"query_deadline": "3s"},
    }
    overrides.update(sections)
    setup = write_dev_setup(tmp, grpc_port=0, health_port=0, overrides=overrides)
    config = load_config(setup.config)
    settings = config.engine_settings()

    def adapters(descriptor: pb.ChainDescriptor) -> InProcessAdapterClient:
        servicer = partners[descriptor.chain_id].adapter
        return InProcessAdapterClient(servicer, chain_id=descriptor.chain_id, settings=settings)

    running = await start_relay(config, adapters=adapters, insecure_dev=True)
    r = Relay(setup, running, partners)
    try:
        await r.register_all()
        yield r
    finally:
        await r.channel.close()
        await running.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def failure_of(call: Any) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return describe_rpc_error(info.value)


def owned_by_many(p: Partner) -> samples.Party:
    """A party holding at least one asset on this chain (an owner or account holder of a
    sample record, found by its party key)."""
    by_key = {p.chain.party_key(x.id_type, x.id): x for x in p.data.parties}
    for _, record in p.data.records:
        keys = []
        if isinstance(record, pb.OwnershipRecord):
            keys = [o.party.party_key for o in record.owners]
        elif isinstance(record, pb.AccountRecord):
            keys = [record.holder.party_key]
        for key in keys:
            if key in by_key:
                return by_key[key]
    raise AssertionError(f"nobody holds anything on {p.chain_id}")


def test_every_query_rpc_answers_with_verified_evidence(tmp_path: Path) -> None:
    partners = make_partners()
    re, ip = partners["cn-bj-chaoyang-realestate"], partners["cn-cnipa-patents"]
    credit, bank = partners["cn-credit"], partners["cn-icbc-bj"]

    async def main() -> None:
        async with relay(tmp_path, partners) as r:
            q = r.query
            # GetOwnership on a BFT chain and on a log registry.
            for p in (re, ip):
                asset = p.data.assets[0]
                answer = await q.GetOwnership(
                    query_pb2.GetOwnershipRequest(asset=asset, case_ref=CASE), timeout=10
                )
                assert answer.chain_id == p.chain_id
                assert answer.outcome == pb.OUTCOME_FOUND
                assert answer.record.asset == asset and answer.record.owners
                assert answer.evidence.ownership == answer.record
                assert answer.evidence.HasField("value")
                assert answer.evidence.relay_attestation.key_id == r.setup.key_id
                r.verify(answer.evidence)

            # An asset the registry does not have: absence proven, and the proof checks.
            ghost = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="NO-SUCH")
            answer = await q.GetOwnership(
                query_pb2.GetOwnershipRequest(asset=ghost, case_ref=CASE), timeout=10
            )
            assert answer.outcome == pb.OUTCOME_NONE_PROVEN
            assert not answer.evidence.HasField("value")
            r.verify(answer.evidence)

            # An older height: the answer rests on that header.
            head = (await q.GetChain(query_pb2.GetChainRequest(chain_id=re.chain_id))).chain
            assert head.status == pb.CHAIN_STATUS_ACTIVE and head.trusted_height >= 3
            older = await q.GetOwnership(
                query_pb2.GetOwnershipRequest(
                    asset=re.data.assets[0], case_ref=CASE, at_height=head.trusted_height
                ),
                timeout=10,
            )
            assert older.evidence.height == head.trusted_height
            r.verify(older.evidence)

            # GetHistory: every entry rests on one proof.
            for p in (re, ip):
                history_assets = [
                    k.history for k, _ in p.data.records if k.WhichOneof("record") == "history"
                ]
                assert history_assets, p.chain_id
                h = await q.GetHistory(
                    query_pb2.GetHistoryRequest(asset=history_assets[0], case_ref=CASE),
                    timeout=10,
                )
                assert h.outcome == pb.OUTCOME_FOUND and h.entries
                assert list(h.evidence.history.entries) == list(h.entries)
                r.verify(h.evidence)

            # GetAccount on the bank's log.
            account = bank.data.assets[0]
            acc = await q.GetAccount(
                query_pb2.GetAccountRequest(account=account, case_ref=CASE), timeout=10
            )
            assert acc.chain_id == bank.chain_id and acc.outcome == pb.OUTCOME_FOUND
            assert acc.record.account == account
            r.verify(acc.evidence)

            # GetCreditStatus: one finding per credit chain.
            debtor = credit.data.credit_parties[0]
            cs = await q.GetCreditStatus(
                query_pb2.GetCreditStatusRequest(party=party_ref(debtor), case_ref=CASE),
                timeout=10,
            )
            assert [f.chain_id for f in cs.findings] == [credit.chain_id]
            finding = cs.findings[0]
            assert finding.outcome == pb.OUTCOME_FOUND and finding.record.listings
            r.verify(finding.evidence)

            # GetState: the raw value under a record key, with evidence.
            key = records.ownership_key(re.data.assets[1])
            st = await q.GetState(
                query_pb2.GetStateRequest(chain_id=re.chain_id, key=key, case_ref=CASE),
                timeout=10,
            )
            assert st.outcome == pb.OUTCOME_FOUND
            decoded = pb.OwnershipRecord.FromString(st.value)
            assert decoded.asset == re.data.assets[1]
            assert st.evidence.key == key and st.evidence.value == st.value
            r.verify(st.evidence)

            # ListHoldings: one answer per chain holding a requested kind, each verified.
            holder = owned_by_many(re)
            answers = [
                a
                async for a in q.ListHoldings(
                    query_pb2.ListHoldingsRequest(party=party_ref(holder), case_ref=CASE),
                    timeout=15,
                )
            ]
            by_chain = {a.chain_id: a for a in answers}
            assert set(by_chain) == {re.chain_id, ip.chain_id, bank.chain_id}
            mine = by_chain[re.chain_id]
            assert mine.outcome == pb.OUTCOME_FOUND and mine.holdings
            r.verify(mine.index_evidence)
            for holding in mine.holdings:
                assert holding.ownership.asset == holding.asset
                r.verify(holding.evidence)
            for a in answers:
                assert a.outcome in (pb.OUTCOME_FOUND, pb.OUTCOME_NONE_PROVEN), a
                r.verify(a.index_evidence)

            # ListChains / GetChain describe the light clients, without the salt.
            chains = await q.ListChains(query_pb2.ListChainsRequest(), timeout=5)
            assert [c.chain_id for c in chains.chains] == sorted(partners)
            only_bank = await q.ListChains(
                query_pb2.ListChainsRequest(domain=pb.DOMAIN_BANK), timeout=5
            )
            assert [c.chain_id for c in only_bank.chains] == [bank.chain_id]
            listed = await r.admin.ListChains(admin_pb2.AdminListChainsRequest(), timeout=5)
            assert all(not c.descriptor.party_key.salt for c in listed.chains)

    run(main())


def test_unknown_chain_and_registry_are_not_found(tmp_path: Path) -> None:
    partners = {k: v for k, v in make_partners().items() if k == "cn-cnipa-patents"}

    async def main() -> None:
        async with relay(tmp_path, partners) as r:
            f = await failure_of(
                r.query.GetChain(query_pb2.GetChainRequest(chain_id="nope"), timeout=5)
            )
            assert f.code is grpc.StatusCode.NOT_FOUND and f.reason == "NOT_FOUND"
            assert f.metadata["chain_id"] == "nope"
            asset = pb.AssetRef(kind=pb.ASSET_KIND_PATENT, registry="UNKNOWN", id="x")
            f = await failure_of(
                r.query.GetOwnership(
                    query_pb2.GetOwnershipRequest(asset=asset, case_ref=CASE), timeout=5
                )
            )
            assert f.reason == "NOT_FOUND"
            # A chain registered twice.
            descriptor = r.descriptors["cn-cnipa-patents"]
            f = await failure_of(
                r.admin.RegisterChain(
                    admin_pb2.RegisterChainRequest(descriptor=descriptor), timeout=5
                )
            )
            assert f.code is grpc.StatusCode.ALREADY_EXISTS

    run(main())


def test_holdings_report_a_failing_chain_while_others_answer(tmp_path: Path) -> None:
    partners = make_partners()
    re, bank = partners["cn-bj-chaoyang-realestate"], partners["cn-icbc-bj"]

    async def main() -> None:
        async with relay(tmp_path, partners) as r:
            bank.adapter.fault = Fault.HANG
            holder = owned_by_many(re)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            answers = [
                a
                async for a in r.query.ListHoldings(
                    query_pb2.ListHoldingsRequest(party=party_ref(holder), case_ref=CASE),
                    timeout=15,
                )
            ]
            elapsed = loop.time() - t0
            by_chain = {a.chain_id: a for a in answers}
            failed = by_chain[bank.chain_id]
            assert failed.outcome == pb.OUTCOME_FAILED
            assert failed.failure.reason == pb.ADAPTER_UNAVAILABLE
            assert failed.failure.metadata["chain_id"] == bank.chain_id
            assert bank.chain_id in failed.failure.message
            ok = by_chain[re.chain_id]
            assert ok.outcome == pb.OUTCOME_FOUND
            for h in ok.holdings:
                r.verify(h.evidence)
            # Bounded by the adapter deadline (and retries are off), not the query deadline.
            assert elapsed < ADAPTER_DEADLINE_S + 5.0  # bounded, not a benchmark
            # The healthy chains answered before the hanging one was given up on.
            assert answers[-1].chain_id == bank.chain_id

    run(main())


# Each lie, the reason it must be caught with, and whether the error names a height.
# UNVERIFIED_HEIGHT and FORKED_HEADER both rest on headers the light client refuses:
# types.proto documents one reason for that (HEADER_UNVERIFIED); "check" says which rule.
LIES: Sequence[tuple[Fault, str, bool]] = [
    (Fault.WRONG_VALUE, "VALUE_MISMATCH", True),
    (Fault.PROOF_FOR_OTHER_KEY, "KEY_MISMATCH", True),
    (Fault.UNVERIFIED_HEIGHT, "HEADER_UNVERIFIED", True),
    (Fault.FORKED_HEADER, "HEADER_UNVERIFIED", True),
    (Fault.STALE_HEIGHT, "STALE_HEIGHT", True),
    (Fault.GARBAGE_BYTES, "MALFORMED_INPUT", True),
    (Fault.HANG, "ADAPTER_UNAVAILABLE", False),
]


@pytest.mark.parametrize("kind", ["bft", "tlog"])
@pytest.mark.parametrize(("fault", "reason", "has_height"), LIES, ids=[f.name for f, *_ in LIES])
def test_lying_adapter_is_caught_with_its_reason(
    tmp_path: Path, kind: str, fault: Fault, reason: str, has_height: bool
) -> None:
    all_partners = make_partners()
    liar_id = "cn-bj-chaoyang-realestate" if kind == "bft" else "cn-cnipa-patents"
    bystander_id = "cn-icbc-bj"
    partners = {k: all_partners[k] for k in (liar_id, bystander_id)}
    liar, bystander = partners[liar_id], partners[bystander_id]

    async def main() -> None:
        async with relay(tmp_path, partners) as r:
            before = (await r.query.GetChain(query_pb2.GetChainRequest(chain_id=liar_id))).chain
            liar.adapter.fault = fault
            loop = asyncio.get_running_loop()
            for asset in liar.data.assets[:3]:  # caught every time, not just once
                t0 = loop.time()
                f = await failure_of(
                    r.query.GetOwnership(
                        query_pb2.GetOwnershipRequest(asset=asset, case_ref=CASE), timeout=10
                    )
                )
                assert f.reason == reason, f.one_line()
                assert f.domain == "relay.judicial"
                assert f.metadata["chain_id"] == liar_id
                if has_height:
                    assert int(f.metadata["height"]) > 0
                assert liar_id in f.message
                assert loop.time() - t0 < ADAPTER_DEADLINE_S + 1.5
            # The relay kept no lie: its trusted state did not move past what was verified.
            after = (await r.query.GetChain(query_pb2.GetChainRequest(chain_id=liar_id))).chain
            assert after.trusted_height == before.trusted_height
            # Another chain is unharmed.
            acc = await r.query.GetAccount(
                query_pb2.GetAccountRequest(account=bystander.data.assets[0], case_ref=CASE),
                timeout=10,
            )
            assert acc.outcome == pb.OUTCOME_FOUND
            r.verify(acc.evidence)
            # Honest again: the same chain answers, verified.
            liar.adapter.fault = None
            if fault is Fault.HANG:
                # The hangs opened the chain's circuit breaker; once it half-opens, the
                # next call goes through.
                await asyncio.sleep(BREAKER_S + 0.1)
            answer = await r.query.GetOwnership(
                query_pb2.GetOwnershipRequest(asset=liar.data.assets[0], case_ref=CASE),
                timeout=10,
            )
            assert answer.outcome == pb.OUTCOME_FOUND
            r.verify(answer.evidence)

    run(main())


@pytest.mark.parametrize("kind", ["bft", "tlog"])
def test_truncated_stream_is_caught(tmp_path: Path, kind: str) -> None:
    all_partners = make_partners()
    liar_id = "cn-bj-chaoyang-realestate" if kind == "bft" else "cn-cnipa-patents"
    partners = {k: all_partners[k] for k in (liar_id, "cn-icbc-bj")}
    liar = partners[liar_id]

    async def main() -> None:
        async with relay(tmp_path, partners) as r:
            liar.adapter.fault = Fault.TRUNCATED_STREAM
            holder = owned_by_many(liar)
            answers = {
                a.chain_id: a
                async for a in r.query.ListHoldings(
                    query_pb2.ListHoldingsRequest(party=party_ref(holder), case_ref=CASE),
                    timeout=10,
                )
            }
            failed = answers[liar_id]
            assert failed.outcome == pb.OUTCOME_FAILED
            assert failed.failure.reason == pb.STREAM_TRUNCATED
            assert failed.failure.metadata["chain_id"] == liar_id
            assert int(failed.failure.metadata["height"]) > 0
            assert answers["cn-icbc-bj"].outcome in (pb.OUTCOME_FOUND, pb.OUTCOME_NONE_PROVEN)

    run(main())


def test_minority_fork_is_refused_for_lack_of_voting_power(tmp_path: Path) -> None:
    """A fork signed with the trusted validators' own keys but by less than the needed power
    is refused too, and ErrorInfo's "check" names the light-client rule that failed."""
    partners = {k: v for k, v in make_partners().items() if k == "cn-bj-chaoyang-realestate"}
    liar = partners["cn-bj-chaoyang-realestate"]
    liar.adapter = LyingAdapter(PartnerAdapter(liar.chain), None, minority_fork=True)

    async def main() -> None:
        async with relay(tmp_path, partners) as r:
            liar.adapter.fault = Fault.FORKED_HEADER
            f = await failure_of(
                r.query.GetOwnership(
                    query_pb2.GetOwnershipRequest(asset=liar.data.assets[0], case_ref=CASE),
                    timeout=10,
                )
            )
            assert f.reason == "HEADER_UNVERIFIED"
            assert f.metadata["check"] == "INSUFFICIENT_VOTING_POWER"
            assert f.metadata["chain_id"] == liar.chain_id and int(f.metadata["height"]) > 0

    run(main())
