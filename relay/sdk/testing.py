"""The adapter conformance suite: pytest classes a partner subclasses to check its adapter
against what the relay expects, before asking to be registered.

Usage (in the partner's own tests)::

    from relay.sdk.testing import AdapterConformance, ConformanceTarget

    class TestOurAdapter(AdapterConformance):
        @pytest.fixture
        def conformance_target(self) -> ConformanceTarget:
            return ConformanceTarget(
                descriptor=our_descriptor(),          # what we will propose (anchored)
                present=[DomainQuery(ownership=...)], # records our chain holds
                absent=[DomainQuery(ownership=...)],  # records it does not hold
                parties=[PartyRef(...)],               # parties holding assets here
                client_cert_pem=..., client_key_pem=...,  # when the adapter wants mTLS
            )

The adapter is reached at the descriptor's ``adapter.grpc_address`` over TLS (with its CA
and server name), or in process when ``servicer`` is given. The checks use the relay's own
code: its adapter client (deadlines, message and stream limits), its light clients (every
light block or checkpoint verified from the descriptor's anchor), its query path (every
proof verified against a verified root, keys derived by record schema 1) and the offline
evidence checker. Each test says what the relay would refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import admin_pb2, query_pb2
from relay.pb.relay.v1 import types_pb2 as pb
from relay.sdk.adapter import AdapterBase, schema1_key
from relay.verify import records

__all__ = ["AdapterConformance", "ConformanceTarget"]

CASE = pb.CaseRef(
    court="京0105",
    case_number="(2026)京0105执1号",
    purpose=pb.CASE_PURPOSE_INVESTIGATION,
    officer="conformance",
)


@dataclass(frozen=True)
class ConformanceTarget:
    """The adapter under test and what its chain holds."""

    descriptor: pb.ChainDescriptor
    """The chain descriptor the partner proposes: identity, client parameters with the trust
    anchor, proof spec, party-key spec, adapter endpoint."""
    present: Sequence[apb.DomainQuery]
    """Questions whose records the chain holds (at its head)."""
    absent: Sequence[apb.DomainQuery]
    """Questions whose records the chain does not hold."""
    parties: Sequence[pb.PartyRef] = ()
    """Parties that hold at least one asset on the chain (for ListByParty; none for chains
    that index no holdings, e.g. a credit list)."""
    servicer: AdapterBase | None = None
    """An in-process adapter instead of the descriptor's gRPC address."""
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    """The relay's client identity when the adapter requires mutual TLS."""
    deadline_s: float = 10.0


def _settings(target: ConformanceTarget) -> Any:
    from relay.engine.settings import EngineSettings

    return EngineSettings(
        sync_interval_s=0.05,
        sync_jitter=0.0,
        adapter_deadline_s=target.deadline_s,
        adapter_retries=0,
        query_deadline_s=target.deadline_s * 2,
        adapter_client_cert_pem=target.client_cert_pem,
        adapter_client_key_pem=target.client_key_pem,
        verify_threads=1,
    )


def _client(target: ConformanceTarget, settings: Any) -> Any:
    from relay.engine.adapters import GrpcAdapterClient, InProcessAdapterClient

    chain_id = target.descriptor.chain_id
    if target.servicer is not None:
        return InProcessAdapterClient(target.servicer, chain_id=chain_id, settings=settings)
    return GrpcAdapterClient(target.descriptor.adapter, chain_id=chain_id, settings=settings)


def _transport(target: ConformanceTarget, settings: Any) -> Any:
    # The relay's raw transports: the status code the adapter answered, before the relay
    # maps it to its own error reasons.
    from relay.engine import adapters

    if target.servicer is not None:
        return adapters._InProcessTransport(target.servicer)
    return adapters._GrpcTransport(endpoint=target.descriptor.adapter, settings=settings)


async def _code_of(target: ConformanceTarget, method: str, request: Any) -> grpc.StatusCode:
    """The status code of one raw call (OK when it succeeds)."""
    from relay.engine.adapters import CallError

    transport = _transport(target, _settings(target))
    try:
        if method in ("GetLightBlocks", "ListByParty"):
            async for _ in transport.stream(method, request, target.deadline_s):
                pass
        else:
            await transport.unary(method, request, target.deadline_s)
    except CallError as e:
        return e.code
    finally:
        await transport.close()
    return grpc.StatusCode.OK


