"""Conformance targets of the reference deployments (:mod:`relay.sdk.testing`): the worked
example of what a partner hands the suite - its descriptor, records its chain holds and does
not hold, and parties holding assets.

The records come from the deployment's deterministic sample data, rebuilt locally with the
same chain parameters (so party keys, salted per chain, are the deployment's own).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from adapters import DEPLOYMENTS
from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import types_pb2 as pb
from relay.sdk.testing import ConformanceTarget
from relay.testing.partner_server import build_chain
from relay.testing.partners import sample_data
from relay.testing.pki import DevPki


def local_chain(name: str) -> Any:
    """A local copy of the deployment's chain with its sample data (no witnesses needed:
    only its state is used)."""
    d = DEPLOYMENTS[name]
    config = {
        "kind": d.kind,
        "chain_id": d.chain_id,
        "domain": d.domain,
        "hash": d.hash,
        "sig": d.sig,
        "validators": d.validators,
        "origin": d.origin,
        "witnesses": d.witnesses,
        "quorum": d.quorum,
    }
    chain = build_chain(config)
    return chain, sample_data(chain, commit=False)


def questions(name: str) -> tuple[list[apb.DomainQuery], list[apb.DomainQuery], list[pb.PartyRef]]:
    """(present, absent, parties) of a deployment's sample data."""
    chain, data = local_chain(name)
    present: list[apb.DomainQuery] = []
    kinds_seen: set[str] = set()
    for key, _ in data.records:
        which = key.WhichOneof("record")
        if which in kinds_seen:
            continue
        kinds_seen.add(which)
        if which == "ownership":
            present.append(apb.DomainQuery(ownership=key.ownership))
        elif which == "account":
            present.append(apb.DomainQuery(account=key.account))
        elif which == "history":
            present.append(apb.DomainQuery(history=key.history))
        elif which == "credit_party_key":
            present.append(apb.DomainQuery(credit_party_key=key.credit_party_key))
    nobody = hashlib.sha256(b"conformance: a party no chain knows").digest()
    absent = [apb.DomainQuery(credit_party_key=nobody)]
    if data.assets:
        missing = pb.AssetRef()
        missing.CopyFrom(data.assets[0])
        missing.id += "-9999"
        absent.append(
            apb.DomainQuery(account=missing)
            if missing.kind == pb.ASSET_KIND_BANK_ACCOUNT
            else apb.DomainQuery(ownership=missing)
        )
    parties: list[pb.PartyRef] = []
    if not parties:
        holders = {
            o.party.party_key
            for _, r in data.records
            if isinstance(r, pb.OwnershipRecord)
            for o in r.owners
        } | {r.holder.party_key for _, r in data.records if isinstance(r, pb.AccountRecord)}
        for party in data.parties:
            if chain.party_key_of(party) in holders:
                parties.append(pb.PartyRef(kind=party.kind, id_type=party.id_type, id=party.id))
                break
    return present, absent, parties


def target_for(name: str, descriptor: Path, pki: DevPki) -> ConformanceTarget:
    """The conformance target of a running deployment (its descriptor file), reached over
    mutual TLS with the relay's development identity."""
    present, absent, parties = questions(name)
    return ConformanceTarget(
        descriptor=json_format.Parse(descriptor.read_text(), pb.ChainDescriptor()),
        present=present,
        absent=absent,
        parties=parties,
        client_cert_pem=pki.server_cert.read_bytes(),
        client_key_pem=pki.server_key.read_bytes(),
    )
