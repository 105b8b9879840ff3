"""A reference partner system's node: ``python -m adapters.node --kind bft|tlog --state DIR
--listen 127.0.0.1:0 ...``.

The node runs the partner's own system and nothing of the relay's contract: it produces
blocks (a BFT chain) or checkpoints (a log registry), keeps its journal, applies fault
switches and synthetic activity (all shared with :mod:`relay.testing.partner_server`), and
exposes the system's OWN read API over plain HTTP on loopback, modelled on what such systems
really expose. The adapter (:mod:`adapters.adapter`) is a separate process that reads this
API and maps the relay's uniform questions onto it.

BFT chain: a CometBFT-style JSON-RPC over HTTP GET (``{"jsonrpc": "2.0", "id": -1,
"result": ...}``; errors as ``{"error": {"code", "message", "data"}}``):

* ``/status``: ``node_info.network`` (the chain id), ``sync_info.latest_block_height`` /
  ``latest_block_time`` / ``latest_app_hash`` / ``earliest_block_height``;
* ``/light_block?height=H``: the light block (signed header and validator sets) in the
  CometBFT JSON shape;
* ``/abci_query?path="/store"&data=0xKEY&height=H&prove=true``: the value of a state key
  after block H and its ICS-23 proof op (type ``ics23:smt``), as CometBFT answers it: the app
  hash proving it is that of block H+1's header. ``path="/holdings"`` with a party key as
  ``data`` answers the party's holdings index (the state machine maintains it);
* ``/abci_info``: the application's name, version, last height and party-key salt.

Log registry: a C2SP-style HTTP API:

* ``/checkpoint`` (the newest signed note, ``text/plain``), ``/checkpoint/SIZE`` (a
  published older one);
* ``/proof/consistency?old=N&new=M`` and ``/proof/inclusion?index=I&size=N``: RFC 6962
  proofs, one base64 hash per line;
* ``/entries?start=S&end=E``: log entries (base64, one per line, at most 256);
* ``/map/lookup?key=HEX&size=N`` and ``/map/holdings?party=HEX&size=N``: a state-map value
  and its ICS-23 proof against the ``map-root`` line of checkpoint N (JSON);
* ``/metadata``: origin, log and witness verifier keys, quorum, hash, party-key salt.

Every request is bounded (URL length, key size, numbers) and answered 400 when malformed;
nothing the node serves is trusted by the relay, which verifies every byte through its
adapter. ``--info-out FILE`` receives ``{"url": ...}`` once the node listens. SIGTERM or
SIGINT stops block production and closes the journal.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters import DEPLOYMENTS
from relay.process import stop_on_signals, write_atomically
from relay.sdk.errors import PartnerError
from relay.testing import partner_server as ps
from relay.testing.partners import BftPartnerChain, TlogPartnerRegistry
from relay.testing.tendermint import light_block_json
from relay.verify import records
from relay.verify.lightclient.cometbft_encoding import format_rfc3339_ns

log = logging.getLogger("adapters.node")

MAX_URL_BYTES = 4096
"""Longest request line the node reads (aiohttp refuses longer ones)."""
MAX_KEY_BYTES = 1024
"""Largest state key (or party key) a query may name."""
MAX_ENTRIES = 256
"""Most log entries one ``/entries`` call returns."""
MAX_HEIGHT = 2**63 - 1
APP_NAME = "relay-reference-registry"
APP_VERSION = "1.0"

Chain = BftPartnerChain | TlogPartnerRegistry


class BadRequest(Exception):
    """A request the node cannot parse (HTTP 400)."""


class NotAvailable(Exception):
    """A height or size the node does not have (HTTP 404 / CometBFT's internal error)."""


# --- parameters ------------------------------------------------------------------------------


def _param(request: web.Request, name: str, *, required: bool = True) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"parameter {name} given {len(values)} times")
    if not values:
        if required:
            raise BadRequest(f"parameter {name} is missing")
        return None
    value: str = values[0]
    # CometBFT's URI form quotes strings: path="/store".
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def _int(request: web.Request, name: str, *, required: bool = True) -> int | None:
    text = _param(request, name, required=required)
    if text is None:
        return None
    # ASCII only: str.isdigit() also accepts digits such as '²' that int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise BadRequest(f"parameter {name} must be a decimal number, not {text[:40]!r}")
    value = int(text)
    if value > MAX_HEIGHT:
        raise BadRequest(f"parameter {name} is too large")
    return value


def _hex(text: str | None, name: str) -> bytes:
    if text is None:
        raise BadRequest(f"parameter {name} is missing")
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if len(text) > 2 * MAX_KEY_BYTES:
        raise BadRequest(f"parameter {name} is longer than {MAX_KEY_BYTES} bytes")
    try:
        data = bytes.fromhex(text)
    except ValueError as e:
        raise BadRequest(f"parameter {name} is not hex") from e
    if not data:
        raise BadRequest(f"parameter {name} is empty")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- a CometBFT-style RPC --------------------------------------------------------------------


def _rpc_result(result: Any) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": -1, "result": result})


