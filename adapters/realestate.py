"""The ``realestate`` reference adapter: ``python -m adapters.realestate --node URL ...`` (see
:mod:`adapters.adapter`; its node runs as ``python -m adapters.node --deployment realestate``).

Key mapping: flats and parcels: the ownership record (owners, shares, mortgages,
seizures) under its ownership key, the transfer history under its history key, and each
owner's holdings index, all as record schema 1 in the chain's state (``/store``).
"""

from __future__ import annotations

import sys

from adapters.adapter import main, mapping_for
from relay.pb.relay.v1 import types_pb2 as pb

MAPPING = mapping_for(pb.DOMAIN_REAL_ESTATE, ("ownership", "history"))

if __name__ == "__main__":
    sys.exit(main("realestate", MAPPING))
