"""Partner adapters in process: the honest PartnerAdapter answers every AdapterService call as
the adapter contract says (streams, encodings, NOT_FOUND / UNIMPLEMENTED / INVALID_ARGUMENT),
and each LyingAdapter fault really tells its lie, which the relay's pure checks catch: a
changed value, another key's proof, a forged height, a fork, a stale height, a truncated
stream, garbage bytes, a call that never returns."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc
import pytest

from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import types_pb2 as pb
from relay.testing import samples
from relay.testing.partners import (
    GARBAGE,
    BftPartnerChain,
    Fault,
    LyingAdapter,
    PartnerAdapter,
    TlogPartnerRegistry,
    sample_data,
)
from relay.verify import records
from relay.verify.errors import (
    MalformedInputError,
    MismatchError,
    SignatureError,
    VerificationError,
)
from relay.verify.lightclient import cometbft_proto as cp
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm
from relay.verify.lightclient import tlog
from relay.verify.merkle import ics23, rfc6962

T = TypeVar("T")
T0 = 1_790_000_000


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


class Context:
    """The part of grpc.aio's ServicerContext the adapters use."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def run(awaitable: Awaitable[T]) -> T:
    return asyncio.run(awaitable)  # type: ignore[arg-type]


def collect(stream: AsyncIterator[T]) -> list[T]:
    async def go() -> list[T]:
        return [item async for item in stream]

    return asyncio.run(go())


def status_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(Aborted) as info:
        if hasattr(call, "__aiter__"):
            collect(call)
        else:
            run(call)
    return info.value.code


def make_chain(**kwargs: Any) -> tuple[BftPartnerChain, samples.SampleSet]:
    counter = iter(range(10**6))
    chain = BftPartnerChain(clock=lambda: (T0 + next(counter)) * 10**9, **kwargs)
    return chain, sample_data(chain)


@pytest.fixture
def bft() -> tuple[BftPartnerChain, samples.SampleSet]:
    chain, data = make_chain()
    chain.advance(2)
    return chain, data


@pytest.fixture
def registry() -> tuple[TlogPartnerRegistry, samples.SampleSet]:
    reg = TlogPartnerRegistry(clock=lambda: T0)
    return reg, sample_data(reg)


def options(chain: BftPartnerChain) -> tm.TrustOptions:
    return tm.TrustOptions(
        chain_id=chain.chain_id,
        trusting_period_ns=chain.trusting_period_s * 10**9,
        max_clock_drift_ns=chain.max_clock_drift_s * 10**9,
        params=chain.params,
    )


def ownership(asset: pb.AssetRef, height: int | None = None) -> apb.QueryRequest:
    request = apb.QueryRequest(query=apb.DomainQuery(ownership=asset))
    if height is not None:
        request.height = height
    return request


def light_blocks(adapter: PartnerAdapter, lo: int, hi: int) -> list[apb.LightBlock]:
    request = apb.GetLightBlocksRequest(
        from_height=lo, to_height=hi, encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO
    )
    return collect(adapter.GetLightBlocks(request, Context()))


def header_root(chain: BftPartnerChain, item: apb.LightBlock) -> bytes:
    return cp.decode_light_block_proto(item.light_block, params=chain.params).header.app_hash


def membership(result: apb.QueryResult, root: bytes, spec: ics23.ProofSpec) -> None:
    ics23.verify_membership(
        spec=spec,
        root=root,
        proof=ics23.decode_commitment_proof(result.proof),
        key=result.key,
        value=result.value,
    )


# --- honest adapters ---------------------------------------------------------------------------


def test_describe_and_latest_height(
    bft: tuple[BftPartnerChain, samples.SampleSet],
    registry: tuple[TlogPartnerRegistry, samples.SampleSet],
) -> None:
    chain, reg = bft[0], registry[0]
    d = run(PartnerAdapter(chain).Describe(apb.DescribeRequest(), Context()))
    assert d.chain_id == chain.chain_id and d.client_type == pb.CLIENT_TYPE_TENDERMINT
    assert d.record_schema_version == 1 and apb.CAPABILITY_LIGHT_BLOCKS in d.capabilities
    assert apb.CAPABILITY_QUERY_OWNERSHIP in d.capabilities
    d = run(PartnerAdapter(reg).Describe(apb.DescribeRequest(), Context()))
    assert d.client_type == pb.CLIENT_TYPE_TLOG and apb.CAPABILITY_CHECKPOINTS in d.capabilities
    latest = run(PartnerAdapter(chain).GetLatestHeight(apb.GetLatestHeightRequest(), Context()))
    assert latest.height == chain.height
    assert latest.time.ToNanoseconds() == chain.latest_time_ns


