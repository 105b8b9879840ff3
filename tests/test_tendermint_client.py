"""The CometBFT client and consensus states: creation from an anchor, updates, equivocation
and BFT-time violations freezing the client, misbehaviour evidence, and recovery only from a
new trust anchor."""

from __future__ import annotations

from dataclasses import replace

import pytest

from relay.testing.tendermint import SECOND, TestChain, make_validators
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm

HOUR = 3600 * SECOND
PERIOD = 24 * HOUR


def options(chain: TestChain) -> tm.TrustOptions:
    return tm.TrustOptions(
        chain_id=chain.chain_id, trusting_period_ns=PERIOD, max_clock_drift_ns=10 * SECOND
    )


@pytest.fixture
def chain() -> TestChain:
    return TestChain(validators=make_validators(4))


def start(chain: TestChain, height: int = 1) -> tuple[tm.ClientState, tm.ConsensusState]:
    return tm.create_client(
        options=options(chain),
        unbonding_period_ns=2 * PERIOD,
        anchor=chain.light_block(height),
        now=chain.time_at(height) + SECOND,
    )


def trusted(client: tm.ClientState, chain: TestChain, height: int) -> tm.TrustedBlock:
    return tm.trusted_block(
        client,
        height=height,
        consensus=tm.ConsensusState.of(chain.header(height)),
        next_validators=chain.validator_set(height + 1),
    )


def test_create_and_update(chain: TestChain) -> None:
    client, consensus = start(chain)
    assert client.latest_height == 1 and client.frozen is None
    assert consensus.header_hash == chain.header(1).hash
    assert consensus.root == chain.header(1).app_hash
    update = tm.update_client(
        client,
        trusted=tm.trusted_block(
            client, height=1, consensus=consensus, next_validators=chain.validator_set(2)
        ),
        block=chain.light_block(50),
        now=chain.time_at(50) + SECOND,
    )
    assert update.misbehaviour is None and update.verified is not None
    assert update.client_state.latest_height == 50
    assert update.consensus_state == tm.ConsensusState.of(chain.header(50))
    assert client.latest_height == 1  # the old state is unchanged


def test_filling_a_lower_height_keeps_the_latest_height(chain: TestChain) -> None:
    client, _ = start(chain)
    client = replace(client, latest_height=80)
    update = tm.update_client(
        client,
        trusted=trusted(client, chain, 1),
        block=chain.light_block(40),
        now=chain.time_at(90),
    )
    assert update.client_state.latest_height == 80


def test_trusted_validators_must_match_the_stored_hash(chain: TestChain) -> None:
    client, consensus = start(chain)
    other = TestChain(validators=make_validators(4, prefix="x")).validator_set(2)
    with pytest.raises(tm.HeaderMismatch):
        tm.trusted_block(client, height=1, consensus=consensus, next_validators=other)


def test_the_same_header_again_is_a_no_op(chain: TestChain) -> None:
    client, _ = start(chain)
    block = chain.light_block(5)
    update = tm.update_client(
        client,
        trusted=trusted(client, chain, 1),
        block=block,
        now=chain.time_at(6),
        existing=chain.light_block(5),
    )
    assert update.misbehaviour is None and update.client_state == client


def test_equivocation_freezes_the_client_with_both_headers(chain: TestChain) -> None:
    client, _ = start(chain)
    honest = chain.light_block(5)
    vals = [v.address for v in chain.validators_at(5)]
    # three of four validators sign a second header at height 5: still > 2/3
    forged = chain.equivocation(5, signers=vals[:3])
    update = tm.update_client(
        client,
        trusted=trusted(client, chain, 1),
        block=forged,
        now=chain.time_at(6),
        existing=honest,
    )
    assert update.consensus_state is None
    assert update.misbehaviour is not None
    assert update.misbehaviour.kind == "DUPLICATE_HEIGHT"
    assert {update.misbehaviour.block1.header.hash, update.misbehaviour.block2.header.hash} == {
        honest.header.hash,
        forged.header.hash,
    }
    frozen = update.client_state
    assert frozen.frozen == tm.Frozen(5, "DUPLICATE_HEIGHT")
    # a frozen client refuses every update, even an honest one
    with pytest.raises(tm.ClientFrozen):
        tm.update_client(
            frozen,
            trusted=trusted(frozen, chain, 1),
            block=chain.light_block(6),
            now=chain.time_at(7),
        )


