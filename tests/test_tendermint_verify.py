"""CometBFT light-client verification on generated, really signed chains: adjacent and
non-adjacent steps, exact 1/3 and 2/3 boundaries, time limits, faulty commits, key types and
hash algorithms, and parallel signature checking giving the sequential verdicts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.testing.tendermint import (
    SECOND,
    SECP256K1_KEY,
    TestChain,
    ed25519_key,
    make_validators,
    secp256k1_key,
    sm2_chain_params,
    sm2_key,
    with_signatures,
)
from relay.verify.errors import MalformedInputError, SignatureError, VerificationError
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm
from relay.verify.merkle.rfc6962 import RFC6962_SM3
from relay.verify.signatures import SignatureEncoding

HOUR = 3600 * SECOND
PERIOD = 24 * HOUR
DRIFT = 10 * SECOND


def options(chain: TestChain, **kw: object) -> tm.TrustOptions:
    args: dict[str, object] = {
        "chain_id": chain.chain_id,
        "trusting_period_ns": PERIOD,
        "max_clock_drift_ns": DRIFT,
        "params": chain.params,
    }
    args.update(kw)
    return tm.TrustOptions(**args)


def trusted_at(chain: TestChain, height: int) -> tm.TrustedBlock:
    return tm.TrustedBlock.from_light_block(chain.light_block(height))


def verify(chain: TestChain, trusted: tm.TrustedBlock, block: ct.LightBlock, **kw: object):
    now = kw.pop("now", chain.time_at(block.height) + SECOND)
    return tm.verify_light_block(
        trusted=trusted,
        untrusted=block,
        options=options(chain, **kw.pop("opts", {})),
        now=now,
        **kw,
    )


@pytest.fixture(scope="module")
def chain4() -> TestChain:
    return TestChain(validators=make_validators(4))


# --- the happy paths -------------------------------------------------------------------------


def test_adjacent_and_non_adjacent_steps_verify(chain4: TestChain) -> None:
    trusted = trusted_at(chain4, 1)
    step = verify(chain4, trusted, chain4.light_block(2))
    assert step.adjacent and step.trusting is None
    assert step.signing == tm.Tally(tallied=30, needed=26, total=40)
    assert step.signatures_checked == 3  # early exit once more than 2/3 signed
    jump = verify(chain4, trusted, chain4.light_block(500))
    assert not jump.adjacent
    assert jump.trusting == tm.Tally(tallied=20, needed=13, total=40)
    # the two trusting signatures are reused by the 2/3 check, so only one more is checked
    assert jump.signatures_checked == 3


def test_a_verified_block_becomes_the_next_trusted_block(chain4: TestChain) -> None:
    trusted = trusted_at(chain4, 1)
    for h in range(2, 12):
        block = chain4.light_block(h)
        verify(chain4, trusted, block)
        trusted = tm.TrustedBlock.from_light_block(block)
    assert trusted.height == 11 and trusted.header_hash == chain4.header(11).hash


# --- exact thresholds ------------------------------------------------------------------------


def _powers_chain(powers: list[int]) -> TestChain:
    return TestChain(validators=make_validators(len(powers), powers=powers))


def test_exactly_two_thirds_is_not_enough_and_just_above_is() -> None:
    chain = _powers_chain([1, 1, 1])  # total 3: 2 signers are exactly 2/3
    vals = chain.validators_at(2)
    trusted = trusted_at(chain, 1)
    two = {v.address for v in vals[:2]}
    with pytest.raises(tm.InsufficientVotingPower) as e:
        verify(chain, trusted, chain.light_block(2, signers=two))
    assert (e.value.context["tallied"], e.value.context["needed"]) == (2, 2)
    verify(chain, trusted, chain.light_block(2))  # all three: 3 > 2

    chain = _powers_chain([200, 100, 1])  # total 301; 2/3 of it is 200.67
    trusted = trusted_at(chain, 1)
    by_power = {v.power: v.address for v in chain.validators_at(2)}
    with pytest.raises(tm.InsufficientVotingPower):
        verify(chain, trusted, chain.light_block(2, signers={by_power[200]}))  # 200 <= 200
    verify(chain, trusted, chain.light_block(2, signers={by_power[200], by_power[1]}))  # 201


def test_exactly_one_third_of_trusted_power_is_not_enough() -> None:
    # Trusted next set {a, b, c} (power 1 each); at height 10 the set is {a, x, y}: a alone
    # is exactly 1/3 of the trusted power.
    a, b, c, x, y = make_validators(5, powers=1)
    chain = TestChain(validators=[a, b, c])
    chain.rotate(at_height=5, validators=[a, x, y])
    trusted = trusted_at(chain, 1)
    with pytest.raises(tm.NotEnoughTrust) as e:
        verify(chain, trusted, chain.light_block(10))
    assert (e.value.tallied, e.value.needed, e.value.total) == (1, 1, 3)

    # {a, b, x}: a and b are 2/3 of the trusted set, more than 1/3.
    chain.rotate(at_height=5, validators=[a, b, x])
    verify(chain, trusted_at(chain, 1), chain.light_block(10))


def test_trust_level_one_never_suffices_for_a_skip() -> None:
    # As in CometBFT: the signing power must exceed total * 1/1, which it cannot; adjacent
    # steps do not use the trust level.
    stable = TestChain(validators=make_validators(3, powers=[5, 5, 5]))
    full = {"opts": {"trust_level": tm.TrustLevel(1, 1)}}
    trusted = trusted_at(stable, 1)
    with pytest.raises(tm.NotEnoughTrust) as e:
        verify(stable, trusted, stable.light_block(7), **full)
    assert (e.value.tallied, e.value.needed) == (15, 15)
    verify(stable, trusted, stable.light_block(2), **full)


@settings(max_examples=40, deadline=None)
@given(
    powers=st.lists(st.integers(1, 50), min_size=1, max_size=7),
    data=st.data(),
)
def test_signing_threshold_matches_a_naive_rule(powers: list[int], data: st.DataObject) -> None:
    chain = _powers_chain(powers)
    vals = chain.validators_at(2)
    signers = data.draw(st.sets(st.sampled_from([v.address for v in vals])))
    block = chain.light_block(2, signers=signers)
    signed = sum(v.power for v in vals if v.address in signers)
    try:
        verify(chain, trusted_at(chain, 1), block)
        accepted = True
    except VerificationError:
        accepted = False
    assert accepted == (signed * 3 > sum(powers) * 2)


# --- time ------------------------------------------------------------------------------------


def test_trusting_period_expires_exactly_at_its_end(chain4: TestChain) -> None:
    trusted = trusted_at(chain4, 1)
    block = chain4.light_block(2)
    end = chain4.time_at(1) + PERIOD
    verify(chain4, trusted, block, now=end - 1)
    with pytest.raises(tm.TrustExpired):
        verify(chain4, trusted, block, now=end)


def test_header_from_the_future_beyond_clock_drift(chain4: TestChain) -> None:
    trusted = trusted_at(chain4, 1)
    block = chain4.light_block(2)
    t = chain4.time_at(2)
    verify(chain4, trusted, block, now=t - DRIFT + 1)
    with pytest.raises(tm.HeaderFromFuture):
        verify(chain4, trusted, block, now=t - DRIFT)
    with pytest.raises(tm.HeaderFromFuture):
        verify(chain4, trusted, block, now=t, opts={"max_clock_drift_ns": 0})


def test_time_and_height_must_increase() -> None:
    chain = TestChain(validators=make_validators(4))
    trusted = trusted_at(chain, 5)
    with pytest.raises(tm.NonMonotonic):
        verify(chain, trusted, chain.light_block(5), now=chain.time_at(9))
    with pytest.raises(tm.NonMonotonic):
        verify(chain, trusted, chain.light_block(3), now=chain.time_at(9))
    chain.set_time(6, chain.time_at(5))  # same time as the trusted header
    with pytest.raises(tm.NonMonotonic):
        verify(chain, trusted, chain.light_block(6), now=chain.time_at(9))


# --- faulty light blocks ---------------------------------------------------------------------


def test_duplicate_signature_is_rejected(chain4: TestChain) -> None:
    block = chain4.light_block(2)
    sigs = list(block.commit.signatures)
    sigs[3] = sigs[0]  # the first validator counted twice
    with pytest.raises(tm.DuplicateVote):
        verify(chain4, trusted_at(chain4, 1), with_signatures(block, sigs))
    # the trusting count (by address) also refuses to count a validator twice
    far = chain4.light_block(9)
    sigs = list(far.commit.signatures)
    sigs.append(sigs[0])
    with pytest.raises(tm.DuplicateVote):
        tm.verify_commit_trusting(
            with_signatures(far, sigs).signed_header,
            chain4.validator_set(2),
            trust_level=tm.ONE_THIRD,
        )


def test_duplicate_after_the_early_exit_point_is_still_caught(chain4: TestChain) -> None:
    far = chain4.light_block(9)
    sigs = list(far.commit.signatures)
    sigs.append(sigs[-1])  # would never be reached by an early-exit count
    with pytest.raises(tm.DuplicateVote):
        tm.verify_commit_trusting(
            with_signatures(far, sigs).signed_header,
            chain4.validator_set(2),
            trust_level=tm.ONE_THIRD,
        )


def test_missing_and_nil_precommits_do_not_count(chain4: TestChain) -> None:
    vals = [v.address for v in chain4.validators_at(2)]
    trusted = trusted_at(chain4, 1)
    verify(chain4, trusted, chain4.light_block(2, signers=vals[:3]))
    with pytest.raises(tm.InsufficientVotingPower):
        verify(chain4, trusted, chain4.light_block(2, signers=vals[:2]))
    # a nil vote is a valid signature, but not for this block
    with pytest.raises(tm.InsufficientVotingPower):
        verify(chain4, trusted, chain4.light_block(2, signers=vals[:2], nil_signers=vals[2:]))
    with pytest.raises(tm.HeaderInvalid):
        verify(chain4, trusted, chain4.light_block(2, signers=()))


def test_signature_over_another_chain_id_is_rejected(chain4: TestChain) -> None:
    block = chain4.light_block(2, sign_chain_id="other-chain")
    with pytest.raises(tm.CommitSignatureInvalid) as e:
        verify(chain4, trusted_at(chain4, 1), block)
    assert isinstance(e.value, SignatureError) and e.value.context["index"] == 0


def test_header_of_another_chain_is_rejected() -> None:
    chain = TestChain(validators=make_validators(4), chain_id="other-chain")
    honest = TestChain(validators=make_validators(4))
    with pytest.raises(tm.HeaderMismatch) as e:
        verify(honest, trusted_at(honest, 1), chain.light_block(2))
    assert e.value.expected == "test-chain" and e.value.calculated == "other-chain"


def test_one_bad_signature_among_the_needed_ones_is_rejected(chain4: TestChain) -> None:
    block = chain4.light_block(2)
    sigs = list(block.commit.signatures)
    s = sigs[1]
    sigs[1] = replace(s, signature=bytes([s.signature[0] ^ 1]) + s.signature[1:])
    with pytest.raises(tm.CommitSignatureInvalid) as e:
        verify(chain4, trusted_at(chain4, 1), with_signatures(block, sigs))
    assert e.value.context["index"] == 1


def test_commit_must_fit_the_validator_set(chain4: TestChain) -> None:
    block = chain4.light_block(2)
    sigs = list(block.commit.signatures)
    trusted = trusted_at(chain4, 1)
    with pytest.raises(tm.HeaderMismatch):  # one slot missing
        verify(chain4, trusted, with_signatures(block, sigs[:3]))
    with pytest.raises(tm.HeaderMismatch):  # slots out of canonical order
        verify(chain4, trusted, with_signatures(block, [sigs[1], sigs[0], *sigs[2:]]))


def test_validator_sets_must_hash_to_the_header(chain4: TestChain) -> None:
    block = chain4.light_block(2)
    other = TestChain(validators=make_validators(4, prefix="other")).validator_set(2)
    with pytest.raises(tm.HeaderMismatch):
        verify(chain4, trusted_at(chain4, 1), replace(block, validator_set=other))
    with pytest.raises(tm.HeaderMismatch):
        verify(chain4, trusted_at(chain4, 1), replace(block, next_validator_set=other))
    with pytest.raises(tm.HeaderMismatch):  # commit for another header
        forged = chain4.light_block(2, app_hash=b"\x01" * 32)
        verify(
            chain4,
            trusted_at(chain4, 1),
            replace(block, signed_header=replace(block.signed_header, commit=forged.commit)),
        )


def test_adjacent_block_must_carry_the_trusted_next_validators() -> None:
    vals = make_validators(4)
    chain = TestChain(validators=vals)
    trusted = trusted_at(chain, 1)
    impostor = TestChain(validators=make_validators(4, prefix="evil"))
    with pytest.raises(tm.HeaderMismatch):
        verify(chain, trusted, impostor.light_block(2))


def test_block_protocol_must_match_the_chain(chain4: TestChain) -> None:
    with pytest.raises(tm.HeaderMismatch):
        verify(chain4, trusted_at(chain4, 1), chain4.light_block(2, version_block=10))


def test_trusted_block_needs_matching_next_validators(chain4: TestChain) -> None:
    block = chain4.light_block(1)
    with pytest.raises(MalformedInputError):
        tm.TrustedBlock.of(block.header, None)
    other = TestChain(validators=make_validators(4, prefix="other")).validator_set(2)
    with pytest.raises(tm.HeaderMismatch):
        tm.TrustedBlock.of(block.header, other)
    empty = ct.make_validator_set([], params=ct.DEFAULT_PARAMS)
    with pytest.raises(tm.HeaderMismatch):
        tm.TrustedBlock.of(block.header, empty)
    # a light block whose own validator set is empty is invalid, whatever its hashes say
    with pytest.raises(tm.HeaderInvalid):
        tm.validate_light_block(
            replace(block, validator_set=empty), chain_id="test-chain", params=ct.DEFAULT_PARAMS
        )


# --- key types and hash algorithms ------------------------------------------------------------


@pytest.mark.parametrize("encoding", [SignatureEncoding.DER, SignatureEncoding.RAW])
def test_sm2_signed_chain_with_sm3_hashing(encoding: SignatureEncoding) -> None:
    params = sm2_chain_params(signer_id=b"court-chain-01", hasher=RFC6962_SM3, encoding=encoding)
    key_type = params.key_types[0]
    chain = TestChain(
        validators=make_validators(4, key=lambda s: sm2_key(s, key_type=key_type)),
        params=params,
        chain_id="gm-chain",
    )
    trusted = trusted_at(chain, 1)
    verify(chain, trusted, chain.light_block(2))
    verify(chain, trusted, chain.light_block(40))
    # the same keys under another signer id do not verify
    other = sm2_chain_params(signer_id=b"1234567812345678", hasher=RFC6962_SM3, encoding=encoding)
    with pytest.raises(SignatureError):
        tm.verify_commit_light(chain.light_block(2).signed_header, _rekey(chain, other))
    # nor under SHA-256 hashing: the header and set hashes differ
    sha = ct.ChainParams(key_types=(key_type,))
    with pytest.raises(tm.HeaderMismatch):
        tm.validate_light_block(_rehash(chain.light_block(2), sha), chain_id="gm-chain", params=sha)


def _rekey(chain: TestChain, params: ct.ChainParams) -> ct.ValidatorSet:
    kt = params.key_types[0]
    vals = [
        replace(v, pub_key=ct.PublicKey(kt, v.pub_key.data))
        for v in chain.validator_set(2).validators
    ]
    return ct.make_validator_set(vals, params=params)


def _rehash(block: ct.LightBlock, params: ct.ChainParams) -> ct.LightBlock:
    h = block.header
    header = ct.make_header(
        params=params,
        chain_id=h.chain_id,
        height=h.height,
        time_ns=h.time_ns,
        validators_hash=h.validators_hash,
        next_validators_hash=h.next_validators_hash,
        proposer_address=h.proposer_address,
        version_app=h.version_app,
        last_block_id=h.last_block_id,
        app_hash=h.app_hash,
    )
    return replace(block, signed_header=ct.make_signed_header(header, block.commit))


def test_secp256k1_and_ed25519_validators_in_one_set() -> None:
    params = ct.ChainParams(key_types=(ct.ED25519_KEY, SECP256K1_KEY))
    vals = make_validators(3, key=secp256k1_key) + make_validators(2, key=ed25519_key)
    chain = TestChain(validators=vals, params=params)
    trusted = trusted_at(chain, 1)
    verify(chain, trusted, chain.light_block(2))
    verify(chain, trusted, chain.light_block(30))
    # an ed25519-only chain does not accept the secp256k1 keys at all
    with pytest.raises(ct.UnknownKeyTypeError):
        ct.make_validator_set([v.validator() for v in vals], params=ct.DEFAULT_PARAMS)


# --- parallel checks -------------------------------------------------------------------------


def _scenarios() -> list[tuple[str, TestChain, tm.TrustedBlock, ct.LightBlock]]:
    chain = TestChain(validators=make_validators(40, powers=list(range(1, 41))))
    trusted = trusted_at(chain, 1)
    vals = chain.validators_at(2)
    out = [
        ("adjacent", chain, trusted, chain.light_block(2)),
        ("far", chain, trusted, chain.light_block(300)),
        ("too few", chain, trusted, chain.light_block(2, signers=[v.address for v in vals[:20]])),
        ("other chain id", chain, trusted, chain.light_block(3, sign_chain_id="x")),
    ]
    for index in (0, 9, 25, 39):
        block = chain.light_block(4)
        sigs = list(block.commit.signatures)
        s = sigs[index]
        sigs[index] = replace(s, signature=bytes(64))
        out.append((f"bad signature {index}", chain, trusted, with_signatures(block, sigs)))
    rotated = TestChain(validators=make_validators(40, powers=list(range(1, 41))))
    rotated.rotate(at_height=10, validators=make_validators(40, prefix="new"))
    out.append(("rotated away", rotated, trusted_at(rotated, 1), rotated.light_block(20)))
    return out


def _outcome(
    chain: TestChain, trusted: tm.TrustedBlock, block: ct.LightBlock, **kw: object
) -> tuple[str, object]:
    try:
        result = verify(chain, trusted, block, **kw)
    except VerificationError as e:
        return e.reason, repr(sorted(e.context.items()))
    return "OK", result


def test_parallel_verification_gives_the_sequential_verdicts() -> None:
    scenarios = _scenarios()
    reasons = set()
    with ThreadPoolExecutor(2) as pool:
        for name, chain, trusted, block in scenarios:
            sequential = _outcome(chain, trusted, block)
            parallel = _outcome(chain, trusted, block, sig_map=pool.map, sig_batches=2)
            many = _outcome(chain, trusted, block, sig_map=pool.map, sig_batches=7)
            assert sequential == parallel == many, name
            reasons.add(sequential[0])
    assert reasons == {
        "OK",
        "INSUFFICIENT_VOTING_POWER",
        "COMMIT_SIGNATURE_INVALID",
        "NOT_ENOUGH_TRUST",
    }


def test_options_and_trust_levels_are_validated() -> None:
    for n, d in ((1, 4), (4, 3), (1, 0), (-1, 3)):
        with pytest.raises(ValueError):
            tm.TrustLevel(n, d)
    assert tm.TrustLevel(1, 3).needed(100) == 33 and tm.TrustLevel(2, 3).needed(3) == 2
    with pytest.raises(ValueError):
        tm.TrustOptions(chain_id="c", trusting_period_ns=0, max_clock_drift_ns=0)
    with pytest.raises(ValueError):
        tm.TrustOptions(chain_id="c", trusting_period_ns=1, max_clock_drift_ns=-1)
