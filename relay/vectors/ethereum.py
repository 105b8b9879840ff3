"""Runners for Ethereum vectors: ``eth_getProof`` answers (EIP-1186) checked against a block's
``stateRoot``, and a block's receipts rebuilt into its ``receiptsRoot``.

This module owns the JSON side (JSON-RPC envelopes, hex strings); the verifiers in
:mod:`relay.verify.merkle.mpt` see only bytes and integers.

Accepted layouts (a path may be a file or a folder, walked recursively):

- ``eth-getproof`` case file: ``{"stateRoot": "0x..", "proof": <eth_getProof result or
  JSON-RPC response>, "want_err": false, "desc": ".."}`` (no ``want_err`` means "must verify");
- ``eth-getproof`` block folder: every ``*proof*.json`` (an ``eth_getProof`` result, bare or
  in a JSON-RPC response) is checked against the ``stateRoot`` of ``block.json`` beside it;
- ``eth-receipts`` block folder: ``receipts.json`` (``eth_getBlockReceipts``) against the
  ``receiptsRoot`` of ``block.json`` beside it, or a case file ``{"receiptsRoot": "0x..",
  "receipts": [...], "want_err": false}``. One verdict for the root, one per receipt.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relay.vectors import CaseResult, VectorFileError, read_json, verdict, walk
from relay.verify.merkle import mpt

_HEX = re.compile(r"0x[0-9a-fA-F]*")


def _unwrap(doc: Any, file: Path) -> Any:
    """The ``result`` of a JSON-RPC response, or ``doc`` itself if it is a bare result."""
    if isinstance(doc, dict) and "jsonrpc" in doc:
        if "error" in doc:
            raise VectorFileError(f"{file}: JSON-RPC error response: {doc['error']!r}")
        if "result" not in doc:
            raise VectorFileError(f"{file}: JSON-RPC response without a result")
        return doc["result"]
    return doc


def _hexstr(value: Any, file: Path, field: str) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise VectorFileError(f"{file}: field {field!r} must be a 0x-prefixed hex string")
    return value[2:]


def _data(value: Any, file: Path, field: str) -> bytes:
    """Unformatted data: an even number of hex digits."""
    digits = _hexstr(value, file, field)
    if len(digits) % 2:
        raise VectorFileError(f"{file}: field {field!r} has an odd number of hex digits")
    return bytes.fromhex(digits)


def _quantity(value: Any, file: Path, field: str) -> int:
    """A quantity. Leading zeros are tolerated: they do not change the number."""
    digits = _hexstr(value, file, field)
    if not digits:
        raise VectorFileError(f"{file}: field {field!r} is an empty quantity")
    return int(digits, 16)


def _slot(value: Any, file: Path) -> bytes:
    """A storage key as requested: clients echo it as given, often without zero padding."""
    digits = _hexstr(value, file, "storageProof.key")
    if len(digits) > 64:
        # Leave it over-long: the verifier rejects it as a malformed slot.
        return bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
    return int(digits or "0", 16).to_bytes(32, "big")


def _field(doc: dict[str, Any], name: str, file: Path) -> Any:
    if name not in doc:
        raise VectorFileError(f"{file}: missing field {name!r}")
    return doc[name]


def _nodes(value: Any, file: Path, field: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise VectorFileError(f"{file}: field {field!r} must be a list of hex strings")
    return tuple(_data(v, file, field) for v in value)


def parse_get_proof(doc: Any, file: Path) -> mpt.AccountProof:
    """Turn an ``eth_getProof`` result (bare or JSON-RPC) into :class:`mpt.AccountProof`."""
    doc = _unwrap(doc, file)
    if not isinstance(doc, dict):
        raise VectorFileError(f"{file}: an eth_getProof result must be an object")
    storage = _field(doc, "storageProof", file)
    if not isinstance(storage, list):
        raise VectorFileError(f"{file}: field 'storageProof' must be a list")
    proofs = []
    for entry in storage:
        if not isinstance(entry, dict):
            raise VectorFileError(f"{file}: storageProof entries must be objects")
        proofs.append(
            mpt.StorageProof(
                slot=_slot(_field(entry, "key", file), file),
                value=_quantity(_field(entry, "value", file), file, "storageProof.value"),
                proof=_nodes(_field(entry, "proof", file), file, "storageProof.proof"),
            )
        )
    return mpt.AccountProof(
        address=_data(_field(doc, "address", file), file, "address"),
        nonce=_quantity(_field(doc, "nonce", file), file, "nonce"),
        balance=_quantity(_field(doc, "balance", file), file, "balance"),
        storage_hash=_data(_field(doc, "storageHash", file), file, "storageHash"),
        code_hash=_data(_field(doc, "codeHash", file), file, "codeHash"),
        account_proof=_nodes(_field(doc, "accountProof", file), file, "accountProof"),
        storage_proofs=tuple(proofs),
    )


def _expected(doc: dict[str, Any], file: Path) -> bool:
    want_err = doc.get("want_err", doc.get("wantErr", False))
    if not isinstance(want_err, bool):
        raise VectorFileError(f"{file}: 'want_err' must be true or false")
    return not want_err


def _block(folder: Path, cache: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    if folder not in cache:
        block = _unwrap(read_json(folder / "block.json"), folder / "block.json")
        if not isinstance(block, dict):
            raise VectorFileError(f"{folder / 'block.json'}: a block must be an object")
        cache[folder] = block
    return cache[folder]


def _is_get_proof(doc: Any) -> bool:
    doc = doc.get("result", doc) if isinstance(doc, dict) and "jsonrpc" in doc else doc
    return isinstance(doc, dict) and "accountProof" in doc


def _get_proof_case(
    file: Path, name: str, expected: bool, state_root: bytes, doc: Any
) -> CaseResult:
    answer = parse_get_proof(doc, file)
    slots = len(answer.storage_proofs)
    case = f"{name}: account 0x{answer.address.hex()} and {slots} storage slot(s)"
    return verdict(file, case, expected, mpt.verify_get_proof, state_root=state_root, answer=answer)


def run_getproof(path: Path) -> Iterator[CaseResult]:
    blocks: dict[Path, dict[str, Any]] = {}
    for file in walk(path, lambda p: p.suffix == ".json"):
        doc = read_json(file)
        if isinstance(doc, dict) and "stateRoot" in doc and "proof" in doc:
            state_root = _data(doc["stateRoot"], file, "stateRoot")
            name = str(doc.get("desc", file.stem))
            yield _get_proof_case(file, name, _expected(doc, file), state_root, doc["proof"])
        elif "proof" in file.name:
            if not _is_get_proof(doc):
                raise VectorFileError(f"{file}: not an eth_getProof answer or case file")
            block = _block(file.parent, blocks)
            state_root = _data(_field(block, "stateRoot", file), file, "stateRoot")
            yield _get_proof_case(file, file.stem, True, state_root, doc)


def parse_receipt(doc: Any, file: Path) -> mpt.Receipt:
    """Turn one JSON-RPC receipt object into :class:`mpt.Receipt`."""
    if not isinstance(doc, dict):
        raise VectorFileError(f"{file}: a receipt must be an object")
    logs = _field(doc, "logs", file)
    if not isinstance(logs, list):
        raise VectorFileError(f"{file}: field 'logs' must be a list")
    parsed = []
    for log in logs:
        if not isinstance(log, dict) or not isinstance(log.get("topics"), list):
            raise VectorFileError(f"{file}: a log must be an object with a 'topics' list")
        parsed.append(
            mpt.Log(
                address=_data(_field(log, "address", file), file, "log.address"),
                topics=tuple(_data(t, file, "log.topics") for t in log["topics"]),
                data=_data(_field(log, "data", file), file, "log.data"),
            )
        )
    status = doc.get("status")
    root = doc.get("root")
    return mpt.Receipt(
        tx_type=_quantity(doc.get("type", "0x0"), file, "type"),
        status=None if status is None else _quantity(status, file, "status"),
        post_state=None if root is None else _data(root, file, "root"),
        cumulative_gas_used=_quantity(
            _field(doc, "cumulativeGasUsed", file), file, "cumulativeGasUsed"
        ),
        logs_bloom=_data(_field(doc, "logsBloom", file), file, "logsBloom"),
        logs=tuple(parsed),
    )


def _receipts_cases(
    file: Path, expected: bool, receipts_root: bytes, raw: Any, block_hash: str | None
) -> Iterator[CaseResult]:
    raw = _unwrap(raw, file)
    if not isinstance(raw, list):
        raise VectorFileError(f"{file}: receipts must be a list")
    receipts = []
    for i, doc in enumerate(raw):
        if not isinstance(doc, dict):
            raise VectorFileError(f"{file}: a receipt must be an object")
        index = doc.get("transactionIndex")
        if index is not None and _quantity(index, file, "transactionIndex") != i:
            raise VectorFileError(f"{file}: receipt {i} is out of transaction order")
        claimed_block = doc.get("blockHash")
        if block_hash and claimed_block and str(claimed_block).lower() != block_hash.lower():
            raise VectorFileError(f"{file}: receipt {i} belongs to another block")
        receipts.append(parse_receipt(doc, file))
    # Encoding is part of what is checked: a receipt the encoder refuses is a rejection.
    encoded: list[bytes] = []
    yield verdict(
        file,
        f"receiptsRoot over {len(receipts)} receipts",
        expected,
        _encode_and_check_root,
        receipts=receipts,
        receipts_root=receipts_root,
        out=encoded,
    )
    if len(encoded) != len(receipts):
        return
    trie = mpt.build_receipts_trie(encoded)
    for i, one in enumerate(encoded):
        tx = raw[i].get("transactionHash", "")
        yield verdict(
            file,
            f"receipt {i} {tx}".rstrip(),
            expected,
            mpt.verify_receipt,
            receipts_root=receipts_root,
            index=i,
            proof=trie.prove(mpt.receipt_key(i)),
            receipt=one,
        )


def _encode_and_check_root(
    *, receipts: list[mpt.Receipt], receipts_root: bytes, out: list[bytes]
) -> None:
    out.extend(mpt.encode_receipt(r) for r in receipts)
    mpt.verify_receipts_root(receipts_root=receipts_root, receipts=out)


def run_receipts(path: Path) -> Iterator[CaseResult]:
    blocks: dict[Path, dict[str, Any]] = {}
    for file in walk(path, lambda p: p.suffix == ".json"):
        if file.name == "receipts.json":
            block = _block(file.parent, blocks)
            root = _data(_field(block, "receiptsRoot", file), file, "receiptsRoot")
            block_hash = block.get("hash")
            yield from _receipts_cases(
                file,
                True,
                root,
                read_json(file),
                block_hash if isinstance(block_hash, str) else None,
            )
            continue
        doc = read_json(file)
        if isinstance(doc, dict) and "receiptsRoot" in doc and "receipts" in doc:
            root = _data(doc["receiptsRoot"], file, "receiptsRoot")
            yield from _receipts_cases(file, _expected(doc, file), root, doc["receipts"], None)
