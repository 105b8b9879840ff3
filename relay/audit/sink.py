"""Publication of audit checkpoints to the judicial chain (issue 7).

:class:`ChainSink` writes each signed checkpoint note into a CometBFT chain's state under
``audit-checkpoint/<size>`` and commits a block, so the checkpoint is then provable (ICS-23
membership under a validator-signed app hash) by anyone following that chain. The reference
judicial chain is a :class:`relay.testing.partners.BftPartnerChain` held in the relay's
process (:func:`start_judicial_chain`); it can be served with the standard partner
AdapterService on an address of its own, which is how a court, a test or the demo reads the
checkpoints back with proofs. A production deployment would implement :class:`AuditSink`
with the court system's own chain client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.store.base import AuditCheckpointRecord

log = logging.getLogger("relay.audit")

KEY_PREFIX = b"audit-checkpoint/"


def checkpoint_key(size: int) -> bytes:
    """The state key a checkpoint of ``size`` is written under."""
    return KEY_PREFIX + str(size).encode()


class ChainSink:
    """An AuditSink writing to a BftPartnerChain held in this process."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain
        self.published: list[int] = []

    async def publish(self, checkpoint: AuditCheckpointRecord) -> None:
        self.chain.put_raw(checkpoint_key(checkpoint.size), checkpoint.note)
        # The block after the writes commits to them (app hash of H+1 is the state after H).
        self.chain.commit()
        self.chain.commit()
        self.published.append(checkpoint.size)
        log.info(
            "published audit checkpoint %d to %s at height %d",
            checkpoint.size,
            self.chain.chain_id,
            self.chain.height,
        )


@dataclass
class JudicialChain:
    """The in-process reference judicial chain, its sink and (optionally) its adapter
    server."""

    chain: Any
    sink: ChainSink
    server: Any = None

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop(0)


async def start_judicial_chain(
    *,
    chain_id: str,
    listen: str | None = None,
    tls_cert: bytes | None = None,
    tls_key: bytes | None = None,
    tls_ca: bytes | None = None,
    descriptor_out: Path | None = None,
) -> JudicialChain:
    """Create the reference judicial chain (one genesis block) and, with ``listen``, serve
    its AdapterService there (TLS with ``tls_cert``/``tls_key``; readers trust ``tls_ca``,
    default the certificate itself); with ``descriptor_out`` write its ChainDescriptor
    (JSON) for relays and anchors files."""
    from google.protobuf import json_format

    from relay.pb.relay.v1 import types_pb2 as pb
    from relay.testing.partners import BftPartnerChain, PartnerAdapter

    chain = BftPartnerChain(chain_id, domain=pb.DOMAIN_CREDIT)
    chain.put_raw(b"relay.testing/genesis", chain_id.encode())
    chain.commit()
    chain.commit()
    running = JudicialChain(chain, ChainSink(chain))
    endpoint = None
    if listen is not None:
        from relay.sdk.server import start_adapter_server

        if tls_cert is None or tls_key is None:
            raise ValueError("serving the judicial chain needs tls_cert and tls_key")
        running.server = await start_adapter_server(
            PartnerAdapter(chain), listen=listen, tls_cert=tls_cert, tls_key=tls_key
        )
        host = listen.rpartition(":")[0].strip("[]")
        endpoint = pb.AdapterEndpoint(
            grpc_address=running.server.address,
            tls_server_name=host,
            ca_certificates_pem=(tls_ca or tls_cert).decode(),
        )
        log.info("judicial chain %s served on %s", chain_id, running.server.address)
    if descriptor_out is not None:
        descriptor_out.write_text(
            json_format.MessageToJson(chain.descriptor(endpoint), indent=2, ensure_ascii=False)
            + "\n",
            encoding="utf-8",
        )
    return running
