"""The ``realestate`` reference deployment (see adapters): ``python -m adapters.realestate``."""

from __future__ import annotations

import sys

from adapters.deploy import main

if __name__ == "__main__":
    sys.exit(main("realestate"))
