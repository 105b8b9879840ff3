"""Replicas sharing one PostgreSQL registering the same chain id through AdminService
(issue 9): the store's insert-only ``create_chain`` lets exactly one registration stand; the
others get ALREADY_EXISTS and never replace the stored descriptor, also when a replica has
not re-read the catalogue since another one registered the chain."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from relay.config import ENV_STORE_DSN, load_config
from relay.engine.adapters import InProcessAdapterClient
from relay.engine.errors import RelayError
from relay.pb.relay.v1 import admin_pb2
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.app import start_relay
from relay.service.devconfig import write_dev_setup
from relay.testing.partners import BftPartnerChain, PartnerAdapter, sample_data
from relay.testing.pki import write_dev_pki

CHAIN = "cn-bj-chaoyang-realestate"


def test_one_registration_of_a_chain_id_stands_across_replicas(
    tmp_path: Path, pg_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_STORE_DSN, pg_cluster.create_database())
    chain = BftPartnerChain(CHAIN, domain=pb.DOMAIN_REAL_ESTATE)
    sample_data(chain)
    adapter = PartnerAdapter(chain)
    pki = write_dev_pki(tmp_path / "pki")
    configs = [
        load_config(
            write_dev_setup(
                tmp_path / f"replica{i}", grpc_port=0, health_port=0, pki=pki,
                overrides={
                    # A long lease: the catalogue is re-read every lease_ttl/3, so during
                    # the test no replica learns of the others' registrations on its own.
                    "store": {"backend": "postgres", "path": None, "replica_id": f"r{i}",
                              "lease_ttl": 60},
                    "audit": {"enabled": False},
                },
            ).config
        )
        for i in range(3)
    ]  # fmt: skip

    def descriptor(entry_point: str) -> pb.ChainDescriptor:
        return chain.descriptor(pb.AdapterEndpoint(entry_point=entry_point))

    async def register(running: Any, entry_point: str) -> Any:
        return await running.engine.register_chain(
            admin_pb2.RegisterChainRequest(descriptor=descriptor(entry_point))
        )

    async def main() -> None:
        def factory(d: pb.ChainDescriptor) -> InProcessAdapterClient:
            return InProcessAdapterClient(
                adapter, chain_id=d.chain_id, settings=configs[0].engine_settings()
            )

        replicas = [await start_relay(c, adapters=factory, insecure_dev=True) for c in configs]
        try:
            # Three replicas register the same id at the same moment, each with its own
            # descriptor (the adapter entry point differs).
            results = await asyncio.gather(
                *(register(r, f"replica-{i}") for i, r in enumerate(replicas)),
                return_exceptions=True,
            )
            won = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
            assert len(won) == 1, results
            for i, result in enumerate(results):
                if i in won:
                    continue
                assert isinstance(result, RelayError), result
                assert result.reason == "ALREADY_EXISTS", result
                assert CHAIN in result.message
            stored = await replicas[0].store.get_chain(CHAIN)
            assert stored is not None
            stored_descriptor = pb.ChainDescriptor.FromString(stored.descriptor)
            assert stored_descriptor.adapter.entry_point == f"replica-{won[0]}"
            state = await replicas[0].store.get_client_state(CHAIN)
            assert state is not None  # the winner's anchor is stored with its record

            # Later: a replica that has not re-read the catalogue registers the id again
            # with another descriptor; the stored one stays.
            late = replicas[(won[0] + 1) % 3]
            assert CHAIN not in late.engine.registry
            with pytest.raises(RelayError) as caught:
                await register(late, "late-replica")
            assert caught.value.reason == "ALREADY_EXISTS"
            again = await late.store.get_chain(CHAIN)
            assert again is not None and again.descriptor == stored.descriptor
            # It follows the stored registration once it re-reads the catalogue.
            await late.engine.refresh_catalogue()
            assert CHAIN in late.engine.registry
            assert late.engine.registry.get(CHAIN).descriptor == stored_descriptor
        finally:
            for running in replicas:
                await running.stop()

    asyncio.run(main())
