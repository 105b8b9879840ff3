"""CLI commands of issue 5: ``relay pki init DIR`` (a development PKI with role
certificates and institution signing keys) and ``relay admin propose|approve|reject|
proposals`` (the onboarding flow of relay/access/proposals.py). Registered by relay/cli.py
through :func:`add_commands`; connection flags and error reporting are the CLI's own.

The client certificate decides who the caller is: a partner proposes with its partner
certificate (``--cert``/``--key``) and its institution key (``--signing-key``), an operator
decides with an operator certificate.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2


def _cmd_pki_init(args: argparse.Namespace) -> int:
    """Write a CA, a relay certificate, role certificates (courts, partners, operators, the
    public role) and an Ed25519 proposal-signing key per partner into DIR."""
    from relay.testing.pki import write_access_pki

    directory = Path(args.dir)
    try:
        pki = write_access_pki(directory)
    except FileExistsError as e:
        print(f"relay: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from relay.access.proposals import InstitutionSigner

    print(f"CA: {pki.ca_cert}\nrelay: {pki.server_cert} {pki.server_key}")
    for name, (cert, key) in pki.clients.items():
        print(f"client {name}: {cert} {key}")
    entries = []
    for code, path in pki.institution_keys.items():
        signer = InstitutionSigner.from_seed_file(key_id=f"{code}-k1", path=path)
        entries.append(signer.config_entry(code))
        print(f"institution key {code}: {path} (key id {code}-k1)")
    print("\n# access.institution_keys for the relay config:")
    print(json.dumps(entries, ensure_ascii=False, indent=2))
    return EXIT_OK


def _cmd_propose(args: argparse.Namespace, rpc: Callable[..., int]) -> int:
    from google.protobuf import json_format

    from relay.access.proposals import InstitutionSigner, make_proposal, sign_proposal
    from relay.config import parse_descriptor
    from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc, types_pb2

    signer = InstitutionSigner.from_seed_file(key_id=args.key_id, path=args.signing_key)
    if bool(args.descriptor) == bool(args.chain):
        print("relay: error: pass --descriptor FILE or --chain ID --endpoint FILE", file=sys.stderr)
        return EXIT_USAGE
    if args.descriptor:
        descriptor = parse_descriptor(Path(args.descriptor).read_bytes(), source=args.descriptor)
        proposal = make_proposal(
            institution=args.institution,
            audience=args.audience,
            register=descriptor,
            lifetime_s=args.lifetime,
        )
    else:
        if not args.endpoint:
            print("relay: error: --chain needs --endpoint FILE (AdapterEndpoint JSON)",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        endpoint = json_format.Parse(Path(args.endpoint).read_text(), types_pb2.AdapterEndpoint())
        proposal = make_proposal(
            institution=args.institution,
            audience=args.audience,
            update_endpoint=admin_pb2.EndpointUpdate(chain_id=args.chain, endpoint=endpoint),
            lifetime_s=args.lifetime,
        )
    signed = sign_proposal(proposal, signer)

    def call(channel: Any) -> None:
        stub = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        if args.descriptor:
            reply = stub.ProposeChain(
                admin_pb2.ProposeChainRequest(signed=signed), timeout=args.timeout
            )
        else:
            reply = stub.ProposeEndpointUpdate(
                admin_pb2.ProposeEndpointUpdateRequest(signed=signed), timeout=args.timeout
            )
        print(f"proposal {reply.proposal.proposal_id} PENDING ({reply.proposal.chain_id})")

    return rpc(args, call)


def _show(info: Any) -> str:
    from relay.pb.relay.v1 import admin_pb2

    state = admin_pb2.ProposalState.Name(info.state).removeprefix("PROPOSAL_STATE_")
    kind = admin_pb2.ProposalKind.Name(info.kind).removeprefix("PROPOSAL_KIND_").lower()
    approvals = sum(d.decision == admin_pb2.PROPOSAL_DECISION_APPROVE for d in info.decisions)
    extra = f" {info.status_message}" if info.status_message else ""
    return (
        f"{info.proposal_id} {state} {kind} {info.chain_id} {info.institution} "
        f"approvals {approvals}/{info.approvals_required or '?'}{extra}"
    )


def _cmd_decide(args: argparse.Namespace, rpc: Callable[..., int]) -> int:
    from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc

    def call(channel: Any) -> None:
        stub = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        if args.admin_command == "approve":
            reply = stub.ApproveProposal(
                admin_pb2.ApproveProposalRequest(proposal_id=args.id, comment=args.comment),
                timeout=args.timeout,
            )
        else:
            reply = stub.RejectProposal(
                admin_pb2.RejectProposalRequest(proposal_id=args.id, comment=args.comment),
                timeout=args.timeout,
            )
        print(_show(reply.proposal))

    return rpc(args, call)


def _cmd_proposals(args: argparse.Namespace, rpc: Callable[..., int]) -> int:
    from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc

    state = 0
    if args.state:
        name = "PROPOSAL_STATE_" + args.state.upper().replace("-", "_")
        if name not in admin_pb2.ProposalState.keys():  # noqa: SIM118 (an enum wrapper)
            print(f"relay: error: unknown --state {args.state}", file=sys.stderr)
            return EXIT_USAGE
        state = admin_pb2.ProposalState.Value(name)

    def call(channel: Any) -> None:
        stub = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.ListProposals(
            admin_pb2.ListProposalsRequest(state=state),  # type: ignore[arg-type]
            timeout=args.timeout,
        )
        for info in reply.proposals:
            print(_show(info))

    return rpc(args, call)


def add_commands(
    sub: Any,
    *,
    connection_flags: Callable[[argparse.ArgumentParser], None],
    rpc: Callable[..., int],
) -> None:
    """Register ``pki`` and ``admin`` on the CLI's subparsers."""
    pki = sub.add_parser("pki", help="development PKI")
    psub = pki.add_subparsers(dest="pki_command", required=True)
    init = psub.add_parser("init", help=_cmd_pki_init.__doc__, description=_cmd_pki_init.__doc__)
    init.add_argument("dir", help="an empty or new directory")
    init.set_defaults(func=_cmd_pki_init)

    admin = sub.add_parser("admin", help="partner proposals and operator decisions")
    asub = admin.add_subparsers(dest="admin_command", required=True)
    propose = asub.add_parser(
        "propose", help="a partner proposes a chain (--descriptor) or an endpoint move"
    )
    propose.add_argument("--institution", required=True, help="the institution's code")
    propose.add_argument("--signing-key", required=True, help="institution key file")
    propose.add_argument("--key-id", required=True, help="id of the institution key")
    propose.add_argument("--audience", default="relay", help="the relay's access.audience")
    propose.add_argument("--descriptor", help="chain descriptor (JSON/YAML) to register")
    propose.add_argument("--chain", help="own chain whose adapter endpoint moves")
    propose.add_argument("--endpoint", help="AdapterEndpoint JSON file (with --chain)")
    propose.add_argument("--lifetime", type=float, default=3600.0, help="seconds (default 1 h)")
    connection_flags(propose)
    propose.set_defaults(func=lambda a: _cmd_propose(a, rpc))
    for name in ("approve", "reject"):
        p = asub.add_parser(name, help=f"an operator {name}s a pending proposal")
        p.add_argument("id", help="proposal id (hex)")
        p.add_argument("--comment", default="", help="recorded with the decision")
        connection_flags(p)
        p.set_defaults(func=lambda a: _cmd_decide(a, rpc))
    listing = asub.add_parser("proposals", help="list proposals (partners: their own)")
    listing.add_argument("--state", help="pending, applied, rejected, failed, expired")
    connection_flags(listing)
    listing.set_defaults(func=lambda a: _cmd_proposals(a, rpc))
