"""Asking independent witnesses to cosign a log's checkpoints: the client side of the C2SP
tlog-witness protocol (https://c2sp.org/tlog-witness, ``add-checkpoint``), for a partner that
runs a transparency-log registry.

A witness keeps the newest checkpoint it cosigned per log. The log posts::

    old <size the witness last saw>
    <base64 hash of the consistency proof from that size>   (one per line)
    <empty line>
    <the new checkpoint, a signed note carrying the log's signature>

and the witness answers 200 with its cosignature line(s) (C2SP tlog-cosignature), or 409
with the size it actually knows (the log then retries with a proof from that size). The
reference witness process is ``python -m adapters.witness``.
"""

from __future__ import annotations

import base64
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from relay.verify import note
from relay.verify.errors import VerificationError

log = logging.getLogger("relay.sdk.witness")

CONTENT_TYPE_SIZE = "text/x.tlog.size"
MAX_RESPONSE_BYTES = 16 << 10


def add_checkpoint_body(*, old_size: int, proof: Sequence[bytes], checkpoint: bytes) -> bytes:
    """The request body of ``add-checkpoint``."""
    lines = [b"old %d\n" % old_size, *(base64.b64encode(h) + b"\n" for h in proof)]
    return b"".join(lines) + b"\n" + checkpoint


def parse_add_checkpoint(body: bytes, *, max_proof: int = 64) -> tuple[int, list[bytes], bytes]:
    """(old size, proof hashes, checkpoint note) of an ``add-checkpoint`` body; raises
    ValueError when it is malformed."""
    head, sep, checkpoint = body.partition(b"\n\n")
    if not sep:
        raise ValueError("no empty line between the proof and the checkpoint")
    lines = head.split(b"\n")
    first = lines[0].split(b" ")
    if len(first) != 2 or first[0] != b"old" or not first[1].isdigit() or len(first[1]) > 19:
        raise ValueError("first line must be 'old <size>'")
    if len(lines) - 1 > max_proof:
        raise ValueError(f"more than {max_proof} proof hashes")
    proof = []
    for line in lines[1:]:
        try:
            proof.append(base64.b64decode(line, validate=True))
        except ValueError as e:
            raise ValueError(f"proof line is not base64: {e}") from None
    return int(first[1]), proof, checkpoint


class WitnessClient:
    """One remote witness: its verifier key (``vkey``, trusted out of band) and its URL.

    :meth:`cosign` posts a checkpoint and returns the witness's verified cosignature, or
    ``None`` when the witness is down, refuses, or answers something that does not verify
    (a registry keeps publishing then, with fewer cosignatures: the relay reports the
    weaker assurance)."""

    def __init__(self, vkey: str, url: str, *, timeout_s: float = 2.0) -> None:
        self.vkey = vkey
        self._verifier = note.parse_verifier_key(vkey)
        self.name = self._verifier.name
        self.url = url.rstrip("/") + "/add-checkpoint"
        self.timeout_s = timeout_s
        self.known_size = 0

    def verifier(self) -> note.NoteVerifier:
        return self._verifier

    def _post(self, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return int(response.status), response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as e:
            return int(e.code), e.read(MAX_RESPONSE_BYTES)

    def cosign(
        self, checkpoint: bytes, *, size: int, proof: Callable[[int], list[bytes]]
    ) -> note.NoteSignature | None:
        """Ask for a cosignature of ``checkpoint`` (tree ``size``); ``proof(old)`` gives the
        consistency proof from the size the witness knows."""
        for _ in range(2):  # a 409 tells the size the witness knows: retry once from it
            old = min(self.known_size, size)
            body = add_checkpoint_body(
                old_size=old, proof=proof(old) if old else [], checkpoint=checkpoint
            )
            try:
                status, answer = self._post(body)
            except (OSError, urllib.error.URLError) as e:
                log.warning("witness %s unreachable: %s", self.name, e)
                return None
            if status == 409:
                text = answer.strip()
                if not text.isdigit():
                    return None
                self.known_size = int(text)
                continue
            if status != 200:
                log.warning("witness %s refused (%d): %s", self.name, status, answer[:200])
                return None
            try:
                opened = note.open_note(checkpoint + answer, verifiers=[self._verifier])
            except VerificationError as e:
                log.warning("witness %s answered an invalid cosignature: %s", self.name, e)
                return None
            if not opened.verified:
                return None
            self.known_size = size
            return opened.verified[0]
        return None
