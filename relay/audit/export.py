"""``relay audit export`` and ``relay audit verify``: a whole audit log in one file, and its
end-to-end check (issue 7).

Export format v2 (what ``relay audit export`` writes), JSON Lines: one JSON object per line,
so a log of millions of entries is written and checked a line at a time, never held whole:

1. ``{"format": "relay.judicial/audit-export/v2", "origin", "relay_key": {...}}``;
2. one ``{"checkpoint": {"size", "note"}}`` per signed checkpoint (the note as text);
3. one ``{"index", "entry" (base64 of the canonical JSON entry), "leaf_hash" (hex)}`` per
   leaf, in index order;
4. ``{"end": {"leaves": n, "checkpoints": k}}``: a file cut short lacks it and is refused.

Lines are at most :data:`MAX_LINE_BYTES`. Format v1 (one JSON object, ``format`` =
``relay.judicial/audit-export/v1``, ``origin``, ``relay_key``, ``leaves`` and
``checkpoints`` lists of the same objects; at most :data:`MAX_EXPORT_BYTES`) is still
checked.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
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
EXPORT_FORMAT_V2 = "relay.judicial/audit-export/v2"
MAX_LINE_BYTES = 64 * 1024  # an entry is at most 16 KiB, 22 KiB in base64
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
        **_head(relay_key, EXPORT_FORMAT),
        "leaves": [_leaf_json(leaf) for leaf in leaves],
        "checkpoints": [_checkpoint_json(c) for c in checkpoints],
    }


def _head(relay_key: RelayKey, export_format: str) -> dict[str, Any]:
    return {
        "format": export_format,
        "origin": audit_origin(relay_key.key_id),
        "relay_key": {
            "key_id": relay_key.key_id,
            "algorithm": "ed25519" if relay_key.algorithm == ED25519_ALGORITHM else "other",
            "public_key": base64.b64encode(relay_key.public_key).decode(),
        },
    }


def _leaf_json(leaf: AuditLeafRecord) -> dict[str, Any]:
    return {
        "index": leaf.index,
        "entry": base64.b64encode(leaf.entry).decode(),
        "leaf_hash": leaf.leaf_hash.hex(),
    }


def _checkpoint_json(c: AuditCheckpointRecord) -> dict[str, Any]:
    return {"size": c.size, "note": c.note.decode("utf-8")}


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class ExportWriter:
    """Writes a v2 export to ``out`` (a binary file) a line at a time: :meth:`start` with
    the checkpoints, :meth:`leaves` for each chunk of leaves read (any number of chunks),
    :meth:`finish` for the end line."""

    def __init__(self, out: BinaryIO, *, relay_key: RelayKey) -> None:
        self._out = out
        self._relay_key = relay_key
        self.leaf_count = 0
        self.checkpoint_count = 0

    def start(self, checkpoints: Sequence[AuditCheckpointRecord]) -> None:
        self._out.write(_line(_head(self._relay_key, EXPORT_FORMAT_V2)))
        for c in checkpoints:
            self._out.write(_line({"checkpoint": _checkpoint_json(c)}))
        self.checkpoint_count = len(checkpoints)

    def leaves(self, leaves: Sequence[AuditLeafRecord]) -> None:
        self._out.write(b"".join(_line(_leaf_json(leaf)) for leaf in leaves))
        self.leaf_count += len(leaves)

    def finish(self) -> None:
        end = {"leaves": self.leaf_count, "checkpoints": self.checkpoint_count}
        self._out.write(_line({"end": end}))


async def export_store(store: Any, *, relay_key: RelayKey) -> dict[str, Any]:
    """The export document of the log in ``store`` (a relay Store; SQLite or the
    PostgreSQL database relay replicas share, while they run)."""
    # Checkpoints first: the rows read after them include every row they cover, however
    # many replicas append and sign meanwhile.
    checkpoints = await store.audit_checkpoints()
    leaves = await store.audit_leaves()
    return build_export(relay_key=relay_key, leaves=leaves, checkpoints=checkpoints)


async def write_store_export(store: Any, writer: ExportWriter, *, chunk: int = 10_000) -> None:
    """Stream the log in ``store`` to ``writer``, ``chunk`` rows per read."""
    writer.start(await store.audit_checkpoints())  # first: later rows include what they cover
    while True:
        rows = await store.audit_leaves(start=writer.leaf_count, limit=chunk)
        writer.leaves(rows)
        if len(rows) < chunk:
            break
    writer.finish()


def write_sqlite_export(path: Path, writer: ExportWriter, *, chunk: int = 10_000) -> None:
    """Stream the log of a relay SQLite database to ``writer``, read-only (as
    :func:`read_sqlite`), ``chunk`` rows at a time."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        with conn:  # one read transaction: checkpoints and rows from the same snapshot
            writer.start(_sqlite_checkpoints(conn))
            cursor = conn.execute(
                "SELECT idx, entry, leaf_hash, court, at_ns FROM audit_leaves ORDER BY idx"
            )
            while rows := cursor.fetchmany(chunk):
                writer.leaves([_sqlite_leaf(r) for r in rows])
        writer.finish()
    finally:
        conn.close()


