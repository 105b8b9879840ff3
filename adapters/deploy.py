"""``python -m adapters.<name>``: one reference deployment as one process (its system, the
state journal and its :mod:`relay.sdk` adapter), via ``relay.testing.partner_server`` with
the deployment's parameters, seeded with realistic synthetic data on first start."""

from __future__ import annotations

from collections.abc import Sequence

from adapters import DEPLOYMENTS
from relay.testing import partner_server


def main(name: str, argv: Sequence[str] | None = None) -> int:
    import sys

    deployment = DEPLOYMENTS[name]
    extra = list(sys.argv[1:] if argv is None else argv)
    return partner_server.main([*deployment.server_args(), "--seed-data", *extra])
