"""CLI commands of issue 5: ``relay pki init DIR`` (a development PKI with role
certificates and institution signing keys), ``relay admin propose|approve|reject|
proposals`` (the onboarding flow of relay/access/proposals.py) and the operators' ``relay
admin freeze|recover`` (AdminService FreezeChain / RecoverChain). Input files a command
cannot use are usage errors (exit 2) naming the flag and the file. Registered by relay/cli.py
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


class _BadInput(Exception):
    """An input file a command cannot use; the message names the flag, the file and why
    (printed as a usage error, exit 2)."""


def _cmd_pki_init(args: argparse.Namespace) -> int:
    """Write a CA, a relay certificate, role certificates (courts, partners, operators, the
    public role) and an Ed25519 proposal-signing key per partner into DIR."""
    from relay.testing.pki import write_access_pki

    directory = Path(args.dir)
    if directory.exists() and not directory.is_dir():
        print(f"relay: error: {directory} is a file; give a new or empty directory",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        pki = write_access_pki(directory)
    except FileExistsError as e:
        print(f"relay: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"relay: error: {directory}: {e.strerror or e}", file=sys.stderr)
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


def _read_input(flag: str, path: str, *, limit: int, what: str) -> bytes:
    """The bytes of an input file, or a _BadInput naming the flag, the file and why."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise _BadInput(f"{flag} {path}: cannot read {what}: {e.strerror or e}") from None
    if len(data) > limit:
        raise _BadInput(f"{flag} {path}: {what} is larger than {limit} bytes")
    return data


