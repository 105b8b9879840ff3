"""CometBFT light-client throughput against a floor measured in the same run: the signature
verifications alone, on exactly the keys, messages and signatures the verifier checks.

Adjacent verification of generated, really signed light blocks at 4, 100 and 150 validators
on one core (target: at least 0.85 of the floor) and with a ``ThreadPoolExecutor(2).map``
(target: at least 1.6x the one-core rate at 100 and more validators); then the number of
verifications a catch-up over 100,000 heights needs. Run with
``.venv/bin/python bench/bench_lightclient.py``.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Row, print_table, rate

from relay.testing.tendermint import (
    SECOND,
    TestChain,
    light_block_json,
    make_validators,
    sm2_chain_params,
    sm2_key,
)
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm
from relay.verify.signatures import SignatureScheme

PAIRS = 20
Check = tuple[SignatureScheme, bytes, bytes, bytes]


@dataclass(frozen=True, eq=False)
class _Recorder:
    """A scheme that records what it is asked to verify, then verifies it."""

    inner: SignatureScheme
    log: list[Check]

    @property
    def name(self) -> str:
        return self.inner.name

    def verify(self, *, public_key: bytes, message: bytes, signature: bytes) -> None:
        self.log.append((self.inner, public_key, message, signature))
        self.inner.verify(public_key=public_key, message=message, signature=signature)


@dataclass
class Workload:
    chain: TestChain
    pairs: list[tuple[tm.TrustedBlock, ct.LightBlock]]
    options: tm.TrustOptions
    now: int
    checks: list[Check]


def workload(chain: TestChain) -> Workload:
    blocks = [chain.light_block(h) for h in range(1, PAIRS + 2)]
    pairs = [(tm.TrustedBlock.from_light_block(a), b) for a, b in itertools.pairwise(blocks)]
    options = tm.TrustOptions(
        chain_id=chain.chain_id,
        trusting_period_ns=10**6 * SECOND,
        max_clock_drift_ns=10 * SECOND,
        params=chain.params,
    )
    now = chain.time_at(PAIRS + 5)
    # The floor's inputs: run the verifier once with recording schemes on a copy of the data.
    log: list[Check] = []
    recording = replace(
        chain.params,
        key_types=tuple(
            replace(kt, scheme=_Recorder(kt.scheme, log)) for kt in chain.params.key_types
        ),
    )
    rec_options = replace(options, params=recording)
    for trusted, block in pairs:
        tm.verify_light_block(
            trusted=_rekeyed(trusted, recording),
            untrusted=_rekeyed_block(block, recording),
            options=rec_options,
            now=now,
        )
    return Workload(chain, pairs, options, now, log)


def _rekey(vs: ct.ValidatorSet, params: ct.ChainParams) -> ct.ValidatorSet:
    by_name = {kt.name: kt for kt in params.key_types}
    vals = [
        replace(v, pub_key=ct.PublicKey(by_name[v.pub_key.key_type.name], v.pub_key.data))
        for v in vs.validators
    ]
    return ct.make_validator_set(vals, params=params)


def _rekeyed(t: tm.TrustedBlock, params: ct.ChainParams) -> tm.TrustedBlock:
    return replace(t, next_validators=_rekey(t.next_validators, params))


def _rekeyed_block(b: ct.LightBlock, params: ct.ChainParams) -> ct.LightBlock:
    nxt = b.next_validator_set
    return replace(
        b,
        validator_set=_rekey(b.validator_set, params),
        next_validator_set=None if nxt is None else _rekey(nxt, params),
    )


def verify_all(w: Workload, sig_map: tm.SigMap | None = None) -> Callable[[], None]:
    def run() -> None:
        for trusted, block in w.pairs:
            tm.verify_light_block(
                trusted=trusted, untrusted=block, options=w.options, now=w.now, sig_map=sig_map
            )

    return run


def floor_all(w: Workload) -> Callable[[], None]:
    def run() -> None:
        for scheme, key, message, signature in w.checks:
            scheme.verify(public_key=key, message=message, signature=signature)

    return run


def floor_two_threads(w: Workload, pool: ThreadPoolExecutor) -> Callable[[], None]:
    half = len(w.checks) // 2
    parts = [w.checks[:half], w.checks[half:]]

    def chunk(checks: list[Check]) -> None:
        for scheme, key, message, signature in checks:
            scheme.verify(public_key=key, message=message, signature=signature)

    def run() -> None:
        list(pool.map(chunk, parts))

    return run


def ed25519_chain(n: int) -> TestChain:
    return TestChain(validators=make_validators(n), linked=True)


def main() -> None:
    one_core: list[Row] = []
    two: list[Row] = []
    info: list[Row] = []
    loads = {n: workload(ed25519_chain(n)) for n in (4, 100, 150)}
    for n, w in loads.items():
        per_header = len(w.checks) // PAIRS
        seq = rate(verify_all(w)) * PAIRS
        floor = rate(floor_all(w)) * PAIRS
        one_core.append(
            Row(f"{n:>3} validators ({per_header} signatures/header)", seq, floor, ">= 0.85")
        )
        if n >= 100:
            with ThreadPoolExecutor(2) as pool:
                par = rate(verify_all(w, pool.map), repeats=5) * PAIRS
                raw2 = rate(floor_two_threads(w, pool), repeats=5) * PAIRS
            two.append(Row(f"{n:>3} validators, verifier", par, seq, ">= 1.6 (x one core)"))
            two.append(
                Row(f"{n:>3} validators, bare signatures", raw2, floor, "machine's 2-core gain")
            )

    params = sm2_chain_params()
    kt = params.key_types[0]
    sm2 = workload(
        TestChain(
            validators=make_validators(4, key=lambda s: sm2_key(s, key_type=kt)), params=params
        )
    )
    info.append(
        Row(
            "  4 SM2 validators, adjacent",
            rate(verify_all(sm2)) * PAIRS,
            rate(floor_all(sm2)) * PAIRS,
            "(SM2 floor)",
        )
    )
    block_json = light_block_json(loads[100].pairs[0][1])
    info.append(
        Row(
            "decode a 100-validator light block (JSON)",
            rate(lambda: ct.decode_light_block(block_json, params=ct.DEFAULT_PARAMS)),
        )
    )

    print_table("Adjacent verification, one core: headers/s vs the signature floor", one_core)
    print_table("Adjacent verification, ThreadPoolExecutor(2).map: headers/s", two)
    print_table("Other rates", info)
    catch_up()


def catch_up() -> None:
    print("\nSkipping verification (bisection), counted")
    print(f"{'case':<52}  {'verifications':>13}  {'fetches':>7}  {'ms':>8}")
    stable = TestChain(validators=make_validators(100), linked=False)
    rotating = TestChain(validators=make_validators(4, prefix="a"), linked=False)
    rotating.rotate(at_height=50_001, validators=make_validators(4, prefix="b"))
    for name, chain in (
        ("catch-up 1 -> 100,001, 100 validators, stable set", stable),
        ("catch-up 1 -> 100,001, 4 validators, all replaced at 50,001", rotating),
    ):
        fetched: list[int] = []
        options = tm.TrustOptions(
            chain_id=chain.chain_id, trusting_period_ns=10**7 * SECOND, max_clock_drift_ns=SECOND
        )
        trusted = tm.TrustedBlock.from_light_block(chain.light_block(1))
        t0 = time.perf_counter()
        result = tm.verify_skipping(
            trusted=trusted,
            target=100_001,
            fetch=chain.fetcher(counter=fetched),
            options=options,
            now=chain.time_at(100_002),
        )
        ms = (time.perf_counter() - t0) * 1000
        print(f"{name:<52}  {result.verifications:>13}  {len(fetched):>7}  {ms:>8.1f}")


if __name__ == "__main__":
    main()
