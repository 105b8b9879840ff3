"""The ``credit`` reference deployment: ``python -m adapters.credit --help`` (see adapters)."""

from __future__ import annotations

import sys

from adapters.deploy import main

if __name__ == "__main__":
    sys.exit(main("credit"))
