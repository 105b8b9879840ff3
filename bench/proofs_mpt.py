"""Ethereum Merkle Patricia Trie: EIP-1186 proofs and receipts-root rebuilds per second on one
core, against a floor of the same number of raw Keccak-256 calls on the same bytes.

Inputs are real mainnet data (block 21925176 from ``../shared/vectors/ethereum``): its
``proof.json`` account proof has exactly 8 nodes (6 full branches, a 10-child branch and
the leaf), so it is the "8-node account proof" measured. Reaching depth 8 with random
accounts would need a trie of about 16**7 accounts, which the builder is not meant for.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Row, rate

from relay.verify.hashing import KECCAK256
from relay.verify.merkle import mpt

TITLE = "Ethereum MPT proofs (EIP-1186) and receipts trie, one core"

_VECTORS = Path(
    os.environ.get("RELAY_VECTORS", Path(__file__).resolve().parents[2] / "shared" / "vectors")
)
_BLOCK = _VECTORS / "ethereum" / "mainnet-block-21925176"


def _h(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def _answer(doc: dict[str, Any]) -> mpt.AccountProof:
    return mpt.AccountProof(
        address=_h(doc["address"]),
        nonce=int(doc["nonce"], 16),
        balance=int(doc["balance"], 16),
        storage_hash=_h(doc["storageHash"]),
        code_hash=_h(doc["codeHash"]),
        account_proof=tuple(_h(n) for n in doc["accountProof"]),
        storage_proofs=tuple(
            mpt.StorageProof(
                slot=_h(s["key"]).rjust(32, b"\0"),
                value=int(s["value"], 16),
                proof=tuple(_h(n) for n in s["proof"]),
            )
            for s in doc["storageProof"]
        ),
    )


def _receipt(doc: dict[str, Any]) -> mpt.Receipt:
    return mpt.Receipt(
        tx_type=int(doc.get("type", "0x0"), 16),
        status=int(doc["status"], 16),
        post_state=None,
        cumulative_gas_used=int(doc["cumulativeGasUsed"], 16),
        logs_bloom=_h(doc["logsBloom"]),
        logs=tuple(
            mpt.Log(_h(log["address"]), tuple(_h(t) for t in log["topics"]), _h(log["data"]))
            for log in doc["logs"]
        ),
    )


def _floor(chunks: list[bytes]) -> float:
    keccak = KECCAK256.hash

    def raw() -> None:
        for c in chunks:
            keccak(c)

    return rate(raw)


def rows() -> list[Row]:
    if not _BLOCK.is_dir():
        print(f"proofs_mpt: {_BLOCK} is absent; no mainnet data to measure", file=sys.stderr)
        return []
    block = json.loads((_BLOCK / "block.json").read_text())
    state_root = _h(block["stateRoot"])
    answer = _answer(json.loads((_BLOCK / "proof.json").read_text()))
    nodes = list(answer.account_proof)
    assert len(nodes) == 8, len(nodes)
    out: list[Row] = []

    def account() -> None:
        mpt.verify_account(state_root=state_root, address=answer.address, proof=nodes)

    # Floor: the 8 node hashes plus the address hash that makes the key.
    out.append(
        Row(
            "8-node account proof (mainnet proof.json): verify_account",
            rate(account),
            _floor([answer.address, *nodes]),
            ">= 5,000/s (trie pkg ~3,900/s)",
        )
    )

    storage_nodes = [n for sp in answer.storage_proofs for n in sp.proof]
    slots = [sp.slot for sp in answer.storage_proofs]

    def full() -> None:
        mpt.verify_get_proof(state_root=state_root, answer=answer)

    out.append(
        Row(
            f"eth_getProof answer, account + {len(slots)} slot: verify_get_proof",
            rate(full),
            _floor([answer.address, *nodes, *slots, *storage_nodes]),
        )
    )

    receipts = [_receipt(r) for r in json.loads((_BLOCK / "receipts.json").read_text())]
    receipts_root = _h(block["receiptsRoot"])
    encoded = [mpt.encode_receipt(r) for r in receipts]
    trie = mpt.verify_receipts_root(receipts_root=receipts_root, receipts=encoded)
    hashed = list(trie.nodes.values())

    def rebuild() -> None:
        mpt.verify_receipts_root(receipts_root=receipts_root, receipts=encoded)

    def encode_rebuild() -> None:
        mpt.verify_receipts_root(
            receipts_root=receipts_root, receipts=[mpt.encode_receipt(r) for r in receipts]
        )

    floor = _floor(hashed)
    name = f"receiptsRoot rebuild, block 21925176 ({len(receipts)} receipts)"
    out.append(Row(name + ", from encoded receipts", rate(rebuild), floor))
    out.append(Row(name + ", encoding included", rate(encode_rebuild), floor))
    return out