def test_light_blocks_stream_in_both_encodings(
    bft: tuple[BftPartnerChain, samples.SampleSet],
) -> None:
    chain, _ = bft
    adapter = PartnerAdapter(chain)
    items = light_blocks(adapter, 1, chain.height)
    assert [i.height for i in items] == list(range(1, chain.height + 1))
    for item in items:
        assert item.encoding == apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO
        block = cp.decode_light_block_proto(item.light_block, params=chain.params)
        assert block.height == item.height
    request = apb.GetLightBlocksRequest(
        from_height=2, to_height=3, encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_JSON
    )
    as_json = collect(adapter.GetLightBlocks(request, Context()))
    for item in as_json:
        block = ct.decode_light_block(json.loads(item.light_block), params=chain.params)
        assert block.signed_header == chain.light_block(item.height).signed_header


@pytest.mark.parametrize(
    ("lo", "hi", "encoding", "code"),
    [
        (1, 99, 1, grpc.StatusCode.NOT_FOUND),
        (0, 1, 1, grpc.StatusCode.INVALID_ARGUMENT),
        (3, 2, 1, grpc.StatusCode.INVALID_ARGUMENT),
        (1, 20_000, 1, grpc.StatusCode.INVALID_ARGUMENT),
        (1, 1, 0, grpc.StatusCode.UNIMPLEMENTED),
    ],
)
def test_light_block_requests_are_refused_by_the_contract(
    bft: tuple[BftPartnerChain, samples.SampleSet], lo: int, hi: int, encoding: int, code: Any
) -> None:
    request = apb.GetLightBlocksRequest(from_height=lo, to_height=hi, encoding=encoding)  # type: ignore[arg-type]
    assert status_of(PartnerAdapter(bft[0]).GetLightBlocks(request, Context())) == code


def test_each_kind_refuses_the_other_kinds_calls(
    bft: tuple[BftPartnerChain, samples.SampleSet],
    registry: tuple[TlogPartnerRegistry, samples.SampleSet],
) -> None:
    bft_adapter, log_adapter = PartnerAdapter(bft[0]), PartnerAdapter(registry[0])
    unimplemented = grpc.StatusCode.UNIMPLEMENTED
    assert (
        status_of(bft_adapter.GetCheckpoint(apb.GetCheckpointRequest(), Context())) == unimplemented
    )
    request = apb.GetConsistencyProofRequest(size1=1, size2=2)
    assert status_of(bft_adapter.GetConsistencyProof(request, Context())) == unimplemented
    blocks = apb.GetLightBlocksRequest(from_height=1, to_height=1, encoding=1)  # type: ignore[arg-type]
    assert status_of(log_adapter.GetLightBlocks(blocks, Context())) == unimplemented
    missing = apb.GetCheckpointRequest(size=1)
    assert status_of(log_adapter.GetCheckpoint(missing, Context())) == grpc.StatusCode.NOT_FOUND


def test_checkpoints_and_consistency_proofs(
    registry: tuple[TlogPartnerRegistry, samples.SampleSet],
) -> None:
    reg, _ = registry
    adapter = PartnerAdapter(reg)
    first, last = reg.heights()
    config = reg.trust_config()
    old = run(adapter.GetCheckpoint(apb.GetCheckpointRequest(size=first), Context())).signed_note
    new = run(adapter.GetCheckpoint(apb.GetCheckpointRequest(), Context())).signed_note
    proof = run(
        adapter.GetConsistencyProof(
            apb.GetConsistencyProofRequest(size1=first, size2=last), Context()
        )
    ).hashes
    state = tlog.update(tlog.initialize(config=config, anchor_note=old, now=T0), new, proof, now=T0)
    assert state.trusted.size == last