def _signed_proposal(args: argparse.Namespace) -> Any:
    """The signed proposal ``relay admin propose`` sends, from its flags: the institution
    key, the descriptor, endpoint or anchor file, each read and checked once before
    anything is signed or sent. Raises _BadInput naming the flag, the file and why."""
    from google.protobuf import json_format

    from relay.access.proposals import InstitutionSigner, make_proposal, sign_proposal
    from relay.config import MAX_DESCRIPTOR_BYTES, ConfigError, parse_descriptor
    from relay.pb.relay.v1 import admin_pb2, types_pb2

    key_file = args.signing_key
    _read_input("--signing-key", key_file, limit=4096, what="the institution key")
    try:
        signer = InstitutionSigner.from_seed_file(key_id=args.key_id, path=key_file)
    except (OSError, ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        raise _BadInput(
            f"--signing-key {key_file}: not an institution key file (one line ed25519:HEX "
            "or sm2:HEX, as relay pki init writes)"
        ) from None
    if sum(map(bool, (args.descriptor, args.chain, args.recover))) != 1:
        raise _BadInput(
            "pass --descriptor FILE, --chain ID --endpoint FILE, or --recover ID --anchor FILE "
            "--reason TEXT"
        )
    action: dict[str, Any]
    if args.recover:
        if not args.anchor or not args.reason:
            raise _BadInput("--recover needs --anchor FILE and --reason TEXT")
        anchor = _load_trust_anchor(args.anchor, chain_id=args.recover)
        action = {
            "recover": admin_pb2.RecoveryRequest(
                chain_id=args.recover, new_anchor=anchor, reason=args.reason
            )
        }
    elif args.descriptor:
        data = _read_input(
            "--descriptor", args.descriptor, limit=MAX_DESCRIPTOR_BYTES, what="the descriptor"
        )
        try:
            action = {"register": parse_descriptor(data, source=f"--descriptor {args.descriptor}")}
        except ConfigError as e:
            raise _BadInput("; ".join(e.problems)) from None
    else:
        if not args.endpoint:
            raise _BadInput("--chain needs --endpoint FILE (AdapterEndpoint JSON)")
        data = _read_input(
            "--endpoint", args.endpoint, limit=MAX_DESCRIPTOR_BYTES, what="the endpoint"
        )
        try:
            endpoint = json_format.Parse(data.decode("utf-8"), types_pb2.AdapterEndpoint())
        except (json_format.ParseError, ValueError, RecursionError) as e:
            raise _BadInput(
                f"--endpoint {args.endpoint}: not an AdapterEndpoint in proto JSON: {e}"
            ) from None
        action = {
            "update_endpoint": admin_pb2.EndpointUpdate(chain_id=args.chain, endpoint=endpoint)
        }
    proposal = make_proposal(
        institution=args.institution, audience=args.audience, lifetime_s=args.lifetime, **action
    )
    return sign_proposal(proposal, signer)


def _cmd_propose(args: argparse.Namespace, rpc: Callable[..., int]) -> int:
    from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc

    try:
        signed = _signed_proposal(args)
    except _BadInput as e:
        print(f"relay: error: {e}", file=sys.stderr)
        return EXIT_USAGE

    def call(channel: Any) -> None:
        stub = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        if args.descriptor:
            reply = stub.ProposeChain(
                admin_pb2.ProposeChainRequest(signed=signed), timeout=args.timeout
            )
        elif args.recover:
            reply = stub.ProposeRecovery(
                admin_pb2.ProposeRecoveryRequest(signed=signed), timeout=args.timeout
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


def _load_trust_anchor(path: str, *, chain_id: str) -> Any:
    """The TrustAnchor in ``path``: a TrustAnchor in proto JSON (``{"tendermint":
    {"lightBlock": ..., "height": ...}}`` or ``{"tlog": {"checkpoint": ...}}``), or else a
    chain descriptor (proto JSON or YAML, as a partner's --descriptor-out and
    relay.service.devconfig write it), whose tendermint.anchor or tlog.anchor is taken and
    whose chainId must be ``chain_id``. Both parsers bound size and depth."""
    import json

    from google.protobuf import json_format

    from relay.config import MAX_DESCRIPTOR_BYTES, ConfigError, parse_descriptor
    from relay.pb.relay.v1 import types_pb2

    flag = f"--anchor {path}"
    data = _read_input("--anchor", path, limit=MAX_DESCRIPTOR_BYTES, what="the anchor file")
    try:
        value: Any = json.loads(data)
    except (ValueError, RecursionError):  # not JSON: a YAML descriptor, or nothing usable
        value = {"chainId": None}
    if not isinstance(value, dict):
        raise _BadInput(f"{flag}: expected a ChainDescriptor or TrustAnchor object")
    anchor = types_pb2.TrustAnchor()
    if "chainId" in value or "chain_id" in value:
        try:
            descriptor = parse_descriptor(data, source=flag)
        except ConfigError as e:
            raise _BadInput("; ".join(e.problems)) from None
        if descriptor.chain_id != chain_id:
            raise _BadInput(
                f"{flag}: the descriptor of chain {descriptor.chain_id!r}, not {chain_id!r}"
            )
        client = descriptor.WhichOneof("client")
        if client is None:
            raise _BadInput(f"{flag}: the descriptor has no tendermint or tlog client")
        getattr(anchor, client).CopyFrom(getattr(descriptor, client).anchor)
    else:
        try:
            json_format.ParseDict(value, anchor)
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as e:
            raise _BadInput(f"{flag}: not a ChainDescriptor or TrustAnchor: {e}") from None
    which = anchor.WhichOneof("anchor")
    if which is None or getattr(anchor, which).ByteSize() == 0:
        raise _BadInput(f"{flag}: holds no anchor (tendermint.lightBlock or tlog.checkpoint)")
    return anchor


def _cmd_admin_chain(args: argparse.Namespace, rpc: Callable[..., int]) -> int:
    """``relay admin freeze`` and ``relay admin recover`` (operators)."""
    from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc
    from relay.service.render import chain_line

    if args.admin_command == "freeze":
        request: Any = admin_pb2.FreezeChainRequest(chain_id=args.chain, reason=args.reason)
    else:
        try:
            anchor = _load_trust_anchor(args.anchor, chain_id=args.chain)
        except _BadInput as e:
            print(f"relay: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        request = admin_pb2.RecoverChainRequest(
            chain_id=args.chain, new_anchor=anchor, reason=args.reason
        )

    def call(channel: Any) -> None:
        stub = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        method = stub.FreezeChain if args.admin_command == "freeze" else stub.RecoverChain
        print(chain_line(method(request, timeout=args.timeout).chain))

    return rpc(args, call)


def add_commands(
    sub: Any,
    *,
    connection_flags: Callable[[argparse.ArgumentParser], None],
    rpc: Callable[..., int],
) -> None:
    """Register ``pki`` and ``admin`` (propose, approve, reject, proposals, freeze,
    recover) on the CLI's subparsers."""
    pki = sub.add_parser("pki", help="development PKI")
    psub = pki.add_subparsers(dest="pki_command", required=True)
    init = psub.add_parser("init", help=_cmd_pki_init.__doc__, description=_cmd_pki_init.__doc__)
    init.add_argument("dir", help="an empty or new directory")
    init.set_defaults(func=_cmd_pki_init)

    admin = sub.add_parser("admin", help="partner proposals and operator decisions")
    asub = admin.add_subparsers(dest="admin_command", required=True)
    propose = asub.add_parser(
        "propose",
        help="a partner proposes a chain (--descriptor), an endpoint move (--chain) or a "
        "recovery (--recover)",
    )
    propose.add_argument("--institution", required=True, help="the institution's code")
    propose.add_argument("--signing-key", required=True, help="institution key file")
    propose.add_argument("--key-id", required=True, help="id of the institution key")
    propose.add_argument("--audience", default="relay", help="the relay's access.audience")
    propose.add_argument("--descriptor", help="chain descriptor (JSON/YAML) to register")
    propose.add_argument("--chain", help="own chain whose adapter endpoint moves")
    propose.add_argument("--endpoint", help="AdapterEndpoint JSON file (with --chain)")
    propose.add_argument(
        "--recover", metavar="CHAIN", help="own frozen or expired chain to recover (with --anchor)"
    )
    propose.add_argument(
        "--anchor",
        help="with --recover: the fresh anchor, a chain descriptor or TrustAnchor JSON file",
    )
    propose.add_argument("--reason", help="with --recover: the incident and the anchor's origin")
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
    add = asub.add_parser
    freeze = add(
        "freeze",
        help="an operator freezes a chain: it answers CHAIN_FROZEN until recovered",
        description="Stop following a chain and refuse its queries (CHAIN_FROZEN) until an "
        "operator recovers it with a new anchor. Idempotent: a frozen chain keeps its first "
        "reason. Prints the chain's new status; a refusal prints REASON [chain, field]: "
        "message and exits 1.",
    )
    freeze.add_argument("--chain", required=True, help="chain id")
    freeze.add_argument("--reason", required=True, help="why, in words (recorded, shown)")
    connection_flags(freeze)
    freeze.set_defaults(func=lambda a: _cmd_admin_chain(a, rpc))
    recover = add(
        "recover",
        help="an operator recovers a frozen or expired chain with a new trust anchor",
        description="Give a frozen or expired chain a fresh trust anchor, obtained out of "
        "band from the partner; the chain goes PENDING and ACTIVE again after its first "
        "verified sync from that anchor. One operator's call: with access.approvals_required "
        "above 1 the relay refuses it, and the chain's partner proposes the recovery instead "
        "(relay admin propose --recover) for the operators to approve. --anchor takes either "
        "a chain descriptor (proto "
        "JSON or YAML, e.g. a partner's --descriptor-out file written at its current head; "
        "its tendermint.anchor or tlog.anchor is used and its chainId must match --chain) or "
        'a TrustAnchor in proto JSON ({"tendermint": {"lightBlock": ..., "height": ...}} or '
        '{"tlog": {"checkpoint": ...}}). A refusal prints REASON [chain, field]: message '
        "and exits 1.",
    )
    recover.add_argument("--chain", required=True, help="chain id")
    recover.add_argument(
        "--anchor", required=True, help="chain descriptor or TrustAnchor file (see above)"
    )
    recover.add_argument("--reason", required=True, help="the incident and the anchor's origin")
    connection_flags(recover)
    recover.set_defaults(func=lambda a: _cmd_admin_chain(a, rpc))