def _sqlite_checkpoints(conn: sqlite3.Connection) -> list[AuditCheckpointRecord]:
    return [
        AuditCheckpointRecord(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]))
        for r in conn.execute("SELECT size, root, note, at_ns FROM audit_checkpoints ORDER BY size")
    ]


def _sqlite_leaf(r: Any) -> AuditLeafRecord:
    return AuditLeafRecord(int(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]), int(r[4]))


def read_sqlite(path: Path) -> tuple[list[AuditLeafRecord], list[AuditCheckpointRecord]]:
    """The audit rows of a relay SQLite database, read-only (works while the relay runs:
    WAL lets a reader see the last committed state without taking the relay's lock)."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        # Checkpoints first: the rows read after them include every row they cover.
        checkpoints = _sqlite_checkpoints(conn)
        leaves = [
            _sqlite_leaf(r)
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


def _parse_key(key: object) -> RelayKey:
    if not isinstance(key, dict):
        raise MalformedInputError("relay_key must be an object")
    return RelayKey(
        key_id=_str(key, "key_id", "relay_key"),
        algorithm=ED25519_ALGORITHM if key.get("algorithm") == "ed25519" else -1,
        public_key=_b64(_str(key, "public_key", "relay_key"), "relay_key.public_key"),
    )


def _parse_leaf(raw: object, where: str) -> AuditLeafRecord:
    if not isinstance(raw, dict):
        raise MalformedInputError(f"{where} must be an object")
    try:
        leaf_hash = bytes.fromhex(_str(raw, "leaf_hash", where))
    except ValueError:
        raise MalformedInputError(f"{where}.leaf_hash is not hex") from None
    return AuditLeafRecord(
        index=_int(raw.get("index"), f"{where}.index", MAX_LEAVES * 2),
        entry=_b64(_str(raw, "entry", where), f"{where}.entry"),
        leaf_hash=leaf_hash,
        court="",
        at_ns=0,
    )


def _parse_checkpoint(raw: object, where: str) -> AuditCheckpointRecord:
    if not isinstance(raw, dict):
        raise MalformedInputError(f"{where} must be an object")
    note = _str(raw, "note", where).encode("utf-8")
    size = _int(raw.get("size"), f"{where}.size", MAX_LEAVES * 2)
    return AuditCheckpointRecord(size=size, root=b"", note=note, at_ns=0)


def parse_export(
    data: bytes,
) -> tuple[RelayKey, list[AuditLeafRecord], list[AuditCheckpointRecord]]:
    """Decode a v1 export document (structure only). Raises LimitExceededError /
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
        raise MalformedInputError(
            f"not an audit export (format must be {EXPORT_FORMAT_V2} or {EXPORT_FORMAT})"
        )
    relay_key = _parse_key(doc.get("relay_key"))
    raw_leaves = doc.get("leaves")
    raw_checkpoints = doc.get("checkpoints")
    if not isinstance(raw_leaves, list) or not isinstance(raw_checkpoints, list):
        raise MalformedInputError("leaves and checkpoints must be lists")
    if len(raw_leaves) > MAX_LEAVES or len(raw_checkpoints) > MAX_CHECKPOINTS:
        raise LimitExceededError("audit export has too many leaves or checkpoints")
    leaves = [_parse_leaf(raw, f"leaves[{i}]") for i, raw in enumerate(raw_leaves)]
    checkpoints = [
        _parse_checkpoint(raw, f"checkpoints[{i}]") for i, raw in enumerate(raw_checkpoints)
    ]
    return relay_key, leaves, checkpoints


