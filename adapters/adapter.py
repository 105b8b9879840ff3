"""The reference adapters: :mod:`relay.sdk` adapters that talk to a partner system's node
(:mod:`adapters.node`) over its native read API and answer the relay's uniform questions.

This is the part a partner institution writes. Its two halves:

* the **key mapping** (:class:`KeyMapping`, one per deployment in ``adapters/<name>.py``):
  which uniform questions the system answers (capabilities), which asset kinds and registry
  codes it is authoritative for, and the state key that holds the answer to each question
  (record schema 1, :func:`relay.sdk.adapter.schema1_key`; a party's holdings index under
  its ``holdings`` key);
* the **node client** (:class:`CometNodeAdapter` for a CometBFT-style chain, :class:`LogNodeAdapter`
  for a C2SP-style log registry): the SDK's answer methods implemented by HTTP calls to the
  node, translating its formats (CometBFT JSON light blocks into the protobuf encoding the
  relay asks for, ``abci_query`` proof ops into ``QueryResult``, CometBFT's "state after
  block H is proven by header H+1" into the relay's "proven by the header at ``height``").

Nothing here is trusted: the relay verifies every byte against its own light client. A node
that cannot be reached makes the calls fail with UNAVAILABLE (the relay retries); a height
the node does not have is NOT_FOUND.

``python -m adapters.<name> --node URL --listen HOST:PORT --tls-cert PEM --tls-key PEM
[--tls-client-ca PEM] [--tls-ca PEM] [--server-name NAME] [--descriptor-out FILE]`` serves
one deployment (:func:`main`); the descriptor it writes is the one the partner proposes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import logging
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from adapters import DEPLOYMENTS, Deployment
from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import types_pb2 as pb
from relay.process import stop_on_signals, write_atomically
from relay.sdk.adapter import (
    CheckpointSource,
    HeaderSource,
    StateSource,
    describe_response,
    optional_field,
    schema1_key,
    timestamp,
)
from relay.sdk.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PartnerError,
    Unavailable,
)
from relay.sdk.server import AdapterStartError, start_adapter_server
from relay.testing.partners import PROFILES, ChainProfile, _chain_params
from relay.verify import records
from relay.verify.errors import VerificationError
from relay.verify.lightclient.cometbft_encoding import parse_rfc3339_ns
from relay.verify.lightclient.cometbft_proto import encode_light_block_proto
from relay.verify.lightclient.cometbft_types import decode_light_block
from relay.verify.signatures import DEFAULT_SM2_SIGNER_ID

log = logging.getLogger("adapters.adapter")

MAX_RESPONSE_BYTES = 16 << 20
"""Largest node answer the adapter reads (a light block of many validators fits)."""
NODE_TIMEOUT_S = 5.0
"""How long one node call may take before the adapter answers UNAVAILABLE."""
MAX_INDEX_BYTES = 1 << 20
"""Largest holdings index the adapter decodes to find the assets to stream."""

_ACCOUNT_KINDS = frozenset({pb.ASSET_KIND_BANK_ACCOUNT, pb.ASSET_KIND_SECURITIES_ACCOUNT})
_HASH_ENUM = {"sha256": pb.HASH_ALGORITHM_SHA256, "sm3": pb.HASH_ALGORITHM_SM3}
_SPEC_ENUM = {"sha256": pb.PROOF_SPEC_ICS23_SMT, "sm3": pb.PROOF_SPEC_ICS23_SMT_SM3}
_QUESTIONS = {
    "ownership": apb.CAPABILITY_QUERY_OWNERSHIP,
    "history": apb.CAPABILITY_QUERY_HISTORY,
    "account": apb.CAPABILITY_QUERY_ACCOUNT,
    "credit_party_key": apb.CAPABILITY_QUERY_CREDIT,
    "raw_key": apb.CAPABILITY_QUERY_RAW,
}


# --- the key mapping: what a partner writes per system ---------------------------------------


@dataclass(frozen=True)
class KeyMapping:
    """How one partner system keeps the answers to the relay's uniform questions.

    ``questions`` are the ``DomainQuery`` kinds the system answers with records of its own
    (any other question is still answered, by a proof of absence); ``asset_kinds`` and
    ``registry_codes`` are what it is authoritative for (its descriptor says so, and
    ListByParty only streams those); ``profile`` is what the institution says about itself.
    """

    questions: tuple[str, ...]
    asset_kinds: tuple[int, ...]
    registry_codes: tuple[str, ...]
    profile: ChainProfile
    list_by_party: bool = True

    def key(self, query: apb.DomainQuery) -> bytes:
        """The state key holding the answer to ``query`` (record schema 1)."""
        return schema1_key(query)

    def asset_key(self, asset: pb.AssetRef) -> bytes:
        """The state key of a listed asset's record (an account or an ownership record)."""
        if asset.kind in _ACCOUNT_KINDS:
            return records.account_key(asset)
        return records.ownership_key(asset)

    def capabilities(self) -> list[int]:
        caps = [_QUESTIONS[q] for q in self.questions]
        return [*caps, *([apb.CAPABILITY_LIST_BY_PARTY] if self.list_by_party else [])]


