"""Receipts: EIP-2718 typed-receipt encoding, the mainnet block's receiptsRoot rebuilt, every
receipt's inclusion proof, and changes to any receipt caught."""

from __future__ import annotations

import dataclasses
import json
from functools import cache

import pytest
from conftest import vectors_path
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.vectors.ethereum import parse_receipt
from relay.verify import rlp
from relay.verify.errors import (
    MalformedInputError,
    MismatchError,
    RootMismatchError,
    VerificationError,
)
from relay.verify.merkle import mpt


@cache
def mainnet() -> tuple[bytes, tuple[mpt.Receipt, ...]]:
    folder = vectors_path("ethereum", "mainnet-block-21925176")
    block = json.loads((folder / "block.json").read_text())
    path = folder / "receipts.json"
    receipts = tuple(parse_receipt(r, path) for r in json.loads(path.read_text()))
    return bytes.fromhex(block["receiptsRoot"][2:]), receipts


def test_mainnet_receipts_root_and_every_inclusion_proof() -> None:
    root, receipts = mainnet()
    assert len(receipts) == 202
    assert {r.tx_type for r in receipts} == {0, 2}  # both legacy and typed encodings
    encoded = [mpt.encode_receipt(r) for r in receipts]
    trie = mpt.verify_receipts_root(receipts_root=root, receipts=encoded)
    assert trie.root == root
    for i, (one, receipt) in enumerate(zip(encoded, receipts, strict=True)):
        proof = trie.prove(mpt.receipt_key(i))
        assert mpt.verify_receipt(receipts_root=root, index=i, proof=proof, receipt=one) == receipt
        assert mpt.decode_receipt(one) == receipt
    # Beyond the last receipt the trie proves absence.
    past = mpt.receipt_key(len(receipts))
    mpt.verify_absence(root=root, key=past, proof=trie.prove(past), spec=mpt.ETHEREUM_RECEIPTS_TRIE)


def test_legacy_and_typed_encodings_differ_only_by_the_type_byte() -> None:
    _, receipts = mainnet()
    typed = next(r for r in receipts if r.tx_type == 2)
    legacy = dataclasses.replace(typed, tx_type=0)
    assert mpt.encode_receipt(typed) == b"\x02" + mpt.encode_receipt(legacy)
    assert mpt.encode_receipt(legacy)[0] >= 0xC0


def test_a_proof_for_one_index_does_not_prove_another() -> None:
    root, receipts = mainnet()
    encoded = [mpt.encode_receipt(r) for r in receipts]
    trie = mpt.build_receipts_trie(encoded)
    with pytest.raises(VerificationError):
        mpt.verify_receipt(receipts_root=root, index=3, proof=trie.prove(mpt.receipt_key(4)))
    with pytest.raises(MismatchError):
        mpt.verify_receipt(
            receipts_root=root, index=3, proof=trie.prove(mpt.receipt_key(3)), receipt=encoded[4]
        )


FIELDS = ["status", "cumulative_gas_used", "logs_bloom", "tx_type", "log", "order", "drop"]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_changing_any_receipt_breaks_the_root(data: st.DataObject) -> None:
    root, receipts = mainnet()
    rs = list(receipts)
    i = data.draw(st.integers(0, len(rs) - 1))
    r = rs[i]
    what = data.draw(st.sampled_from(FIELDS))
    if what == "status":
        rs[i] = dataclasses.replace(r, status=1 - (r.status or 0))
    elif what == "cumulative_gas_used":
        rs[i] = dataclasses.replace(r, cumulative_gas_used=r.cumulative_gas_used + 1)
    elif what == "logs_bloom":
        at = data.draw(st.integers(0, 255))
        bloom = bytearray(r.logs_bloom)
        bloom[at] ^= 1 << data.draw(st.integers(0, 7))
        rs[i] = dataclasses.replace(r, logs_bloom=bytes(bloom))
    elif what == "tx_type":
        rs[i] = dataclasses.replace(
            r, tx_type=data.draw(st.sampled_from([0, 1, 2, 3, 4]).filter(lambda t: t != r.tx_type))
        )
    elif what == "log":
        extra = mpt.Log(b"\x01" * 20, (b"\x02" * 32,), data.draw(st.binary(max_size=8)))
        rs[i] = dataclasses.replace(r, logs=(*r.logs, extra))
    elif what == "order":
        j = data.draw(st.integers(0, len(rs) - 1).filter(lambda j: rs[j] != r))
        rs[i], rs[j] = rs[j], rs[i]
    else:
        del rs[i]
    encoded = [mpt.encode_receipt(x) for x in rs]
    with pytest.raises(RootMismatchError) as info:
        mpt.verify_receipts_root(receipts_root=root, receipts=encoded)
    assert info.value.expected == root


