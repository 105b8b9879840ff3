"""The one ``relay`` command. Exit codes: 0 success, 1 a check failed, 2 usage or input error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.config import RelayConfig
    from relay.service.client import ClientTls

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with how the command was called or with its input files."""


def _cmd_vectors_check(args: argparse.Namespace) -> int:
    from relay.vectors import KINDS, LAYOUT, CaseResult, VectorFileError, load_runner

    jobs: list[tuple[str, Path]] = []
    if args.all:
        if args.kind:
            raise UsageError("--all and --kind are exclusive")
        if len(args.paths) != 1:
            raise UsageError("--all takes exactly one directory: the shared vectors folder")
        root = Path(args.paths[0])
        if not root.is_dir():
            raise UsageError(f"{root}: not a directory")
        for kind, sub in LAYOUT.items():
            jobs.append((kind, root / sub))
    else:
        if not args.kind:
            raise UsageError("--kind is required (or --all)")
        if args.kind not in KINDS:
            raise UsageError(f"unknown kind {args.kind!r}; known: {', '.join(KINDS)}")
        if not args.paths:
            raise UsageError("no vector paths given")
        jobs = [(args.kind, Path(p)) for p in args.paths]

    summary: dict[str, list[int]] = {}
    all_matched = True
    for kind, path in jobs:
        try:
            runner = load_runner(kind)
            results: list[CaseResult] = list(runner(path))
        except VectorFileError as e:
            raise UsageError(f"{kind}: {e}") from e
        if not results:
            raise UsageError(f"{kind}: no vector cases found under {path}")
        counts = summary.setdefault(kind, [0, 0])
        for r in results:
            counts[0] += 1
            if r.matched:
                counts[1] += 1
            else:
                all_matched = False
            if not args.table:
                print(r.to_json())
    if args.table:
        _print_table(summary)
    return EXIT_OK if all_matched else EXIT_FAILED


def _print_table(summary: dict[str, list[int]]) -> None:
    width = max(len(k) for k in summary) if summary else 4
    print(f"{'kind':<{width}}  {'cases':>6}  {'matched':>7}  {'mismatched':>10}  result")
    for kind, (total, matched) in summary.items():
        result = "PASS" if total == matched else "FAIL"
        print(f"{kind:<{width}}  {total:>6}  {matched:>7}  {total - matched:>10}  {result}")


# ---------------------------------------------------------------------------- service


def _load_config(path: str | None) -> RelayConfig:
    from relay.config import ConfigError, load_config

    if not path:
        raise UsageError("--config FILE is required")
    try:
        return load_config(path)
    except ConfigError as e:
        raise UsageError(f"{path}: " + "; ".join(e.problems)) from None


def _setup_logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    """Run the relay until SIGTERM/SIGINT. Exit 1 when it cannot start (a corrupt
    database, a port in use, a broken adapter), 2 on configuration problems."""
    import asyncio

    from relay.config import ConfigError
    from relay.engine.adapters import AdapterLoadError
    from relay.service.app import StartupError, serve
    from relay.store import StoreError

    config = _load_config(args.config)
    _setup_logging(config.log_level)
    try:
        asyncio.run(serve(config, insecure_dev=args.insecure_dev))
    except ConfigError as e:
        raise UsageError(f"{args.config}: " + "; ".join(e.problems)) from None
    except (StoreError, StartupError, AdapterLoadError, OSError) as e:
        # A corrupt or locked database, a chain that cannot be registered, a broken
        # adapter, a port in use: each message says what failed and what to do.
        print(f"relay: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _cmd_health_check(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from relay.service.client import local_address

    address = args.address or local_address(_load_config(args.config).listen.health)
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=args.timeout)
        except grpc.RpcError as e:
            code = e.code() if callable(getattr(e, "code", None)) else None
            name = code.name if code is not None else "ERROR"
            print(f"relay at {address}: not reachable ({name})")
            return EXIT_FAILED
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"relay at {address}: {status}")
    return EXIT_OK if reply.status == health_pb2.HealthCheckResponse.SERVING else EXIT_FAILED