def _rpc_error(status: int, code: int, message: str, data: str) -> web.Response:
    body = {"jsonrpc": "2.0", "id": -1, "error": {"code": code, "message": message, "data": data}}
    return web.json_response(body, status=status)


def _rpc(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return _rpc_result(handler(request))
        except BadRequest as e:
            return _rpc_error(400, -32602, "Invalid params", str(e))
        except NotAvailable as e:
            return _rpc_error(500, -32603, "Internal error", str(e))

    return wrapped


def _bft_height(chain: BftPartnerChain, height: int | None) -> int:
    if height is None or height == 0:
        return chain.height
    if height > chain.height:
        raise NotAvailable(
            f"height {height} must be less than or equal to the current blockchain height "
            f"{chain.height}"
        )
    return height


def bft_routes(chain: BftPartnerChain) -> list[web.RouteDef]:
    """The CometBFT-style RPC of a BFT chain node."""

    def status(request: web.Request) -> Any:
        h = chain.height
        header = chain.header(h) if h else None
        return {
            "node_info": {"network": chain.chain_id, "version": APP_VERSION, "moniker": "node-0"},
            "sync_info": {
                "latest_block_height": str(h),
                "latest_block_hash": header.hash.hex().upper() if header else "",
                "latest_app_hash": header.app_hash.hex().upper() if header else "",
                "latest_block_time": format_rfc3339_ns(chain.latest_time_ns) if h else "",
                "earliest_block_height": "1" if h else "0",
                "catching_up": False,
            },
        }

    def abci_info(request: web.Request) -> Any:
        h = chain.height
        return {
            "response": {
                "data": json.dumps(
                    {"party_key_salt": chain.party_salt.hex(), "hash": chain.hash_name}
                ),
                "version": APP_VERSION,
                "app_version": "1",
                "last_block_height": str(max(h - 1, 0)),
                "last_block_app_hash": _b64(chain.header(h).app_hash) if h else "",
            }
        }

    def light_block(request: web.Request) -> Any:
        h = _bft_height(chain, _int(request, "height", required=False))
        if h < 1:
            raise NotAvailable("the chain has no block yet")
        return light_block_json(chain.light_block(h))

    def abci_query(request: web.Request) -> Any:
        path = _param(request, "path")
        data = _hex(_param(request, "data"), "data")
        if path == "/store":
            key = data
        elif path == "/holdings":
            key = records.holdings_key(data)
        else:
            raise BadRequest(f"unknown query path {path!r}; known: /store, /holdings")
        prove = (_param(request, "prove", required=False) or "false") == "true"
        asked = _int(request, "height", required=False)
        # CometBFT semantics: the answer at height H is the state after block H, whose root
        # the app hash of header H+1 carries; height 0 means the newest such state.
        if chain.height < 2:
            raise NotAvailable("no committed state can be proven yet")
        h = asked if asked else chain.height - 1
        if h + 1 > chain.height:
            raise NotAvailable(
                f"height {h} must be less than or equal to the current blockchain height "
                f"{chain.height - 1}"
            )
        try:
            result = chain.query(key, h + 1)
        except PartnerError as e:  # the chain's refusal, reported CometBFT-style
            raise NotAvailable(str(e)) from e
        response: dict[str, Any] = {
            "code": 0,
            "log": "exists" if result.HasField("value") else "does not exist",
            "info": "",
            "index": "0",
            "key": _b64(key),
            "value": _b64(result.value) if result.HasField("value") else None,
            "proof_ops": None,
            "height": str(h),
            "codespace": "",
        }
        if prove:
            response["proof_ops"] = {
                "ops": [{"type": "ics23:smt", "key": _b64(key), "data": _b64(result.proof)}]
            }
        return {"response": response}

    return [
        web.get("/status", _rpc(status)),
        web.get("/abci_info", _rpc(abci_info)),
        web.get("/light_block", _rpc(light_block)),
        web.get("/abci_query", _rpc(abci_query)),
    ]


# --- a C2SP-style log API --------------------------------------------------------------------


def _plain(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    async def wrapped(request: web.Request) -> web.Response:
        try:
            body = handler(request)
        except BadRequest as e:
            return web.Response(status=400, text=f"{e}\n")
        except NotAvailable as e:
            return web.Response(status=404, text=f"{e}\n")
        if isinstance(body, bytes):
            return web.Response(body=body, content_type="text/plain", charset="utf-8")
        return web.json_response(body)

    return wrapped


def tlog_routes(chain: TlogPartnerRegistry) -> list[web.RouteDef]:
    """The C2SP-style HTTP API of a log registry node."""

    def published(size: int | None) -> int:
        s = chain.height if size is None else size
        if s not in chain.heights():
            raise NotAvailable(f"no checkpoint of size {s} was published")
        return s

    def checkpoint(request: web.Request) -> bytes:
        if not chain.height:
            raise NotAvailable("no checkpoint published yet")
        return chain.checkpoint()

    def checkpoint_at(request: web.Request) -> bytes:
        text = request.match_info["size"]
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise BadRequest("size must be a decimal number")
        return chain.checkpoint(published(int(text)))

    def lines(hashes: Sequence[bytes]) -> bytes:
        return "".join(_b64(h) + "\n" for h in hashes).encode()

    def consistency(request: web.Request) -> bytes:
        old, new = _int(request, "old"), _int(request, "new")
        assert old is not None and new is not None
        if old > new:
            raise BadRequest("need old <= new")
        if new > chain.log.size:
            raise NotAvailable(f"no tree of size {new}")
        return lines(chain.consistency_proof(old, new))

    def inclusion(request: web.Request) -> bytes:
        index, size = _int(request, "index"), _int(request, "size")
        assert index is not None and size is not None
        if not index < size:
            raise BadRequest("need index < size")
        if size > chain.log.size:
            raise NotAvailable(f"no tree of size {size}")
        return lines(chain.inclusion_proof(index, size))

    def entries(request: web.Request) -> bytes:
        start, end = _int(request, "start"), _int(request, "end")
        assert start is not None and end is not None
        if not start < end or end - start > MAX_ENTRIES:
            raise BadRequest(f"need start < end <= start + {MAX_ENTRIES}")
        if end > chain.log.size:
            raise NotAvailable(f"the log has {chain.log.size} entries")
        return lines(chain.log.entries[start:end])

    def lookup_key(key: bytes, request: web.Request) -> Any:
        size = published(_int(request, "size", required=False))
        try:
            result = chain.query(key, size)
        except PartnerError as e:  # the chain's refusal (e.g. an empty map)
            raise NotAvailable(str(e)) from e
        return {
            "size": size,
            "key": key.hex(),
            "value": _b64(result.value) if result.HasField("value") else None,
            "proof": _b64(result.proof),
            "proof_format": "ics23",
        }

    def lookup(request: web.Request) -> Any:
        return lookup_key(_hex(_param(request, "key"), "key"), request)

    def holdings(request: web.Request) -> Any:
        return lookup_key(records.holdings_key(_hex(_param(request, "party"), "party")), request)

    def metadata(request: web.Request) -> Any:
        return {
            "origin": chain.origin,
            "log_verifier_key": chain.log_signer.vkey,
            "witness_verifier_keys": [w.vkey for w in chain.witness_keys],
            "quorum": chain.quorum,
            "hash": chain.hash_name,
            "party_key_salt": chain.party_salt.hex(),
            "trusting_period_s": chain.trusting_period_s,
        }

    return [
        web.get("/checkpoint", _plain(checkpoint)),
        web.get("/checkpoint/{size}", _plain(checkpoint_at)),
        web.get("/proof/consistency", _plain(consistency)),
        web.get("/proof/inclusion", _plain(inclusion)),
        web.get("/entries", _plain(entries)),
        web.get("/map/lookup", _plain(lookup)),
        web.get("/map/holdings", _plain(holdings)),
        web.get("/metadata", _plain(metadata)),
    ]


def make_app(chain: Chain) -> web.Application:
    """The node's HTTP application for ``chain`` (either kind)."""
    app = web.Application(
        client_max_size=1024,  # the API is GET-only: no request bodies
        handler_args={"max_line_size": MAX_URL_BYTES, "max_field_size": MAX_URL_BYTES},
    )
    routes = bft_routes(chain) if isinstance(chain, BftPartnerChain) else tlog_routes(chain)
    app.add_routes(routes)
    return app


# --- the process -----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state)
    state_dir.mkdir(parents=True, exist_ok=True)
    journal, chain = ps.open_chain(args, state_dir)
    runner = web.AppRunner(make_app(chain), access_log=None, handle_signals=False)
    await runner.setup()
    host, _, port = args.listen.rpartition(":")
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise ps.StartupError(f"cannot listen on {args.listen}: {e.strerror}") from e
    bound = runner.addresses[0][1] if runner.addresses else int(port)
    url = f"http://{host}:{bound}"
    if args.info_out:
        write_atomically(Path(args.info_out), json.dumps({"url": url, "kind": args.kind}))
    print(f"node {chain.chain_id} ({args.kind}) serving its native API on {url}", flush=True)
    with stop_on_signals() as stop:
        producer = (
            asyncio.create_task(ps.produce(chain, args, stop, state_dir))
            if args.block_interval > 0
            else None
        )
        await stop.wait()
    if producer is not None:
        await producer
    await runner.cleanup()
    journal.close()
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m adapters.node",
        description="Run a reference partner system's node and serve its native read API.",
    )
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (loopback; 0: any port)")
    p.add_argument("--info-out", help="write {url} here once listening")
    p.add_argument(
        "--deployment", choices=sorted(DEPLOYMENTS), help="take the chain flags of this one"
    )
    ps.add_chain_args(p)
    raw = list(sys.argv[1:] if argv is None else argv)
    if "--deployment" in raw:
        name = raw[raw.index("--deployment") + 1]
        if name in DEPLOYMENTS:
            raw = [*DEPLOYMENTS[name].server_args(), *raw]
    return ps.finish_chain_args(p.parse_args(raw))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except ps.StartupError as e:
        print(f"adapters.node: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
