"""Skipping (bisection) verification over long generated chains: the number of verifications
and fetches, validator-set rotation, and a naive model of CometBFT's pivot rule as oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.testing.tendermint import SECOND, TestChain, make_validators
from relay.verify.errors import LimitExceededError
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm

PERIOD = 400 * 24 * 3600 * SECOND


def options(chain: TestChain) -> tm.TrustOptions:
    return tm.TrustOptions(
        chain_id=chain.chain_id, trusting_period_ns=PERIOD, max_clock_drift_ns=10 * SECOND
    )


def skip(
    chain: TestChain, *, start: int, target: int, **kw: object
) -> tuple[tm.SkippingResult, list[int]]:
    fetched: list[int] = []
    result = tm.verify_skipping(
        trusted=tm.TrustedBlock.from_light_block(chain.light_block(start)),
        target=target,
        fetch=chain.fetcher(counter=fetched),
        options=options(chain),
        now=chain.time_at(target) + SECOND,
        **kw,
    )
    return result, fetched


def test_catch_up_over_100000_heights_with_a_stable_set_is_one_verification() -> None:
    chain = TestChain(validators=make_validators(10), linked=False)
    result, fetched = skip(chain, start=1, target=100_001)
    assert result.verifications == 1
    assert fetched == [100_001]
    assert [b.height for b in result.trace] == [100_001]
    assert result.trusted.height == 100_001


def test_full_rotation_needs_one_pivot() -> None:
    a = make_validators(4, prefix="a")
    chain = TestChain(validators=a, linked=False)
    chain.rotate(at_height=51, validators=make_validators(4, prefix="b"))
    # 100 fails (no trusted signer), pivot 1 + 99 // 2 = 50 verifies (signed by a, whose
    # header names b as next validators), then 100 verifies from 50.
    result, fetched = skip(chain, start=1, target=100)
    assert fetched == [100, 50]
    assert result.verifications == 3
    assert [b.height for b in result.trace] == [50, 100]


def test_a_gap_of_one_is_always_closed_by_an_adjacent_step() -> None:
    chain = TestChain(validators=make_validators(4, prefix="a"), linked=False)
    chain.rotate(at_height=3, validators=make_validators(4, prefix="b"))
    # The set changes completely between 2 and 3 with nothing in between: from 1, the step to
    # 2 is possible, then 3 is adjacent to 2 and verifies; a gap of one can always be closed.
    result, _ = skip(chain, start=1, target=3)
    assert [b.height for b in result.trace] == [2, 3]


def test_invalid_block_on_the_path_stops_the_walk() -> None:
    chain = TestChain(validators=make_validators(4, prefix="a"), linked=False)
    chain.rotate(at_height=51, validators=make_validators(4, prefix="b"))
    honest = chain.fetcher()

    def fetch(height: int) -> ct.LightBlock:
        if height == 50:  # the pivot is signed for another chain
            return chain.light_block(50, sign_chain_id="evil")
        return honest(height)

    with pytest.raises(tm.CommitSignatureInvalid) as e:
        tm.verify_skipping(
            trusted=tm.TrustedBlock.from_light_block(chain.light_block(1)),
            target=100,
            fetch=fetch,
            options=options(chain),
            now=chain.time_at(100) + SECOND,
        )
    assert e.value.context["trusted_height"] == 1 and e.value.context["target_height"] == 100


def test_fetch_returning_another_height_is_rejected() -> None:
    chain = TestChain(validators=make_validators(4), linked=False)
    with pytest.raises(tm.HeaderMismatch):
        tm.verify_skipping(
            trusted=tm.TrustedBlock.from_light_block(chain.light_block(1)),
            target=10,
            fetch=lambda h: chain.light_block(h + 1),
            options=options(chain),
            now=chain.time_at(20),
        )


def test_target_must_be_above_the_trusted_height() -> None:
    chain = TestChain(validators=make_validators(4), linked=False)
    with pytest.raises(tm.NonMonotonic):
        skip(chain, start=10, target=10)


def test_step_limit_bounds_the_walk() -> None:
    chain = TestChain(validators=make_validators(4, prefix="a"), linked=False)
    chain.rotate(at_height=51, validators=make_validators(4, prefix="b"))
    with pytest.raises(LimitExceededError):
        skip(chain, start=1, target=100, max_verifications=2)


# --- rotation over many heights, against a naive model --------------------------------------


def naive_skipping(chain: TestChain, start: int, target: int) -> tuple[list[int], int]:
    """CometBFT verifySkipping (light/client.go) on the validator schedule alone: a block
    verifies from a trusted height when it is adjacent, or when the trusted next validators
    hold more than 1/3 of their power among its validators (all of whom sign)."""

    def power(vals: tuple, addresses: set[bytes]) -> int:
        return sum(v.power for v in vals if v.address in addresses)

    def verifies(trusted: int, h: int) -> bool:
        if h == trusted + 1:
            return True
        nxt = chain.validators_at(trusted + 1)
        signers = {v.address for v in chain.validators_at(h)}
        return power(nxt, signers) * 3 > sum(v.power for v in nxt)

    trace: list[int] = []
    cache = [target]
    depth = 0
    trusted = start
    attempts = 0
    while True:
        attempts += 1
        h = cache[depth]
        if verifies(trusted, h):
            trace.append(h)
            trusted = h
            if depth == 0:
                break
            cache = cache[:depth]
            depth = 0
        else:
            if depth == len(cache) - 1:
                cache.append(trusted + (h - trusted) // 2)
            depth += 1
    return trace, attempts


def rotating_chain(n: int, every: int, replace_count: int, heights: int) -> TestChain:
    pool = make_validators(n + replace_count * (heights // every + 1), prefix="v")
    current = pool[:n]
    chain = TestChain(validators=current, linked=False)
    fresh = iter(pool[n:])
    for h in range(every, heights + 1, every):
        current = current[replace_count:] + [next(fresh) for _ in range(replace_count)]
        chain.rotate(at_height=h, validators=current)
    return chain


def test_rotation_over_many_heights_follows_the_pivot_rule() -> None:
    chain = rotating_chain(n=6, every=10, replace_count=2, heights=1000)
    result, fetched = skip(chain, start=1, target=1000)
    trace, attempts = naive_skipping(chain, 1, 1000)
    assert [b.height for b in result.trace] == trace
    assert result.verifications == attempts
    # the target, plus one pivot for each try at the lowest block fetched so far that failed
    assert len(set(fetched)) == len(fetched)
    assert result.verifications > len(result.trace) > 30


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(3, 7),
    every=st.integers(2, 40),
    replace_count=st.integers(1, 3),
    target=st.integers(2, 400),
)
def test_skipping_matches_the_naive_model(
    n: int, every: int, replace_count: int, target: int
) -> None:
    replace_count = min(replace_count, n)
    chain = rotating_chain(n=n, every=every, replace_count=replace_count, heights=target + 1)
    result, _ = skip(chain, start=1, target=target)
    trace, attempts = naive_skipping(chain, 1, target)
    assert [b.height for b in result.trace] == trace
    assert result.verifications == attempts
    # every hop of the trust path really verifies from the one before
    previous = tm.TrustedBlock.from_light_block(chain.light_block(1))
    for block in result.trace:
        tm.verify_light_block(
            trusted=previous,
            untrusted=block,
            options=options(chain),
            now=chain.time_at(target) + SECOND,
        )
        previous = tm.TrustedBlock.from_light_block(block)