def _cmd_config_validate(args: argparse.Namespace) -> int:
    from relay.config import validate_file

    problems = validate_file(args.file, insecure_dev=args.insecure_dev)
    if not problems:
        print("OK")
        return EXIT_OK
    for problem in problems:
        print(problem)
    return EXIT_USAGE


# ---------------------------------------------------------------------------- clients


def _client(args: argparse.Namespace) -> tuple[str, ClientTls | None]:
    """Server address and TLS material from flags, else from the config file."""
    import os

    from relay.config import ENV_CLIENT_KEY, ENV_CONFIG
    from relay.service.client import ClientTls, local_address

    config_path = args.config or os.environ.get(ENV_CONFIG)
    config = _load_config(config_path) if config_path else None
    cc = config.client if config else None
    server = args.server or (cc.server if cc and cc.server else None)
    if not server and config is not None:
        server = local_address(config.listen.grpc)
    if not server:
        raise UsageError("no server: pass --server HOST:PORT or --config FILE")
    if args.insecure:
        return server, None
    ca = Path(args.ca) if args.ca else (cc.ca if cc else None)
    cert = Path(args.cert) if args.cert else (cc.cert if cc else None)
    key = Path(args.key) if args.key else (cc.key if cc else None)
    if ca is None:
        raise UsageError("no CA certificate: pass --ca FILE or set client.ca in the config")
    if cert is not None and key is None and not os.environ.get(ENV_CLIENT_KEY):
        raise UsageError(f"--cert needs --key (or ${ENV_CLIENT_KEY})")
    if key is not None and cert is None:
        raise UsageError("--key needs --cert")
    from_env = bool(os.environ.get(ENV_CLIENT_KEY))
    try:
        key_pem = os.environ[ENV_CLIENT_KEY].encode() if from_env else None
        if key_pem is None and key is not None:
            key_pem = key.read_bytes()
        tls = ClientTls(
            ca_pem=ca.read_bytes(),
            cert_pem=cert.read_bytes() if cert else None,
            key_pem=key_pem if cert else None,
            server_name=args.server_name or (cc.server_name if cc else None),
        )
    except OSError as e:
        raise UsageError(f"cannot read {e.filename}: {e.strerror}") from None
    _check_tls_files(
        tls,
        ca=_source("--ca", "client.ca", ca, flag_given=bool(args.ca), config=config_path),
        cert=_source("--cert", "client.cert", cert, flag_given=bool(args.cert), config=config_path),
        key=(
            f"${ENV_CLIENT_KEY}"
            if from_env
            else _source("--key", "client.key", key, flag_given=bool(args.key), config=config_path)
        ),
    )
    return server, tls


def _source(
    flag: str, field: str, path: Path | None, *, flag_given: bool, config: str | None
) -> str:
    """Where a TLS file came from, for messages: ``--cert a.pem`` or ``client.cert a.pem
    (from relay.yaml)``."""
    return f"{flag} {path}" if flag_given else f"{field} {path} (from {config})"