def mapping_for(domain: int, questions: Sequence[str]) -> KeyMapping:
    """A deployment's mapping with its institution's profile for ``domain``."""
    profile = PROFILES[domain]
    return KeyMapping(
        questions=(*questions, "raw_key"),
        asset_kinds=profile.asset_kinds,
        registry_codes=profile.registry_codes,
        profile=profile,
    )


# --- talking to the node ---------------------------------------------------------------------


class NodeError(Exception):
    """The node answered, with an error status."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        super().__init__(f"node answered HTTP {status}: {body[:300]!r}")


class NodeClient:
    """Blocking HTTP/1.1 calls to the node on loopback, one kept-alive connection per
    thread, bounded in time (:data:`NODE_TIMEOUT_S`) and size (:data:`MAX_RESPONSE_BYTES`).

    Blocking on purpose: the SDK's answer methods are plain functions, which the SDK runs
    in worker threads for this adapter (``blocking_io``), so a slow node call holds one
    thread, never the event loop."""

    def __init__(self, url: str, *, timeout_s: float = NODE_TIMEOUT_S) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"node URL must be http://HOST:PORT, not {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def get(self, path: str, params: dict[str, str | int] | None = None) -> bytes:
        """GET ``path`` with ``params``; the body of a 200 answer. Raises
        :class:`NodeError` on another status, :class:`Unavailable` when the node cannot be
        reached or answers too much."""
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("GET", target)
                response = conn.getresponse()
                body = response.read(MAX_RESPONSE_BYTES + 1)
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                if attempt == 2 or isinstance(e, TimeoutError):
                    raise Unavailable(f"node {self.url} cannot be reached: {e}") from e
                continue  # a kept-alive connection the node closed: once more, fresh
            if len(body) > MAX_RESPONSE_BYTES:
                self._drop()
                raise Unavailable(f"node {self.url} answered more than {MAX_RESPONSE_BYTES} B")
            if response.status != 200:
                raise NodeError(response.status, body)
            return body
        raise AssertionError("unreachable")

    def get_json(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        body = self.get(path, params)
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise PartnerError(f"node {self.url} answered {path} with malformed JSON") from e


def _b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise PartnerError(f"node answer: {what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as e:
        raise PartnerError(f"node answer: {what} is not base64") from e


def _field(obj: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            raise PartnerError(f"node answer lacks {'.'.join(path)}")
        obj = obj[name]
    return obj


def _uint(text: Any, what: str) -> int:
    if isinstance(text, int) and text >= 0:
        return text
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise PartnerError(f"node answer: {what} is not a number")
    return int(text)


def _holdings_assets(value: bytes) -> list[pb.AssetRef]:
    try:
        index = records.decode(
            pb.PartyHoldings, value, what="holdings index", max_bytes=MAX_INDEX_BYTES
        )
    except VerificationError as e:
        raise PartnerError(f"the node's holdings index does not decode: {e}") from e
    return list(index.assets)


# --- the adapters ----------------------------------------------------------------------------


class NodeAdapter(StateSource):
    """What both reference adapters share: the deployment, its key mapping, the node."""

    # Every answer is an HTTP call to the node: run them in worker threads (NodeClient keeps
    # one connection per thread), so a slow or hung node call never stalls the other calls.
    blocking_io = True

    def __init__(self, deployment: Deployment, mapping: KeyMapping, node: NodeClient) -> None:
        self.deployment = deployment
        self.mapping = mapping
        self.node = node

    client_type = pb.CLIENT_TYPE_UNSPECIFIED

    def base_capabilities(self) -> list[int]:
        raise NotImplementedError

    def describe(self) -> apb.DescribeResponse:
        return describe_response(
            chain_id=self.deployment.chain_id,
            client_type=self.client_type,
            capabilities=[*self.base_capabilities(), *self.mapping.capabilities()],
            adapter_version=f"adapters.{self.deployment.name}/1.0",
        )

    def query(self, request: apb.QueryRequest) -> apb.QueryResult:
        if not request.HasField("query"):
            raise InvalidArgument("query is missing")
        key = self.mapping.key(request.query)
        return self.lookup(key, optional_field(request, "height"))

    def list_by_party(self, request: apb.ListByPartyRequest) -> list[apb.QueryResult]:
        if not self.mapping.list_by_party:
            raise InvalidArgument("this system does not list by party")
        if not request.party_key:
            raise InvalidArgument("party_key is empty")
        if len(request.party_key) > 64:
            raise InvalidArgument("party_key is longer than 64 bytes")
        index = self.holdings(request.party_key, optional_field(request, "height"))
        out = [index]
        if index.HasField("value"):
            wanted = {int(k) for k in request.kinds}
            for asset in _holdings_assets(index.value):
                if not wanted or asset.kind in wanted:
                    out.append(self.lookup(self.mapping.asset_key(asset), index.height))
        return out

    def profile_descriptor(self, salt: bytes) -> pb.ChainDescriptor:
        d = self.deployment
        profile = self.mapping.profile
        return pb.ChainDescriptor(
            chain_id=d.chain_id,
            institution=profile.institution,
            domain=profile.domain,  # type: ignore[arg-type]
            display_name_zh=profile.display_name_zh,
            display_name_en=profile.display_name_en,
            proof_spec=_SPEC_ENUM[d.hash],
            record_schema_version=records.SCHEMA_VERSION,
            party_key=pb.PartyKeySpec(hash_algorithm=_HASH_ENUM[d.hash], salt=salt),
            registry_codes=self.mapping.registry_codes,
            asset_kinds=self.mapping.asset_kinds,  # type: ignore[arg-type]
        )

    # --- per kind ---

    def lookup(self, key: bytes, height: int | None) -> apb.QueryResult:
        raise NotImplementedError

    def holdings(self, party_key: bytes, height: int | None) -> apb.QueryResult:
        raise NotImplementedError

    def descriptor(self, endpoint: pb.AdapterEndpoint) -> pb.ChainDescriptor:
        raise NotImplementedError


class CometNodeAdapter(NodeAdapter, HeaderSource):
    """A CometBFT-style chain's adapter: light blocks from ``/light_block``, records from
    ``/abci_query`` (path ``/store``; the holdings index from path ``/holdings``)."""

    client_type = pb.CLIENT_TYPE_TENDERMINT
    TRUSTING_PERIOD_S = 14 * 86_400
    UNBONDING_PERIOD_S = 21 * 86_400
    MAX_CLOCK_DRIFT_S = 10

    def __init__(self, deployment: Deployment, mapping: KeyMapping, node: NodeClient) -> None:
        super().__init__(deployment, mapping, node)
        self.params = _chain_params(deployment.hash, deployment.sig, DEFAULT_SM2_SIGNER_ID)

    def base_capabilities(self) -> list[int]:
        return [apb.CAPABILITY_LIGHT_BLOCKS]

    def _rpc(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        try:
            answer = self.node.get_json(path, params)
        except NodeError as e:
            try:
                error = json.loads(e.body).get("error", {})
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, RecursionError):
                error = {}
            data = str(error.get("data", ""))[:500] if isinstance(error, dict) else ""
            if "must be less than or equal" in data or "not available" in data:
                raise NotFound(data) from e
            if e.status == 400:
                raise InvalidArgument(data or "the node refused the request") from e
            raise FailedPrecondition(data or str(e)) from e
        return _field(answer, "result")

    def _status(self) -> tuple[int, int]:
        sync = _field(self._rpc("/status"), "sync_info")
        height = _uint(_field(sync, "latest_block_height"), "latest_block_height")
        when = _field(sync, "latest_block_time")
        try:
            time_ns = parse_rfc3339_ns(when) if height and isinstance(when, str) else 0
        except VerificationError as e:
            raise PartnerError("node answer: latest_block_time is malformed") from e
        return height, time_ns

    def latest_height(self) -> apb.GetLatestHeightResponse:
        height, time_ns = self._status()
        return apb.GetLatestHeightResponse(height=height, time=timestamp(time_ns))

    def head(self) -> int:
        return self._status()[0]

    def _light_block_json(self, height: int) -> Any:
        return self._rpc("/light_block", {"height": height})

    def light_block(self, height: int, encoding: int) -> apb.LightBlock:
        block = self._light_block_json(height)
        if encoding == apb.LIGHT_BLOCK_ENCODING_COMETBFT_JSON:
            data = json.dumps(block).encode()
        else:
            try:
                data = encode_light_block_proto(decode_light_block(block, params=self.params))
            except VerificationError as e:
                raise PartnerError(f"the node's light block {height} does not decode: {e}") from e
        return apb.LightBlock(height=height, light_block=data, encoding=encoding)  # type: ignore[arg-type]

    def _abci(self, path: str, data: bytes, height: int | None) -> apb.QueryResult:
        params: dict[str, str | int] = {"path": f'"{path}"', "data": "0x" + data.hex()}
        if height is not None:
            # The relay's height H is the header whose app hash proves the answer; CometBFT
            # names the state by the block before it (H-1), and reads 0 as "the newest".
            if height < 2:
                raise NotFound(f"height {height} cannot be asked of a CometBFT node")
            params["height"] = height - 1
        params["prove"] = "true"
        response = _field(self._rpc("/abci_query", params), "response")
        if _uint(response.get("code", 0), "code") != 0:
            raise FailedPrecondition(str(response.get("log", "the node refused the query")))
        key = _b64decode(_field(response, "key"), "key")
        ops = _field(response, "proof_ops", "ops")
        if not isinstance(ops, list) or len(ops) != 1:
            raise PartnerError("node answer: expected exactly one ICS-23 proof op")
        op = ops[0]
        if not isinstance(op, dict) or op.get("type") != "ics23:smt":
            raise PartnerError("node answer: the proof op is not ics23:smt")
        result = apb.QueryResult(
            key=key,
            proof=_b64decode(op.get("data"), "proof op data"),
            proof_format=pb.PROOF_FORMAT_ICS23,
            height=_uint(_field(response, "height"), "height") + 1,
        )
        value = response.get("value")
        if value is not None:
            result.value = _b64decode(value, "value")
        return result

    def lookup(self, key: bytes, height: int | None) -> apb.QueryResult:
        return self._abci("/store", key, height)

    def holdings(self, party_key: bytes, height: int | None) -> apb.QueryResult:
        return self._abci("/holdings", party_key, height)

    def descriptor(self, endpoint: pb.AdapterEndpoint) -> pb.ChainDescriptor:
        """The descriptor the partner proposes: its profile, the party-key salt the node's
        application uses, and the newest light block as trust anchor."""
        info = _field(self._rpc("/abci_info"), "response")
        try:
            app = json.loads(_field(info, "data"))
            salt = bytes.fromhex(app["party_key_salt"])
        except (TypeError, ValueError, KeyError, json.JSONDecodeError) as e:
            raise PartnerError("node answer: abci_info data lacks the party-key salt") from e
        height = self.head()
        block = decode_light_block(self._light_block_json(height), params=self.params)
        d = self.profile_descriptor(salt)
        d.adapter.CopyFrom(endpoint)
        dep = self.deployment
        d.tendermint.CopyFrom(
            pb.TendermintClientParams(
                anchor=pb.TendermintAnchor(
                    light_block=encode_light_block_proto(block),
                    height=height,
                    header_hash=block.header.hash,
                ),
                trust_level=pb.Fraction(numerator=1, denominator=3),
                trusting_period=Duration(seconds=self.TRUSTING_PERIOD_S),
                unbonding_period=Duration(seconds=self.UNBONDING_PERIOD_S),
                max_clock_drift=Duration(seconds=self.MAX_CLOCK_DRIFT_S),
                hash_algorithm=_HASH_ENUM[dep.hash],
                signature_algorithm=(
                    pb.SIGNATURE_ALGORITHM_SM2
                    if dep.sig == "sm2"
                    else pb.SIGNATURE_ALGORITHM_ED25519
                ),
                sm2_signer_id=DEFAULT_SM2_SIGNER_ID.decode() if dep.sig == "sm2" else "",
            )
        )
        return d


class LogNodeAdapter(NodeAdapter, CheckpointSource):
    """A log registry's adapter: checkpoints and consistency proofs from the C2SP-style API,
    records from ``/map/lookup`` (the holdings index from ``/map/holdings``)."""

    client_type = pb.CLIENT_TYPE_TLOG

    def base_capabilities(self) -> list[int]:
        return [apb.CAPABILITY_CHECKPOINTS, apb.CAPABILITY_CONSISTENCY_PROOFS]

    def _get(self, path: str, params: dict[str, str | int] | None = None) -> bytes:
        try:
            return self.node.get(path, params)
        except NodeError as e:
            text = e.body[:500].decode("utf-8", "replace").strip()
            if e.status == 404:
                raise NotFound(text or f"{path}: not found") from e
            if e.status == 400:
                raise InvalidArgument(text or f"{path}: refused") from e
            raise FailedPrecondition(text or str(e)) from e

    def _note(self, size: int | None) -> bytes:
        return self._get("/checkpoint" if size is None else f"/checkpoint/{size}")

    def latest_height(self) -> apb.GetLatestHeightResponse:
        note = self._note(None)
        lines = note.split(b"\n", 2)
        if len(lines) < 3 or not lines[1].isdigit() or len(lines[1]) > 19:
            raise PartnerError("node answer: the checkpoint has no tree size line")
        return apb.GetLatestHeightResponse(height=int(lines[1]))

    def checkpoint(self, size: int | None) -> apb.GetCheckpointResponse:
        return apb.GetCheckpointResponse(signed_note=self._note(size))

    def consistency(self, size1: int, size2: int) -> apb.GetConsistencyProofResponse:
        if size1 > size2:
            raise InvalidArgument(f"need size1 <= size2, got {size1}, {size2}")
        body = self._get("/proof/consistency", {"old": size1, "new": size2})
        hashes = [
            _b64decode(line, "proof hash") for line in body.decode("ascii", "replace").split()
        ]
        return apb.GetConsistencyProofResponse(hashes=hashes)

    def _lookup(self, path: str, name: str, data: bytes, size: int | None) -> apb.QueryResult:
        params: dict[str, str | int] = {name: data.hex()}
        if size is not None:
            params["size"] = size
        try:
            answer = json.loads(self._get(path, params))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise PartnerError("node answer: malformed JSON") from e
        try:
            key = bytes.fromhex(_field(answer, "key"))
        except (TypeError, ValueError) as e:
            raise PartnerError("node answer: key is not hex") from e
        result = apb.QueryResult(
            key=key,
            proof=_b64decode(_field(answer, "proof"), "proof"),
            proof_format=pb.PROOF_FORMAT_ICS23,
            height=_uint(_field(answer, "size"), "size"),
        )
        if answer.get("value") is not None:
            result.value = _b64decode(answer["value"], "value")
        return result

    def lookup(self, key: bytes, height: int | None) -> apb.QueryResult:
        return self._lookup("/map/lookup", "key", key, height)

    def holdings(self, party_key: bytes, height: int | None) -> apb.QueryResult:
        return self._lookup("/map/holdings", "party", party_key, height)

    def descriptor(self, endpoint: pb.AdapterEndpoint) -> pb.ChainDescriptor:
        """The descriptor the partner proposes: its profile, the log's origin and verifier
        keys, its witnesses and quorum, and the newest checkpoint as anchor."""
        try:
            meta = json.loads(self._get("/metadata"))
            salt = bytes.fromhex(meta["party_key_salt"])
            witnesses = [str(w) for w in meta["witness_verifier_keys"]]
            quorum, period = int(meta["quorum"]), int(meta["trusting_period_s"])
            origin, vkey = str(meta["origin"]), str(meta["log_verifier_key"])
        except (TypeError, ValueError, KeyError, json.JSONDecodeError) as e:
            raise PartnerError("node answer: malformed /metadata") from e
        d = self.profile_descriptor(salt)
        d.adapter.CopyFrom(endpoint)
        d.tlog.CopyFrom(
            pb.TlogClientParams(
                origin=origin,
                log_verifier_key=vkey,
                hash_algorithm=_HASH_ENUM[self.deployment.hash],
                witness_verifier_keys=witnesses,
                witness_threshold=quorum,
                anchor=pb.TlogAnchor(checkpoint=self._note(None)),
                trusting_period=Duration(seconds=period),
            )
        )
        return d


def adapter_for(name: str, mapping: KeyMapping, node_url: str) -> NodeAdapter:
    """The reference adapter of deployment ``name`` talking to the node at ``node_url``."""
    deployment = DEPLOYMENTS[name]
    node = NodeClient(node_url)
    if deployment.kind == "bft":
        return CometNodeAdapter(deployment, mapping, node)
    return LogNodeAdapter(deployment, mapping, node)


# --- the process -----------------------------------------------------------------------------


class StartupError(Exception):
    """The adapter cannot start as asked; the message says why."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise StartupError(f"cannot read {what} {path}: {e.strerror}") from e


