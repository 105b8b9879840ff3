"""Offline verification for people and programs: ``relay verify EVIDENCE... --anchors FILE``
and ``relay anchors export --config FILE --out anchors.yaml``, and the file-reading helpers
behind them (the checks themselves are the pure :mod:`relay.verify.offline` and
:mod:`relay.verify.anchors`).

``relay verify`` opens no network connection: it reads the evidence files and the anchors
file and nothing else. Exit codes: 0 every file valid, 1 any file invalid (its first failed
check is named), 2 usage errors or input that cannot be read (a missing file, a broken
anchors file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from relay.config import RelayConfig
    from relay.verify.anchors import AnchorSet
    from relay.verify.offline import FileReport

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2


class InputFileError(Exception):
    """An input file cannot be read or (anchors) cannot be used; the message names it."""


def _read(path: Path, *, limit: int, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputFileError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if len(data) > limit:
        raise InputFileError(f"{path}: {what} is larger than {limit} bytes")
    return data


def load_anchors_file(path: str | Path) -> AnchorSet:
    """Read and strictly check an anchors file (InputFileError naming the file and field)."""
    from relay.verify.anchors import MAX_ANCHORS_BYTES, parse_anchors
    from relay.verify.errors import VerificationError

    path = Path(path)
    data = _read(path, limit=MAX_ANCHORS_BYTES, what="the anchors file")
    try:
        return parse_anchors(data)
    except VerificationError as e:
        raise InputFileError(f"{path}: not a usable anchors file: {e}") from None


def verify_evidence_file(path: str | Path, *, anchors: AnchorSet) -> FileReport:
    """Verify one evidence file (JSON or binary) against ``anchors``. Raises InputFileError
    only when the file cannot be read; a file that is no evidence fails its ``format``
    check in the report."""
    from relay.verify.evidence import MAX_EVIDENCE_BYTES
    from relay.verify.offline import verify_evidence_bytes

    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_EVIDENCE_BYTES + 1)
    except OSError as e:
        raise InputFileError(f"{path}: cannot read the evidence file: {e.strerror or e}") from None
    return verify_evidence_bytes(data, anchors=anchors)


# ------------------------------------------------------------------------------ export


async def relay_anchor_set(store: Any, *, relay_keys: Iterable[Any]) -> AnchorSet:
    """The anchors of every chain registered in ``store`` (a relay.store.Store) and the
    relay's public keys (relay.verify.evidence.RelayKey): what a relay publishes and what
    its verification page checks against."""
    from relay.pb.relay.v1 import types_pb2 as pb
    from relay.verify.anchors import anchor_set

    descriptors = [pb.ChainDescriptor.FromString(r.descriptor) for r in await store.list_chains()]
    return anchor_set(descriptors, relay_keys=relay_keys)


async def export_anchors(config: RelayConfig, env: Mapping[str, str] | None = None) -> AnchorSet:
    """Open the configured store (the relay must not be running on it: the store takes an
    exclusive lock) and return its anchors with the relay's public key."""
    from relay.config import load_signing_key
    from relay.service.app import make_signer, open_store

    signer = make_signer(load_signing_key(config, env))
    store = await open_store(config)
    try:
        return await relay_anchor_set(store, relay_keys=[signer.relay_key()])
    finally:
        await store.close()


def write_anchors(anchors: AnchorSet, out: Path) -> None:
    """Write ``anchors`` as YAML to ``out`` (replaced atomically)."""
    from relay.verify.anchors import dump_anchors

    text = dump_anchors(anchors)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)


# -------------------------------------------------------------------------------- CLI


def _mark(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _print_text(name: str, result: FileReport) -> None:
    from relay.pb.relay.v1 import types_pb2 as pb

    report = result.report
    failed = report.first_failure
    if report.ok:
        assurance = pb.Assurance.Name(pb.Assurance.ValueType(report.assurance))
        assurance = assurance.removeprefix("ASSURANCE_")
        print(
            f"{name}: VALID (chain {report.chain_id}, height {report.height}, "
            f"assurance {assurance})"
        )
    else:
        assert failed is not None
        why = f" ({failed.reason})" if failed.reason else ""
        print(f"{name}: INVALID: first failed check: {failed.name}{why}")
    width = max(len(c.name) for c in report.checks)
    for c in report.checks:
        print(f"  {_mark(c.passed)}  {c.name:<{width}}  {c.detail}")


def cmd_verify(args: argparse.Namespace) -> int:
    """relay verify EVIDENCE... --anchors FILE [--json]."""
    from relay.verify.offline import report_dict

    try:
        anchors = load_anchors_file(args.anchors)
    except InputFileError as e:
        print(f"relay: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    unreadable = False
    invalid = False
    out: list[dict[str, Any]] = []
    for name in args.evidence:
        try:
            result = verify_evidence_file(name, anchors=anchors)
        except InputFileError as e:
            unreadable = True
            print(f"relay: error: {e}", file=sys.stderr)
            out.append({"file": name, "error": str(e)})
            continue
        invalid = invalid or not result.report.ok
        if args.json:
            out.append({"file": name, **report_dict(result.report)})
        else:
            _print_text(name, result)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    if unreadable:
        return EXIT_USAGE
    return EXIT_INVALID if invalid else EXIT_OK


def cmd_anchors_export(args: argparse.Namespace) -> int:
    """relay anchors export --config FILE --out anchors.yaml."""
    import asyncio

    from relay.config import ConfigError, config_problems, load_config
    from relay.store import StoreError

    try:
        config = load_config(args.config)
        anchors = asyncio.run(export_anchors(config))
    except ConfigError as e:
        print(f"relay: error: {config_problems(args.config, e.problems)}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as e:
        print(f"relay: error: {e}", file=sys.stderr)
        return EXIT_INVALID
    out = Path(args.out)
    try:
        write_anchors(anchors, out)
    except OSError as e:
        print(f"relay: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"wrote {len(anchors.chains)} chain(s) and {len(anchors.relay_keys)} relay key(s) to {out}"
    )
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """Register ``verify`` and ``anchors export`` on the ``relay`` command's subparsers."""
    verify = sub.add_parser(
        "verify",
        help="check evidence files offline against an anchors file",
        description="Check each evidence file (proto JSON or binary) from the chain's "
        "registered trust anchor to the record, and the relay's signature, using only the "
        "anchors file; opens no network connection. Exit 0 all valid, 1 any invalid "
        "(naming the first failed check), 2 usage or unreadable input.",
    )
    verify.add_argument("evidence", nargs="+", help="evidence files")
    verify.add_argument("--anchors", required=True, help="anchors file (relay anchors export)")
    verify.add_argument("--json", action="store_true", help="a JSON report instead of text")
    verify.set_defaults(func=cmd_verify)

    anchors = sub.add_parser("anchors", help="anchors files for offline verification")
    asub = anchors.add_subparsers(dest="anchors_command", required=True)
    export = asub.add_parser(
        "export",
        help="write the anchors of every registered chain and the relay's public key",
        description="Read the store's registered chains (stop the relay first: the store "
        "is locked while it runs) and write the public anchors file: client parameters and "
        "registered anchors, proof specs, record schemas, party-key hash algorithms and the "
        "relay's public key; no adapter endpoints, no salts.",
    )
    export.add_argument("--config", required=True, help="relay config file (YAML)")
    export.add_argument("--out", required=True, help="anchors file to write")
    export.set_defaults(func=cmd_anchors_export)
