"""k-of-n approval counts operators by their configured name, not by certificate: one
operator holding two certificates (different subject O) gives one vote (review finding)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_engine_harness import make_world

from relay.access import control
from relay.access.identity import Identity, Role
from relay.access.proposals import (
    AccessRecords,
    InstitutionSigner,
    Onboarding,
    make_proposal,
    sign_proposal,
)
from relay.config import AccessConfig, InstitutionKeyConfig
from relay.pb.relay.v1 import admin_pb2
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.errors import ServiceError
from relay.store import SQLiteStore


def test_one_operator_with_two_certificates_votes_once(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SQLiteStore.open(tmp_path / "relay.db")
        try:
            world = make_world({pb.DOMAIN_CREDIT: "bft"})
            descriptor = world.descriptor("cn-credit-list")
            institution = descriptor.institution or "91110000TEST0000XX"
            descriptor.institution = institution
            signer = InstitutionSigner.ed25519(key_id="k1", seed=bytes(32))
            config = AccessConfig(
                audience="relay",
                approvals_required=2,
                operators=["operator-1", "operator-2"],
                institution_keys=[InstitutionKeyConfig(**signer.config_entry(institution))],
            )
            applied: list[str] = []

            class Engine:
                def __init__(self) -> None:
                    self.registry: dict[str, object] = {}

                async def register_chain(self, req: admin_pb2.RegisterChainRequest) -> object:
                    applied.append(req.descriptor.chain_id)
                    return SimpleNamespace(chain=pb.ChainInfo(chain_id=req.descriptor.chain_id))

            onboarding = Onboarding(engine=Engine(), records=AccessRecords(store), config=config)
            control._CURRENT.set(Identity(Role.PARTNER, institution, "partner"))
            proposal = make_proposal(institution=institution, audience="relay", register=descriptor)
            pid = (
                await onboarding.propose_chain(
                    admin_pb2.ProposeChainRequest(signed=sign_proposal(proposal, signer))
                )
            ).proposal.proposal_id
            approve = admin_pb2.ApproveProposalRequest(proposal_id=pid)
            control._CURRENT.set(Identity(Role.OPERATOR, "", "operator-1"))
            await onboarding.approve_proposal(approve)
            control._CURRENT.set(Identity(Role.OPERATOR, "ops-team", "operator-1"))
            with pytest.raises(ServiceError) as second:
                await onboarding.approve_proposal(approve)
            print("second approval by the same operator:", second.value.reason)
            assert second.value.reason == "PROPOSAL_CLOSED"
            assert applied == []
            control._CURRENT.set(Identity(Role.OPERATOR, "", "operator-2"))
            done = await onboarding.approve_proposal(approve)
            assert admin_pb2.ProposalState.Name(done.proposal.state) == "PROPOSAL_STATE_APPLIED"
            assert applied == ["cn-credit-list"]
        finally:
            await store.close()

    asyncio.run(main())
