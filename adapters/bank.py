"""The ``bank`` reference adapter: ``python -m adapters.bank --node URL ...`` (see
:mod:`adapters.adapter`; its node runs as ``python -m adapters.node --deployment bank``).

Key mapping: accounts with balances and court freezes under the account key (registry =
the bank's code), and each holder's holdings index of accounts (``/store``).
"""

from __future__ import annotations

import sys

from adapters.adapter import main, mapping_for
from relay.pb.relay.v1 import types_pb2 as pb

MAPPING = mapping_for(pb.DOMAIN_BANK, ("account",))

if __name__ == "__main__":
    sys.exit(main("bank", MAPPING))