def test_queries_of_every_kind(bft: tuple[BftPartnerChain, samples.SampleSet]) -> None:
    chain, data = bft
    adapter = PartnerAdapter(chain)
    root = chain.light_block(chain.height).header.app_hash
    asset = data.assets[0]
    for query in (
        apb.DomainQuery(ownership=asset),
        apb.DomainQuery(history=asset),
        apb.DomainQuery(raw_key=records.ownership_key(asset)),
    ):
        result = run(adapter.Query(apb.QueryRequest(query=query), Context()))
        membership(result, root, chain.proof_spec)
    credit_chain, credit = make_chain(chain_id="cn-credit", domain=pb.DOMAIN_CREDIT)
    party_key = credit_chain.party_key_of(credit.credit_parties[0])
    result = run(
        PartnerAdapter(credit_chain).Query(
            apb.QueryRequest(query=apb.DomainQuery(credit_party_key=party_key)), Context()
        )
    )
    record = records.decode_for_key(result.key, result.value)[1]
    assert isinstance(record, pb.CreditRecord) and record.listings
    bank_chain, accounts = make_chain(chain_id="cn-bank", domain=pb.DOMAIN_BANK)
    result = run(
        PartnerAdapter(bank_chain).Query(
            apb.QueryRequest(query=apb.DomainQuery(account=accounts.assets[0])), Context()
        )
    )
    account = records.decode_for_key(result.key, result.value)[1]
    assert isinstance(account, pb.AccountRecord) and account.freezes
    assert (
        status_of(adapter.Query(apb.QueryRequest(), Context())) == grpc.StatusCode.INVALID_ARGUMENT
    )
    too_high = ownership(asset, chain.height + 1)
    assert status_of(adapter.Query(too_high, Context())) == grpc.StatusCode.NOT_FOUND


def test_list_by_party_streams_the_index_then_the_assets(
    bft: tuple[BftPartnerChain, samples.SampleSet],
) -> None:
    chain, _ = bft
    party_key = chain.party_key_of(samples.population().debtor)
    items = collect(
        PartnerAdapter(chain).ListByParty(apb.ListByPartyRequest(party_key=party_key), Context())
    )
    index = records.decode_for_key(items[0].key, items[0].value)[1]
    assert isinstance(index, pb.PartyHoldings)
    assert [i.key for i in items[1:]] == [records.ownership_key(a) for a in index.assets]
    empty = apb.ListByPartyRequest()
    status = status_of(PartnerAdapter(chain).ListByParty(empty, Context()))
    assert status == grpc.StatusCode.INVALID_ARGUMENT


# --- lying adapters ----------------------------------------------------------------------------


def test_no_fault_is_honest(bft: tuple[BftPartnerChain, samples.SampleSet]) -> None:
    chain, data = bft
    liar = LyingAdapter(PartnerAdapter(chain), None)
    result = run(liar.Query(ownership(data.assets[0]), Context()))
    assert result == chain.query(records.ownership_key(data.assets[0]))
    assert liar.calls == ["Query"]


@pytest.mark.parametrize("kind", ["bft", "tlog"])
def test_wrong_value_changes_the_value_but_keeps_the_proof(
    kind: str,
    bft: tuple[BftPartnerChain, samples.SampleSet],
    registry: tuple[TlogPartnerRegistry, samples.SampleSet],
) -> None:
    chain, data = bft if kind == "bft" else registry
    liar = LyingAdapter(PartnerAdapter(chain), Fault.WRONG_VALUE)
    for asset in data.assets[:5]:
        honest = chain.query(records.ownership_key(asset))
        lie = run(liar.Query(ownership(asset), Context()))
        assert lie.proof == honest.proof and lie.value != honest.value
        # a plausible record (it still decodes) that the proof does not prove
        records.decode_for_key(lie.key, lie.value)
        with pytest.raises(MismatchError) as info:
            membership(lie, chain.state_at(lie.height).root, chain.proof_spec)
        assert info.value.reason == "VALUE_MISMATCH" and info.value.context["check"] == "value"


def test_proof_for_another_key(bft: tuple[BftPartnerChain, samples.SampleSet]) -> None:
    chain, data = bft
    liar = LyingAdapter(PartnerAdapter(chain), Fault.PROOF_FOR_OTHER_KEY)
    asked = records.ownership_key(data.assets[3])
    lie = run(liar.Query(ownership(data.assets[3]), Context()))
    assert lie.key != asked
    # a real proof of a real record, just not the one asked about
    membership(lie, chain.state_at(lie.height).root, chain.proof_spec)
    other = records.decode_for_key(lie.key, lie.value)[1]
    assert isinstance(other, pb.OwnershipRecord) and other.asset != data.assets[3]
    listing = collect(
        liar.ListByParty(
            apb.ListByPartyRequest(party_key=chain.party_key_of(samples.population().debtor)),
            Context(),
        )
    )
    assert listing[0].key != records.holdings_key(chain.party_key_of(samples.population().debtor))


