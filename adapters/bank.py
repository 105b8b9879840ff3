"""The ``bank`` reference deployment: ``python -m adapters.bank --help`` (see adapters)."""

from __future__ import annotations

import sys

from adapters.deploy import main

if __name__ == "__main__":
    sys.exit(main("bank"))
