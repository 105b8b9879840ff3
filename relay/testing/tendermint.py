"""A generator of real, signed CometBFT light blocks for tests, benchmarks and reference nodes.

:class:`TestChain` plays a CometBFT chain: validator keys (Ed25519, SM2 through Tongsuo,
secp256k1 through libsecp256k1) with chosen voting powers, validator-set rotations at chosen
heights, chosen block times, and headers whose hashes, validator-set hashes and precommit
signatures are computed exactly as CometBFT computes them (through
:mod:`relay.verify.lightclient.cometbft_encoding`). Faults are injected on request: a second,
different header at a height signed by a chosen subset (equivocation), missing or nil
precommits, a different chain id, precommits signed for another chain.

:func:`light_block_json` writes a light block in the CometBFT / tendermint-rs JSON shape, so
anything generated here can also be fed through the decoder or served by a mock RPC.

Nothing here is used by the verifier; it signs, so it lives outside :mod:`relay.verify`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from relay.verify.lightclient import cometbft_encoding as enc
from relay.verify.lightclient.cometbft_types import (
    ABSENT_TIME_NS,
    BLOCK_ID_FLAG_ABSENT,
    BLOCK_ID_FLAG_COMMIT,
    BLOCK_ID_FLAG_NIL,
    DEFAULT_PARAMS,
    ED25519_KEY,
    BlockID,
    ChainParams,
    Commit,
    CommitSig,
    Header,
    KeyType,
    LightBlock,
    PublicKey,
    SignedHeader,
    Validator,
    ValidatorSet,
    make_commit,
    make_header,
    make_signed_header,
    make_validator_set,
    secp256k1_key_type,
    sm2_key_type,
)
from relay.verify.signatures import (
    DEFAULT_SM2_SIGNER_ID,
    Secp256k1,
    SignatureEncoding,
    Sm2,
)

SECOND = 1_000_000_000
DEFAULT_GENESIS_TIME_NS = 1_700_000_000 * SECOND
"""2023-11-14T22:13:20Z: any fixed time works; tests pass their own ``now``."""


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidatorKey:
    """A validator's key pair: ``public`` as it appears in a validator set, ``sign`` producing
    the signature bytes CometBFT (or the chain's SM2 scheme) expects over sign bytes."""

    key_type: KeyType
    public: bytes
    sign: Callable[[bytes], bytes] = field(repr=False, compare=False)

    @property
    def address(self) -> bytes:
        return self.key_type.address(self.public)

    @property
    def pub_key(self) -> PublicKey:
        return PublicKey(self.key_type, self.public)


def _seed32(seed: bytes | str) -> bytes:
    raw = seed.encode() if isinstance(seed, str) else seed
    return hashlib.sha256(b"relay-testing-key:" + raw).digest()


def ed25519_key(seed: bytes | str) -> ValidatorKey:
    """A deterministic Ed25519 validator key (libsodium)."""
    from nacl.signing import SigningKey

    sk = SigningKey(_seed32(seed))

    def sign(message: bytes) -> bytes:
        return bytes(sk.sign(message).signature)

    return ValidatorKey(ED25519_KEY, bytes(sk.verify_key), sign)


SECP256K1_SCHEME = Secp256k1(encoding=SignatureEncoding.RAW, hash="sha256", low_s=True)
"""CometBFT's secp256k1 signatures: ``r || s`` (low S) over SHA-256 of the sign bytes."""

SECP256K1_KEY = secp256k1_key_type(SECP256K1_SCHEME)


def secp256k1_key(seed: bytes | str, *, key_type: KeyType = SECP256K1_KEY) -> ValidatorKey:
    """A deterministic secp256k1 validator key (libsecp256k1, RFC 6979 nonces, low S)."""
    import coincurve

    sk = coincurve.PrivateKey(_seed32(seed))

    def sign(message: bytes) -> bytes:
        return bytes(sk.sign_recoverable(message, hasher=lambda m: hashlib.sha256(m).digest())[:64])

    return ValidatorKey(key_type, sk.public_key.format(compressed=True), sign)


def sm2_scheme(
    *, signer_id: bytes = DEFAULT_SM2_SIGNER_ID, encoding: SignatureEncoding = SignatureEncoding.DER
) -> Sm2:
    """The SM2 scheme a chain with this signer id verifies with."""
    return Sm2(encoding=encoding, signer_id=signer_id)


def sm2_key(seed: bytes | str, *, key_type: KeyType) -> ValidatorKey:
    """A deterministic SM2 validator key (Tongsuo) signing with the signer id and encoding of
    ``key_type.scheme`` (an :class:`~relay.verify.signatures.Sm2`): the signature is over
    ``SM3(Z_A || message)`` with ``Z_A`` from that signer id (GM/T 0003.2)."""
    from tongsuopy.backends.tongsuo import backend
    from tongsuopy.crypto import serialization
    from tongsuopy.crypto.asymciphers import ec

    from relay.verify.signatures import sm2_digest

    scheme = key_type.scheme
    if not isinstance(scheme, Sm2):
        raise TypeError("sm2_key needs a key type whose scheme is Sm2")
    order = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
    secret = int.from_bytes(_seed32(seed), "big") % (order - 2) + 1
    sk = ec.derive_private_key(secret, ec.SM2())
    public = sk.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    lib, ffi = backend._lib, backend._ffi

    def sign(message: bytes) -> bytes:
        digest = sm2_digest(public_key=public, message=message, signer_id=scheme.signer_id)
        ctx = ffi.gc(lib.EVP_PKEY_CTX_new(sk._evp_pkey, ffi.NULL), lib.EVP_PKEY_CTX_free)
        if lib.EVP_PKEY_sign_init(ctx) != 1:
            raise RuntimeError("EVP_PKEY_sign_init failed for SM2")
        out_len = ffi.new("size_t *", 80)
        out = ffi.new("unsigned char[]", 80)
        if lib.EVP_PKEY_sign(ctx, out, out_len, digest, len(digest)) != 1:
            raise RuntimeError("EVP_PKEY_sign failed for SM2")
        der = bytes(ffi.buffer(out, out_len[0]))
        if scheme.encoding is SignatureEncoding.DER:
            return der
        return _der_to_raw(der)

    return ValidatorKey(key_type, public, sign)


def _der_to_raw(der: bytes) -> bytes:
    # SEQUENCE { INTEGER r, INTEGER s } with short lengths, as 256-bit signatures have.
    i = 2
    parts = []
    for _ in range(2):
        length = der[i + 1]
        parts.append(int.from_bytes(der[i + 2 : i + 2 + length], "big"))
        i += 2 + length
    return parts[0].to_bytes(32, "big") + parts[1].to_bytes(32, "big")


@dataclass(frozen=True)
class TestValidator:
    """A validator of a generated chain: its key and voting power."""

    __test__ = False  # not a pytest test class, despite the name

    key: ValidatorKey
    power: int

    @property
    def address(self) -> bytes:
        return self.key.address

    def validator(self) -> Validator:
        return Validator(address=self.address, pub_key=self.key.pub_key, voting_power=self.power)


def make_validators(
    n: int,
    *,
    powers: Sequence[int] | int = 10,
    key: Callable[[str], ValidatorKey] = ed25519_key,
    prefix: str = "val",
) -> list[TestValidator]:
    """``n`` validators with keys ``key(f"{prefix}-{i}")`` and the given power(s)."""
    if isinstance(powers, int):
        powers = [powers] * n
    if len(powers) != n:
        raise ValueError("need one power per validator")
    return [TestValidator(key(f"{prefix}-{i}"), p) for i, p in enumerate(powers)]


# --- the chain -------------------------------------------------------------------------------


class TestChain:
    """A CometBFT chain that exists only as a generator.

    Validator sets change at chosen heights (:meth:`rotate`); block times default to
    ``genesis_time_ns + height * block_time_ns`` and can be set per height
    (:meth:`set_time`). :meth:`light_block` returns the signed light block of a height: by
    default every validator signs for the block; ``signers``, ``nil_signers`` and keyword
    overrides inject faults. Headers link to their parent's real hash when ``linked``
    (set it off to jump to far heights without hashing every header below).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        *,
        validators: Sequence[TestValidator],
        chain_id: str = "test-chain",
        params: ChainParams = DEFAULT_PARAMS,
        genesis_time_ns: int = DEFAULT_GENESIS_TIME_NS,
        block_time_ns: int = SECOND,
        linked: bool = True,
        app_version: int = 1,
    ) -> None:
        self.chain_id = chain_id
        self.params = params
        self.genesis_time_ns = genesis_time_ns
        self.block_time_ns = block_time_ns
        self.linked = linked
        self.app_version = app_version
        self._schedule: list[tuple[int, tuple[TestValidator, ...]]] = [(1, tuple(validators))]
        self._times: dict[int, int] = {}
        self._sets: dict[tuple[TestValidator, ...], ValidatorSet] = {}
        self._headers: dict[int, Header] = {}

    # configuration

    def rotate(self, *, at_height: int, validators: Sequence[TestValidator]) -> None:
        """From ``at_height`` on, ``validators`` are the validator set (until the next
        rotation). The header at ``at_height - 1`` commits to them as next validators."""
        if at_height < 2:
            raise ValueError("rotations start at height 2")
        self._schedule = [e for e in self._schedule if e[0] != at_height]
        self._schedule.append((at_height, tuple(validators)))
        self._schedule.sort(key=lambda e: e[0])
        self._headers.clear()

    def set_time(self, height: int, time_ns: int) -> None:
        """Give ``height`` the block time ``time_ns`` (even a non-monotonic one)."""
        self._times[height] = time_ns
        self._headers = {h: v for h, v in self._headers.items() if h < height}

    def time_at(self, height: int) -> int:
        return self._times.get(height, self.genesis_time_ns + height * self.block_time_ns)

    def validators_at(self, height: int) -> tuple[TestValidator, ...]:
        current = self._schedule[0][1]
        for start, vals in self._schedule:
            if start > height:
                break
            current = vals
        return current

    def validator_set(self, height: int) -> ValidatorSet:
        """The (cached) validator set in effect at ``height``."""
        vals = self.validators_at(height)
        vs = self._sets.get(vals)
        if vs is None:
            vs = make_validator_set([v.validator() for v in vals], params=self.params)
            self._sets[vals] = vs
        return vs

    # blocks

    def _last_block_id(self, height: int) -> BlockID:
        if height == 1:
            return BlockID(b"", 0, b"")
        if self.linked:
            # Build the honest headers below bottom-up, so far heights never recurse deeply.
            start = height - 1
            while start > 1 and start - 1 not in self._headers:
                start -= 1
            for h in range(start, height):
                self.header(h)
            parent = self._headers[height - 1].hash
        else:
            parent = self.params.hasher.hasher.hash(b"unlinked-parent" + height.to_bytes(8, "big"))
        return _block_id_for(parent, self.params)

    def header(self, height: int, **overrides: Any) -> Header:
        """The header of ``height``; ``overrides`` replace any :func:`make_header` argument
        (``app_hash``, ``time_ns``, ``chain_id``, ``validators_hash``...) to forge a
        different header."""
        if not overrides and height in self._headers:
            return self._headers[height]
        vals = self.validator_set(height)
        proposer = vals.validators[height % len(vals.validators)].address
        args: dict[str, Any] = {
            "params": self.params,
            "chain_id": self.chain_id,
            "height": height,
            "time_ns": self.time_at(height),
            "validators_hash": vals.hash,
            "next_validators_hash": self.validator_set(height + 1).hash,
            "proposer_address": proposer,
            "version_app": self.app_version,
            "last_block_id": self._last_block_id(height),
            "last_commit_hash": _fake_hash(b"last-commit", height, self.params),
            "data_hash": self.params.hasher.hasher.hash(b""),
            "consensus_hash": _fake_hash(b"consensus", 0, self.params),
            "app_hash": _fake_hash(b"app", height, self.params),
            "last_results_hash": self.params.hasher.hasher.hash(b""),
            "evidence_hash": self.params.hasher.hasher.hash(b""),
        }
        args.update(overrides)
        header = make_header(**args)
        if not overrides:
            self._headers[height] = header
        return header

    def light_block(
        self,
        height: int,
        *,
        signers: Collection[bytes] | None = None,
        nil_signers: Collection[bytes] = (),
        sign_chain_id: str | None = None,
        round_: int = 0,
        with_next: bool = True,
        **header_overrides: Any,
    ) -> LightBlock:
        """The light block at ``height``, signed by ``signers`` (addresses; default all
        validators), with ``nil_signers`` precommitting nil and everyone else absent.

        ``header_overrides`` forge a different header (an equivocation when signed by the
        real validators); ``sign_chain_id`` signs the precommits for another chain id.
        """
        header = self.header(height, **header_overrides)
        vals = self.validator_set(height)
        keys = {v.address: v.key for v in self.validators_at(height)}
        commit = self.commit_for(
            header,
            vals,
            keys,
            signers=signers,
            nil_signers=nil_signers,
            sign_chain_id=sign_chain_id,
            round_=round_,
        )
        return LightBlock(
            signed_header=make_signed_header(header, commit),
            validator_set=vals,
            next_validator_set=self.validator_set(height + 1) if with_next else None,
        )

    def equivocation(
        self, height: int, *, signers: Collection[bytes] | None = None, **header_overrides: Any
    ) -> LightBlock:
        """A second, different header at ``height`` signed by ``signers`` (default: all): the
        honest header with ``header_overrides`` applied, by default another app hash."""
        if not header_overrides:
            header_overrides = {"app_hash": _fake_hash(b"equivocation", height, self.params)}
        block = self.light_block(height, signers=signers, **header_overrides)
        if block.header.hash == self.header(height).hash:
            raise ValueError("the overrides do not change the header")
        return block

    def commit_for(
        self,
        header: Header,
        vals: ValidatorSet,
        keys: Mapping[bytes, ValidatorKey],
        *,
        signers: Collection[bytes] | None = None,
        nil_signers: Collection[bytes] = (),
        sign_chain_id: str | None = None,
        round_: int = 0,
    ) -> Commit:
        """A commit for ``header`` with one slot per validator of ``vals`` in canonical order;
        each signer's precommit is signed with its key from ``keys``."""
        block_id = _block_id_for(header.hash, self.params)
        chain_id = header.chain_id if sign_chain_id is None else sign_chain_id
        sign_bytes = enc.VoteSignBytes(
            chain_id=chain_id.encode(),
            height=header.height,
            round_=round_,
            block_hash=block_id.hash,
            part_total=block_id.part_set_total,
            part_hash=block_id.part_set_hash,
        )
        signing = set(keys) if signers is None else set(signers)
        nil = set(nil_signers)
        sigs: list[CommitSig] = []
        for i, v in enumerate(vals.validators):
            vote_time = header.time_ns + (i + 1) * 1_000_000
            if v.address in nil:
                msg = sign_bytes.for_nil(vote_time)
                flag = BLOCK_ID_FLAG_NIL
            elif v.address in signing:
                msg = sign_bytes.for_commit(vote_time)
                flag = BLOCK_ID_FLAG_COMMIT
            else:
                sigs.append(CommitSig(BLOCK_ID_FLAG_ABSENT, b"", ABSENT_TIME_NS, b""))
                continue
            sigs.append(CommitSig(flag, v.address, vote_time, keys[v.address].sign(msg)))
        return make_commit(
            height=header.height,
            round_=round_,
            block_id=block_id,
            signatures=sigs,
            params=self.params,
        )

    def blocks(self, heights: Iterable[int]) -> dict[int, LightBlock]:
        """Honest light blocks of ``heights`` (e.g. for a ``fetch`` callable)."""
        return {h: self.light_block(h) for h in heights}

    def fetcher(self, *, counter: list[int] | None = None) -> Callable[[int], LightBlock]:
        """A ``fetch(height)`` serving honest light blocks, counting calls in ``counter``."""

        def fetch(height: int) -> LightBlock:
            if counter is not None:
                counter.append(height)
            return self.light_block(height)

        return fetch


def _block_id_for(header_hash: bytes, params: ChainParams) -> BlockID:
    # One block part; its hash stands in for the part-set root the light client never checks.
    return BlockID(header_hash, 1, params.hasher.hasher.hash(b"parts" + header_hash))


def _fake_hash(tag: bytes, height: int, params: ChainParams) -> bytes:
    return params.hasher.hasher.hash(tag + height.to_bytes(8, "big"))


def with_signatures(block: LightBlock, signatures: Sequence[CommitSig]) -> LightBlock:
    """``block`` with its commit's signatures replaced (for duplicate-vote and malformed
    commit tests); the rest of the commit is unchanged and nothing is re-signed."""
    commit = block.commit
    new_commit = Commit(commit.height, commit.round, commit.block_id, tuple(signatures))
    return replace(block, signed_header=make_signed_header(block.header, new_commit))


def sm2_chain_params(
    *,
    signer_id: bytes = DEFAULT_SM2_SIGNER_ID,
    hasher: Any = None,
    encoding: SignatureEncoding = SignatureEncoding.DER,
) -> ChainParams:
    """Parameters of a consortium chain with SM2 validator keys (and, with
    ``hasher=RFC6962_SM3``, SM3 Merkle hashing of headers and validator sets)."""
    key_type = sm2_key_type(sm2_scheme(signer_id=signer_id, encoding=encoding))
    if hasher is None:
        return ChainParams(key_types=(key_type,))
    return ChainParams(hasher=hasher, key_types=(key_type,))


# --- JSON ------------------------------------------------------------------------------------


def _hex(b: bytes) -> str:
    return b.hex().upper()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _block_id_json(bid: BlockID) -> dict[str, Any]:
    return {
        "hash": _hex(bid.hash),
        "parts": {"total": bid.part_set_total, "hash": _hex(bid.part_set_hash)},
    }


def header_json(h: Header) -> dict[str, Any]:
    return {
        "version": {"block": str(h.version_block), "app": str(h.version_app)},
        "chain_id": h.chain_id,
        "height": str(h.height),
        "time": enc.format_rfc3339_ns(h.time_ns),
        "last_block_id": _block_id_json(h.last_block_id),
        "last_commit_hash": _hex(h.last_commit_hash),
        "data_hash": _hex(h.data_hash),
        "validators_hash": _hex(h.validators_hash),
        "next_validators_hash": _hex(h.next_validators_hash),
        "consensus_hash": _hex(h.consensus_hash),
        "app_hash": _hex(h.app_hash),
        "last_results_hash": _hex(h.last_results_hash),
        "evidence_hash": _hex(h.evidence_hash),
        "proposer_address": _hex(h.proposer_address),
    }


def commit_json(c: Commit) -> dict[str, Any]:
    return {
        "height": str(c.height),
        "round": c.round,
        "block_id": _block_id_json(c.block_id),
        "signatures": [
            {
                "block_id_flag": s.block_id_flag,
                "validator_address": _hex(s.validator_address),
                "timestamp": enc.format_rfc3339_ns(s.timestamp_ns),
                "signature": _b64(s.signature) if s.signature else None,
            }
            for s in c.signatures
        ],
    }


def validator_set_json(vs: ValidatorSet) -> dict[str, Any]:
    vals = [
        {
            "address": _hex(v.address),
            "pub_key": {"type": v.pub_key.key_type.json_type, "value": _b64(v.pub_key.data)},
            "voting_power": str(v.voting_power),
            "proposer_priority": str(v.proposer_priority),
        }
        for v in vs.validators
    ]
    return {"validators": vals, "total_voting_power": str(vs.total_voting_power)}


def signed_header_json(sh: SignedHeader) -> dict[str, Any]:
    return {"header": header_json(sh.header), "commit": commit_json(sh.commit)}


def light_block_json(lb: LightBlock) -> dict[str, Any]:
    """``lb`` in the CometBFT / tendermint-rs light-block JSON shape."""
    out: dict[str, Any] = {
        "signed_header": signed_header_json(lb.signed_header),
        "validator_set": validator_set_json(lb.validator_set),
    }
    if lb.next_validator_set is not None:
        out["next_validator_set"] = validator_set_json(lb.next_validator_set)
    return out
