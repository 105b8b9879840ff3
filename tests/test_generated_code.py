"""Generated protobuf code in relay/pb must match what `make proto` produces from proto/."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_generated_protobuf_code_is_not_stale() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