# ------------------------------------------------------------------------------ verify


class _Checker:
    """The checks of :func:`verify_export` fed a leaf at a time: the signed checkpoints
    first (:meth:`checkpoints`), then the leaves in order (:meth:`leaf`; each checkpoint's
    root and its consistency with the previous one are checked as soon as the leaves it
    covers are in), then :meth:`finish`. Holds 32 bytes a leaf (a MerkleTree), never the
    entries."""

    # Per-checkpoint report lines up to this many checkpoints; above, one summary line.
    LINES = 20

    def __init__(self, relay_key: RelayKey, report: ExportReport) -> None:
        self._key = relay_key
        self._report = report
        self._tree = MerkleTree(TREE_HASHER)
        self._signed: list[tuple[int, bytes]] = []  # (size, root), ascending
        self._next = 0  # the first of _signed not yet checked against the leaves
        self._previous: tuple[int, bytes] | None = None
        self._checkpoint_lines: list[str] = []

    def checkpoints(self, checkpoints: Sequence[AuditCheckpointRecord]) -> None:
        for c in sorted(checkpoints, key=lambda c: c.size):
            try:
                parsed = open_checkpoint(c.note, relay_key=self._key)
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
            self._signed.append((parsed.size, parsed.root_hash))
        self._report.checkpoints = len(self._signed)
        self._reached()  # a checkpoint of size 0

    def leaf(self, leaf: AuditLeafRecord) -> None:
        i = len(self._tree)
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
        self._tree.append(calculated)
        self._reached()

    def _reached(self) -> None:
        """Check every checkpoint the leaves read so far now cover."""
        n = len(self._tree)
        while self._next < len(self._signed) and self._signed[self._next][0] <= n:
            size, signed_root = self._signed[self._next]
            self._next += 1
            root = self._tree.root(size)
            if root != signed_root:
                raise AuditCheckFailed(
                    f"checkpoint {size}: the entries' root {root.hex()} is not the signed "
                    f"root {signed_root.hex()}: rows were edited",
                    check="checkpoint root",
                    size=size,
                )
            line = f"ok    checkpoint {size}: signed by {self._key.key_id}, root matches"
            previous = self._previous
            if previous is not None and 0 < previous[0] < size:
                proof = self._tree.consistency_proof(previous[0], size)
                try:
                    verify_consistency(
                        hasher=TREE_HASHER,
                        size1=previous[0],
                        size2=size,
                        proof=proof,
                        root1=previous[1],
                        root2=signed_root,
                    )
                except VerificationError as e:
                    raise AuditCheckFailed(
                        f"checkpoint {size} is not consistent with checkpoint "
                        f"{previous[0]} ({e.message})",
                        check="consistency",
                        size=size,
                    ) from e
                line += f", consistent with {previous[0]}"
            if len(self._signed) <= self.LINES:
                self._checkpoint_lines.append(line)
            self._previous = (size, signed_root)

    def finish(self) -> ExportReport:
        n = len(self._tree)
        if self._next < len(self._signed):
            size = self._signed[self._next][0]
            raise AuditCheckFailed(
                f"checkpoint {size} covers {size} entries but the log has {n}: rows were deleted",
                check="checkpoint coverage",
                size=size,
            )
        report = self._report
        report.leaves = n
        report.lines.append(f"ok    leaf hashes: {n} entries, numbered without gaps")
        if len(self._signed) <= self.LINES:
            report.lines.extend(self._checkpoint_lines)
        else:
            first, last = self._signed[0][0], self._signed[-1][0]
            report.lines.append(
                f"ok    {len(self._signed)} checkpoints ({first} to {last}): each signed by "
                f"{self._key.key_id}, its root matches, consistent with the one before"
            )
        unanchored = n - (self._previous[0] if self._previous else 0)
        if unanchored:
            report.lines.append(
                f"note  {unanchored} newest entries are not covered by a checkpoint yet"
            )
        return report


