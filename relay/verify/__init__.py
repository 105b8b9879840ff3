"""The pure verification core: bytes and trusted state in, a verdict or a typed error out.

Nothing in this package performs I/O, reads a clock, or touches the network or a database;
an import-linter contract (see pyproject.toml) fails the build if it does.

For other programs, the offline evidence checker is exported here (imported on first use, so
that ``import relay.verify.hashing`` stays light)::

    from relay.verify import parse_anchors, verify_evidence_bytes
    anchors = parse_anchors(open("anchors.yaml", "rb").read())
    result = verify_evidence_bytes(open("evidence.json", "rb").read(), anchors=anchors)
    result.report.ok, result.report.first_failure
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.verify.anchors import AnchorSet, AnchorsFileError, dump_anchors, parse_anchors
    from relay.verify.evidence import Check, EvidenceReport, verify_evidence
    from relay.verify.offline import (
        FileReport,
        parse_evidence,
        report_dict,
        verify_evidence_bytes,
    )

_EXPORTS = {
    "AnchorSet": "relay.verify.anchors",
    "AnchorsFileError": "relay.verify.anchors",
    "dump_anchors": "relay.verify.anchors",
    "parse_anchors": "relay.verify.anchors",
    "Check": "relay.verify.evidence",
    "EvidenceReport": "relay.verify.evidence",
    "verify_evidence": "relay.verify.evidence",
    "FileReport": "relay.verify.offline",
    "parse_evidence": "relay.verify.offline",
    "report_dict": "relay.verify.offline",
    "verify_evidence_bytes": "relay.verify.offline",
}

__all__ = [
    "AnchorSet",
    "AnchorsFileError",
    "Check",
    "EvidenceReport",
    "FileReport",
    "dump_anchors",
    "parse_anchors",
    "parse_evidence",
    "report_dict",
    "verify_evidence",
    "verify_evidence_bytes",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'relay.verify' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
