"""cosmos/ics23 public vectors: the runners, upstream's failure reasons, specs that must not
fit, and batch / compressed-batch forms of the same proofs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import vectors_path

from relay.pb.cosmos.ics23.v1 import proofs_pb2 as pb
from relay.vectors import ics23 as runner
from relay.verify.errors import MalformedInputError, ProofShapeError, VerificationError
from relay.verify.merkle import ics23

TREES = ("iavl", "tendermint", "smt")
FILES = [
    f"{kind}_{where}" for kind in ("exist", "nonexist") for where in ("left", "middle", "right")
]


def _testdata() -> Path:
    return vectors_path("ics23", "testdata")


def _load(tree: str, name: str) -> dict[str, bytes]:
    data = json.loads((_testdata() / tree / f"{name}.json").read_text())
    return {k: bytes.fromhex(v) for k, v in data.items() if isinstance(v, str)}


def _verify(
    spec: ics23.ProofSpec, name: str, v: dict[str, bytes], proof: ics23.CommitmentProof
) -> None:
    if name.startswith("exist"):
        ics23.verify_membership(
            spec=spec, root=v["root"], proof=proof, key=v["key"], value=v["value"]
        )
    else:
        ics23.verify_non_membership(spec=spec, root=v["root"], proof=proof, key=v["key"])


def test_proof_files_all_match() -> None:
    results = list(runner.run_proofs(_testdata()))
    assert sorted(r.case for r in results) == sorted(f"{t}/{f}" for t in TREES for f in FILES)
    assert all(r.expected for r in results)
    assert [r for r in results if not r.matched] == []


def test_unit_files_all_match() -> None:
    results = list(runner.run_unit(_testdata()))
    per_file = Counter(Path(r.file).name for r in results)
    assert per_file == {
        "TestLeafOpData.json": 11,
        "TestInnerOpData.json": 4,
        "TestDoHashData.json": 7,
        "TestCheckLeafData.json": 10,
        "TestCheckAgainstSpecData.json": 11,
        "TestEmptyBranchData.json": 8,
        "TestExistenceProofData.json": 6,
    }
    assert [r for r in results if not r.matched] == []
    # The files hold both kinds of case; a runner that accepted or rejected everything
    # would not match them all.
    assert {r.expected for r in results} == {True, False}


def test_check_against_spec_rejects_for_upstreams_reason() -> None:
    cases = json.loads((_testdata() / "TestCheckAgainstSpecData.json").read_text())
    file = _testdata() / "TestCheckAgainstSpecData.json"
    checked = 0
    for name, case in cases.items():
        if not case["Err"]:
            continue
        proof = runner._existence_proof(case["Proof"], file, "Proof")
        spec = runner._spec(case["Spec"], file, "Spec")
        with pytest.raises(ProofShapeError) as info:
            ics23.check_existence_proof(proof, spec=spec)
        # Upstream wraps leaf/inner failures as "leaf, ..." / "inner, ..."; the core of its
        # message (with the same numbers) must be what we report.
        core = case["Err"].removeprefix("leaf, ").removeprefix("inner, ")
        assert core in info.value.message, name
        checked += 1
    assert checked == 8


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", FILES)
def test_proofs_do_not_fit_other_specs(tree: str, name: str) -> None:
    v = _load(tree, name)
    proof = ics23.decode_commitment_proof(v["proof"])
    for other, spec in ics23.SPECS.items():
        if other == tree:
            _verify(spec, name, v, proof)
            continue
        with pytest.raises(VerificationError):
            _verify(spec, name, v, proof)


def _batch_entry(proof: pb.CommitmentProof) -> pb.BatchEntry:
    if proof.HasField("exist"):
        return pb.BatchEntry(exist=proof.exist)
    return pb.BatchEntry(nonexist=proof.nonexist)


def _compress(batch: pb.BatchProof) -> pb.CompressedBatchProof:
    """Our own compressor: every distinct inner op stored once, paths as indices."""
    lookup: list[pb.InnerOp] = []
    index: dict[bytes, int] = {}

    def compress_exist(e: pb.ExistenceProof) -> pb.CompressedExistenceProof:
        out = pb.CompressedExistenceProof(key=e.key, value=e.value, leaf=e.leaf)
        for op in e.path:
            wire = op.SerializeToString()
            if wire not in index:
                index[wire] = len(lookup)
                lookup.append(op)
            out.path.append(index[wire])
        return out

    entries = []
    for entry in batch.entries:
        if entry.HasField("exist"):
            entries.append(pb.CompressedBatchEntry(exist=compress_exist(entry.exist)))
        else:
            n = entry.nonexist
            c = pb.CompressedNonExistenceProof(key=n.key)
            if n.HasField("left"):
                c.left.CopyFrom(compress_exist(n.left))
            if n.HasField("right"):
                c.right.CopyFrom(compress_exist(n.right))
            entries.append(pb.CompressedBatchEntry(nonexist=c))
    return pb.CompressedBatchProof(entries=entries, lookup_inners=lookup)


@pytest.mark.parametrize("tree", TREES)
def test_batch_and_compressed_batch(tree: str) -> None:
    refs = {name: _load(tree, name) for name in FILES}
    batch = pb.BatchProof()
    for v in refs.values():
        single = pb.CommitmentProof()
        single.ParseFromString(v["proof"])
        batch.entries.append(_batch_entry(single))
    plain = ics23.decode_commitment_proof(pb.CommitmentProof(batch=batch).SerializeToString())
    compressed_pb = _compress(batch)
    compressed_wire = pb.CommitmentProof(compressed=compressed_pb).SerializeToString()
    assert len(compressed_wire) < len(pb.CommitmentProof(batch=batch).SerializeToString())
    expanded = ics23.decode_commitment_proof(compressed_wire)
    assert isinstance(plain, ics23.BatchProof)
    assert expanded == plain
    spec = ics23.SPECS[tree]
    for name, v in refs.items():
        _verify(spec, name, v, expanded)
    # Each file has its own root, so a batch entry must not verify against another's root.
    with pytest.raises(VerificationError):
        ics23.verify_membership(
            spec=spec,
            root=refs["exist_right"]["root"],
            proof=expanded,
            key=refs["exist_left"]["key"],
            value=refs["exist_left"]["value"],
        )
    # A key no entry covers is not silently "proven".
    with pytest.raises(VerificationError):
        ics23.verify_membership(
            spec=spec,
            root=refs["exist_left"]["root"],
            proof=expanded,
            key=b"\x00no such key",
            value=b"v",
        )


def test_compressed_batch_with_a_dangling_index_is_malformed() -> None:
    v = _load("iavl", "exist_left")
    single = pb.CommitmentProof()
    single.ParseFromString(v["proof"])
    compressed = _compress(pb.BatchProof(entries=[pb.BatchEntry(exist=single.exist)]))
    compressed.entries[0].exist.path[0] = len(compressed.lookup_inners)
    wire = pb.CommitmentProof(compressed=compressed).SerializeToString()
    with pytest.raises(MalformedInputError, match="missing inner step"):
        ics23.decode_commitment_proof(wire)
    compressed.entries[0].exist.path[0] = -1
    wire = pb.CommitmentProof(compressed=compressed).SerializeToString()
    with pytest.raises(MalformedInputError, match="missing inner step"):
        ics23.decode_commitment_proof(wire)