def test_bft_time_violation_against_a_neighbour_freezes(chain: TestChain) -> None:
    client, _ = start(chain)
    later = chain.light_block(20)
    # a header at 10 claiming a time after the already verified header at 20
    chain.set_time(10, chain.time_at(21))
    block = chain.light_block(10)
    update = tm.update_client(
        client,
        trusted=trusted(client, chain, 1),
        block=block,
        now=chain.time_at(22) + SECOND,
        following=later,
    )
    assert update.misbehaviour is not None and update.misbehaviour.kind == "BFT_TIME_VIOLATION"
    assert update.misbehaviour.block1.height == 20 and update.misbehaviour.block2.height == 10
    assert update.client_state.frozen == tm.Frozen(20, "BFT_TIME_VIOLATION")


def test_submitted_misbehaviour_is_checked_then_freezes(chain: TestChain) -> None:
    client, _ = start(chain)
    vals = [v.address for v in chain.validators_at(5)]
    honest = chain.light_block(5)
    forged = chain.light_block(5, app_hash=b"\x66" * 32, signers=vals[:3])
    t1 = trusted(client, chain, 1)
    now = chain.time_at(6)
    evidence = tm.Misbehaviour("DUPLICATE_HEIGHT", forged, honest)
    frozen = tm.submit_misbehaviour(client, evidence, trusted1=t1, trusted2=t1, now=now)
    assert frozen.frozen == tm.Frozen(5, "DUPLICATE_HEIGHT")
    with pytest.raises(tm.ClientFrozen):
        tm.submit_misbehaviour(frozen, evidence, trusted1=t1, trusted2=t1, now=now)

    # the same header twice is no misbehaviour
    with pytest.raises(tm.MisbehaviourInvalid):
        tm.check_misbehaviour(
            client,
            tm.Misbehaviour("DUPLICATE_HEIGHT", honest, honest),
            trusted1=t1,
            trusted2=t1,
            now=now,
        )
    # a forged header signed by too few validators proves nothing
    weak = chain.light_block(5, app_hash=b"\x66" * 32, signers=vals[:2])
    with pytest.raises(tm.InsufficientVotingPower):
        tm.check_misbehaviour(
            client,
            tm.Misbehaviour("DUPLICATE_HEIGHT", weak, honest),
            trusted1=t1,
            trusted2=t1,
            now=now,
        )
    # nor a header of validators the client never trusted
    strangers = TestChain(validators=make_validators(4, prefix="s"))
    alien = strangers.light_block(5)
    with pytest.raises(tm.NotEnoughTrust):
        tm.check_misbehaviour(
            client,
            tm.Misbehaviour("DUPLICATE_HEIGHT", alien, honest),
            trusted1=t1,
            trusted2=t1,
            now=now,
        )
    # ordinary increasing headers are no time violation
    with pytest.raises(tm.MisbehaviourInvalid):
        tm.check_misbehaviour(
            client,
            tm.Misbehaviour("BFT_TIME_VIOLATION", chain.light_block(9), honest),
            trusted1=t1,
            trusted2=t1,
            now=chain.time_at(10),
        )
    # the kind must be what the headers show
    with pytest.raises(tm.MisbehaviourInvalid):
        tm.check_misbehaviour(
            client,
            tm.Misbehaviour("BFT_TIME_VIOLATION", forged, honest),
            trusted1=t1,
            trusted2=t1,
            now=now,
        )
    # evidence on an expired trusted block is refused
    with pytest.raises(tm.TrustExpired):
        tm.check_misbehaviour(client, evidence, trusted1=t1, trusted2=t1, now=now + PERIOD)