def test_encoder_refuses_malformed_receipts() -> None:
    good = mpt.Receipt(2, 1, None, 21000, b"\x00" * 256, ())
    assert mpt.decode_receipt(mpt.encode_receipt(good)) == good
    for bad in (
        dataclasses.replace(good, tx_type=0x80),
        dataclasses.replace(good, status=2),
        dataclasses.replace(good, status=None),
        dataclasses.replace(good, post_state=b"\x00" * 32),  # both status and root
        dataclasses.replace(good, status=None, post_state=b"\x00" * 32),  # typed with a root
        dataclasses.replace(good, logs_bloom=b"\x00" * 255),
        dataclasses.replace(good, cumulative_gas_used=-1),
        dataclasses.replace(good, logs=(mpt.Log(b"\x01" * 19, (), b""),)),
        dataclasses.replace(good, logs=(mpt.Log(b"\x01" * 20, (b"\x00" * 32,) * 5, b""),)),
        dataclasses.replace(good, logs=(mpt.Log(b"\x01" * 20, (b"\x00" * 31,), b""),)),
    ):
        with pytest.raises(MalformedInputError):
            mpt.encode_receipt(bad)
    with pytest.raises(MalformedInputError):
        mpt.receipt_key(-1)


def test_pre_byzantium_legacy_receipt_roundtrip() -> None:
    old = mpt.Receipt(
        0, None, b"\xab" * 32, 50_000, b"\x00" * 256, (mpt.Log(b"\x01" * 20, (), b"x"),)
    )
    assert mpt.decode_receipt(mpt.encode_receipt(old)) == old


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",  # neither a type byte nor a list
        b"\x00" + rlp.encode([b"\x01", b"", b"\x00" * 256, []]),  # type 0 with a type byte
        b"\x02" + rlp.encode([b"\x02", b"", b"\x00" * 256, []]),  # status 2
        b"\x02" + rlp.encode([b"\x00" * 32, b"", b"\x00" * 256, []]),  # typed with a root
        b"\x02" + rlp.encode([b"\x01", b"", b"\x00" * 255, []]),  # short bloom
        b"\x02" + rlp.encode([b"\x01", b"\x00\x01", b"\x00" * 256, []]),  # gas leading zero
        b"\x02" + rlp.encode([b"\x01", b"", b"\x00" * 256, [[b"\x01" * 20, [], b"", b""]]]),
        b"\x02"
        + rlp.encode([b"\x01", b"", b"\x00" * 256, [[b"\x01" * 20, [b"\x00" * 32] * 5, b""]]]),
        b"\x02" + rlp.encode([b"\x01", b"", b"\x00" * 256]),  # 3 fields
        b"\x02" + rlp.encode([b"\x01", b"", b"\x00" * 256, []]) + b"\x00",  # trailing byte
    ],
)
def test_decoder_refuses_malformed_receipts(data: bytes) -> None:
    with pytest.raises(MalformedInputError):
        mpt.decode_receipt(data)


def test_receipts_root_input_checks() -> None:
    with pytest.raises(MalformedInputError):
        mpt.verify_receipts_root(receipts_root=b"\x00" * 31, receipts=[])
    # An empty block's receipts root is the empty trie's.
    empty = mpt.ETHEREUM_RECEIPTS_TRIE.empty_root
    assert mpt.verify_receipts_root(receipts_root=empty, receipts=[]).root == empty