def _descriptor_when_ready(
    adapter: NodeAdapter, endpoint: pb.AdapterEndpoint, *, timeout_s: float
) -> pb.ChainDescriptor:
    # The node may still be replaying its journal: ask again until it answers.
    end = time.monotonic() + timeout_s
    while True:
        try:
            return adapter.descriptor(endpoint)
        except PartnerError as e:
            if time.monotonic() > end:
                raise StartupError(f"node {adapter.node.url} not ready: {e.message}") from e
            time.sleep(0.1)


_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


def check_listen(listen: str, advertise: str | None) -> None:
    """A descriptor names the address relays dial: a wildcard listen address is no such
    address, so it needs ``--advertise``. Raises StartupError."""
    host = listen.rpartition(":")[0]
    if host in _WILDCARD_HOSTS and not advertise:
        raise StartupError(
            f"--listen {listen} accepts calls on every interface but names none a relay can "
            "dial: add --advertise HOST[:PORT], the address relays reach this adapter at "
            "(its TLS certificate must be valid for HOST)"
        )


def advertised_address(advertise: str | None, bound: str) -> str:
    """The adapter address a descriptor names: ``advertise`` (``HOST`` takes the bound
    port), else the address the server is bound to."""
    if not advertise:
        return bound
    _, sep, port = advertise.rpartition(":")
    if sep and port.isdigit() and not advertise.endswith("]"):
        return advertise
    return f"{advertise}:{bound.rpartition(':')[2]}"


