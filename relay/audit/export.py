"""``relay audit export`` and ``relay audit verify``: a whole audit log in one JSON file, and
its end-to-end check (issue 7).

Export format (JSON object, ``format`` = ``relay.judicial/audit-export/v1``): ``origin``;
``relay_key`` (``key_id``, ``algorithm`` ``"ed25519"``, base64 ``public_key``); ``leaves``,
each ``{"index", "entry" (base64 of the canonical JSON entry), "leaf_hash" (hex)}``;
``checkpoints``, each ``{"size", "note"}`` (the signed note as text).

The check (:func:`verify_export`), in order, stopping at the first failure: leaves are
numbered 0..n-1 without a gap; each entry is a canonical audit entry and hashes (RFC 6962
leaf hash) to its stored leaf hash; each checkpoint is signed by the relay key (from the
anchors file when given, else the one in the export, which then proves only internal
consistency), names this log's origin, covers no more leaves than the export holds, and its
root is the root of that many leaves; each checkpoint's RFC 6962 consistency proof from the
previous one verifies. A deleted row shows as a gap or a checkpoint covering missing rows;
an edited row as a leaf-hash or root mismatch.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from relay.audit.checkpoint import ED25519_ALGORITHM, TREE_HASHER, audit_origin, open_checkpoint
from relay.audit.entry import decode_entry
from relay.store.base import AuditCheckpointRecord, AuditLeafRecord
from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    VerificationError,
)
from relay.verify.evidence import RelayKey
from relay.verify.merkle.rfc6962 import MerkleTree, verify_consistency

EXPORT_FORMAT = "relay.judicial/audit-export/v1"
MAX_EXPORT_BYTES = 1 << 30
MAX_LEAVES = 10_000_000
MAX_CHECKPOINTS = 1_000_000
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class AuditCheckFailed(VerificationError):
    """One check of an audit export failed; ``check`` names it."""

    reason = "VERIFICATION_FAILED"

    def __init__(self, message: str, *, check: str, **context: object) -> None:
        self.check = check
        super().__init__(message, check=check, **context)


@dataclass
class ExportReport:
    """What :func:`verify_export` checked: one line per check, in order."""

    lines: list[str] = field(default_factory=list)
    leaves: int = 0
    checkpoints: int = 0
    key_source: str = ""


# ------------------------------------------------------------------------------ export


def build_export(
    *,
    relay_key: RelayKey,
    leaves: Sequence[AuditLeafRecord],
    checkpoints: Sequence[AuditCheckpointRecord],
) -> dict[str, Any]:
    """The export document of a log."""
    return {
        "format": EXPORT_FORMAT,
        "origin": audit_origin(relay_key.key_id),
        "relay_key": {
            "key_id": relay_key.key_id,
            "algorithm": "ed25519" if relay_key.algorithm == ED25519_ALGORITHM else "other",
            "public_key": base64.b64encode(relay_key.public_key).decode(),
        },
        "leaves": [
            {
                "index": leaf.index,
                "entry": base64.b64encode(leaf.entry).decode(),
                "leaf_hash": leaf.leaf_hash.hex(),
            }
            for leaf in leaves
        ],
        "checkpoints": [{"size": c.size, "note": c.note.decode("utf-8")} for c in checkpoints],
    }


async def export_store(store: Any, *, relay_key: RelayKey) -> dict[str, Any]:
    """The export document of the log in ``store`` (a relay Store; SQLite or the
    PostgreSQL database relay replicas share, while they run)."""
    # Checkpoints first: the rows read after them include every row they cover, however
    # many replicas append and sign meanwhile.
    checkpoints = await store.audit_checkpoints()
    leaves = await store.audit_leaves()
    return build_export(relay_key=relay_key, leaves=leaves, checkpoints=checkpoints)


def read_sqlite(path: Path) -> tuple[list[AuditLeafRecord], list[AuditCheckpointRecord]]:
    """The audit rows of a relay SQLite database, read-only (works while the relay runs:
    WAL lets a reader see the last committed state without taking the relay's lock)."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        # Checkpoints first: the rows read after them include every row they cover.
        checkpoints = [
            AuditCheckpointRecord(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]))
            for r in conn.execute(
                "SELECT size, root, note, at_ns FROM audit_checkpoints ORDER BY size"
            )
        ]
        leaves = [
            AuditLeafRecord(int(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]), int(r[4]))
            for r in conn.execute(
                "SELECT idx, entry, leaf_hash, court, at_ns FROM audit_leaves ORDER BY idx"
            )
        ]
    finally:
        conn.close()
    return leaves, checkpoints


