"""Evidence assembly and the relay's signature (DESIGN.md principle 3, "Evidence is
self-contained").

:class:`EvidenceBuilder` fills a ``relay.v1.Evidence`` exactly as the message documents it:
the trust path from the chain's registered anchor (exclusive) to the answering header
(exclusive) as TrustSteps read from the store (``Store.trust_path``), the header itself with
the time the relay verified it, the state root, key, value and proof, the decoded record,
the assurance and the time of assembly. :class:`RelaySigner` signs it over
``"relay.v1.Evidence\\n"`` || its deterministic encoding without ``relay_attestation``
(relay/verify/evidence.py ``attestation_input``) with the relay's Ed25519 key (PyNaCl) or SM2
key (Tongsuo, signer ID per GM/T 0009). ``relay/verify/evidence.py`` checks the result
offline.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from relay.engine.clients import ChainClient, decode_hop
from relay.engine.errors import RelayError
from relay.pb.relay.v1 import types_pb2 as pb
from relay.store import ConsensusStateRecord, Store, StoreError, TrustPathTooLongError
from relay.verify.evidence import (
    ATTESTATION_PREFIX,
    EVIDENCE_RECORD_FIELDS,
    EVIDENCE_VERSION,
    NS,
    RelayKey,
    attestation_input,
)
from relay.verify.signatures import DEFAULT_SM2_SIGNER_ID, SM2_ORDER, sm2_digest


def _timestamp(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // NS, nanos=ns % NS)


# ------------------------------------------------------------------------------- signing


class RelaySigner:
    """The relay's evidence signing key: Ed25519 (RFC 8032) or SM2 with SM3 (GB/T
    32918.2-2016, DER signatures), identified by ``key_id`` as listed in anchors files.
    Build it with :meth:`ed25519`, :meth:`sm2` or :meth:`from_pem`."""

    def __init__(
        self,
        *,
        key_id: str,
        algorithm: int,
        public_key: bytes,
        sign_fn: Any,
        sm2_signer_id: bytes = b"",
    ) -> None:
        if not key_id or len(key_id) > 128:
            raise ValueError("relay key id must be 1 to 128 characters")
        self.key_id = key_id
        self.algorithm = algorithm
        self.public_key = public_key
        self.sm2_signer_id = sm2_signer_id
        self._sign = sign_fn

    @classmethod
    def ed25519(cls, *, key_id: str, seed: bytes) -> RelaySigner:
        """An Ed25519 signer from its 32-byte private seed."""
        from nacl.signing import SigningKey

        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        key = SigningKey(seed)

        def sign(message: bytes) -> bytes:
            return bytes(key.sign(message).signature)

        return cls(
            key_id=key_id,
            algorithm=pb.SIGNATURE_ALGORITHM_ED25519,
            public_key=bytes(key.verify_key),
            sign_fn=sign,
        )

    @classmethod
    def sm2(cls, *, key_id: str, private_key: int, signer_id: bytes = b"") -> RelaySigner:
        """An SM2 signer from its private scalar (1 <= d < n-1). ``signer_id`` empty means
        the GM/T 0009 default ``1234567812345678``."""
        from tongsuopy.crypto.asymciphers import ec as sm2_ec

        if not 1 <= private_key < SM2_ORDER - 1:
            raise ValueError("SM2 private key out of range")
        return cls._from_sm2_key(
            key_id=key_id,
            key=sm2_ec.derive_private_key(private_key, sm2_ec.SM2()),
            signer_id=signer_id,
        )

    @classmethod
    def _from_sm2_key(cls, *, key_id: str, key: Any, signer_id: bytes) -> RelaySigner:
        from tongsuopy.backends.tongsuo import backend
        from tongsuopy.crypto import serialization

        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        sid = signer_id or DEFAULT_SM2_SIGNER_ID
        lib, ffi = backend._lib, backend._ffi

        def sign(message: bytes) -> bytes:
            # Tongsuo's high-level sign() fixes the default signer ID; signing e = SM3(Z || M)
            # through EVP_PKEY_sign lets the relay use its configured one.
            digest = sm2_digest(public_key=public, message=message, signer_id=sid)
            ctx = ffi.gc(lib.EVP_PKEY_CTX_new(key._evp_pkey, ffi.NULL), lib.EVP_PKEY_CTX_free)
            if ctx == ffi.NULL or lib.EVP_PKEY_sign_init(ctx) != 1:
                backend._consume_errors()
                raise RuntimeError("SM2 signing could not start (EVP_PKEY_sign_init)")
            size = ffi.new("size_t *", 80)
            out = ffi.new("unsigned char[]", 80)
            if lib.EVP_PKEY_sign(ctx, out, size, digest, len(digest)) != 1:
                backend._consume_errors()
                raise RuntimeError("SM2 signing failed (EVP_PKEY_sign)")
            return bytes(ffi.buffer(out, size[0]))

        return cls(
            key_id=key_id,
            algorithm=pb.SIGNATURE_ALGORITHM_SM2,
            public_key=public,
            sign_fn=sign,
            sm2_signer_id=signer_id,
        )

    @classmethod
    def from_pem(cls, *, key_id: str, pem: bytes, sm2_signer_id: bytes = b"") -> RelaySigner:
        """A signer from an unencrypted PKCS#8 PEM private key: Ed25519 (read with
        ``cryptography``) or SM2 (read with Tongsuo)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            key = None
        except Exception:  # cryptography raises UnsupportedAlgorithm for SM2 keys
            key = None
        if isinstance(key, ed25519.Ed25519PrivateKey):
            seed = key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            return cls.ed25519(key_id=key_id, seed=seed)
        from tongsuopy.crypto import serialization as tserialization
        from tongsuopy.crypto.asymciphers import ec as sm2_ec

        try:
            sm2_key = tserialization.load_pem_private_key(pem, password=None)
        except Exception as e:
            raise ValueError(f"relay key {key_id!r}: not an Ed25519 or SM2 PEM key ({e})") from e
        if not isinstance(sm2_key, sm2_ec.EllipticCurvePrivateKey):
            raise ValueError(f"relay key {key_id!r}: not an Ed25519 or SM2 private key")
        return cls._from_sm2_key(key_id=key_id, key=sm2_key, signer_id=sm2_signer_id)

    def relay_key(self) -> RelayKey:
        """The public half, as an anchors file lists it."""
        return RelayKey(
            key_id=self.key_id,
            algorithm=self.algorithm,
            public_key=self.public_key,
            sm2_signer_id=self.sm2_signer_id,
        )

    def sign(self, evidence: pb.Evidence) -> pb.Evidence:
        """Set ``evidence.relay_attestation`` to this key's signature over the attestation
        input; returns ``evidence`` (modified in place)."""
        if evidence.HasField("relay_attestation"):
            message = attestation_input(evidence)
        else:
            # Already without relay_attestation: the attestation input is its own encoding
            # (saves attestation_input's copy of the whole bundle on every answer).
            message = ATTESTATION_PREFIX + evidence.SerializeToString(deterministic=True)
        signature = self._sign(message)
        att = evidence.relay_attestation
        att.key_id = self.key_id
        att.algorithm = pb.SignatureAlgorithm.ValueType(self.algorithm)
        att.signature = signature
        att.sm2_signer_id = self.sm2_signer_id.decode("utf-8") if self.sm2_signer_id else ""
        return evidence