async def serve(name: str, mapping: KeyMapping, args: argparse.Namespace) -> int:
    check_listen(args.listen, args.advertise)
    cert = _read(args.tls_cert, "TLS certificate")
    key = _read(args.tls_key, "TLS key")
    client_ca = _read(args.tls_client_ca, "client CA") if args.tls_client_ca else None
    ca_pem = _read(args.tls_ca, "CA certificate") if args.tls_ca else cert
    try:
        adapter = adapter_for(name, mapping, args.node)
    except ValueError as e:
        raise StartupError(str(e)) from e
    try:
        running = await start_adapter_server(
            adapter, listen=args.listen, tls_cert=cert, tls_key=key, client_ca=client_ca
        )
    except AdapterStartError as e:
        raise StartupError(str(e)) from e
    address = advertised_address(args.advertise, running.address)
    endpoint = pb.AdapterEndpoint(
        grpc_address=address,
        tls_server_name=args.server_name or address.rpartition(":")[0].strip("[]"),
        ca_certificates_pem=ca_pem.decode(),
    )
    try:
        descriptor = await asyncio.to_thread(
            _descriptor_when_ready, adapter, endpoint, timeout_s=args.node_wait
        )
    except StartupError:
        await running.stop(0)
        raise
    if args.institution:
        descriptor.institution = args.institution
    if args.descriptor_out:
        write_atomically(
            Path(args.descriptor_out),
            json_format.MessageToJson(descriptor, indent=2, ensure_ascii=False) + "\n",
        )
    print(
        f"adapter {descriptor.chain_id} listening on {running.address}, node {args.node}",
        flush=True,
    )
    with stop_on_signals() as stop:
        await stop.wait()
    await running.stop(args.grace)
    return 0