def test_unverified_height_is_far_above_the_head_and_fails_the_light_client(
    bft: tuple[BftPartnerChain, samples.SampleSet],
) -> None:
    chain, data = bft
    liar = LyingAdapter(PartnerAdapter(chain), Fault.UNVERIFIED_HEIGHT)
    head = chain.height
    lie = run(liar.Query(ownership(data.assets[0]), Context()))
    assert lie.height >= head + 1000
    claimed = run(liar.GetLatestHeight(apb.GetLatestHeightRequest(), Context())).height
    assert claimed >= lie.height
    [forged] = light_blocks(liar, lie.height, lie.height)
    forged_block = cp.decode_light_block_proto(forged.light_block, params=chain.params)
    # correct-looking: the proof verifies against the forged header's root...
    membership(lie, forged_block.header.app_hash, chain.proof_spec)
    assert lie.value != chain.query(lie.key).value
    # ...but that header is signed by validators the relay never trusted
    trusted = tm.TrustedBlock.from_light_block(
        cp.decode_light_block_proto(chain.light_block_bytes(head), params=chain.params)
    )

    def fetch(height: int) -> ct.LightBlock:
        [item] = light_blocks(liar, height, height)
        block = cp.decode_light_block_proto(item.light_block, params=chain.params)
        if height < head:
            return chain.light_block(height)
        return block

    with pytest.raises(VerificationError) as info:
        tm.verify_skipping(
            trusted=trusted,
            target=forged_block,
            fetch=fetch,
            options=options(chain),
            now=chain.latest_time_ns + 60 * 10**9,
        )
    assert info.value.reason in ("NOT_ENOUGH_TRUST", "HEADER_MISMATCH")
    # heights the chain really has stay honest
    [honest] = light_blocks(liar, head, head)
    assert honest.light_block == chain.light_block_bytes(head)


@pytest.mark.parametrize("minority", [False, True])
def test_forked_header_is_signed_by_others_or_by_too_few(
    minority: bool, bft: tuple[BftPartnerChain, samples.SampleSet]
) -> None:
    chain, data = bft
    head = chain.height
    liar = LyingAdapter(PartnerAdapter(chain), Fault.FORKED_HEADER, minority_fork=minority)
    claimed = run(liar.GetLatestHeight(apb.GetLatestHeightRequest(), Context())).height
    assert claimed > head
    fork = [
        cp.decode_light_block_proto(i.light_block, params=chain.params)
        for i in light_blocks(liar, head + 1, claimed)
    ]
    assert fork[0].header.last_block_id.hash == chain.light_block(head).header.hash
    trusted = tm.TrustedBlock.from_light_block(
        cp.decode_light_block_proto(chain.light_block_bytes(head), params=chain.params)
    )
    with pytest.raises(VerificationError) as info:
        tm.verify_light_block(
            trusted=trusted,
            untrusted=fork[0],
            options=options(chain),
            now=chain.latest_time_ns + 60 * 10**9,
        )
    expected = "INSUFFICIENT_VOTING_POWER" if minority else "HEADER_MISMATCH"
    assert info.value.reason == expected, info.value
    # the newest state is answered on the fork, with a proof against the fork's root
    lie = run(liar.Query(ownership(data.assets[0]), Context()))
    assert lie.height == claimed
    membership(lie, fork[-1].header.app_hash, chain.proof_spec)
    assert fork[-1].header.app_hash != chain.state_at(head).root
    # the chain moves on honestly; the liar keeps serving its fork at those heights
    chain.advance(2)
    [forked] = light_blocks(liar, head + 1, head + 1)
    assert forked.light_block != chain.light_block_bytes(head + 1)


@pytest.mark.parametrize("fault", [Fault.FORKED_HEADER, Fault.UNVERIFIED_HEIGHT])
def test_log_forgeries_are_not_signed_by_the_log_key(
    fault: Fault, registry: tuple[TlogPartnerRegistry, samples.SampleSet]
) -> None:
    reg, data = registry
    liar = LyingAdapter(PartnerAdapter(reg), fault)
    lie = run(liar.Query(ownership(data.assets[0]), Context()))
    assert lie.height > reg.height
    note = run(liar.GetCheckpoint(apb.GetCheckpointRequest(size=lie.height), Context()))
    latest = run(liar.GetCheckpoint(apb.GetCheckpointRequest(), Context()))
    assert latest.signed_note != reg.checkpoint()
    proof = run(
        liar.GetConsistencyProof(
            apb.GetConsistencyProofRequest(size1=reg.height, size2=lie.height), Context()
        )
    ).hashes
    # the forged checkpoint's map root proves the lie...
    body = note.signed_note.split(b"\n\n")[0] + b"\n"
    checkpoint = tlog.parse_checkpoint(body, hasher=rfc6962.RFC6962_SHA256)
    assert checkpoint.map_root is not None
    membership(lie, checkpoint.map_root, reg.proof_spec)
    # ...but the log never signed it
    state = tlog.initialize(config=reg.trust_config(), anchor_note=reg.checkpoint(), now=T0)
    with pytest.raises(SignatureError):
        tlog.update(state, note.signed_note, proof, now=T0)


