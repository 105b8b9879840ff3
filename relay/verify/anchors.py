"""Anchors files (``ANCHORS.yaml``): what an offline verifier trusts, and nothing else.

An anchors file lists, for each registered chain, the chain's :class:`ChainAnchor` (light-
client type, client parameters with the registered trust anchor, the pinned proof spec, the
record schema) and the hash algorithm of its party keys, and the relay's public signing keys
(key id -> algorithm and key). It deliberately holds no adapter endpoint and no party-key
salt: it is public, and a party, a lawyer or an appeal court checks evidence with it alone
(``relay verify``; the ``Evidence`` documentation in proto/relay/v1/types.proto, step 2).

Format (YAML; every field required unless marked optional)::

    format: relay-anchors/1
    chains:
      - chain_id: cn-bj-chaoyang-realestate
        display_name_zh: 北京市朝阳区不动产登记链      # optional, for display
        display_name_en: Chaoyang real estate chain  # optional, for display
        domain: DOMAIN_REAL_ESTATE                   # optional, for display
        client_type: CLIENT_TYPE_TENDERMINT          # or CLIENT_TYPE_TLOG
        proof_spec: PROOF_SPEC_ICS23_SMT
        record_schema_version: 1
        party_key_hash: HASH_ALGORITHM_SHA256        # or HASH_ALGORITHM_SM3
        tendermint: {...}   # proto3 JSON of relay.v1.TendermintClientParams (tlog: for logs)
    relay_keys:
      - key_id: relay-bj-2026-01
        algorithm: SIGNATURE_ALGORITHM_ED25519       # or SIGNATURE_ALGORITHM_SM2
        public_key: <base64>                         # raw Ed25519 key / SEC1 SM2 point
        sm2_signer_id: ""                            # optional (SM2 only)

Loading (:func:`parse_anchors`) is strict: a size and depth limit, no YAML aliases or tags
beyond plain data, no duplicate or unknown keys, every chain's parameters and registered
anchor decoded and checked (a CometBFT anchor must carry a valid commit of its own
validators), and each problem reported with its location (``chains[2].tendermint: ...``).

Pure: text in, frozen values out (the caller reads the file).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify.errors import LimitExceededError, MalformedInputError, VerificationError
from relay.verify.evidence import (
    ChainAnchor,
    RelayKey,
    decode_anchor_block,
    tendermint_options,
    tlog_config,
)
from relay.verify.structure import load_yaml, structure_problem

ANCHORS_FORMAT: Final = "relay-anchors/1"
MAX_ANCHORS_BYTES: Final = 16 << 20
"""Largest anchors file accepted (a few chains with big validator sets fit easily)."""
MAX_ANCHORS_DEPTH: Final = 48
MAX_CHAINS: Final = 1000
MAX_RELAY_KEYS: Final = 100

_CHAIN_ID = re.compile(r"^[A-Za-z0-9._-]{1,50}$")
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

_CHAIN_FIELDS: Final = frozenset(
    {
        "chain_id",
        "display_name_zh",
        "display_name_en",
        "domain",
        "client_type",
        "proof_spec",
        "record_schema_version",
        "party_key_hash",
        "tendermint",
        "tlog",
    }
)
_KEY_FIELDS: Final = frozenset({"key_id", "algorithm", "public_key", "sm2_signer_id"})


class AnchorsFileError(MalformedInputError):
    """The anchors file cannot be used; the message names the field (``where``)."""

    reason = "ANCHORS_INVALID"

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__(f"{where}: {problem}" if where else problem)


@dataclass(frozen=True, slots=True)
class AnchoredChain:
    """One chain of an anchors file: the verifier's anchor and what is shown about it."""

    anchor: ChainAnchor
    party_key_hash: int
    display_name_zh: str = ""
    display_name_en: str = ""
    domain: int = pb.DOMAIN_UNSPECIFIED


@dataclass(frozen=True, slots=True)
class AnchorSet:
    """A loaded anchors file: chains by chain id, relay keys by key id."""

    chains: Mapping[str, AnchoredChain] = field(default_factory=dict)
    relay_keys: Mapping[str, RelayKey] = field(default_factory=dict)

    @property
    def anchors(self) -> dict[str, ChainAnchor]:
        """The chain anchors as :func:`relay.verify.evidence.verify_evidence` takes them."""
        return {k: c.anchor for k, c in self.chains.items()}


