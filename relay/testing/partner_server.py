"""A partner chain and its adapter as ONE real process: ``python -m relay.testing.partner_server``
(the engine's own tests; the reference deployments in ``adapters/`` run the chain as a node,
``python -m adapters.node``, and the adapter as a separate process reading it, both built on
the chain, journal, fault-switch and activity code here: :func:`open_chain`,
:func:`produce`, :func:`add_chain_args`).

Serves ``relay.adapter.v1.AdapterService`` over gRPC with TLS for one test partner chain
(:mod:`relay.testing.partners`) that it owns and advances: a BFT chain makes a block every
``--block-interval`` seconds; a log registry publishes a checkpoint whenever it has new
writes. ``--activity`` makes one realistic change per interval (a new seizure, a transfer, a
freeze...), so both kinds keep moving. ``--seed-data`` loads :func:`partners.sample_data` into
a fresh chain. ``--fault NAME`` serves through a :class:`partners.LyingAdapter`.

State survives restarts: ``--state DIR`` holds ``chain.jsonl``, an append-only journal (one
JSON line per committed block or checkpoint: its time and the writes it holds, fsynced before
the block is served) after a first line naming the chain's parameters. A restart replays it
into exactly the same chain (same keys, state roots, header hashes and checkpoint bodies); a
line cut short by a crash is dropped, since its block was never served.

A log registry given ``--witness VKEY@URL`` (repeatable) has no witness keys of its own: each
checkpoint is sent to those witness processes (``python -m adapters.witness``, the C2SP
tlog-witness protocol via :class:`relay.sdk.witness.WitnessClient`) and published with the
cosignatures they return (fewer when a witness is down); the journal keeps each published
checkpoint so a restart serves the same bytes.

Fault switches of a running process: ``faults.json`` in the state directory (see
:func:`write_faults`: ``stall``, ``bad_proofs``, ``equivocate``), read every interval.

The adapter is served with the :mod:`relay.sdk.server` harness. Once listening, the chain
descriptor (proto JSON, with this process as adapter endpoint and
the anchor at the current head) is written atomically to ``--descriptor-out``; tests wait for
that file. SIGTERM or SIGINT stops gracefully: no new calls, in-flight calls get
``--grace`` seconds, the journal is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import json_format

from relay.pb.relay.v1 import types_pb2 as pb
from relay.process import stop_on_signals, write_atomically
from relay.sdk.server import AdapterStartError, start_adapter_server
from relay.sdk.witness import WitnessClient
from relay.testing import samples
from relay.testing.partners import (
    BftPartnerChain,
    Fault,
    LyingAdapter,
    PartnerAdapter,
    TlogPartnerRegistry,
    Write,
    sample_data,
)
from relay.verify import records
from relay.verify.errors import VerificationError

log = logging.getLogger("relay.testing.partner_server")

JOURNAL = "chain.jsonl"
FORMAT = "relay-testing-partner/1"
DOMAINS = {
    "real-estate": pb.DOMAIN_REAL_ESTATE,
    "ip": pb.DOMAIN_IP,
    "credit": pb.DOMAIN_CREDIT,
    "bank": pb.DOMAIN_BANK,
}
MAX_MESSAGE_BYTES = 16 << 20


class StartupError(Exception):
    """The process cannot start as asked; the message says why."""


# --- the chain and its journal ---------------------------------------------------------------


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": args.kind,
        "chain_id": args.chain_id,
        "domain": args.domain,
        "hash": args.hash,
        "sig": args.sig,
        "validators": args.validators,
        "origin": args.origin,
        "witnesses": args.witnesses,
        "quorum": args.quorum,
    } | ({"remote_witnesses": [w.split("@", 1)[0] for w in args.witness]} if args.witness else {})


def build_chain(
    config: dict[str, Any], *, witnesses: Sequence[str] = ()
) -> BftPartnerChain | TlogPartnerRegistry:
    """A fresh chain from the parameters of a journal's first line; ``witnesses`` are the
    remote witnesses (``VKEY@URL``) of a log registry."""
    domain = DOMAINS[config["domain"]]
    if config["kind"] == "bft":
        return BftPartnerChain(
            config["chain_id"],
            validators=config["validators"],
            hash=config["hash"],
            sig=config["sig"],
            domain=domain,
        )
    return TlogPartnerRegistry(
        config["origin"],
        chain_id=config["chain_id"],
        witnesses=config["witnesses"],
        quorum=config["quorum"],
        hash=config["hash"],
        sig=config["sig"],
        domain=domain,
        remote_witnesses=[WitnessClient(*w.split("@", 1)) for w in witnesses],
    )


def _writes_json(writes: Sequence[Write]) -> list[list[str | None]]:
    return [[k.hex(), None if v is None else v.hex()] for k, v in writes]


def _apply_writes(chain: BftPartnerChain | TlogPartnerRegistry, writes: Any) -> None:
    for key_hex, value_hex in writes:
        key = bytes.fromhex(key_hex)
        if value_hex is None:
            chain.delete(key)
        else:
            chain.put_raw(key, bytes.fromhex(value_hex))


class Journal:
    """The append-only record of a chain's committed blocks (or checkpoints)."""

    def __init__(self, directory: Path, *, witnesses: Sequence[str] = ()) -> None:
        self.witnesses = tuple(witnesses)
        self.path = directory / JOURNAL
        self._file: TextIO | None = None
        self._time_field = "time_ns"
        self.chain: TlogPartnerRegistry | None = None

    def load(self, config: dict[str, Any]) -> BftPartnerChain | TlogPartnerRegistry:
        """Replay the journal into a chain (a fresh one if there is no journal yet) and open
        it for appending. Refuses a journal written for other chain parameters."""
        lines: list[str] = []
        if self.path.exists():
            raw = self.path.read_text(encoding="utf-8")
            lines = raw.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            elif lines:
                log.warning("dropping a journal line cut short by a crash")
                lines.pop()
                self.path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        if lines:
            try:
                stored = json.loads(lines[0])
            except json.JSONDecodeError as e:
                raise StartupError(f"{self.path}: first line is not JSON: {e}") from e
            if stored != config:
                diff = {k: (stored.get(k), v) for k, v in config.items() if stored.get(k) != v}
                raise StartupError(
                    f"{self.path} belongs to another chain (stored vs asked: {diff}); "
                    "use another --state directory"
                )
        chain = build_chain(config, witnesses=self.witnesses)
        self._time_field = "time_ns" if isinstance(chain, BftPartnerChain) else "timestamp"
        for number, line in enumerate(lines[1:], start=2):
            try:
                entry = json.loads(line)
                _apply_writes(chain, entry["writes"])
                if isinstance(chain, BftPartnerChain):
                    chain.commit(time_ns=int(entry["time_ns"]))
                else:
                    # Cosignatures of remote witnesses cannot be made again: replay them.
                    stored = entry.get("note")
                    chain.commit(
                        timestamp=int(entry["timestamp"]),
                        note=None if stored is None else base64.b64decode(stored),
                    )
                if chain.height != entry["height"]:
                    raise ValueError(f"replay reached height {chain.height}, not {entry['height']}")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise StartupError(f"{self.path}:{number}: unreadable journal line: {e}") from e
        self._file = self.path.open("a", encoding="utf-8")
        if not lines:
            self._append(config)
        self.chain = chain if isinstance(chain, TlogPartnerRegistry) else None
        chain.listeners.append(self._on_commit)
        return chain

    def _append(self, entry: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def _on_commit(self, height: int, time_value: int, writes: list[Write]) -> None:
        entry: dict[str, Any] = {
            "height": height,
            self._time_field: time_value,
            "writes": _writes_json(writes),
        }
        if self.witnesses and self.chain is not None:
            entry["note"] = base64.b64encode(self.chain.checkpoint(height)).decode()
        self._append(entry)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- fault switches ---------------------------------------------------------------------------

FAULTS = "faults.json"
FAULT_NAMES = ("stall", "bad_proofs", "equivocate")


def write_faults(state_dir: Path, **switches: bool) -> None:
    """Switch faults of a running partner (read at its next block interval): ``stall`` (no
    new blocks or checkpoints), ``bad_proofs`` (every proof has one byte changed),
    ``equivocate`` (stop, then serve a second, fully signed header at the head: a fork with
    all of the voting power, or a split view of a log)."""
    unknown = set(switches) - set(FAULT_NAMES)
    if unknown:
        raise ValueError(f"unknown fault switches {sorted(unknown)}; known: {FAULT_NAMES}")
    write_atomically(state_dir / FAULTS, json.dumps(switches) + "\n")


class FaultSwitches:
    """Applies ``faults.json`` of the state directory to the chain at each interval."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._equivocating = False
        self._pending_equivocation = False

    def apply(self, chain: BftPartnerChain | TlogPartnerRegistry) -> None:
        if self._pending_equivocation:
            # One interval after stalling: the relay has seen the honest head by now, so the
            # second header at that height is a conflict it must detect.
            self._pending_equivocation = False
            if chain.height:
                chain.equivocate(chain.height)
                log.warning("fault: equivocating at height %d", chain.height)
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            wanted = json.loads(self.path.read_text()) if mtime is not None else {}
        except (OSError, json.JSONDecodeError) as e:
            log.warning("ignoring unreadable %s: %s", self.path, e)
            return
        equivocate = bool(wanted.get("equivocate"))
        chain.bad_proofs = bool(wanted.get("bad_proofs"))
        chain.stalled = bool(wanted.get("stall")) or equivocate
        if equivocate and not self._equivocating:
            self._pending_equivocation = True
        elif not equivocate and self._equivocating:
            chain.heal()
        self._equivocating = equivocate
        log.warning("fault switches now %s", wanted)


# --- synthetic activity ----------------------------------------------------------------------


def activity_step(chain: BftPartnerChain | TlogPartnerRegistry, rng: random.Random) -> None:
    """One realistic change to an existing record: a court seizes (or freezes) an asset,
    an asset changes hands, a listing is added. Does nothing on an empty chain."""
    state = chain.working_state
    candidates = []
    for key, value in state.items():
        try:
            record_key, record = records.decode_for_key(key, value)
        except VerificationError:
            continue
        if record_key.WhichOneof("record") in ("ownership", "account", "credit_party_key"):
            candidates.append((record_key, record))
        if len(candidates) >= 64:
            break
    if not candidates:
        return
    record_key, record = rng.choice(candidates)
    court = rng.choice(samples.COURTS)
    now = int(time.time())
    case = samples.case_number(time.gmtime(now).tm_year, court.code, "执", rng.randint(1, 19_999))
    if isinstance(record, pb.OwnershipRecord):
        record.encumbrances.add(
            kind=pb.ENCUMBRANCE_KIND_SEIZURE
            if record.asset.kind == pb.ASSET_KIND_REAL_ESTATE
            else pb.ENCUMBRANCE_KIND_FREEZE,
            holder=pb.RecordParty(kind=pb.PARTY_KIND_ORG, name=court.name),
            court=court.code,
            case_number=case,
            since=samples.ts(now),
            until=samples.ts(now + 3 * 365 * samples.DAY),
            status=pb.REGISTRATION_STATUS_REGISTERED,
            registered_at=samples.ts(now),
            rank=sum(1 for e in record.encumbrances if e.court) + 1,
        )
    elif isinstance(record, pb.AccountRecord):
        record.freezes.add(
            court=court.code,
            case_number=case,
            amount=samples.cny(rng.randint(1, 100) * 10_000),
            since=samples.ts(now),
            until=samples.ts(now + 365 * samples.DAY),
            status=pb.REGISTRATION_STATUS_REGISTERED,
            rank=len(record.freezes) + 1,
        )
    elif isinstance(record, pb.CreditRecord):
        record.listings.add(
            court=court.code,
            case_number=case,
            obligation="支付货款人民币" + str(rng.randint(1, 90) * 10_000) + "元",
            circumstance="有履行能力而拒不履行生效法律文书确定义务",
            listed_at=samples.ts(now),
        )
    chain.put_record(record_key, record)


# --- the server ------------------------------------------------------------------------------


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise StartupError(f"cannot read {what} {path}: {e.strerror}") from e


def open_chain(
    args: argparse.Namespace, state_dir: Path
) -> tuple[Journal, BftPartnerChain | TlogPartnerRegistry]:
    """The chain of ``args`` replayed from the journal in ``state_dir`` (created, and seeded
    with sample data under ``--seed-data``, on first start)."""
    journal = Journal(state_dir, witnesses=args.witness)
    chain = journal.load(_config(args))
    if chain.height == 0:
        if args.seed_data:
            sample_data(chain)
        else:
            # A chain needs one block (checkpoint) to be anchored: commit a first one (a log
            # needs a first entry for that).
            if isinstance(chain, TlogPartnerRegistry):
                chain.put_raw(b"relay.testing/genesis", chain.chain_id.encode())
            chain.commit()
    return journal, chain


async def produce(
    chain: BftPartnerChain | TlogPartnerRegistry,
    args: argparse.Namespace,
    stop: asyncio.Event,
    state_dir: Path,
) -> None:
    """Block (checkpoint) production until ``stop``: every ``--block-interval`` apply the
    fault switches of ``state_dir``, make one synthetic change under ``--activity``, commit."""
    switches = FaultSwitches(state_dir / FAULTS)
    rng = random.Random(f"{chain.chain_id}/activity/{chain.height}")
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=args.block_interval)
        if stop.is_set():
            return
        switches.apply(chain)
        if args.activity and not chain.stalled:
            activity_step(chain, rng)
        chain.commit()


async def serve(args: argparse.Namespace) -> int:
    state_dir = Path(args.state)
    state_dir.mkdir(parents=True, exist_ok=True)
    cert = _read(args.tls_cert, "TLS certificate")
    key = _read(args.tls_key, "TLS key")
    client_ca = _read(args.tls_client_ca, "client CA") if args.tls_client_ca else None
    ca_pem = _read(args.tls_ca, "CA certificate") if args.tls_ca else cert

    journal, chain = open_chain(args, state_dir)
    honest = PartnerAdapter(chain)
    adapter: PartnerAdapter = honest
    if args.fault:
        adapter = LyingAdapter(honest, Fault[args.fault])

    host = args.listen.rpartition(":")[0]
    try:
        running = await start_adapter_server(
            adapter, listen=args.listen, tls_cert=cert, tls_key=key, client_ca=client_ca
        )
    except AdapterStartError as e:
        raise StartupError(str(e)) from e
    address = running.address
    endpoint = pb.AdapterEndpoint(
        grpc_address=address,
        tls_server_name=args.server_name or host.strip("[]"),
        ca_certificates_pem=ca_pem.decode(),
    )
    descriptor = chain.descriptor(endpoint)
    if args.descriptor_out:
        write_atomically(
            Path(args.descriptor_out),
            json_format.MessageToJson(descriptor, indent=2, ensure_ascii=False) + "\n",
        )
    print(f"partner {chain.chain_id} ({args.kind}) listening on {address}", flush=True)

    with stop_on_signals() as stop:
        producer = (
            asyncio.create_task(produce(chain, args, stop, state_dir))
            if args.block_interval > 0
            else None
        )
        await stop.wait()
    log.info("stopping: draining calls for up to %.1f s", args.grace)
    if producer is not None:
        await producer
    await running.stop(args.grace)
    journal.close()
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m relay.testing.partner_server",
        description="Serve a test partner chain's AdapterService over gRPC with TLS.",
    )
    p.add_argument("--listen", required=True, help="HOST:PORT (port 0 picks a free port)")
    p.add_argument("--tls-cert", required=True, help="server certificate chain (PEM)")
    p.add_argument("--tls-key", required=True, help="server private key (PEM)")
    p.add_argument("--tls-ca", help="CA (PEM) put in the descriptor; default: the certificate")
    p.add_argument("--tls-client-ca", help="require client certificates issued by this CA")
    p.add_argument("--server-name", help="TLS server name in the descriptor; default: host")
    add_chain_args(p)
    p.add_argument("--fault", choices=[f.name for f in Fault], help="serve this lie")
    p.add_argument("--descriptor-out", help="write the chain descriptor (proto JSON) here")
    p.add_argument("--grace", type=float, default=2.0, help="seconds to drain calls on stop")
    return finish_chain_args(p.parse_args(argv))


def add_chain_args(p: argparse.ArgumentParser) -> None:
    """The flags naming a chain, its journal and its block production (shared with the
    split chain node, ``python -m adapters.node``)."""
    p.add_argument("--kind", choices=("bft", "tlog"), required=True)
    p.add_argument("--state", required=True, help="directory of the chain's journal")
    p.add_argument("--chain-id", help="default: cn-bj-chaoyang-realestate / cn-cnipa-patents")
    p.add_argument("--domain", choices=sorted(DOMAINS), help="default: real-estate / ip")
    p.add_argument("--hash", choices=("sha256", "sm3"), default="sha256")
    p.add_argument("--sig", choices=("ed25519", "sm2"), default="ed25519")
    p.add_argument("--validators", type=int, default=4, help="BFT validators")
    p.add_argument("--origin", default="cnipa.example.cn/patent-register", help="log origin")
    p.add_argument("--witnesses", type=int, default=3, help="log witnesses")
    p.add_argument("--quorum", type=int, default=2, help="witness cosignatures required")
    p.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="VKEY@URL",
        help="a remote witness process (repeat); replaces the in-process witness keys",
    )
    p.add_argument("--block-interval", type=float, default=1.0, help="seconds; 0 = never")
    p.add_argument("--activity", action="store_true", help="one synthetic change per interval")
    p.add_argument("--seed-data", action="store_true", help="load sample data into a new chain")


def finish_chain_args(args: argparse.Namespace) -> argparse.Namespace:
    """Defaults that depend on ``--kind``."""
    if args.chain_id is None:
        args.chain_id = "cn-bj-chaoyang-realestate" if args.kind == "bft" else "cn-cnipa-patents"
    if args.domain is None:
        args.domain = "real-estate" if args.kind == "bft" else "ip"
    if args.kind == "tlog":
        args.validators = 0
    else:
        args.origin, args.witnesses, args.quorum, args.witness = "", 0, 0, []
    if args.witness:
        args.witnesses = len(args.witness)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except StartupError as e:
        print(f"partner_server: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