# ------------------------------------------------------------------------------ verify


def _int(value: object, what: str, limit: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise MalformedInputError(f"{what} must be an integer from 0 to {limit}")
    return value


def _str(obj: dict[str, Any], name: str, what: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise MalformedInputError(f"{what}.{name} must be a string")
    return value


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedInputError(f"{what} is not base64") from None


def parse_export(
    data: bytes,
) -> tuple[RelayKey, list[AuditLeafRecord], list[AuditCheckpointRecord]]:
    """Decode an export document (structure only). Raises LimitExceededError /
    MalformedInputError."""
    if len(data) > MAX_EXPORT_BYTES:
        raise LimitExceededError(
            "audit export is too large", length=len(data), limit=MAX_EXPORT_BYTES
        )
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedInputError("audit export is not UTF-8 JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise MalformedInputError(f"not an audit export (format must be {EXPORT_FORMAT})")
    key = doc.get("relay_key")
    if not isinstance(key, dict):
        raise MalformedInputError("relay_key must be an object")
    relay_key = RelayKey(
        key_id=_str(key, "key_id", "relay_key"),
        algorithm=ED25519_ALGORITHM if key.get("algorithm") == "ed25519" else -1,
        public_key=_b64(_str(key, "public_key", "relay_key"), "relay_key.public_key"),
    )
    raw_leaves = doc.get("leaves")
    raw_checkpoints = doc.get("checkpoints")
    if not isinstance(raw_leaves, list) or not isinstance(raw_checkpoints, list):
        raise MalformedInputError("leaves and checkpoints must be lists")
    if len(raw_leaves) > MAX_LEAVES or len(raw_checkpoints) > MAX_CHECKPOINTS:
        raise LimitExceededError("audit export has too many leaves or checkpoints")
    leaves: list[AuditLeafRecord] = []
    for i, raw in enumerate(raw_leaves):
        if not isinstance(raw, dict):
            raise MalformedInputError(f"leaves[{i}] must be an object")
        try:
            leaf_hash = bytes.fromhex(_str(raw, "leaf_hash", f"leaves[{i}]"))
        except ValueError:
            raise MalformedInputError(f"leaves[{i}].leaf_hash is not hex") from None
        leaves.append(
            AuditLeafRecord(
                index=_int(raw.get("index"), f"leaves[{i}].index", MAX_LEAVES * 2),
                entry=_b64(_str(raw, "entry", f"leaves[{i}]"), f"leaves[{i}].entry"),
                leaf_hash=leaf_hash,
                court="",
                at_ns=0,
            )
        )
    checkpoints: list[AuditCheckpointRecord] = []
    for i, raw in enumerate(raw_checkpoints):
        if not isinstance(raw, dict):
            raise MalformedInputError(f"checkpoints[{i}] must be an object")
        note = _str(raw, "note", f"checkpoints[{i}]").encode("utf-8")
        size = _int(raw.get("size"), f"checkpoints[{i}].size", MAX_LEAVES * 2)
        checkpoints.append(AuditCheckpointRecord(size=size, root=b"", note=note, at_ns=0))
    return relay_key, leaves, checkpoints


def verify_export(data: bytes, *, relay_key: RelayKey | None = None) -> ExportReport:
    """Check an export end to end (module docstring). Raises AuditCheckFailed naming the
    first failed check, MalformedInputError / LimitExceededError for an unreadable export."""
    exported_key, leaves, checkpoints = parse_export(data)
    report = ExportReport(leaves=len(leaves), checkpoints=len(checkpoints))
    if relay_key is None:
        relay_key = exported_key
        report.key_source = "the export itself (no anchors file: internal consistency only)"
    else:
        report.key_source = "the anchors file"
    # Every checkpoint's root and consistency proof come from one tree over the leaves
    # (kept subtree roots): O(log n) each, not a rehash of the log per checkpoint.
    hashes = MerkleTree(TREE_HASHER)
    for i, leaf in enumerate(leaves):
        if leaf.index != i:
            raise AuditCheckFailed(
                f"leaf {i} is missing (next leaf is {leaf.index}): a row was deleted",
                check="leaf order",
                index=i,
            )
        try:
            decode_entry(leaf.entry)
        except VerificationError as e:
            raise AuditCheckFailed(
                f"leaf {i}: not a canonical audit entry ({e.message})", check="entry", index=i
            ) from e
        calculated = TREE_HASHER.hash_leaf(leaf.entry)
        if calculated != leaf.leaf_hash:
            raise AuditCheckFailed(
                f"leaf {i}: the entry hashes to {calculated.hex()}, the leaf hash is "
                f"{leaf.leaf_hash.hex()}: the row was edited",
                check="leaf hash",
                index=i,
            )
        hashes.append(calculated)
    report.lines.append(f"ok    leaf hashes: {len(hashes)} entries, numbered without gaps")
    previous: tuple[int, bytes] | None = None
    for c in sorted(checkpoints, key=lambda c: c.size):
        try:
            parsed = open_checkpoint(c.note, relay_key=relay_key)
        except VerificationError as e:
            raise AuditCheckFailed(
                f"checkpoint {c.size}: signature or format ({e.message})",
                check="checkpoint signature",
                size=c.size,
            ) from e
        if parsed.size != c.size:
            raise AuditCheckFailed(
                f"checkpoint listed as {c.size} says size {parsed.size}",
                check="checkpoint size",
                size=c.size,
            )
        if parsed.size > len(hashes):
            raise AuditCheckFailed(
                f"checkpoint {parsed.size} covers {parsed.size} entries but the log has "
                f"{len(hashes)}: rows were deleted",
                check="checkpoint coverage",
                size=parsed.size,
            )
        root = hashes.root(parsed.size)
        if root != parsed.root_hash:
            raise AuditCheckFailed(
                f"checkpoint {parsed.size}: the entries' root {root.hex()} is not the signed "
                f"root {parsed.root_hash.hex()}: rows were edited",
                check="checkpoint root",
                size=parsed.size,
            )
        line = f"ok    checkpoint {parsed.size}: signed by {relay_key.key_id}, root matches"
        if previous is not None and 0 < previous[0] < parsed.size:
            proof = hashes.consistency_proof(previous[0], parsed.size)
            try:
                verify_consistency(
                    hasher=TREE_HASHER,
                    size1=previous[0],
                    size2=parsed.size,
                    proof=proof,
                    root1=previous[1],
                    root2=parsed.root_hash,
                )
            except VerificationError as e:
                raise AuditCheckFailed(
                    f"checkpoint {parsed.size} is not consistent with checkpoint "
                    f"{previous[0]} ({e.message})",
                    check="consistency",
                    size=parsed.size,
                ) from e
            line += f", consistent with {previous[0]}"
        report.lines.append(line)
        previous = (parsed.size, parsed.root_hash)
    unanchored = len(hashes) - (previous[0] if previous else 0)
    if unanchored:
        report.lines.append(
            f"note  {unanchored} newest entries are not covered by a checkpoint yet"
        )
    return report


# ------------------------------------------------------------------------------ commands


def _relay_key_from_anchors(path: str, exported: RelayKey) -> RelayKey:
    from relay.offline import load_anchors_file

    anchors = load_anchors_file(path)
    key = anchors.relay_keys.get(exported.key_id)
    if key is None:
        # A failed check (exit 1), as `relay verify` reports an unknown relay key: the file
        # is usable, it just does not vouch for the key that signed these checkpoints.
        known = ", ".join(repr(k) for k in sorted(anchors.relay_keys)) or "none"
        raise AuditCheckFailed(
            f"the anchors file {path} has no relay key {exported.key_id!r}, the key the "
            f"export names (it holds: {known}); the checkpoints cannot be checked against a "
            "key this anchors file trusts",
            check="relay key",
            key_id=exported.key_id,
        )
    return key


def cmd_verify(args: argparse.Namespace) -> int:
    """relay audit verify --export FILE [--anchors FILE]."""
    from relay.offline import InputFileError

    try:
        data = Path(args.export).read_bytes()
    except OSError as e:
        print(f"relay: error: cannot read {args.export}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        key = None
        if args.anchors:
            exported, _, _ = parse_export(data)
            key = _relay_key_from_anchors(args.anchors, exported)
        report = verify_export(data, relay_key=key)
    except AuditCheckFailed as e:
        print(f"FAIL  {e.check}: {e.message}")
        return EXIT_INVALID
    except (VerificationError, InputFileError) as e:
        print(f"relay: error: {args.export}: {getattr(e, 'message', e)}", file=sys.stderr)
        return EXIT_USAGE
    print(f"relay key from {report.key_source}")
    for line in report.lines:
        print(line)
    print(f"audit log verified: {report.leaves} entries, {report.checkpoints} checkpoint(s)")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """relay audit export --config FILE --out FILE."""
    from relay.config import ConfigError, config_problems, load_config, load_signing_key
    from relay.service.app import make_signer

    try:
        config = load_config(args.config)
        relay_key = make_signer(load_signing_key(config)).relay_key()
    except ConfigError as e:
        print(f"relay: error: {config_problems(args.config, e.problems)}", file=sys.stderr)
        return EXIT_USAGE
    if config.store.backend == "postgres":  # issue 9: the log every replica appends to
        import asyncio

        from relay.store import StoreError

        try:
            doc = asyncio.run(_export_postgres(relay_key))
        except (ConfigError, StoreError) as e:
            problems = "; ".join(e.problems) if isinstance(e, ConfigError) else str(e)
            print(f"relay: error: cannot read the audit log: {problems}", file=sys.stderr)
            return EXIT_USAGE
        leaves_n, checkpoints_n = len(doc["leaves"]), len(doc["checkpoints"])
    else:
        if config.store.path is None:  # pragma: no cover - the config requires it
            print("relay: error: store.path is not set", file=sys.stderr)
            return EXIT_USAGE
        try:
            leaves, checkpoints = read_sqlite(config.store.path)
        except sqlite3.Error as e:
            print(
                f"relay: error: cannot read the audit log in {config.store.path}: {e}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        doc = build_export(relay_key=relay_key, leaves=leaves, checkpoints=checkpoints)
        leaves_n, checkpoints_n = len(leaves), len(checkpoints)
    out = Path(args.out)
    try:
        out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except OSError as e:
        print(f"relay: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {leaves_n} audit entries and {checkpoints_n} checkpoint(s) to {out}")
    return EXIT_OK


async def _export_postgres(relay_key: RelayKey) -> dict[str, Any]:
    """The export of the PostgreSQL store named by ``RELAY_STORE_DSN`` (raises ConfigError
    when it is unset, StoreError when it cannot be read)."""
    from relay.config import store_dsn
    from relay.store.postgres import PostgresStore

    store = await PostgresStore.open(store_dsn(), pool_size=1)
    try:
        return await export_store(store, relay_key=relay_key)
    finally:
        await store.close()


def add_commands(sub: Any) -> None:
    """Register ``relay audit verify`` and ``relay audit export``."""
    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    verify = asub.add_parser(
        "verify",
        help="check an audit log export end to end",
        description="Check every leaf hash, each signed checkpoint's signature and root, and "
        "the consistency between successive checkpoints. Exit 0 valid, 1 a check failed "
        "(named), 2 usage or unreadable input.",
    )
    verify.add_argument("--export", required=True, help="export file (relay audit export)")
    verify.add_argument("--anchors", help="anchors file holding the relay key (recommended)")
    verify.set_defaults(func=cmd_verify)
    export = asub.add_parser(
        "export",
        help="write the audit log of a relay database to a file",
        description="Read the audit log from the configured store (the SQLite file read-only, "
        "or the PostgreSQL database of RELAY_STORE_DSN that every replica appends to; the "
        "relays may be running) and write it as one JSON export.",
    )
    export.add_argument("--config", required=True, help="relay configuration file")
    export.add_argument("--out", required=True, help="output file")
    export.set_defaults(func=cmd_export)