def test_time_violation_evidence(chain: TestChain) -> None:
    client, _ = start(chain)
    early = chain.light_block(10)
    chain.set_time(12, chain.time_at(10))  # a higher block not later in time
    late = chain.light_block(12)
    t1 = trusted(client, chain, 1)
    evidence = tm.Misbehaviour("BFT_TIME_VIOLATION", late, early)
    frozen = tm.submit_misbehaviour(
        client, evidence, trusted1=t1, trusted2=t1, now=chain.time_at(13)
    )
    assert frozen.frozen == tm.Frozen(12, "BFT_TIME_VIOLATION")


def test_recovery_only_from_a_new_anchor(chain: TestChain) -> None:
    client, consensus = start(chain)
    now = chain.time_at(30)
    # an active client is never re-anchored
    with pytest.raises(tm.RecoveryRefused):
        tm.recover(client, anchor=chain.light_block(20), latest=consensus, now=now)
    frozen = replace(client, latest_height=10, frozen=tm.Frozen(10, "DUPLICATE_HEIGHT"))
    # the anchor must be above the latest height
    with pytest.raises(tm.RecoveryRefused):
        tm.recover(frozen, anchor=chain.light_block(10), latest=consensus, now=now)
    # and must itself be sound: signed by more than 2/3 of its validators
    vals = [v.address for v in chain.validators_at(20)]
    with pytest.raises(tm.InsufficientVotingPower):
        tm.recover(
            frozen, anchor=chain.light_block(20, signers=vals[:2]), latest=consensus, now=now
        )
    with pytest.raises(ct.MalformedInputError):
        tm.recover(frozen, anchor=chain.light_block(20, with_next=False), latest=consensus, now=now)
    recovered, anchored = tm.recover(
        frozen, anchor=chain.light_block(20), latest=consensus, now=now
    )
    assert recovered.frozen is None and recovered.latest_height == 20
    assert anchored.header_hash == chain.header(20).hash
    # and it updates again
    tm.update_client(
        recovered,
        trusted=trusted(recovered, chain, 20),
        block=chain.light_block(21),
        now=chain.time_at(22),
    )


def test_an_expired_client_can_be_recovered(chain: TestChain) -> None:
    client, consensus = start(chain)
    later = chain.time_at(1) + PERIOD + HOUR
    with pytest.raises(tm.TrustExpired):
        tm.update_client(
            client, trusted=trusted(client, chain, 1), block=chain.light_block(2), now=later
        )
    chain.set_time(5, later - SECOND)
    recovered, _ = tm.recover(client, anchor=chain.light_block(5), latest=consensus, now=later)
    assert recovered.latest_height == 5


def test_create_client_checks_its_anchor(chain: TestChain) -> None:
    with pytest.raises(tm.TrustExpired):
        tm.create_client(
            options=options(chain),
            unbonding_period_ns=2 * PERIOD,
            anchor=chain.light_block(1),
            now=chain.time_at(1) + PERIOD,
        )
    with pytest.raises(tm.HeaderFromFuture):
        tm.create_client(
            options=options(chain),
            unbonding_period_ns=2 * PERIOD,
            anchor=chain.light_block(30),
            now=chain.time_at(1),
        )
    with pytest.raises(ValueError):  # the trusting period must stay below unbonding
        tm.create_client(
            options=options(chain),
            unbonding_period_ns=PERIOD,
            anchor=chain.light_block(1),
            now=chain.time_at(2),
        )
    other = TestChain(validators=make_validators(4), chain_id="elsewhere")
    with pytest.raises(tm.HeaderMismatch):
        tm.create_client(
            options=options(chain),
            unbonding_period_ns=2 * PERIOD,
            anchor=other.light_block(1),
            now=chain.time_at(2),
        )