def _checker(
    exported: RelayKey, relay_key: RelayKey | Callable[[RelayKey], RelayKey] | None
) -> _Checker:
    report = ExportReport()
    if relay_key is None:
        key = exported
        report.key_source = "the export itself (no anchors file: internal consistency only)"
    else:
        key = relay_key(exported) if callable(relay_key) else relay_key
        report.key_source = "the anchors file"
    return _Checker(key, report)


def _json_line(line: bytes, where: str) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise LimitExceededError(
            f"audit export {where} is longer than {MAX_LINE_BYTES} bytes",
            length=len(line),
            limit=MAX_LINE_BYTES,
        )
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedInputError(f"audit export {where} is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise MalformedInputError(f"audit export {where} is not a JSON object")
    return value


def is_export_v2(first_line: bytes) -> bool:
    """Whether ``first_line`` (the file's first line) is a v2 export's header."""
    try:
        head = json.loads(first_line[: MAX_LINE_BYTES + 1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(head, dict) and head.get("format") == EXPORT_FORMAT_V2


def verify_export_lines(
    lines: Iterable[bytes],
    *,
    relay_key: RelayKey | Callable[[RelayKey], RelayKey] | None = None,
) -> ExportReport:
    """Check a v2 export read a line at a time (lines as read, each at most
    :data:`MAX_LINE_BYTES`; see the module docstring). ``relay_key`` is the key to check
    the checkpoints with, or a function from the key the export names to it (an anchors
    file lookup), or None for the export's own key. Raises AuditCheckFailed naming the
    first failed check, MalformedInputError / LimitExceededError for an unreadable or
    truncated export."""
    it = iter(lines)
    head = _json_line(next(it, b""), "line 1")
    if head.get("format") != EXPORT_FORMAT_V2:
        raise MalformedInputError(f"not an audit export (format must be {EXPORT_FORMAT_V2})")
    checker = _checker(_parse_key(head.get("relay_key")), relay_key)
    checkpoints: list[AuditCheckpointRecord] = []
    number = 1
    line: dict[str, Any] | None = None
    for raw in it:
        number += 1
        line = _json_line(raw, f"line {number}")
        if "checkpoint" not in line:
            break
        if len(checkpoints) >= MAX_CHECKPOINTS:
            raise LimitExceededError("audit export has too many checkpoints")
        checkpoints.append(_parse_checkpoint(line["checkpoint"], f"line {number}.checkpoint"))
        line = None
    checker.checkpoints(checkpoints)
    while line is not None and "end" not in line:
        if number - 1 - len(checkpoints) > MAX_LEAVES:
            raise LimitExceededError("audit export has too many leaves")
        checker.leaf(_parse_leaf(line, f"line {number}"))
        following = next(it, None)
        if following is None:
            line = None
        else:
            number += 1
            line = _json_line(following, f"line {number}")
    if line is None:
        raise MalformedInputError(
            f"audit export ends at line {number} without its end line: the file was cut"
        )
    end = line["end"]
    report = checker.finish()
    if (
        not isinstance(end, dict)
        or end.get("leaves") != report.leaves
        or end.get("checkpoints") != len(checkpoints)
    ):
        raise MalformedInputError(
            f"audit export line {number}: the end line does not count "
            f"{report.leaves} leaves and {len(checkpoints)} checkpoints"
        )
    if next(it, None) is not None:
        raise MalformedInputError(f"audit export has lines after its end line {number}")
    return report


def verify_export(
    data: bytes, *, relay_key: RelayKey | Callable[[RelayKey], RelayKey] | None = None
) -> ExportReport:
    """Check an export held in memory, v2 or v1 (module docstring). Raises
    AuditCheckFailed naming the first failed check, MalformedInputError /
    LimitExceededError for an unreadable export."""
    if is_export_v2(data[: MAX_LINE_BYTES + 1].split(b"\n", 1)[0]):
        return verify_export_lines(data.splitlines(keepends=True), relay_key=relay_key)
    exported_key, leaves, checkpoints = parse_export(data)
    checker = _checker(exported_key, relay_key)
    checker.checkpoints(checkpoints)
    for leaf in leaves:
        checker.leaf(leaf)
    return checker.finish()


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


def _file_lines(f: BinaryIO) -> Iterator[bytes]:
    """The lines of ``f``, none read past MAX_LINE_BYTES + 1 bytes (a longer one is then
    refused by the checker, not held)."""
    while line := f.readline(MAX_LINE_BYTES + 1):
        yield line


def cmd_verify(args: argparse.Namespace) -> int:
    """relay audit verify --export FILE [--anchors FILE]."""
    from relay.offline import InputFileError

    key: Callable[[RelayKey], RelayKey] | None = None
    if args.anchors:
        anchors = args.anchors

        def key(exported: RelayKey) -> RelayKey:
            return _relay_key_from_anchors(anchors, exported)

    try:
        with open(args.export, "rb") as f:
            first = f.readline(MAX_LINE_BYTES + 1)
            f.seek(0)
            if is_export_v2(first):
                report = verify_export_lines(_file_lines(f), relay_key=key)
            else:  # v1: one JSON document, read whole (at most MAX_EXPORT_BYTES)
                data = f.read(MAX_EXPORT_BYTES + 1)
                report = verify_export(data, relay_key=key)
    except OSError as e:
        print(f"relay: error: cannot read {args.export}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
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
    from relay.store import StoreError

    try:
        config = load_config(args.config)
        relay_key = make_signer(load_signing_key(config)).relay_key()
    except ConfigError as e:
        print(f"relay: error: {config_problems(args.config, e.problems)}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("wb") as f:
            writer = ExportWriter(f, relay_key=relay_key)
            if config.store.backend == "postgres":  # issue 9: the log every replica appends to
                import asyncio

                asyncio.run(_export_postgres(writer))
            elif config.store.path is None:  # pragma: no cover - the config requires it
                raise ConfigError(["store.path is not set"])
            else:
                write_sqlite_export(config.store.path, writer)
        partial.replace(out)  # a reader never sees half an export under the final name
    except OSError as e:
        partial.unlink(missing_ok=True)
        print(f"relay: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, StoreError, sqlite3.Error) as e:
        partial.unlink(missing_ok=True)
        problems = "; ".join(e.problems) if isinstance(e, ConfigError) else str(e)
        print(f"relay: error: cannot read the audit log: {problems}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"wrote {writer.leaf_count} audit entries and {writer.checkpoint_count} checkpoint(s) "
        f"to {out}"
    )
    return EXIT_OK


async def _export_postgres(writer: ExportWriter) -> None:
    """Stream the log of the PostgreSQL store named by ``RELAY_STORE_DSN`` to ``writer``
    (raises ConfigError when it is unset, StoreError when it cannot be read)."""
    from relay.config import store_dsn
    from relay.store.postgres import PostgresStore

    store = await PostgresStore.open(store_dsn(), pool_size=1)
    try:
        await write_store_export(store, writer)
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
        "relays may be running) and write it as a JSON Lines export (format v2), a row at a "
        "time.",
    )
    export.add_argument("--config", required=True, help="relay configuration file")
    export.add_argument("--out", required=True, help="output file")
    export.set_defaults(func=cmd_export)
