"""The one ``relay`` command. Exit codes: 0 success, 1 a check failed, 2 usage or input error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with how the command was called or with its input files."""


def _cmd_vectors_check(args: argparse.Namespace) -> int:
    from relay.vectors import KINDS, LAYOUT, CaseResult, VectorFileError, load_runner

    jobs: list[tuple[str, Path]] = []
    if args.all:
        if args.kind:
            raise UsageError("--all and --kind are exclusive")
        if len(args.paths) != 1:
            raise UsageError("--all takes exactly one directory: the shared vectors folder")
        root = Path(args.paths[0])
        if not root.is_dir():
            raise UsageError(f"{root}: not a directory")
        for kind, sub in LAYOUT.items():
            jobs.append((kind, root / sub))
    else:
        if not args.kind:
            raise UsageError("--kind is required (or --all)")
        if args.kind not in KINDS:
            raise UsageError(f"unknown kind {args.kind!r}; known: {', '.join(KINDS)}")
        if not args.paths:
            raise UsageError("no vector paths given")
        jobs = [(args.kind, Path(p)) for p in args.paths]

    summary: dict[str, list[int]] = {}
    all_matched = True
    for kind, path in jobs:
        try:
            runner = load_runner(kind)
            results: list[CaseResult] = list(runner(path))
        except VectorFileError as e:
            raise UsageError(f"{kind}: {e}") from e
        if not results:
            raise UsageError(f"{kind}: no vector cases found under {path}")
        counts = summary.setdefault(kind, [0, 0])
        for r in results:
            counts[0] += 1
            if r.matched:
                counts[1] += 1
            else:
                all_matched = False
            if not args.table:
                print(r.to_json())
    if args.table:
        _print_table(summary)
    return EXIT_OK if all_matched else EXIT_FAILED


def _print_table(summary: dict[str, list[int]]) -> None:
    width = max(len(k) for k in summary) if summary else 4
    print(f"{'kind':<{width}}  {'cases':>6}  {'matched':>7}  {'mismatched':>10}  result")
    for kind, (total, matched) in summary.items():
        result = "PASS" if total == matched else "FAIL"
        print(f"{kind:<{width}}  {total:>6}  {matched:>7}  {total - matched:>10}  {result}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    vectors = sub.add_parser("vectors", help="conformance test vectors")
    vsub = vectors.add_subparsers(dest="vectors_command", required=True)
    check = vsub.add_parser(
        "check",
        help="run a verifier over vector files, one JSON line per case",
        description="Exit 0 when every verdict matches its file's expectation, 1 otherwise, "
        "2 on usage errors.",
    )
    check.add_argument("--kind", help="vector kind (see relay.vectors.KINDS)")
    check.add_argument(
        "--all",
        action="store_true",
        help="run every kind over the shared vectors folder given as the only path",
    )
    check.add_argument("--table", action="store_true", help="print a summary table instead")
    check.add_argument("paths", nargs="*", help="vector files or directories")
    check.set_defaults(func=_cmd_vectors_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed the message
        return EXIT_USAGE if e.code not in (0, None) else EXIT_OK
    try:
        code: int = args.func(args)
    except UsageError as e:
        print(f"relay: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