# --- building --------------------------------------------------------------------------------


def anchored_chain(descriptor: pb.ChainDescriptor) -> AnchoredChain:
    """The anchors-file entry of a registered chain's descriptor (its adapter endpoint and
    party-key salt are left out)."""
    return AnchoredChain(
        anchor=ChainAnchor.from_descriptor(descriptor),
        party_key_hash=descriptor.party_key.hash_algorithm,
        display_name_zh=descriptor.display_name_zh,
        display_name_en=descriptor.display_name_en,
        domain=descriptor.domain,
    )


def anchor_set(
    descriptors: Iterable[pb.ChainDescriptor], *, relay_keys: Iterable[RelayKey]
) -> AnchorSet:
    """The anchors of ``descriptors`` (e.g. every chain a relay's store has registered) and
    the relay's public keys."""
    chains = {d.chain_id: anchored_chain(d) for d in descriptors}
    keys = {k.key_id: k for k in relay_keys}
    return AnchorSet(chains=chains, relay_keys=keys)


def _enum_name(enum: Any, value: int) -> str:
    item = enum.DESCRIPTOR.values_by_number.get(value)
    return str(item.name) if item is not None else str(value)


def _params_json(params: Message) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(params)
    return out


def dump_anchors(anchors: AnchorSet) -> str:
    """The YAML text of ``anchors`` (parse_anchors(dump_anchors(a)) gives ``a`` back)."""
    chains: list[dict[str, Any]] = []
    for chain_id in sorted(anchors.chains):
        c = anchors.chains[chain_id]
        a = c.anchor
        entry: dict[str, Any] = {"chain_id": a.chain_id}
        if c.display_name_zh:
            entry["display_name_zh"] = c.display_name_zh
        if c.display_name_en:
            entry["display_name_en"] = c.display_name_en
        if c.domain:
            entry["domain"] = _enum_name(pb.Domain, c.domain)
        entry["client_type"] = _enum_name(pb.ClientType, a.client_type)
        entry["proof_spec"] = _enum_name(pb.ProofSpec, a.proof_spec)
        entry["record_schema_version"] = a.record_schema_version
        entry["party_key_hash"] = _enum_name(pb.HashAlgorithm, c.party_key_hash)
        if a.tendermint is not None:
            entry["tendermint"] = _params_json(a.tendermint)
        if a.tlog is not None:
            entry["tlog"] = _params_json(a.tlog)
        chains.append(entry)
    keys: list[dict[str, Any]] = []
    for key_id in sorted(anchors.relay_keys):
        k = anchors.relay_keys[key_id]
        item: dict[str, Any] = {
            "key_id": k.key_id,
            "algorithm": _enum_name(pb.SignatureAlgorithm, k.algorithm),
            "public_key": base64.b64encode(k.public_key).decode("ascii"),
        }
        if k.sm2_signer_id:
            item["sm2_signer_id"] = k.sm2_signer_id.decode("utf-8")
        keys.append(item)
    header = (
        "# Trust anchors for offline verification of relay evidence: `relay verify EVIDENCE "
        "--anchors FILE`.\n# Public: no adapter endpoints, no party-key salts. Check it "
        "against the relay operator's published copy.\n"
    )
    body = yaml.safe_dump(
        {"format": ANCHORS_FORMAT, "chains": chains, "relay_keys": keys},
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return header + body


# --- loading ---------------------------------------------------------------------------------


def _load_yaml(data: bytes) -> object:
    if len(data) > MAX_ANCHORS_BYTES:
        raise LimitExceededError(
            "anchors file is too large", length=len(data), limit=MAX_ANCHORS_BYTES
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AnchorsFileError("", f"not UTF-8 (byte {e.start})") from None
    try:
        value = load_yaml(text, aliases=False, string_keys=True, what="anchors files")
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise AnchorsFileError(where, f"{e.problem or e.context}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise AnchorsFileError("", f"not valid YAML ({type(e).__name__})") from None
    except ValueError as e:  # e.g. an integer longer than Python converts (4300 digits)
        raise AnchorsFileError("", f"a value cannot be read: {str(e)[:120]}") from None
    if structure_problem(value, max_depth=MAX_ANCHORS_DEPTH) is not None:
        raise LimitExceededError(
            "anchors file nests too deeply", length=MAX_ANCHORS_DEPTH + 1, limit=MAX_ANCHORS_DEPTH
        )
    return value


def _mapping(value: object, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AnchorsFileError(where, "expected a mapping")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise AnchorsFileError(f"{where}.{unknown[0]}" if where else unknown[0], "unknown field")
    return value


def _text(m: dict[str, Any], name: str, where: str, *, required: bool = True) -> str:
    if name not in m:
        if required:
            raise AnchorsFileError(f"{where}.{name}", "missing")
        return ""
    value = m[name]
    if not isinstance(value, str):
        raise AnchorsFileError(f"{where}.{name}", "expected a string")
    if len(value) > 8192:
        raise AnchorsFileError(f"{where}.{name}", "longer than 8192 characters")
    return value


def _enum(m: dict[str, Any], name: str, where: str, enum: Any, *, required: bool = True) -> int:
    if name not in m and not required:
        return 0
    text = _text(m, name, where)
    item = enum.DESCRIPTOR.values_by_name.get(text)
    if item is None or item.number == 0:
        known = ", ".join(v.name for v in enum.DESCRIPTOR.values if v.number)
        raise AnchorsFileError(f"{where}.{name}", f"unknown value {text!r}; one of: {known}")
    number: int = item.number
    return number


def _client_params(value: object, where: str, message: Message) -> None:
    if not isinstance(value, dict):
        raise AnchorsFileError(where, "expected a mapping (proto3 JSON of the client params)")
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=False, max_recursion_depth=32)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as e:
        raise AnchorsFileError(where, f"not valid client parameters: {str(e)[:300]}") from None


def _check_anchor(anchor: ChainAnchor, where: str) -> None:
    """Decode the parameters and the registered anchor now, so a broken anchors file fails
    when it is loaded, naming the chain, rather than in the middle of checking evidence."""
    try:
        if anchor.tendermint is not None:
            options, _ = tendermint_options(anchor.tendermint, chain_id=anchor.chain_id)
            if not anchor.tendermint.HasField("anchor"):
                raise AnchorsFileError(f"{where}.tendermint.anchor", "missing")
            decode_anchor_block(anchor.tendermint.anchor, options=options)
        elif anchor.tlog is not None:
            tlog_config(anchor.tlog)
            if not anchor.tlog.anchor.checkpoint:
                raise AnchorsFileError(f"{where}.tlog.anchor.checkpoint", "missing")
    except AnchorsFileError:
        raise
    except VerificationError as e:
        raise AnchorsFileError(where, f"unusable anchor: {e.reason}: {e}") from None


def _chain(value: object, where: str) -> AnchoredChain:
    m = _mapping(value, where, _CHAIN_FIELDS)
    chain_id = _text(m, "chain_id", where)
    if not _CHAIN_ID.match(chain_id):
        raise AnchorsFileError(f"{where}.chain_id", "must be 1 to 50 characters of [A-Za-z0-9._-]")
    client_type = _enum(m, "client_type", where, pb.ClientType)
    proof_spec = _enum(m, "proof_spec", where, pb.ProofSpec)
    schema = m.get("record_schema_version")
    if not isinstance(schema, int) or isinstance(schema, bool) or not 1 <= schema <= 1000:
        raise AnchorsFileError(f"{where}.record_schema_version", "expected a positive integer")
    party_key_hash = _enum(m, "party_key_hash", where, pb.HashAlgorithm)
    tendermint: pb.TendermintClientParams | None = None
    tlog: pb.TlogClientParams | None = None
    if client_type == pb.CLIENT_TYPE_TENDERMINT:
        if "tlog" in m or "tendermint" not in m:
            raise AnchorsFileError(where, "a CLIENT_TYPE_TENDERMINT chain has tendermint: only")
        tendermint = pb.TendermintClientParams()
        _client_params(m["tendermint"], f"{where}.tendermint", tendermint)
    elif client_type == pb.CLIENT_TYPE_TLOG:
        if "tendermint" in m or "tlog" not in m:
            raise AnchorsFileError(where, "a CLIENT_TYPE_TLOG chain has tlog: only")
        tlog = pb.TlogClientParams()
        _client_params(m["tlog"], f"{where}.tlog", tlog)
    else:
        raise AnchorsFileError(f"{where}.client_type", "not supported by this verifier")
    anchor = ChainAnchor(
        chain_id=chain_id,
        client_type=client_type,
        tendermint=tendermint,
        tlog=tlog,
        proof_spec=proof_spec,
        record_schema_version=schema,
    )
    _check_anchor(anchor, where)
    return AnchoredChain(
        anchor=anchor,
        party_key_hash=party_key_hash,
        display_name_zh=_text(m, "display_name_zh", where, required=False),
        display_name_en=_text(m, "display_name_en", where, required=False),
        domain=_enum(m, "domain", where, pb.Domain, required=False),
    )


def _relay_key(value: object, where: str) -> RelayKey:
    m = _mapping(value, where, _KEY_FIELDS)
    key_id = _text(m, "key_id", where)
    if not _KEY_ID.match(key_id):
        raise AnchorsFileError(f"{where}.key_id", "must be 1 to 128 characters of [A-Za-z0-9._-]")
    algorithm = _enum(m, "algorithm", where, pb.SignatureAlgorithm)
    encoded = _text(m, "public_key", where)
    try:
        public_key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise AnchorsFileError(f"{where}.public_key", "not base64") from None
    if base64.b64encode(public_key).decode("ascii") != encoded:
        raise AnchorsFileError(f"{where}.public_key", "not canonical base64")
    sizes: dict[int, int] = {pb.SIGNATURE_ALGORITHM_ED25519: 32, pb.SIGNATURE_ALGORITHM_SM2: 65}
    expected = sizes.get(algorithm)
    if expected is None:
        raise AnchorsFileError(f"{where}.algorithm", "relay keys are Ed25519 or SM2")
    if len(public_key) != expected:
        raise AnchorsFileError(
            f"{where}.public_key", f"{len(public_key)} bytes; this algorithm's keys are {expected}"
        )
    signer_id = _text(m, "sm2_signer_id", where, required=False)
    if signer_id and algorithm != pb.SIGNATURE_ALGORITHM_SM2:
        raise AnchorsFileError(f"{where}.sm2_signer_id", "only for SM2 keys")
    return RelayKey(
        key_id=key_id,
        algorithm=algorithm,
        public_key=public_key,
        sm2_signer_id=signer_id.encode("utf-8"),
    )


def parse_anchors(data: bytes) -> AnchorSet:
    """Load an anchors file's bytes. Raises :class:`AnchorsFileError` (naming the field),
    LimitExceededError (size, depth, counts)."""
    top = _mapping(_load_yaml(data), "", frozenset({"format", "chains", "relay_keys"}))
    if top.get("format") != ANCHORS_FORMAT:
        raise AnchorsFileError("format", f"must be {ANCHORS_FORMAT!r}")
    raw_chains = top.get("chains")
    raw_keys = top.get("relay_keys")
    if not isinstance(raw_chains, list):
        raise AnchorsFileError("chains", "expected a list")
    if not isinstance(raw_keys, list):
        raise AnchorsFileError("relay_keys", "expected a list")
    if len(raw_chains) > MAX_CHAINS:
        raise LimitExceededError("too many chains", length=len(raw_chains), limit=MAX_CHAINS)
    if len(raw_keys) > MAX_RELAY_KEYS:
        raise LimitExceededError("too many relay keys", length=len(raw_keys), limit=MAX_RELAY_KEYS)
    chains: dict[str, AnchoredChain] = {}
    for i, item in enumerate(raw_chains):
        chain = _chain(item, f"chains[{i}]")
        if chain.anchor.chain_id in chains:
            raise AnchorsFileError(
                f"chains[{i}].chain_id", f"{chain.anchor.chain_id!r} is listed twice"
            )
        chains[chain.anchor.chain_id] = chain
    keys: dict[str, RelayKey] = {}
    for i, item in enumerate(raw_keys):
        key = _relay_key(item, f"relay_keys[{i}]")
        if key.key_id in keys:
            raise AnchorsFileError(f"relay_keys[{i}].key_id", f"{key.key_id!r} is listed twice")
        keys[key.key_id] = key
    if not keys:
        raise AnchorsFileError("relay_keys", "at least one relay key is needed")
    return AnchorSet(chains=chains, relay_keys=keys)
