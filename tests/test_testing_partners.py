"""Test partner chains: their light blocks and checkpoints verify with the relay's pure light
clients (adjacent, skipping, across a rotation, with witness quorum and map root), their
query answers verify against the root committed at the answered height with the ICS-23
verifier and decode as schema-1 records, their holdings indexes are complete, their
descriptors are usable as trust anchors, and their sample data is realistic and keyed only
by salted party keys."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest

from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import types_pb2 as pb
from relay.testing import samples
from relay.testing.partners import (
    BftPartnerChain,
    FailedPrecondition,
    NotFound,
    TlogPartnerRegistry,
    sample_data,
)
from relay.verify import records
from relay.verify.errors import MismatchError, RootMismatchError, VerificationError
from relay.verify.hashing import SHA256, SM3
from relay.verify.lightclient import cometbft_proto as cp
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm
from relay.verify.lightclient import tlog
from relay.verify.merkle import ics23, rfc6962
from relay.verify.note import parse_verifier_key

T0 = 1_790_000_000 * 10**9


def ticking(start: int = T0, step: int = 10**9) -> Callable[[], int]:
    counter = itertools.count()
    return lambda: start + next(counter) * step


def bft(**kwargs: object) -> BftPartnerChain:
    return BftPartnerChain(clock=ticking(), **kwargs)  # type: ignore[arg-type]


def options(chain: BftPartnerChain) -> tm.TrustOptions:
    return tm.TrustOptions(
        chain_id=chain.chain_id,
        trusting_period_ns=chain.trusting_period_s * 10**9,
        max_clock_drift_ns=chain.max_clock_drift_s * 10**9,
        params=chain.params,
    )


def decoded(chain: BftPartnerChain, height: int) -> ct.LightBlock:
    return cp.decode_light_block_proto(chain.light_block_bytes(height), params=chain.params)


def verify_result(result: apb.QueryResult, *, root: bytes, spec: ics23.ProofSpec) -> object | None:
    """Verify a query answer like the relay does; return the decoded record (None: absent)."""
    proof = ics23.decode_commitment_proof(result.proof)
    if result.HasField("value"):
        ics23.verify_membership(
            spec=spec, root=root, proof=proof, key=result.key, value=result.value
        )
        return records.decode_for_key(result.key, result.value)[1]
    ics23.verify_non_membership(spec=spec, root=root, proof=proof, key=result.key)
    return None


@pytest.fixture(scope="module")
def chain_and_data() -> tuple[BftPartnerChain, samples.SampleSet]:
    chain = bft()
    data = sample_data(chain)
    chain.advance(3)
    return chain, data


# --- BFT chains --------------------------------------------------------------------------------


def test_light_blocks_verify_adjacent_and_skipping(
    chain_and_data: tuple[BftPartnerChain, samples.SampleSet],
) -> None:
    chain, _ = chain_and_data
    opts = options(chain)
    now = chain.latest_time_ns + 10**9
    blocks = {h: decoded(chain, h) for h in chain.heights()}
    trusted = tm.TrustedBlock.from_light_block(blocks[1])
    for h in range(2, chain.height + 1):
        verified = tm.verify_light_block(
            trusted=trusted, untrusted=blocks[h], options=opts, now=now
        )
        assert verified.adjacent
        trusted = tm.TrustedBlock.from_light_block(blocks[h])
    skip = tm.verify_light_block(
        trusted=tm.TrustedBlock.from_light_block(blocks[1]),
        untrusted=blocks[chain.height],
        options=opts,
        now=now,
    )
    assert not skip.adjacent
    # headers link: each last_block_id is the parent's real block id
    for h in range(2, chain.height + 1):
        assert blocks[h].header.last_block_id.hash == blocks[h - 1].header.hash
    # block times come from the chain's clock, strictly increasing
    assert all(blocks[h].header.time_ns < blocks[h + 1].header.time_ns for h in range(1, 5))


def test_every_record_is_proven_at_the_head_and_decodes(
    chain_and_data: tuple[BftPartnerChain, samples.SampleSet],
) -> None:
    chain, data = chain_and_data
    head = decoded(chain, chain.height).header
    for key, record in data.records:
        result = chain.query(records.encode_key(key))
        assert result.height == chain.height
        assert verify_result(result, root=head.app_hash, spec=ics23.SMT_SPEC) == record
    # an absent flat is proven absent
    absent = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="110105-9999-9999")
    result = chain.query(records.ownership_key(absent))
    assert not result.HasField("value")
    assert verify_result(result, root=head.app_hash, spec=ics23.SMT_SPEC) is None


def test_app_hash_commits_to_the_state_after_the_previous_block() -> None:
    chain = bft()
    sample_data(chain, commit=False)
    chain.commit()  # genesis writes: provable from height 1
    asset = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="110105-0001-0999")
    key = pb.RecordKey(ownership=asset)
    record = pb.OwnershipRecord(asset=asset, description="北京市朝阳区测试路1号", status=1)
    chain.put_record(key, record)
    written_in = chain.commit()  # block 2 holds the write
    chain.commit()
    k = records.encode_key(key)
    at_write = chain.query(k, written_in)
    assert not at_write.HasField("value")  # header 2 commits to the state after block 1
    assert (
        verify_result(at_write, root=decoded(chain, 2).header.app_hash, spec=chain.proof_spec)
        is None
    )
    after = chain.query(k, written_in + 1)
    assert (
        verify_result(after, root=decoded(chain, 3).header.app_hash, spec=chain.proof_spec)
        == record
    )
    # a proof from one height does not verify against another height's root
    with pytest.raises(RootMismatchError):
        verify_result(after, root=decoded(chain, 1).header.app_hash, spec=chain.proof_spec)
    with pytest.raises(NotFound):
        chain.query(k, chain.height + 1)


def test_a_chain_with_ten_thousand_records_commits_fast() -> None:
    chain = bft()
    for i in range(10_000):
        asset = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id=f"110105-{i:09d}")
        chain.put_raw(records.ownership_key(asset), b"\x0a\x03abc" + i.to_bytes(4, "big"))
    chain.commit()
    asset = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="110105-0-new")
    chain.put_raw(records.ownership_key(asset), b"\x0a\x03new")
    chain.commit()
    chain.commit()
    block = chain.light_block_bytes(chain.height)  # hashes the new state and signs
    root = cp.decode_light_block_proto(block, params=chain.params).header.app_hash
    assert root == chain.state_at(chain.height).root


def test_holdings_indexes_list_exactly_what_the_records_say(
    chain_and_data: tuple[BftPartnerChain, samples.SampleSet],
) -> None:
    chain, data = chain_and_data
    expected: dict[bytes, list[pb.AssetRef]] = {}
    for _, record in data.records:
        if isinstance(record, pb.OwnershipRecord):
            for owner in record.owners:
                expected.setdefault(owner.party.party_key, []).append(record.asset)
    root = decoded(chain, chain.height).header.app_hash
    assert expected
    for party_key, assets in expected.items():
        results = chain.list_by_party(party_key)
        index = verify_result(results[0], root=root, spec=chain.proof_spec)
        assert isinstance(index, pb.PartyHoldings)
        assert list(index.assets) == assets
        assert [r.key for r in results[1:]] == [records.ownership_key(a) for a in assets]
        for r in results[1:]:
            record = verify_result(r, root=root, spec=chain.proof_spec)
            assert isinstance(record, pb.OwnershipRecord)
            assert party_key in [o.party.party_key for o in record.owners]
        assert {r.height for r in results} == {chain.height}
    # the debtor holds the first flat; a stranger holds nothing, provably
    debtor = chain.party_key_of(samples.population().debtor)
    assert data.assets[0] in list(
        verify_result(chain.list_by_party(debtor)[0], root=root, spec=chain.proof_spec).assets  # type: ignore[union-attr]
    )
    nobody = chain.list_by_party(chain.party_key(pb.ID_TYPE_RESIDENT_ID, "110105199001010011"))
    assert len(nobody) == 1 and verify_result(nobody[0], root=root, spec=chain.proof_spec) is None
    # a kind filter leaves the index whole but the assets out
    assert len(chain.list_by_party(debtor, [pb.ASSET_KIND_PATENT])) == 1


def test_a_transfer_moves_the_asset_between_holdings() -> None:
    chain = bft()
    people = samples.population()
    seller, buyer = people.persons[1], people.persons[2]
    asset = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="110105-0007-0001")

    def owned_by(party: samples.Party) -> pb.OwnershipRecord:
        owner = pb.RecordParty(party_key=chain.party_key_of(party), kind=1, name=party.name)
        return pb.OwnershipRecord(asset=asset, owners=[pb.Owner(party=owner)], status=1)

    chain.put_record(pb.RecordKey(ownership=asset), owned_by(seller))
    chain.commit()
    chain.put_record(pb.RecordKey(ownership=asset), owned_by(buyer))
    chain.commit()
    chain.commit()
    root = decoded(chain, chain.height).header.app_hash
    seller_index = chain.list_by_party(chain.party_key_of(seller))
    assert verify_result(seller_index[0], root=root, spec=chain.proof_spec) is None
    buyer_index = verify_result(
        chain.list_by_party(chain.party_key_of(buyer))[0], root=root, spec=chain.proof_spec
    )
    assert isinstance(buyer_index, pb.PartyHoldings) and list(buyer_index.assets) == [asset]
    with pytest.raises(ValueError, match="derived"):
        chain.put_raw(records.holdings_key(b"k" * 32), b"\x0a\x01x")


def test_descriptor_is_a_usable_trust_anchor(
    chain_and_data: tuple[BftPartnerChain, samples.SampleSet],
) -> None:
    chain, _ = chain_and_data
    endpoint = pb.AdapterEndpoint(grpc_address="partner.example.cn:7443", ca_certificates_pem="")
    d = chain.descriptor(endpoint, anchor_height=2)
    assert d.chain_id == chain.chain_id and d.WhichOneof("client") == "tendermint"
    assert d.proof_spec == pb.PROOF_SPEC_ICS23_SMT and d.record_schema_version == 1
    assert list(d.registry_codes) == ["110105"] and list(d.asset_kinds) == [1]
    assert d.adapter.grpc_address == "partner.example.cn:7443"
    params = d.tendermint
    assert params.anchor.height == 2 and params.hash_algorithm == pb.HASH_ALGORITHM_SHA256
    anchor = cp.decode_light_block_proto(params.anchor.light_block, params=chain.params)
    assert anchor.header.hash == params.anchor.header_hash
    client, _ = tm.create_client(
        options=options(chain),
        unbonding_period_ns=params.unbonding_period.seconds * 10**9,
        anchor=anchor,
        now=chain.latest_time_ns + 10**9,
    )
    assert client.latest_height == 2
    # the relay derives the chain's party keys from the descriptor alone
    party = samples.population().debtor
    relay_side = records.party_key(
        hasher=SHA256, salt=d.party_key.salt, id_type=party.id_type, party_id=party.id.lower()
    )
    assert relay_side == chain.party_key_of(party)


def test_sm2_sm3_chain_verifies_with_its_own_algorithms() -> None:
    chain = bft(chain_id="cn-gm-court-chain", hash="sm3", sig="sm2", sm2_signer_id=b"gm-chain-01")
    data = sample_data(chain, scale=1)
    assert chain.proof_spec is ics23.SMT_SM3_SPEC
    block = decoded(chain, chain.height)
    tm.verify_light_block(
        trusted=tm.TrustedBlock.from_light_block(decoded(chain, 1)),
        untrusted=block,
        options=options(chain),
        now=chain.latest_time_ns + 10**9,
    )
    key, record = data.records[0]
    result = chain.query(records.encode_key(key))
    assert verify_result(result, root=block.header.app_hash, spec=ics23.SMT_SM3_SPEC) == record
    with pytest.raises(VerificationError):
        verify_result(result, root=block.header.app_hash, spec=ics23.SMT_SPEC)
    d = chain.descriptor()
    assert d.tendermint.signature_algorithm == pb.SIGNATURE_ALGORITHM_SM2
    assert d.tendermint.sm2_signer_id == "gm-chain-01"
    assert d.proof_spec == pb.PROOF_SPEC_ICS23_SMT_SM3
    assert d.party_key.hash_algorithm == pb.HASH_ALGORITHM_SM3
    party = samples.population().debtor
    assert chain.party_key_of(party) == records.party_key(
        hasher=SM3, salt=chain.party_salt, id_type=party.id_type, party_id=party.id
    )


def test_skipping_across_a_validator_rotation() -> None:
    chain = bft()
    sample_data(chain)
    rotation = chain.schedule_rotation(5)
    chain.advance(rotation + 5 - chain.height)
    blocks = {h: decoded(chain, h) for h in chain.heights()}
    assert blocks[rotation].validator_set.hash != blocks[1].validator_set.hash
    assert blocks[rotation - 1].next_validator_set is None  # rotation: not in the light block
    # as a relay does: the next set is the next light block's own set, hash-checked
    for h in range(1, chain.height):
        blocks[h] = cp.with_next_validator_set(blocks[h], blocks[h + 1].validator_set)
    with pytest.raises(MismatchError):
        cp.with_next_validator_set(blocks[rotation - 1], blocks[1].validator_set)
    result = tm.verify_skipping(
        trusted=tm.TrustedBlock.from_light_block(blocks[1]),
        target=chain.height,
        fetch=blocks.__getitem__,
        options=options(chain),
        now=chain.latest_time_ns + 10**9,
    )
    assert result.trusted.height == chain.height


def test_chain_fault_switches() -> None:
    chain = bft()
    data = sample_data(chain)
    head = chain.height
    chain.stalled = True
    assert chain.commit() == head
    chain.stalled = False
    key = records.encode_key(data.records[0][0])
    root = decoded(chain, head).header.app_hash
    chain.bad_proofs = True
    with pytest.raises(VerificationError):
        verify_result(chain.query(key), root=root, spec=chain.proof_spec)
    chain.bad_proofs = False
    # an equivocation: a second header at a height, validly signed by every validator
    honest = decoded(chain, head)
    fork = chain.equivocate(head)
    served = decoded(chain, head)
    assert served.header.hash == fork.header.hash != honest.header.hash
    trusted = tm.TrustedBlock.from_light_block(decoded(chain, head - 1))
    client = tm.ClientState(
        options=options(chain),
        unbonding_period_ns=chain.unbonding_period_s * 10**9,
        latest_height=head,
    )
    update = tm.update_client(
        client, trusted=trusted, block=served, existing=honest, now=chain.latest_time_ns + 10**9
    )
    assert update.misbehaviour is not None and update.client_state.frozen is not None
    chain.heal()
    assert decoded(chain, head).header.hash == honest.header.hash


def test_an_empty_state_cannot_be_queried() -> None:
    chain = bft()
    chain.commit()
    with pytest.raises(FailedPrecondition):
        chain.query(b"anything")


# --- log registries ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_and_data() -> tuple[TlogPartnerRegistry, samples.SampleSet]:
    registry = TlogPartnerRegistry(clock=lambda: T0 // 10**9)
    return registry, sample_data(registry)


def test_checkpoints_verify_with_quorum_and_map_root(
    registry_and_data: tuple[TlogPartnerRegistry, samples.SampleSet],
) -> None:
    registry, data = registry_and_data
    now = T0 // 10**9 + 1
    config = registry.trust_config()
    sizes = list(registry.heights())
    assert len(sizes) == 2  # sample data is published in two batches
    state = tlog.initialize(config=config, anchor_note=registry.checkpoint(sizes[0]), now=now)
    newer = registry.checkpoint()
    state = tlog.update(state, newer, registry.consistency_proof(sizes[0], sizes[1]), now=now)
    checkpoint = state.checkpoint
    assert checkpoint.size == registry.height == len(registry.log.entries)
    assert len(state.trusted.cosignatures) == 3
    assert checkpoint.map_root == registry.state_at(registry.height).root
    for key, record in data.records:
        result = registry.query(records.encode_key(key))
        assert result.height == checkpoint.size
        assert verify_result(result, root=checkpoint.map_root, spec=ics23.SMT_SPEC) == record
    # the history entries are in the log: entry i proves by RFC 6962 inclusion
    for index in (0, 7, checkpoint.size - 1):
        tlog.verify_entry_inclusion(
            state=state,
            leaf=registry.log.entries[index],
            index=index,
            proof=registry.inclusion_proof(index),
        )
    # the descriptor carries what the relay needs to build the same trust config
    d = registry.descriptor()
    assert d.WhichOneof("client") == "tlog" and d.tlog.witness_threshold == 2
    assert parse_verifier_key(d.tlog.log_verifier_key).key_id == config.log_key.key_id
    assert d.tlog.anchor.checkpoint == registry.checkpoint()


def test_fewer_witnesses_than_the_quorum_fail() -> None:
    registry = TlogPartnerRegistry(witnesses=3, quorum=2, clock=lambda: 1000)
    registry.put_raw(b"key", b"value")
    registry.commit()
    note = registry.log.checkpoint(
        timestamp=1000,
        witnesses=registry.witness_signers[:1],
        extensions=[registry.map_root_line(registry.state_at(1).root)],
    )
    with pytest.raises(tlog.QuorumNotMetError):
        tlog.verify_checkpoint(config=registry.trust_config(), note=note, now=1001)


def test_split_view_freezes_the_log_client() -> None:
    registry = TlogPartnerRegistry(clock=lambda: 2000, sig="sm2")
    registry.put_raw(b"a", b"1")
    registry.commit()
    config = registry.trust_config()
    state = tlog.initialize(config=config, anchor_note=registry.checkpoint(), now=2001)
    other = registry.equivocate()
    assert registry.checkpoint() == other
    with pytest.raises(tlog.SplitViewError):
        tlog.update(state, other, [], now=2001)
    registry.heal()
    assert tlog.update(state, registry.checkpoint(), [], now=2001) == state


def test_log_writes_are_entries_and_deletes_prove_absence() -> None:
    registry = TlogPartnerRegistry(clock=lambda: 3000)
    registry.put_raw(b"k1", b"v1")
    registry.put_raw(b"k2", b"v2")
    s1 = registry.commit()
    registry.delete(b"k1")
    s2 = registry.commit()
    assert (s1, s2) == (2, 3)
    assert registry.commit() == s2  # nothing new: nothing published
    root2 = tlog.parse_checkpoint(
        registry.checkpoint(s2).split(b"\n\n")[0] + b"\n", hasher=rfc6962.RFC6962_SHA256
    ).map_root
    assert root2 is not None
    assert verify_result(registry.query(b"k1"), root=root2, spec=ics23.SMT_SPEC) is None
    old = registry.query(b"k1", s1)
    assert old.height == s1 and old.value == b"v1"
    with pytest.raises(NotFound):
        registry.query(b"k1", 1)  # no checkpoint of size 1 was published


# --- sample data -------------------------------------------------------------------------------


def test_identifiers_carry_valid_check_characters() -> None:
    assert samples.resident_id_check("11010519491231002") == "X"  # the standard's example
    assert samples.uscc_check("91350100M000100Y4") == "3"  # a published sample code
    assert samples.luhn_check("7992739871") == "3"  # the classic Luhn example
    people = samples.population()
    assert len({p.id for p in people.everyone}) == len(people.everyone)
    for p in people.persons:
        assert re.fullmatch(r"\d{17}[\dX]", p.id) and p.id[-1] == samples.resident_id_check(
            p.id[:17]
        )
    for o in people.orgs:
        assert len(o.id) == 18 and o.id[-1] == samples.uscc_check(o.id[:17])


def _case_numbers(record: object) -> list[str]:
    found: list[str] = []
    for field in ("encumbrances", "listings", "restrictions", "freezes"):
        found += [e.case_number for e in getattr(record, field, []) if e.case_number]
    return found


@pytest.mark.parametrize(
    "domain", [pb.DOMAIN_REAL_ESTATE, pb.DOMAIN_IP, pb.DOMAIN_CREDIT, pb.DOMAIN_BANK]
)
def test_sample_records_are_realistic_and_hold_no_raw_identifiers(domain: int) -> None:
    chain = bft(domain=domain, chain_id=f"chain-{domain}")
    data = sample_data(chain)
    assert data.records
    raw_ids = [p.id.encode() for p in samples.population().everyone]
    case = re.compile(r"\(\d{4}\)[京沪]\d{2,4}(执|执保|民初)\d+号")
    keys = set()
    cases = 0
    for key, record in data.records:
        k = records.encode_key(key)
        value = chain.state_at(chain.height).get(k)
        assert value is not None and records.decode_for_key(k, value)[1] == record
        assert not any(raw in value or raw in k for raw in raw_ids), "a raw identifier leaked"
        keys.add(k)
        for number in _case_numbers(record):
            cases += 1
            assert case.fullmatch(number), number
        if isinstance(record, pb.OwnershipRecord):
            if domain == pb.DOMAIN_REAL_ESTATE:
                assert re.fullmatch(r"110105-\d{4}-\d{4}", record.asset.id)
            elif record.asset.kind == pb.ASSET_KIND_PATENT:
                assert re.fullmatch(r"ZL\d{12}\.[\dX]", record.asset.id)
            elif record.asset.kind == pb.ASSET_KIND_TRADEMARK:
                assert re.fullmatch(r"\d{8}", record.asset.id)
            else:
                assert record.asset.kind == pb.ASSET_KIND_COPYRIGHT
                assert re.fullmatch(r"国作登字-\d{4}-[A-Z]-\d{8}|\d{4}SR\d{7}", record.asset.id)
            bps = [o.share.basis_points for o in record.owners if o.share.HasField("basis_points")]
            if bps and len(bps) == len(record.owners):
                assert sum(bps) == 10_000
        if isinstance(record, pb.AccountRecord):
            assert record.account.id[-1] == samples.luhn_check(record.account.id[:-1])
    assert len(keys) == len(data.records)
    assert cases > 0  # seizures, listings and freezes name their cases
    # the debtor appears on every chain
    debtor = chain.party_key_of(samples.population().debtor)
    assert any(debtor in r.SerializeToString() for _, r in data.records)  # type: ignore[attr-defined]
