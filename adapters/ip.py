"""The ``ip`` reference adapter: ``python -m adapters.ip --node URL ...`` (see
:mod:`adapters.adapter`; its node runs as ``python -m adapters.node --deployment ip``).

Key mapping: patents and trademarks (registry CNIPA) and copyrights (registry CPCC):
the current holder with pledges and freezes under the ownership key, registration,
assignments and licences under the history key, each holder's holdings index; all in the
registry's state map (``/map/lookup``).
"""

from __future__ import annotations

import sys

from adapters.adapter import main, mapping_for
from relay.pb.relay.v1 import types_pb2 as pb

MAPPING = mapping_for(pb.DOMAIN_IP, ("ownership", "history"))

if __name__ == "__main__":
    sys.exit(main("ip", MAPPING))
