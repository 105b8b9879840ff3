"""The ``credit`` reference adapter: ``python -m adapters.credit --node URL ...`` (see
:mod:`adapters.adapter`; its node runs as ``python -m adapters.node --deployment credit``).

Key mapping: dishonest-debtor listings and consumption restrictions under the party's
credit key. The platform holds no assets: its descriptor lists no asset kinds (the relay's
ListHoldings does not ask it), and ListByParty answers every party with a proof that it has
no holdings index (``/holdings``).
"""

from __future__ import annotations

import sys

from adapters.adapter import main, mapping_for
from relay.pb.relay.v1 import types_pb2 as pb

MAPPING = mapping_for(pb.DOMAIN_CREDIT, ("credit_party_key",))

if __name__ == "__main__":
    sys.exit(main("credit", MAPPING))