@contextlib.asynccontextmanager
async def _relay(target: ConformanceTarget, directory: Path) -> AsyncIterator[Any]:
    """A relay engine over a fresh SQLite store with the target chain registered and synced
    once."""
    from relay.engine.engine import Engine
    from relay.engine.evidence import RelaySigner
    from relay.store import SQLiteStore

    settings = _settings(target)
    store = await SQLiteStore.open(directory / "conformance.db")
    engine = None
    try:
        engine = await Engine.open(
            settings=settings,
            store=store,
            signer=RelaySigner.ed25519(key_id="conformance", seed=bytes(32)),
            adapters=lambda d: _client(target, settings),
        )
        await engine.register_chain(admin_pb2.RegisterChainRequest(descriptor=target.descriptor))
        await engine.sync_chain_once(target.descriptor.chain_id)
        yield engine
    finally:
        if engine is not None:
            await engine.close()
        await store.close()


def _check(engine: Any, target: ConformanceTarget, evidence: pb.Evidence) -> None:
    from relay.verify.evidence import ChainAnchor, verify_evidence

    report = verify_evidence(
        evidence,
        anchors={target.descriptor.chain_id: ChainAnchor.from_descriptor(target.descriptor)},
        relay_keys={"conformance": engine.relay_key()},
    )
    assert report.ok, [c for c in report.checks if not c.passed]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


