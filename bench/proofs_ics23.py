"""ICS-23 proof verification vs the raw hash calls it makes.

Inputs are the cosmos/ics23 public vectors (``../shared/vectors/ics23/testdata``, or
``$RELAY_VECTORS/ics23/testdata``): real IAVL, Tendermint and SMT proofs. The floor of each
row is the same hash calls on the same preimages (recorded while verifying once), made
directly through hashlib; the ratio is the share of verification time spent hashing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from harness import Row, rate

from relay.verify.merkle import ics23

TITLE = "ICS-23 proofs (one core; floor = the same raw hash calls on the same inputs)"

_ROOT = Path(__file__).resolve().parent.parent
_VECTORS = Path(os.environ.get("RELAY_VECTORS", _ROOT.parent / "shared" / "vectors"))


def _vector(tree: str, name: str) -> dict[str, bytes]:
    path = _VECTORS / "ics23" / "testdata" / tree / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise SystemExit(f"proofs_ics23: cannot read the public vector {path}: {e}") from e
    return {k: bytes.fromhex(v) for k, v in data.items()}


def _recorded(call: Callable[[], None]) -> list[bytes]:
    """Every preimage the verifier hashes during one ``call()``, in order."""
    seen: list[bytes] = []
    saved = dict(ics23._HASH_FNS)

    def recorder(fn: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
        def record(data: bytes) -> bytes:
            seen.append(data)
            return fn(data)

        return record

    try:
        for op, fn in saved.items():
            ics23._HASH_FNS[op] = recorder(fn)
        call()
    finally:
        ics23._HASH_FNS.clear()
        ics23._HASH_FNS.update(saved)
    return seen


def _row(tree: str, name: str, *, decode: bool = False, target: str = "") -> Row:
    v = _vector(tree, name)
    spec = ics23.SPECS[tree]
    decoded = ics23.decode_commitment_proof(v["proof"])
    raw, root, key = v["proof"], v["root"], v["key"]
    value = v.get("value", b"")

    if name.startswith("exist"):

        def check(proof: ics23.CommitmentProof) -> None:
            ics23.verify_membership(spec=spec, root=root, proof=proof, key=key, value=value)
    else:

        def check(proof: ics23.CommitmentProof) -> None:
            ics23.verify_non_membership(spec=spec, root=root, proof=proof, key=key)

    if decode:

        def verify() -> None:
            check(ics23.decode_commitment_proof(raw))
    else:

        def verify() -> None:
            check(decoded)

    inputs = _recorded(verify)
    sha256 = hashlib.sha256

    def floor() -> None:
        for data in inputs:
            sha256(data).digest()

    what = "decode + verify" if decode else "verify"
    label = f"{tree} {name.replace('_', ' ')}, {what} ({len(inputs)} hashes)"
    return Row(label, rate(verify), rate(floor), target)


def rows() -> list[Row]:
    return [
        _row("iavl", "exist_left", target=">= 25,000/s"),
        _row("iavl", "exist_left", decode=True),
        _row("smt", "exist_left", target=">= 25,000/s"),
        _row("smt", "exist_left", decode=True),
        _row("tendermint", "exist_left"),
        _row("iavl", "nonexist_middle"),
        _row("smt", "nonexist_middle"),
    ]
