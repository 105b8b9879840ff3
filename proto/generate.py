"""Generate Python protobuf code from ``proto/`` into the one package ``relay/pb/``.

protoc writes imports relative to the proto root (``from cosmos.ics23.v1 import ...``);
they are rewritten to absolute imports under ``relay.pb`` so the generated code lives in
one package. ``--check`` regenerates into a temporary folder and fails if the committed
code differs (stale).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = "relay.pb"
OUT_DIR = ROOT / "relay" / "pb"
_IMPORT = re.compile(r"^(from|import) ((?:cosmos|relay|tendermint|google\.rpc)\b[\w.]*)", re.M)


def _proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def _mypy_plugin() -> str:
    # protoc looks plugins up on PATH, which does not include the virtualenv's bin/ when the
    # generator runs as `.venv/bin/python proto/generate.py` (make, tests); look next to the
    # running interpreter first.
    beside = Path(sys.executable).parent / "protoc-gen-mypy"
    found = str(beside) if beside.exists() else shutil.which("protoc-gen-mypy")
    if not found:
        raise SystemExit("protoc-gen-mypy not found: install mypy-protobuf (`make venv`)")
    return found


def _generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(PROTO_DIR)) for p in _proto_files()]
    if not files:
        return
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out}",
            f"--mypy_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    local_roots = {p.relative_to(PROTO_DIR).parts[0] for p in _proto_files()}
    for path in out.rglob("*.py*"):
        text = path.read_text()

        def fix(m: re.Match[str]) -> str:
            root = m.group(2).split(".")[0]
            if root in local_roots and not m.group(2).startswith("relay.pb"):
                return f"{m.group(1)} {OUT_PACKAGE}.{m.group(2)}"
            return m.group(0)

        path.write_text(_IMPORT.sub(fix, text))
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()


def _same_tree(a: Path, b: Path) -> list[str]:
    diffs: list[str] = []
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])

    def walk(c: filecmp.dircmp[str], prefix: str) -> None:
        diffs.extend(prefix + n for n in c.left_only + c.right_only + c.diff_files)
        for name, sub in c.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(cmp, "")
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if relay/pb is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "pb"
        _generate(fresh)
        if args.check:
            diffs = _same_tree(fresh, OUT_DIR) if OUT_DIR.exists() else ["relay/pb missing"]
            if diffs:
                print("generated protobuf code is stale; run `make proto`:", *diffs, sep="\n  ")
                return 1
            print("relay/pb is up to date")
            return 0
        if OUT_DIR.exists():
            shutil.rmtree(OUT_DIR)
        shutil.copytree(fresh, OUT_DIR)
    print(f"generated {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