def parse_args(name: str, argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=f"python -m adapters.{name}",
        description=f"Serve the {name} deployment's adapter (relay.adapter.v1) over gRPC "
        "with TLS, reading the deployment's node (python -m adapters.node).",
    )
    p.add_argument("--node", required=True, help="the node's native API, http://HOST:PORT")
    p.add_argument("--listen", required=True, help="HOST:PORT (port 0 picks a free port)")
    p.add_argument("--tls-cert", required=True, help="server certificate chain (PEM)")
    p.add_argument("--tls-key", required=True, help="server private key (PEM)")
    p.add_argument("--tls-ca", help="CA (PEM) put in the descriptor; default: the certificate")
    p.add_argument("--tls-client-ca", help="require client certificates issued by this CA")
    p.add_argument(
        "--advertise",
        help="HOST[:PORT] relays dial, written into the descriptor (default: the --listen "
        "address; required when --listen is a wildcard such as 0.0.0.0)",
    )
    p.add_argument(
        "--server-name", help="TLS server name in the descriptor; default: the advertised host"
    )
    p.add_argument(
        "--institution",
        help="unified social credit code of the institution proposing the chain, written into "
        "the descriptor (default: the deployment's own); it must be the code of the key that "
        "signs the proposal",
    )
    p.add_argument("--descriptor-out", help="write the chain descriptor (proto JSON) here")
    p.add_argument("--grace", type=float, default=2.0, help="seconds to drain calls on stop")
    p.add_argument("--node-wait", type=float, default=30.0, help="seconds to wait for the node")
    return p.parse_args(argv)


def main(name: str, mapping: KeyMapping, argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(name, argv)
    try:
        return asyncio.run(serve(name, mapping, args))
    except StartupError as e:
        print(f"adapters.{name}: {e}", file=sys.stderr)
        return 2