def _check_tls_files(tls: ClientTls, *, ca: str, cert: str, key: str) -> None:
    """Refuse TLS material gRPC would reject only during the handshake, with a message that
    does not name the cause ("Failed to create security handshaker"): a CA file without a
    certificate, a client certificate or key that does not parse, a key that is not the
    certificate's. Key types this cryptography build cannot load are left to gRPC."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_pem_x509_certificates(tls.ca_pem)
    except ValueError:
        raise UsageError(f"{ca}: no PEM certificate in the file") from None
    if tls.cert_pem is None or tls.key_pem is None:
        return
    try:
        certificate = x509.load_pem_x509_certificates(tls.cert_pem)[0]
    except ValueError:
        raise UsageError(f"{cert}: not a PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(tls.key_pem, password=None)
    except TypeError:  # cryptography's "password was not given but the key is encrypted"
        raise UsageError(f"{key}: the key is encrypted; gRPC needs an unencrypted key") from None
    except ValueError:
        raise UsageError(f"{key}: not a PEM private key") from None
    except UnsupportedAlgorithm:
        return
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        cert_public = certificate.public_key().public_bytes(*spki)
    except (ValueError, UnsupportedAlgorithm):
        return
    if private_key.public_key().public_bytes(*spki) != cert_public:
        raise UsageError(
            f"{key} does not match {cert}: the key's public key is not the certificate's "
            "(pass the key that belongs to that certificate)"
        )


def _rpc(args: argparse.Namespace, call: Callable[[Any], Any]) -> int:
    """Open a channel, run ``call(channel)``, turn RPC failures into one line and exit 1.
    ``call`` may return an exit status (an answer that holds a failed chain); None is 0."""
    import grpc

    from relay.service.client import channel
    from relay.service.errors import describe_rpc_error

    server, tls = _client(args)
    with channel(server, tls) as ch:
        try:
            status = call(ch)
        except grpc.RpcError as e:
            failure = describe_rpc_error(e)
            print(f"relay: {failure.one_line()}", file=sys.stderr)
            if tls is not None and "WRONG_VERSION_NUMBER" in failure.message:
                # The server answered the TLS hello with something that is not TLS.
                print(
                    f"relay: {server} does not speak TLS: it looks like a relay started with "
                    "--insecure-dev and no tls: section; pass --insecure to talk plaintext "
                    "to it (development only), or check --server",
                    file=sys.stderr,
                )
            if e.code() == grpc.StatusCode.UNAVAILABLE and tls is not None and not tls.cert_pem:
                # The relay ends the TLS handshake of a client without a certificate, which
                # reaches us only as "Socket closed": say what is most likely missing.
                print(
                    "relay: no client certificate was presented; the relay requires one "
                    "(mutual TLS): pass --cert FILE --key FILE or set client.cert and "
                    "client.key in the config",
                    file=sys.stderr,
                )
            return EXIT_FAILED
    return status if isinstance(status, int) else EXIT_OK


def _parse_enum(enum: Any, text: str, *, flag: str) -> Any:
    """The enum value ``text`` names (full name, or without the enum's prefix, any case,
    dashes for underscores); UsageError listing the choices otherwise."""
    from relay.service.render import enum_name

    wanted = text.strip().upper().replace("-", "_")
    for value in enum.DESCRIPTOR.values:
        if value.number == 0:
            continue
        if wanted in (value.name, enum_name(enum, value.number)):
            return value.number
    known = ", ".join(
        enum_name(enum, v.number).lower().replace("_", "-")
        for v in enum.DESCRIPTOR.values
        if v.number
    )
    raise UsageError(f"{flag}: unknown value {text!r}; one of: {known}")


def _case(args: argparse.Namespace) -> Any:
    from relay.pb.relay.v1 import types_pb2

    missing = [
        flag
        for flag, value in (
            ("--case-court", args.case_court),
            ("--case-number", args.case_number),
            ("--case-purpose", args.case_purpose),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"every query cites its case: {', '.join(missing)} required")
    return types_pb2.CaseRef(
        court=args.case_court,
        case_number=args.case_number,
        purpose=_parse_enum(types_pb2.CasePurpose, args.case_purpose, flag="--case-purpose"),
        officer=args.officer or "",
    )


def _asset(args: argparse.Namespace, *, default_kind: str | None = None) -> Any:
    from relay.pb.relay.v1 import types_pb2

    kind = args.asset_kind or default_kind
    if not kind:
        raise UsageError("--asset-kind is required")
    if not args.registry or not args.id:
        raise UsageError("--registry and --id are required")
    return types_pb2.AssetRef(
        kind=_parse_enum(types_pb2.AssetKind, kind, flag="--asset-kind"),
        registry=args.registry,
        id=args.id,
    )


def _party(args: argparse.Namespace) -> Any:
    from relay.pb.relay.v1 import types_pb2

    if not args.id:
        raise UsageError("--id is required")
    return types_pb2.PartyRef(
        kind=_parse_enum(types_pb2.PartyKind, args.party_kind, flag="--party-kind"),
        id_type=_parse_enum(types_pb2.IdType, args.id_type, flag="--id-type"),
        id=args.id,
    )


def _write_json(path: Path, message: Any) -> None:
    from google.protobuf import json_format

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json_format.MessageToJson(message, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write evidence to {path}: {e.strerror}") from None


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:100] or "chain"


def _print_answer(args: argparse.Namespace, answer: Any, text: str) -> None:
    from google.protobuf import json_format

    if args.json:
        print(json_format.MessageToJson(answer, indent=2))
    else:
        print(text)


def _failed_chains(answers: Sequence[Any]) -> int:
    """Name on stderr every chain whose part of a multi-chain answer FAILED (its answer
    proves nothing, so the command failed: exit 1). UNPROVEN is an honest "cannot prove",
    shown as such in the table, and not a failure."""
    from relay.pb.relay.v1 import types_pb2
    from relay.service.render import enum_name

    failed = [a for a in answers if a.outcome == types_pb2.OUTCOME_FAILED]
    if not failed:
        return EXIT_OK
    names = ", ".join(
        f"{a.chain_id} ({enum_name(types_pb2.ErrorReason, a.failure.reason)})" for a in failed
    )
    print(
        f"relay: {len(failed)} of {len(answers)} chain(s) FAILED: {names}; their part of the "
        "answer proves nothing",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _check_evidence_out(out: Path, *, directory: bool) -> None:
    """Refuse an --evidence-out that cannot be written before the query runs (the query is
    recorded in the audit log; its evidence should not be lost to a typo)."""
    import os

    flag = f"--evidence-out {out}"
    if directory and out.exists() and not out.is_dir():
        raise UsageError(f"{flag}: not a directory (holdings and credit write one file each)")
    if not directory and out.is_dir():
        raise UsageError(f"{flag}: is a directory; give the evidence file's name")
    existing = out if directory else out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: {existing} is not writable")


def _cmd_query(args: argparse.Namespace) -> int:
    from relay.pb.relay.v1 import query_pb2, query_pb2_grpc, types_pb2
    from relay.service import render

    timeout = args.timeout
    case = _case(args)
    at_height = getattr(args, "at_height", None)
    at = {"at_height": at_height} if at_height is not None else {}
    out = Path(args.evidence_out) if args.evidence_out else None
    kind = args.query_kind
    if out is not None:
        _check_evidence_out(out, directory=kind in ("holdings", "credit"))

    if kind == "ownership":
        req: Any = query_pb2.GetOwnershipRequest(asset=_asset(args), case_ref=case, **at)
    elif kind == "account":
        req = query_pb2.GetAccountRequest(
            account=_asset(args, default_kind="bank-account"), case_ref=case, **at
        )
    elif kind == "history":
        req = query_pb2.GetHistoryRequest(asset=_asset(args), case_ref=case, **at)
    elif kind == "state":
        try:
            key = bytes.fromhex(args.state_key)
        except ValueError:
            raise UsageError("--state-key must be hex") from None
        if not key:
            raise UsageError("--state-key must not be empty")
        req = query_pb2.GetStateRequest(chain_id=args.chain, key=key, case_ref=case, **at)
    elif kind == "credit":
        req = query_pb2.GetCreditStatusRequest(party=_party(args), case_ref=case)
    else:
        kinds = [_parse_enum(types_pb2.AssetKind, k, flag="--kinds") for k in args.kinds or ()]
        req = query_pb2.ListHoldingsRequest(party=_party(args), kinds=kinds, case_ref=case)

    def run(channel: Any) -> int:
        stub = query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        if kind == "holdings":
            answers = []
            for answer in stub.ListHoldings(req, timeout=timeout):
                answers.append(answer)
                if not args.json:
                    print(render.holdings_answer(answer) + "\n")
            if args.json:
                from google.protobuf import json_format

                print("[" + ",\n".join(json_format.MessageToJson(a) for a in answers) + "]")
            if not answers:
                print("no chain holds the requested asset kinds", file=sys.stderr)
            if out is not None:
                for a in answers:
                    base = _safe_name(a.chain_id)
                    if a.HasField("index_evidence"):
                        _write_json(out / f"{base}-index.json", a.index_evidence)
                    for i, h in enumerate(a.holdings, 1):
                        _write_json(out / f"{base}-{i}.json", h.evidence)
            return _failed_chains(answers)
        method: dict[str, tuple[Any, Callable[[Any], str]]] = {
            "ownership": (stub.GetOwnership, render.ownership_answer),
            "account": (stub.GetAccount, render.account_answer),
            "history": (stub.GetHistory, render.history_answer),
            "state": (stub.GetState, render.state_answer),
            "credit": (stub.GetCreditStatus, render.credit_answer),
        }
        call, show = method[kind]
        answer = call(req, timeout=timeout)
        _print_answer(args, answer, show(answer))
        status = _failed_chains(answer.findings) if kind == "credit" else EXIT_OK
        if out is None:
            return status
        if kind == "credit":
            for f in answer.findings:
                if f.HasField("evidence"):
                    _write_json(out / f"{_safe_name(f.chain_id)}.json", f.evidence)
        elif answer.HasField("evidence"):
            _write_json(out, answer.evidence)
        else:
            print(f"no evidence to write to {out} (outcome UNPROVEN)", file=sys.stderr)
        return status

    return _rpc(args, run)


def _cmd_chains_list(args: argparse.Namespace) -> int:
    from relay.pb.relay.v1 import query_pb2, query_pb2_grpc, types_pb2
    from relay.service import render

    domain = (
        _parse_enum(types_pb2.Domain, args.domain, flag="--domain")
        if args.domain
        else types_pb2.DOMAIN_UNSPECIFIED
    )

    def run(channel: Any) -> None:
        stub = query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.ListChains(query_pb2.ListChainsRequest(domain=domain), timeout=args.timeout)
        _print_answer(args, reply, render.chains(reply.chains))

    return _rpc(args, run)


def _connection_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (defaults from --config, or $RELAY_CONFIG)")
    g.add_argument("--config", help="relay config file (its client: section gives defaults)")
    g.add_argument("--server", help="relay API address HOST:PORT")
    g.add_argument("--ca", help="PEM of the CA that issued the relay's certificate")
    g.add_argument("--cert", help="PEM client certificate")
    g.add_argument("--key", help="PEM client key (or $RELAY_CLIENT_KEY)")
    g.add_argument("--server-name", help="TLS name to expect in the relay's certificate")
    g.add_argument("--insecure", action="store_true", help="plaintext (--insecure-dev relays)")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")


def _add_service_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the relay", description=_cmd_serve.__doc__)
    serve.add_argument("--config", required=True, help="relay config file (YAML)")
    serve.add_argument(
        "--insecure-dev",
        action="store_true",
        help=(
            "development only (logs a warning): allow serving without TLS, without client "
            "certificates (tls.require_client_cert: false) and without an access: section"
        ),
    )
    serve.set_defaults(func=_cmd_serve)

    health = sub.add_parser(
        "health-check",
        help="ask a running relay's health port; exit 0 only when SERVING",
    )
    health.add_argument("--config", help="relay config file (listen.health is asked)")
    health.add_argument("--address", help="health address HOST:PORT instead of the config's")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    health.set_defaults(func=_cmd_health_check)

    config = sub.add_parser("config", help="configuration files")
    csub = config.add_subparsers(dest="config_command", required=True)
    validate = csub.add_parser(
        "validate", help="check a config file: prints OK (exit 0) or each problem (exit 2)"
    )
    validate.add_argument("file")
    validate.add_argument(
        "--insecure-dev",
        action="store_true",
        help="check as `relay serve --insecure-dev` starts (tls:, client certificates and "
        "access: optional)",
    )
    validate.set_defaults(func=_cmd_config_validate)

    chains = sub.add_parser("chains", help="registered partner chains")
    chsub = chains.add_subparsers(dest="chains_command", required=True)
    chains_list = chsub.add_parser("list", help="every chain and its light-client state")
    chains_list.add_argument("--domain", help="only this domain (real-estate, ip, credit, bank)")
    chains_list.add_argument("--json", action="store_true", help="proto JSON instead of a table")
    _connection_flags(chains_list)
    chains_list.set_defaults(func=_cmd_chains_list)

    query = sub.add_parser("query", help="verified queries with evidence")
    qsub = query.add_subparsers(dest="query_kind", required=True)
    helps = {
        "ownership": "who owns an asset and what restricts it",
        "holdings": "what a party holds across all chains (one answer per chain)",
        "credit": "dishonest-debtor listings and consumption restrictions of a party",
        "account": "a bank account's holder, balance and freezes",
        "history": "an asset's registered history",
        "state": "the raw value under a state key of one chain",
    }
    for name, text in helps.items():
        q = qsub.add_parser(name, help=text, description=text)
        if name in ("ownership", "account", "history"):
            q.add_argument(
                "--asset-kind",
                help="real-estate, vehicle, equity, patent, trademark, copyright, "
                "bank-account, securities-account"
                + (" (default bank-account)" if name == "account" else ""),
            )
            q.add_argument("--registry", help="registry code of the asset")
            q.add_argument("--id", help="the registry's identifier of the asset")
        if name in ("holdings", "credit"):
            q.add_argument("--party-kind", default="person", help="person or org")
            q.add_argument(
                "--id-type", default="resident-id", help="resident-id, uscc, passport, ..."
            )
            q.add_argument("--id", help="the party's identifier")
        if name == "holdings":
            q.add_argument("--kinds", nargs="*", help="asset kinds (default: all)")
        if name == "state":
            q.add_argument("--chain", required=True, help="chain id")
            q.add_argument("--state-key", required=True, help="the raw state key, hex")
        if name in ("ownership", "account", "history", "state"):
            q.add_argument("--at-height", type=int, help="answer as of this height")
        c = q.add_argument_group("case (required)")
        c.add_argument("--case-court", help="court code, e.g. 京0105")
        c.add_argument("--case-number", help="case number, e.g. (2026)京0105执1234号")
        c.add_argument(
            "--case-purpose",
            help="investigation, preservation, enforcement or trial-evidence",
        )
        c.add_argument("--officer", help="officer making the inquiry")
        q.add_argument("--json", action="store_true", help="proto JSON instead of tables")
        q.add_argument(
            "--evidence-out",
            help="write the evidence as proto JSON to this file (holdings and credit: "
            "a directory, one file per evidence)",
        )
        _connection_flags(q)
        q.set_defaults(func=_cmd_query)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    vectors = sub.add_parser("vectors", help="conformance test vectors")
    vsub = vectors.add_subparsers(dest="vectors_command", required=True)
    check = vsub.add_parser(
        "check",
        help="run a verifier over vector files, one JSON line per case",
        description="Exit 0 when every verdict matches its file's expectation, 1 otherwise, "
        "2 on usage errors.",
    )
    check.add_argument("--kind", help="vector kind (see relay.vectors.KINDS)")
    check.add_argument(
        "--all",
        action="store_true",
        help="run every kind over the shared vectors folder given as the only path",
    )
    check.add_argument("--table", action="store_true", help="print a summary table instead")
    check.add_argument("paths", nargs="*", help="vector files or directories")
    check.set_defaults(func=_cmd_vectors_check)

    _add_service_commands(sub)
    from relay.access.commands import add_commands as _add_access_commands

    _add_access_commands(sub, connection_flags=_connection_flags, rpc=_rpc)
    from relay.offline import add_commands as _add_offline_commands

    _add_offline_commands(sub)  # relay verify, relay anchors export
    from relay.demo import add_command as _add_demo_command

    _add_demo_command(sub)  # relay demo
    from relay.audit.export import add_commands as _add_audit_commands

    _add_audit_commands(sub)  # relay audit verify, relay audit export
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed the message
        return EXIT_USAGE if e.code not in (0, None) else EXIT_OK
    import os

    # gRPC's C core logs handshake failures and the like on stderr by itself; client
    # commands report every failure in one line of their own instead.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if args.command == "serve" else "NONE")
    # The demo and the tests start child processes from a process that uses gRPC. With gRPC's
    # fork support on, a child can abort between fork and exec on an epoll descriptor that
    # close_fds already closed (grpc/grpc PR 43157); nothing here needs gRPC across fork.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    try:
        code: int = args.func(args)
    except UsageError as e:
        print(f"relay: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as e:  # a bug: one line for the user, the traceback only on request
        if os.environ.get("RELAY_DEBUG"):
            raise
        print(
            f"relay: internal error: {type(e).__name__}: {e} (set RELAY_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