@pytest.mark.parametrize("kind", ["bft", "tlog"])
def test_stale_height_answers_below_the_height_asked(
    kind: str,
    bft: tuple[BftPartnerChain, samples.SampleSet],
    registry: tuple[TlogPartnerRegistry, samples.SampleSet],
) -> None:
    chain, data = bft if kind == "bft" else registry
    liar = LyingAdapter(PartnerAdapter(chain), Fault.STALE_HEIGHT)
    asset = data.assets[0]
    lie = run(liar.Query(ownership(asset, chain.height), Context()))
    assert lie.height < chain.height
    newest = run(liar.Query(ownership(asset), Context()))
    assert newest.height < chain.height
    # an honest proof, for the wrong (old) height
    proof = ics23.decode_commitment_proof(lie.proof)
    root = chain.state_at(lie.height).root
    if lie.HasField("value"):
        membership(lie, root, chain.proof_spec)
    else:
        ics23.verify_non_membership(spec=chain.proof_spec, root=root, proof=proof, key=lie.key)
    party = apb.ListByPartyRequest(
        party_key=chain.party_key_of(samples.population().debtor), height=chain.height
    )
    assert {r.height for r in collect(liar.ListByParty(party, Context()))} == {lie.height}


def test_truncated_streams_end_one_message_early(
    bft: tuple[BftPartnerChain, samples.SampleSet],
) -> None:
    chain, _ = bft
    liar = LyingAdapter(PartnerAdapter(chain), Fault.TRUNCATED_STREAM)
    assert len(light_blocks(liar, 1, chain.height)) == chain.height - 1
    request = apb.ListByPartyRequest(party_key=chain.party_key_of(samples.population().debtor))
    honest = collect(PartnerAdapter(chain).ListByParty(request, Context()))
    assert collect(liar.ListByParty(request, Context())) == honest[:-1]


@pytest.mark.parametrize("kind", ["bft", "tlog"])
def test_garbage_bytes_do_not_decode(
    kind: str,
    bft: tuple[BftPartnerChain, samples.SampleSet],
    registry: tuple[TlogPartnerRegistry, samples.SampleSet],
) -> None:
    chain, data = bft if kind == "bft" else registry
    liar = LyingAdapter(PartnerAdapter(chain), Fault.GARBAGE_BYTES)
    lie = run(liar.Query(ownership(data.assets[0]), Context()))
    with pytest.raises(MalformedInputError):
        ics23.decode_commitment_proof(lie.proof)
    if isinstance(chain, BftPartnerChain):
        [item] = light_blocks(liar, 1, 1)
        with pytest.raises(MalformedInputError):
            cp.decode_light_block_proto(item.light_block, params=chain.params)
        return
    note = run(liar.GetCheckpoint(apb.GetCheckpointRequest(), Context())).signed_note
    assert note == GARBAGE
    with pytest.raises(MalformedInputError):
        tlog.verify_checkpoint(config=chain.trust_config(), note=note, now=T0)
    hashes = run(
        liar.GetConsistencyProof(apb.GetConsistencyProofRequest(size1=1, size2=2), Context())
    ).hashes
    with pytest.raises(MalformedInputError):
        rfc6962.verify_consistency(
            hasher=rfc6962.RFC6962_SHA256,
            size1=20,
            size2=40,
            proof=hashes,
            root1=bytes(32),
            root2=bytes(32),
        )


def test_hang_never_answers_but_describes(bft: tuple[BftPartnerChain, samples.SampleSet]) -> None:
    chain, data = bft
    liar = LyingAdapter(PartnerAdapter(chain), Fault.HANG)

    async def go() -> None:
        d = await asyncio.wait_for(liar.Describe(apb.DescribeRequest(), Context()), 1)
        assert d.chain_id == chain.chain_id
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(liar.Query(ownership(data.assets[0]), Context()), 0.05)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                liar.GetLatestHeight(apb.GetLatestHeightRequest(), Context()), 0.05
            )

        async def first_block() -> Any:
            request = apb.GetLightBlocksRequest(from_height=1, to_height=1, encoding=1)  # type: ignore[arg-type]
            async for item in liar.GetLightBlocks(request, Context()):
                return item

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first_block(), 0.05)

    asyncio.run(go())
    assert liar.calls[:2] == ["Describe", "Query"]