# ------------------------------------------------------------------------------ assembly


@dataclass(frozen=True, slots=True)
class _PathPart:
    """Everything of an answer's evidence that depends only on the (immutable) verified
    state it rests on, as an Evidence message each answer's bundle starts as a copy of."""

    client: ChainClient
    template: pb.Evidence


class EvidenceBuilder:
    """Builds and signs Evidence for answers of one relay. Trust paths of stored heights
    never change (consensus states are immutable; re-anchoring drops them and calls
    :meth:`forget`), so the per-state part of recently used heights (trust path, header,
    root, times, assurance) is cached, ready to copy, and each answer only adds its key,
    value, proof, record and time before it is signed."""

    def __init__(
        self, *, store: Store, signer: RelaySigner, max_trust_path: int, cache_size: int = 256
    ) -> None:
        self._store = store
        self._signer = signer
        self._max = max_trust_path
        self._cache: OrderedDict[tuple[str, int, bytes], _PathPart] = OrderedDict()
        self._cache_size = cache_size

    def forget(self, chain_id: str) -> None:
        """Drop cached paths of ``chain_id`` (after re-anchoring)."""
        for key in [k for k in self._cache if k[0] == chain_id]:
            del self._cache[key]

    def _cached(self, client: ChainClient, state: ConsensusStateRecord) -> _PathPart | None:
        key = (client.chain_id, state.height, state.header_hash)
        cached = self._cache.get(key)
        # Built by another client object of the chain (replaced since): build again.
        if cached is None or cached.client is not client:
            return None
        self._cache.move_to_end(key)
        return cached

    async def _path(self, client: ChainClient, state: ConsensusStateRecord) -> _PathPart:
        chain_id = client.chain_id
        key = (chain_id, state.height, state.header_hash)
        try:
            path = await self._store.trust_path(chain_id, state.height, max_length=self._max)
        except TrustPathTooLongError as e:
            raise RelayError(
                "INTERNAL",
                f"the trust path of chain {chain_id!r} to height {state.height} is longer than "
                f"{self._max} hops; raise max_trust_path or re-anchor the chain",
                chain_id=chain_id,
                height=state.height,
            ) from e
        except StoreError as e:
            raise RelayError(
                "INTERNAL", f"reading the trust path of chain {chain_id!r}: {e}", chain_id=chain_id
            ) from e
        if not path or path[-1].header_hash != state.header_hash:
            raise RelayError(
                "INTERNAL",
                f"height {state.height} of chain {chain_id!r} vanished from the store while "
                "evidence was assembled (re-anchored or pruned); retry the query",
                chain_id=chain_id,
                height=state.height,
            )
        steps = []
        for rec in path[1:-1]:
            hop = decode_hop(rec.light_block)
            steps.append(
                pb.TrustStep(
                    height=rec.height,
                    format=pb.HeaderFormat.ValueType(client.header_format),
                    header=hop.header,
                    consistency_proof=list(hop.consistency_proof),
                    verified_at=_timestamp(hop.verified_at_ns),
                )
            )
        final = decode_hop(path[-1].light_block)
        template = pb.Evidence(
            version=EVIDENCE_VERSION,
            chain_id=chain_id,
            client_type=pb.ClientType.ValueType(client.client_type_enum),
            height=state.height,
            header_format=pb.HeaderFormat.ValueType(client.header_format),
            header=final.header,
            trust_path=steps,
            header_consistency_proof=list(final.consistency_proof),
            header_verified_at=_timestamp(final.verified_at_ns),
            state_root=client.state_root(state) or b"",
            assurance=pb.Assurance.ValueType(client.assurance(state)),
        )
        header_time = client.header_time_ns(state)
        if header_time is not None:
            template.header_time.CopyFrom(_timestamp(header_time))
        part = _PathPart(client, template)
        self._cache[key] = part
        self._cache.move_to_end(key)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return part

    async def build(
        self,
        *,
        client: ChainClient,
        state: ConsensusStateRecord,
        key: bytes,
        value: bytes | None,
        proof_format: int,
        proof: bytes,
        record_field: str | None,
        record: Message | None,
        now_ns: int,
    ) -> pb.Evidence:
        """Signed evidence that ``key`` (-> ``value``) is proven under the header ``state``.
        ``record_field`` is the RecordKey field of the key (None for raw GetState)."""
        part = self._cached(client, state) or await self._path(client, state)
        ev = pb.Evidence()
        ev.CopyFrom(part.template)
        ev.key = key
        ev.proof_format = pb.ProofFormat.ValueType(proof_format)
        ev.proof = proof
        ev.proof_spec = pb.ProofSpec.ValueType(client.descriptor.proof_spec)
        ev.verified_at.seconds = now_ns // NS
        ev.verified_at.nanos = now_ns % NS
        if value is not None:
            ev.value = value
            if record is not None and record_field is not None:
                getattr(ev, EVIDENCE_RECORD_FIELDS[record_field]).CopyFrom(record)
        return self._signer.sign(ev)
