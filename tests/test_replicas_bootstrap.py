"""Replicas sharing one PostgreSQL that start together with the same ``chains:`` list (the
chart's PostgreSQL mode) all start: one registers each chain, the others find it in the store
and follow it (issue 9)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from relay.config import ENV_STORE_DSN, load_config
from relay.engine.adapters import InProcessAdapterClient
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.app import start_relay
from relay.service.devconfig import write_dev_setup
from relay.testing.partners import BftPartnerChain, PartnerAdapter, sample_data
from relay.testing.pki import write_dev_pki

CHAIN = "cn-bj-chaoyang-realestate"


def test_replicas_starting_together_register_the_config_chains_once(
    tmp_path: Path, pg_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_STORE_DSN, pg_cluster.create_database())
    chain = BftPartnerChain(CHAIN, domain=pb.DOMAIN_REAL_ESTATE)
    sample_data(chain)
    adapter = PartnerAdapter(chain)
    descriptor = tmp_path / "realestate.json"
    descriptor.write_text(
        json_format.MessageToJson(chain.descriptor(pb.AdapterEndpoint(entry_point="testing")))
    )
    pki = write_dev_pki(tmp_path / "pki")
    configs = [
        load_config(
            write_dev_setup(
                tmp_path / f"replica{i}", grpc_port=0, health_port=0, pki=pki,
                chains=[descriptor],
                overrides={
                    "store": {"backend": "postgres", "path": None, "replica_id": f"r{i}"},
                    "audit": {"enabled": False},
                },
            ).config
        )
        for i in range(3)
    ]  # fmt: skip

    async def main() -> None:
        def factory(d: pb.ChainDescriptor) -> InProcessAdapterClient:
            return InProcessAdapterClient(
                adapter, chain_id=d.chain_id, settings=configs[0].engine_settings()
            )

        started = await asyncio.gather(
            *(start_relay(c, adapters=factory, insecure_dev=True) for c in configs),
            return_exceptions=True,
        )
        try:
            failures = [r for r in started if isinstance(r, BaseException)]
            assert failures == [], failures
            for running in started:
                assert CHAIN in running.engine.registry
            chains = await started[0].store.list_chains()
            assert [c.chain_id for c in chains] == [CHAIN]
        finally:
            for running in started:
                if not isinstance(running, BaseException):
                    await running.stop()

    asyncio.run(main())