class AdapterConformance:
    """What the relay expects of an adapter. Subclass it (as ``Test...``) and provide the
    ``conformance_target`` fixture; every test must pass before registration."""

    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        raise NotImplementedError("provide the conformance_target fixture")

    # --- identity ---

    def test_describe_matches_the_descriptor(self, conformance_target: ConformanceTarget) -> None:
        """Describe names the descriptor's chain and client type and record schema 1, and
        offers the calls its client type needs (the relay refuses an adapter that claims
        another chain or client type)."""
        t = conformance_target

        async def go() -> apb.DescribeResponse:
            client = _client(t, _settings(t))
            try:
                described: apb.DescribeResponse = await client.describe()
                return described
            finally:
                await client.close()

        d = _run(go())
        assert d.chain_id == t.descriptor.chain_id
        which = t.descriptor.WhichOneof("client")
        expected = {"tendermint": pb.CLIENT_TYPE_TENDERMINT, "tlog": pb.CLIENT_TYPE_TLOG}
        assert d.client_type == expected[str(which)]
        assert d.record_schema_version == records.SCHEMA_VERSION
        caps = set(d.capabilities)
        if which == "tendermint":
            assert apb.CAPABILITY_LIGHT_BLOCKS in caps
        else:
            assert {apb.CAPABILITY_CHECKPOINTS, apb.CAPABILITY_CONSISTENCY_PROOFS} <= caps
        assert apb.CAPABILITY_QUERY_RAW in caps
        assert d.adapter_version

    def test_latest_height_is_at_or_above_the_anchor(
        self, conformance_target: ConformanceTarget
    ) -> None:
        t = conformance_target

        async def go() -> int:
            client = _client(t, _settings(t))
            try:
                height: int = await client.latest_height()
                return height
            finally:
                await client.close()

        head = _run(go())
        which = t.descriptor.WhichOneof("client")
        if which == "tendermint":
            anchor = t.descriptor.tendermint.anchor.height
        else:
            from relay.verify.lightclient.tlog import parse_checkpoint
            from relay.verify.merkle.rfc6962 import RFC6962_SHA256, RFC6962_SM3
            from relay.verify.note import parse_note

            hasher = (
                RFC6962_SM3
                if t.descriptor.tlog.hash_algorithm == pb.HASH_ALGORITHM_SM3
                else RFC6962_SHA256
            )
            text = parse_note(t.descriptor.tlog.anchor.checkpoint).text
            anchor = parse_checkpoint(text, hasher=hasher).size
        assert head >= anchor > 0

    # --- headers, checkpoints: verified by the relay's light client ---

    def test_relay_verifies_the_head_from_the_anchor(
        self, conformance_target: ConformanceTarget, tmp_path: Path
    ) -> None:
        """The relay registers the chain and verifies the adapter's newest light block (by
        bisection from the anchor) or checkpoint (signatures, witness quorum, consistency)."""
        t = conformance_target

        async def go() -> pb.ChainInfo:
            async with _relay(t, tmp_path) as engine:
                request = query_pb2.GetChainRequest(chain_id=t.descriptor.chain_id)
                info: pb.ChainInfo = (await engine.get_chain(request)).chain
                return info

        info = _run(go())
        assert info.status == pb.CHAIN_STATUS_ACTIVE, (info.status_reason, info.status_message)
        assert info.trusted_height >= info.anchor_height
        assert info.assurance == pb.ASSURANCE_FULL

    # --- queries: proofs verified, keys of record schema 1 ---

    def test_present_records_are_proven(
        self, conformance_target: ConformanceTarget, tmp_path: Path
    ) -> None:
        """Every present record is answered with a membership proof the relay verifies
        against its verified root, under the schema-1 key, with a value that decodes as the
        record schema 1 type of that key; the evidence passes the offline checker."""
        t = conformance_target
        assert t.present, "name at least one record the chain holds"

        async def go() -> None:
            async with _relay(t, tmp_path) as engine:
                for question in t.present:
                    key = schema1_key(question)
                    answer = await engine.get_state(
                        query_pb2.GetStateRequest(
                            chain_id=t.descriptor.chain_id, key=key, case_ref=CASE
                        )
                    )
                    assert answer.outcome == pb.OUTCOME_FOUND, (question, answer.detail)
                    if question.WhichOneof("query") != "raw_key":
                        records.decode_for_key(key, answer.value)
                    _check(engine, t, answer.evidence)

        _run(go())

    def test_absent_records_are_proven_absent(
        self, conformance_target: ConformanceTarget, tmp_path: Path
    ) -> None:
        """A missing record is not an error: the adapter answers a non-membership proof the
        relay verifies (outcome NONE_PROVEN, with evidence)."""
        t = conformance_target
        assert t.absent, "name at least one record the chain does not hold"

        async def go() -> None:
            async with _relay(t, tmp_path) as engine:
                for question in t.absent:
                    answer = await engine.get_state(
                        query_pb2.GetStateRequest(
                            chain_id=t.descriptor.chain_id, key=schema1_key(question), case_ref=CASE
                        )
                    )
                    assert answer.outcome == pb.OUTCOME_NONE_PROVEN, (question, answer.detail)
                    assert not answer.HasField("value")
                    _check(engine, t, answer.evidence)

        _run(go())

    def test_list_by_party_is_complete(
        self, conformance_target: ConformanceTarget, tmp_path: Path
    ) -> None:
        """ListByParty streams the party's proven holdings index, then exactly the assets it
        lists, at one height; the relay's ListHoldings verifies each. A party holding
        nothing gets a proven absent index (NONE_PROVEN with evidence)."""
        t = conformance_target
        nobody = pb.PartyRef(
            kind=pb.PARTY_KIND_PERSON, id_type=pb.ID_TYPE_PASSPORT, id="CONFORMANCE-NOBODY-1"
        )

        async def answer(engine: Any, party: pb.PartyRef) -> query_pb2.HoldingsAnswer:
            answers: list[query_pb2.HoldingsAnswer] = [
                a
                async for a in engine.list_holdings(
                    query_pb2.ListHoldingsRequest(party=party, case_ref=CASE)
                )
            ]
            (mine,) = [a for a in answers if a.chain_id == t.descriptor.chain_id]
            return mine

        async def raw_absent() -> None:
            # A chain that lists no asset kinds is not asked by ListHoldings; its adapter
            # must still answer the contract: the holdings index key, without a value.
            client = _client(t, _settings(t))
            try:
                key = hashlib.sha256(b"conformance: nobody").digest()
                results = await client.list_by_party(key, (), None)
            finally:
                await client.close()
            assert len(results) == 1
            assert results[0].key == records.holdings_key(key)
            assert not results[0].HasField("value")
            assert results[0].proof

        if not t.descriptor.asset_kinds:
            assert not t.parties, "parties hold assets, but the descriptor lists no asset kinds"
            _run(raw_absent())
            return

        async def go() -> None:
            async with _relay(t, tmp_path) as engine:
                for party in t.parties:
                    mine = await answer(engine, party)
                    assert mine.outcome == pb.OUTCOME_FOUND, (party, mine.detail, mine.failure)
                    assert mine.holdings
                    _check(engine, t, mine.index_evidence)
                    for holding in mine.holdings:
                        _check(engine, t, holding.evidence)
                none = await answer(engine, nobody)
                assert none.outcome == pb.OUTCOME_NONE_PROVEN, (none.detail, none.failure)
                assert not none.holdings
                _check(engine, t, none.index_evidence)

        _run(go())

    # --- refusals: the contract's error codes ---

    def test_heights_above_the_head_are_not_found(
        self, conformance_target: ConformanceTarget
    ) -> None:
        t = conformance_target
        far = 1 << 40
        question = t.present[0] if t.present else apb.DomainQuery(raw_key=b"k")
        if t.descriptor.WhichOneof("client") == "tendermint":
            range_request = apb.GetLightBlocksRequest(
                from_height=far,
                to_height=far,
                encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO,
            )
            assert _run(_code_of(t, "GetLightBlocks", range_request)) == grpc.StatusCode.NOT_FOUND
        else:
            assert (
                _run(_code_of(t, "GetCheckpoint", apb.GetCheckpointRequest(size=far)))
                == grpc.StatusCode.NOT_FOUND
            )
        query = apb.QueryRequest(query=question, height=far)
        assert _run(_code_of(t, "Query", query)) == grpc.StatusCode.NOT_FOUND

    def test_calls_of_the_other_client_type_are_unimplemented(
        self, conformance_target: ConformanceTarget
    ) -> None:
        t = conformance_target
        if t.descriptor.WhichOneof("client") == "tendermint":
            code = _run(_code_of(t, "GetCheckpoint", apb.GetCheckpointRequest()))
        else:
            request = apb.GetLightBlocksRequest(
                from_height=1, to_height=1, encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO
            )
            code = _run(_code_of(t, "GetLightBlocks", request))
        assert code == grpc.StatusCode.UNIMPLEMENTED

    def test_malformed_requests_are_invalid_arguments(
        self, conformance_target: ConformanceTarget
    ) -> None:
        t = conformance_target
        assert _run(_code_of(t, "Query", apb.QueryRequest())) == grpc.StatusCode.INVALID_ARGUMENT
        empty_party = apb.ListByPartyRequest(party_key=b"")
        assert _run(_code_of(t, "ListByParty", empty_party)) == grpc.StatusCode.INVALID_ARGUMENT
        if t.descriptor.WhichOneof("client") == "tendermint":
            backwards = apb.GetLightBlocksRequest(
                from_height=2, to_height=1, encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO
            )
            assert _run(_code_of(t, "GetLightBlocks", backwards)) == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
        else:
            backwards_sizes = apb.GetConsistencyProofRequest(size1=2, size2=1)
            assert _run(_code_of(t, "GetConsistencyProof", backwards_sizes)) == (
                grpc.StatusCode.INVALID_ARGUMENT
            )

    def test_answers_stay_within_the_relay_limits(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """A range of light blocks larger than the relay fetches at once is refused with
        INVALID_ARGUMENT (not streamed without bound); answers fit the relay's message
        limit (the relay's client refuses larger ones with LIMIT_EXCEEDED)."""
        t = conformance_target
        if t.descriptor.WhichOneof("client") == "tendermint":
            huge = apb.GetLightBlocksRequest(
                from_height=1, to_height=1 << 30, encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO
            )
            code = _run(_code_of(t, "GetLightBlocks", huge))
            assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)

        async def go() -> None:
            client = _client(t, _settings(t))
            try:
                for question in t.present:
                    await client.query(question, None)  # raises LIMIT_EXCEEDED when too large
            finally:
                await client.close()

        started = time.monotonic()
        _run(go())
        assert time.monotonic() - started < t.deadline_s * max(1, len(t.present))
