"""A reference transparency-log witness: ``python -m adapters.witness``.

An independent process with its own key and its own persisted view of one log. It serves
the C2SP tlog-witness ``add-checkpoint`` endpoint (https://c2sp.org/tlog-witness; the client
is :class:`relay.sdk.witness.WitnessClient`): it cosigns a checkpoint only if the log's key
signed it and it is consistent with the newest checkpoint this witness cosigned before
(RFC 6962 consistency proof), so a log cannot show two histories to witnesses that talk to
each other's relays. Its view (size and root) is written and fsynced before it answers.

Answers: 200 with the cosignature line (C2SP tlog-cosignature, timestamped now); 409 with
the size it knows when the request's ``old`` size is another; 400 for malformed requests;
403 when the log signature or the consistency proof does not verify.

On start it writes ``--info-out`` (JSON: ``url``, ``vkey``) atomically; the log registry is
given ``VKEY@URL``. SIGTERM / SIGINT stop it. Keys are derived from ``--seed``: a
development witness, not a production key store.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from relay.sdk.witness import CONTENT_TYPE_SIZE, parse_add_checkpoint
from relay.testing.tlog import NoteSigner, ed25519_signer, sm2_signer
from relay.verify import note
from relay.verify.errors import VerificationError
from relay.verify.lightclient.tlog import parse_checkpoint
from relay.verify.merkle import rfc6962
from relay.verify.merkle.rfc6962 import RFC6962_SHA256, RFC6962_SM3

log = logging.getLogger("adapters.witness")
MAX_BODY_BYTES = 64 << 10


class Witness:
    """The witness's state and its cosigning rule (thread-safe)."""

    def __init__(
        self, *, signer: NoteSigner, log_vkey: str, origin: str, hash: str, state: Path
    ) -> None:
        self.signer = signer
        self.log_verifier = note.parse_verifier_key(log_vkey)
        self.origin = origin
        self.hasher = RFC6962_SM3 if hash == "sm3" else RFC6962_SHA256
        self.state_path = state / "witness.json"
        self.lock = threading.Lock()
        self.size, self.root = 0, b""
        if self.state_path.exists():
            stored = json.loads(self.state_path.read_text())
            self.size, self.root = int(stored["size"]), base64.b64decode(stored["root"])

    def _save(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with tmp.open("w") as f:
            json.dump({"size": self.size, "root": base64.b64encode(self.root).decode()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def add_checkpoint(self, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, response body) for an ``add-checkpoint`` request."""
        try:
            old, proof, checkpoint = parse_add_checkpoint(body)
            opened = note.open_note(checkpoint, verifiers=[self.log_verifier])
            cp = parse_checkpoint(opened.text, hasher=self.hasher)
        except ValueError as e:
            return 400, f"malformed request: {e}\n".encode()
        except VerificationError as e:
            return 403, f"checkpoint does not verify: {e}\n".encode()
        if cp.origin != self.origin:
            return 404, f"unknown log {cp.origin!r}\n".encode()
        with self.lock:
            if old != self.size:
                return 409, b"%d\n" % self.size
            if cp.size < self.size:
                return 400, b"checkpoint is older than the one cosigned\n"
            try:
                if self.size == 0:
                    if proof:
                        return 400, b"no proof is expected from the empty tree\n"
                else:
                    root = rfc6962.root_from_consistency_proof(
                        hasher=self.hasher,
                        size1=self.size,
                        size2=cp.size,
                        proof=proof,
                        root1=self.root,
                    )
                    if root != cp.root_hash:
                        return 403, b"consistency proof leads to another root\n"
            except VerificationError as e:
                return 403, f"consistency proof does not verify: {e}\n".encode()
            self.size, self.root = cp.size, cp.root_hash
            self._save()
            sig = self.signer.sign(opened.text, timestamp=int(time.time()))
        return 200, sig.line()


def _handler(witness: Witness) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/add-checkpoint":
                self._reply(404, b"not found\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY_BYTES:
                self._reply(413 if length else 400, b"bad length\n")
                return
            status, answer = witness.add_checkpoint(self.rfile.read(length))
            self._reply(status, answer, CONTENT_TYPE_SIZE if status == 409 else "text/plain")

        def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return Handler


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m adapters.witness", description=__doc__)
    p.add_argument("--name", required=True, help="witness key name, e.g. witness-1.example.cn")
    p.add_argument("--seed", help="key seed (development keys); default: the name")
    p.add_argument("--sig", choices=("ed25519", "sm2"), default="ed25519")
    p.add_argument("--origin", required=True, help="the log's origin line")
    p.add_argument("--log-vkey", required=True, help="the log's verifier key")
    p.add_argument("--hash", choices=("sha256", "sm3"), default="sha256")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (0: any free port)")
    p.add_argument("--state", required=True, help="directory of the witness's view")
    p.add_argument("--info-out", help="write {url, vkey} (JSON) here once listening")
    return p.parse_args(argv)


def make_signer(name: str, *, seed: str, sig: str) -> NoteSigner:
    make = sm2_signer if sig == "sm2" else ed25519_signer
    return make(name, seed=seed, cosigner=True)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    signer = make_signer(args.name, seed=args.seed or args.name, sig=args.sig)
    try:
        witness = Witness(
            signer=signer, log_vkey=args.log_vkey, origin=args.origin, hash=args.hash, state=state
        )
    except (VerificationError, ValueError, KeyError) as e:
        print(f"witness: cannot start: {e}", file=sys.stderr)
        return 2
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), _handler(witness))
    url = f"http://{host}:{server.server_address[1]}"
    if args.info_out:
        out = Path(args.info_out)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps({"url": url, "vkey": signer.vkey}) + "\n")
        os.replace(tmp, out)
    print(f"witness {args.name} for {args.origin} listening on {url}", flush=True)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
