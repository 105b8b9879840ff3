"""The relay's configuration: one YAML file, validated into precise problems (the field's
path and what is wrong with it), with secrets overridable from the environment, and
conversion to what the engine and the servers need.

Example (every field but ``listen``, ``store`` and ``signing`` has a default)::

    version: 1
    listen: {grpc: "0.0.0.0:7443", health: "0.0.0.0:7080", ops: "0.0.0.0:9090"}
    tls: {cert: relay.pem, key: relay.key, client_ca: ca.pem}   # client_ca: mutual TLS, required
    store: {backend: sqlite, path: /var/lib/relay/relay.db}
    signing: {algorithm: ed25519, key_id: relay-bj-2026-01, key_file: signing.key}
    chains: [descriptors/realestate.json, descriptors/ip.yaml]
    sync: {interval: 2s, max_light_blocks_per_fetch: 64}   # unset: the engine's defaults
    adapters: {deadline: 5s, retries: 2, client_cert: relay.pem, client_key: relay.key}
    limits: {max_request_bytes: 1MiB, max_response_bytes: 16MiB, query_deadline: 10s}
    shutdown_grace: 10s
    log_level: INFO
    logging: {format: json}          # json (default) or text; level overrides log_level
    client: {server: "localhost:7443", ca: ca.pem, cert: client.pem, key: client.key}

Relative paths are relative to the file's directory. Durations are seconds or a number with
a unit (``ms``, ``s``, ``m``, ``h``, ``d``); sizes are bytes or a number with
``KiB``/``MiB``/``GiB``.

Secrets from the environment override the files named in the config (so keys need not lie
on disk next to it): ``RELAY_SIGNING_KEY`` (the relay's signing key: PEM or 64 hex digits),
``RELAY_TLS_KEY`` (PEM of the TLS server key), ``RELAY_ADAPTER_CLIENT_KEY`` (PEM of the key
the relay presents to adapters), ``RELAY_CLIENT_KEY`` (PEM of the CLI's client key).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import yaml
from google.protobuf import json_format
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from relay.pb.relay.v1 import types_pb2
from relay.verify.structure import load_yaml, structure_problem

if TYPE_CHECKING:
    from relay.engine.settings import EngineSettings

MAX_CONFIG_BYTES = 1 << 20
MAX_DESCRIPTOR_BYTES = 4 << 20
MAX_YAML_DEPTH = 32
ENV_SIGNING_KEY = "RELAY_SIGNING_KEY"
ENV_TLS_KEY = "RELAY_TLS_KEY"
ENV_ADAPTER_CLIENT_KEY = "RELAY_ADAPTER_CLIENT_KEY"
ENV_CLIENT_KEY = "RELAY_CLIENT_KEY"
ENV_CONFIG = "RELAY_CONFIG"
ENV_STORE_DSN = "RELAY_STORE_DSN"


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` holds one line per problem, each
    starting with the field path (or the file) it is about."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# ------------------------------------------------------------------------- value parsers

# values.schema.json of the Helm chart repeats this pattern for every duration it passes on.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, None: 1}


def _duration(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5s or 500ms, not a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"expected a duration such as 5s, 500ms, 2m, 1h or 7d, got {value!r}")
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    return value


def _size(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 4MiB, not a boolean")
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f"expected a size such as 65536, 64KiB or 4MiB, got {value!r}")
        return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    return value


def parse_address(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6 literals). Raises ValueError."""
    if not isinstance(value, str) or not value:
        raise ValueError("expected host:port")
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"write IPv6 addresses as [addr]:port, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    return host, port


def _address(value: object) -> object:
    if isinstance(value, str):
        parse_address(value)
    return value


Seconds = Annotated[float, BeforeValidator(_duration), Field(gt=0, le=7 * 24 * 3600)]
Bytes = Annotated[int, BeforeValidator(_size), Field(ge=1024, le=1 << 30)]
Address = Annotated[str, BeforeValidator(_address)]


def _resolve(value: object, info: ValidationInfo) -> object:
    """Relative paths are relative to the config file's directory (context ``base``)."""
    if isinstance(value, str) and value:
        path = Path(value).expanduser()
        base = (info.context or {}).get("base")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return path
    if isinstance(value, str):
        raise ValueError("path must not be empty")
    return value


FilePath = Annotated[Path, BeforeValidator(_resolve)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# ------------------------------------------------------------------------------ sections


class ListenConfig(_Model):
    """Where the relay listens. The health port speaks plaintext (for probes only). ``ops``
    is the operations HTTP port (/metrics, /healthz, /readyz, /loglevel; unset: none);
    ``web`` the public evidence-verification page (unset: none)."""

    grpc: Address
    health: Address
    ops: Address | None = None
    web: Address | None = None

    @model_validator(mode="after")
    def _distinct(self) -> ListenConfig:
        named = [("grpc", self.grpc), ("health", self.health), ("ops", self.ops)]
        named.append(("web", self.web))
        seen: dict[tuple[str, int], str] = {}
        for name, value in named:
            if value is None:
                continue
            address = parse_address(value)
            if address[1] != 0 and address in seen:
                raise ValueError(f"{seen[address]} and {name} must listen on different ports")
            seen[address] = name
        return self


class TlsConfig(_Model):
    """The relay's server certificate, and the CA whose client certificates it accepts.

    The gRPC API requires a client certificate from ``client_ca`` (mutual TLS, issue 5):
    the certificate is the caller's identity and role. ``require_client_cert: false`` is
    honoured only by ``relay serve --insecure-dev`` (start-up is refused otherwise)."""

    cert: FilePath
    key: FilePath | None = None
    client_ca: FilePath | None = None
    require_client_cert: bool = True

    @model_validator(mode="after")
    def _ca_for_clients(self) -> TlsConfig:
        if self.require_client_cert and self.client_ca is None:
            raise ValueError(
                "client_ca required: the gRPC API accepts only clients with a certificate "
                "from this CA (mutual TLS); require_client_cert: false is for --insecure-dev"
            )
        return self


class StoreConfig(_Model):
    """Persistent light-client state. ``sqlite``: one relay, ``path`` is its database file.
    ``postgres`` (issue 9): replicas share one PostgreSQL database whose connection string
    comes only from the ``RELAY_STORE_DSN`` environment variable (never from this file);
    ``pool_size`` connections per replica, and each chain's sync is owned by one replica at
    a time through a lease of ``lease_ttl`` seconds, owned by ``replica_id`` (unset:
    ``<hostname>-<pid>``; set it to the pod name to read leases by replica)."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: FilePath | None = None
    full_check: bool = False
    readers: int = Field(default=4, ge=1, le=64)
    pool_size: int = Field(default=8, ge=1, le=256)
    # A duration like every other (``15s``), with its own ceiling of an hour.
    lease_ttl: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=3600)] = 15.0
    replica_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _backend_fields(self) -> StoreConfig:
        if self.backend == "sqlite" and self.path is None:
            raise ValueError("store.path is required with backend sqlite")
        if self.backend == "postgres" and self.path is not None:
            raise ValueError(
                "store.path is for backend sqlite; the PostgreSQL connection string comes "
                f"from the {ENV_STORE_DSN} environment variable"
            )
        return self


def store_dsn(env: Mapping[str, str] | None = None) -> str:
    """The PostgreSQL connection string from ``RELAY_STORE_DSN`` (ConfigError if unset)."""
    value = (os.environ if env is None else env).get(ENV_STORE_DSN, "").strip()
    if not value:
        raise ConfigError(
            [f"store: backend postgres needs the {ENV_STORE_DSN} environment variable "
             "(a libpq connection URI, e.g. postgresql://relay@db:5432/relay)"]
        )  # fmt: skip
    return value


_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class SigningConfig(_Model):
    """The relay's own key, which signs every evidence bundle."""

    algorithm: Literal["ed25519", "sm2"]
    key_id: str
    key_file: FilePath | None = None
    sm2_signer_id: str = Field(default="", max_length=8191)

    @field_validator("key_id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if not _KEY_ID.match(value):
            raise ValueError("key_id must be 1 to 128 characters of [A-Za-z0-9._-]")
        return value

    @model_validator(mode="after")
    def _signer_id(self) -> SigningConfig:
        if self.sm2_signer_id and self.algorithm != "sm2":
            raise ValueError("sm2_signer_id applies only to algorithm sm2")
        return self


class SyncConfig(_Model):
    """Per-chain sync loops. Unset fields take the engine's defaults
    (relay/engine/settings.py), so there is one source of defaults."""

    interval: Seconds | None = None
    jitter: float | None = Field(default=None, ge=0, le=1)
    backoff_max: Seconds | None = None
    round_timeout: Seconds | None = None
    max_light_blocks_per_fetch: int | None = Field(default=None, ge=1, le=10_000)
    max_skipping_verifications: int | None = Field(default=None, ge=1, le=100_000)
    on_demand_verification: bool | None = None
    prune_interval: Seconds | None = None
    verify_threads: int | None = Field(default=None, ge=1, le=64)


class AdaptersConfig(_Model):
    """How the relay talks to (untrusted) adapters. Unset fields take the engine's
    defaults."""

    deadline: Seconds | None = None
    retries: int | None = Field(default=None, ge=0, le=10)
    retry_base_delay: Seconds | None = None
    retry_max_delay: Seconds | None = None
    breaker_failures: int | None = Field(default=None, ge=1, le=1000)
    breaker_reset: Seconds | None = None
    max_message_bytes: Bytes | None = None
    max_stream_items: int | None = Field(default=None, ge=1, le=1_000_000)
    max_stream_bytes: Bytes | None = None
    client_cert: FilePath | None = None
    client_key: FilePath | None = None

    @model_validator(mode="after")
    def _pair(self) -> AdaptersConfig:
        if (self.client_key is not None) and (self.client_cert is None):
            raise ValueError("client_key without client_cert")
        base, top = self.retry_base_delay, self.retry_max_delay
        if base is not None and top is not None and base > top:
            raise ValueError("retry_base_delay is larger than retry_max_delay")
        return self


class LimitsConfig(_Model):
    """Limits of the court-facing API (and of the evidence it returns)."""

    max_request_bytes: Bytes = 1 << 20
    max_response_bytes: Bytes = 32 << 20
    query_deadline: Seconds | None = None
    max_concurrent_rpcs: int | None = Field(default=None, ge=1, le=100_000)
    max_trust_path: int | None = Field(default=None, ge=1, le=1_000_000)


class ClientConfig(_Model):
    """Defaults of the ``relay`` client commands (overridden by --server, --ca, ...)."""

    server: Address | None = None
    server_name: str | None = None
    ca: FilePath | None = None
    cert: FilePath | None = None
    key: FilePath | None = None

    @model_validator(mode="after")
    def _pair(self) -> ClientConfig:
        if (self.key is not None) and (self.cert is None):
            raise ValueError("key without cert")
        return self


# --- access (issue 5): identities, court grants, onboarding, per-identity limits ---------
# See relay/access/__init__.py for the certificate layout and the onboarding flow.

ACCESS_DOMAINS = ("real-estate", "ip", "credit", "bank")
ACCESS_QUERY_KINDS = ("ownership", "holdings", "credit", "account", "history", "state")


class CourtGrantConfig(_Model):
    """What one court (by its code, e.g. 京0105) may query."""

    domains: list[Literal["real-estate", "ip", "credit", "bank", "judicial"]] = Field(max_length=5)
    queries: list[Literal["ownership", "holdings", "credit", "account", "history", "state"]] = (
        Field(max_length=6)
    )


class InstitutionKeyConfig(_Model):
    """A partner institution's proposal-signing key (public half, hex)."""

    institution: str = Field(min_length=1, max_length=64)
    key_id: str = Field(min_length=1, max_length=128)
    algorithm: Literal["ed25519", "sm2"]
    public_key: str = Field(pattern=r"^[0-9a-fA-F]{64}([0-9a-fA-F]{66})?$")
    sm2_signer_id: str = Field(default="", max_length=8191)


class AccessRateConfig(_Model):
    """Per-identity token bucket and in-flight cap on the API."""

    per_second: float = Field(default=50.0, gt=0, le=1_000_000)
    burst: int = Field(default=100, ge=1, le=1_000_000)
    max_in_flight: int = Field(default=16, ge=1, le=100_000)


class AccessConfig(_Model):
    """Access control. Without this section the relay runs its pre-issue-5 open mode."""

    audience: str = Field(default="relay", min_length=1, max_length=128)
    grants: dict[str, CourtGrantConfig] = Field(default_factory=dict, max_length=10_000)
    institution_keys: list[InstitutionKeyConfig] = Field(default_factory=list, max_length=10_000)
    approvals_required: int = Field(default=1, ge=1, le=100)
    operators: list[str] = Field(default_factory=list, max_length=100)
    max_proposal_lifetime: Seconds = 7 * 86400.0
    rate: AccessRateConfig = AccessRateConfig()

    @model_validator(mode="after")
    def _quorum(self) -> AccessConfig:
        if self.operators and self.approvals_required > len(self.operators):
            raise ValueError("approvals_required is larger than the number of operators")
        return self


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LoggingConfig(_Model):
    """How ``relay serve`` logs (relay/logs.py): one JSON object per line (``json``, the
    default, for log collectors) or human-readable lines (``text``). ``level`` overrides the
    top-level ``log_level``; the ops port's /loglevel changes it at run time."""

    level: LogLevel | None = None
    format: Literal["json", "text"] = "json"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "level" else value.lower()


class AuditSinkConfig(_Model):
    """Where signed audit checkpoints are published (issue 7, relay/audit/sink.py). Today:
    ``in_process``, a reference judicial chain held in the relay's process, optionally
    served with the partner AdapterService on ``listen`` (TLS with ``tls_cert`` and
    ``tls_key``) so courts and the demo read the checkpoints back with proofs;
    ``descriptor_out`` receives its chain descriptor (JSON), naming ``tls_ca`` as the CA.
    Or ``endpoint``: a judicial chain in its own process (``python -m adapters.judicial``),
    reached over relay.sink.v1 with mutual TLS: ``tls_ca`` is then its CA, ``tls_cert`` and
    ``tls_key`` the relay's client certificate, ``server_name`` overrides the name checked;
    failed publications are retried, backing off up to ``retry_max``."""

    in_process: bool = True
    chain_id: str = Field(default="judicial-chain", min_length=1, max_length=50)
    listen: Address | None = None
    tls_cert: FilePath | None = None
    tls_key: FilePath | None = None
    tls_ca: FilePath | None = None  # the CA readers trust (default: tls_cert itself)
    descriptor_out: FilePath | None = None
    endpoint: Address | None = None
    server_name: str | None = Field(default=None, min_length=1, max_length=253)
    retry_max: Seconds = 30.0

    @model_validator(mode="before")
    @classmethod
    def _remote_default(cls, data: object) -> object:
        # An endpoint means the remote sink: in_process is false unless set explicitly.
        if isinstance(data, Mapping) and data.get("endpoint") and "in_process" not in data:
            return {**data, "in_process": False}
        return data

    @model_validator(mode="after")
    def _remote(self) -> AuditSinkConfig:
        if self.endpoint is None:
            return self
        if self.in_process:
            raise ValueError("endpoint (a remote judicial chain) excludes in_process: true")
        missing = [n for n in ("tls_ca", "tls_cert", "tls_key") if getattr(self, n) is None]
        if missing:
            raise ValueError(f"endpoint needs {', '.join(missing)} (mutual TLS)")
        return self


class AuditConfig(_Model):
    """The tamper-evident audit log (issue 7, relay/audit/): every query and admin call is
    recorded before it is answered; a checkpoint is signed every ``checkpoint_interval``
    (when something was recorded) and published to ``sink`` (unset: stored only). Each
    checkpoint re-reads the rows recorded since the last one; all rows are re-read every
    ``full_verify_interval`` and at start-up.
    ``enabled: false`` is for benchmarks only."""

    enabled: bool = True
    checkpoint_interval: Seconds = 60.0
    # Under load, audit commits (one fsync each) start at most this often; an idle relay
    # commits at once. Larger: fewer fsyncs per query, a little more latency.
    group_commit_window: Seconds = 0.015
    # Every stored row is re-read and rehashed this often (at the next checkpoint after it);
    # the checkpoints between re-read only the rows appended since the last check.
    full_verify_interval: Seconds = 3600.0
    sink: AuditSinkConfig | None = None


class RelayConfig(_Model):
    """The whole configuration file."""

    version: Literal[1] = 1
    listen: ListenConfig
    tls: TlsConfig | None = None
    store: StoreConfig
    signing: SigningConfig
    chains: list[FilePath] = Field(default_factory=list, max_length=1000)
    sync: SyncConfig = SyncConfig()
    adapters: AdaptersConfig = AdaptersConfig()
    limits: LimitsConfig = LimitsConfig()
    shutdown_grace: Seconds = 10.0
    log_level: LogLevel = "INFO"
    client: ClientConfig = ClientConfig()
    access: AccessConfig | None = None
    logging: LoggingConfig = LoggingConfig()
    audit: AuditConfig = AuditConfig()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def engine_settings(self, env: Mapping[str, str] | None = None) -> EngineSettings:
        """The engine's settings (relay/engine/settings.py) from this configuration."""
        return engine_settings(self, env)

    @property
    def effective_log_level(self) -> str:
        """``logging.level`` when set, else ``log_level``."""
        return self.logging.level or self.log_level


# ------------------------------------------------------------------------------- loading


def read_yaml(path: Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> object:
    """Read one YAML document with size and depth limits. Raises ConfigError naming the file
    (and the line and column of a syntax error)."""
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror or e}"]) from None
    if len(data) > max_bytes:
        raise ConfigError([f"{path}: larger than {max_bytes} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 (byte {e.start})"]) from None
    try:
        value = load_yaml(text, aliases=True, string_keys=False, what="configuration files")
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{path}: {where}{e.problem or e.context}"]) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError([f"{path}: not valid YAML: {e}"]) from None
    except ValueError as e:  # e.g. an integer longer than Python converts (4300 digits)
        raise ConfigError([f"{path}: a value cannot be read: {str(e)[:120]}"]) from None
    problem = structure_problem(value, max_depth=MAX_YAML_DEPTH, max_values=max_bytes)
    if problem is not None:
        raise ConfigError([f"{path}: {problem}"])
    return value


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in ("list", "str", "int"):
            continue  # pydantic's internal validator names are not field names
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


_SECRET_FIELDS = ("key", "key_file", "client_key")


def _problems(error: ValidationError) -> list[str]:
    out = []
    for item in error.errors(include_url=False):
        where = _loc(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            value = item.get("input")
            last = item["loc"][-1] if item["loc"] else ""
            shown = isinstance(value, str | int | float) and len(repr(value)) <= 80
            if shown and last not in _SECRET_FIELDS and "got" not in message:
                message += f" (got {value!r})"
        out.append(f"{where}: {message}")
    return out


def parse_config(data: object, *, base: Path | None = None) -> RelayConfig:
    """Validate an already-parsed YAML document. Raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping of sections (listen, store, ...)"])
    try:
        return RelayConfig.model_validate(data, context={"base": base})
    except ValidationError as e:
        raise ConfigError(_problems(e)) from None


def load_config(path: str | os.PathLike[str]) -> RelayConfig:
    """Read and validate a configuration file (syntax and fields; see :func:`check_files`
    for the files it names). Raises ConfigError."""
    p = Path(path)
    return parse_config(read_yaml(p), base=p.resolve().parent)


# ------------------------------------------------------------------------------- secrets


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The relay's private signing key: an Ed25519 seed or an SM2 private scalar, 32 bytes."""

    algorithm: Literal["ed25519", "sm2"]
    key_id: str
    private_key: bytes
    sm2_signer_id: str = ""

    def __repr__(self) -> str:
        return f"SigningKey({self.algorithm}, key_id={self.key_id!r})"


def parse_signing_key(data: bytes, *, algorithm: str) -> bytes:
    """The 32-byte private key from PEM (PKCS#8) or 64 hex digits. Raises ValueError
    (never showing key material)."""
    text = data.strip()
    if re.fullmatch(rb"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text.decode())
    if not text.startswith(b"-----BEGIN"):
        raise ValueError("expected a PEM private key or 64 hex digits")
    if algorithm == "ed25519":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"not a readable unencrypted PEM private key ({e})") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError(f"expected an Ed25519 key, found {type(key).__name__}")
        return key.private_bytes_raw()
    try:
        from tongsuopy.crypto import serialization as sm_serialization
        from tongsuopy.crypto.asymciphers import ec as sm_ec

        sm_key = sm_serialization.load_pem_private_key(text, password=None)
    except Exception as e:  # tongsuopy raises assorted types for unreadable keys
        raise ValueError(f"not a readable unencrypted SM2 PEM private key ({e})") from None
    if not isinstance(sm_key, sm_ec.EllipticCurvePrivateKey) or sm_key.curve.name != "SM2":
        raise ValueError("expected an SM2 private key")
    value: int = sm_key.private_numbers().private_value
    return value.to_bytes(32, "big")


def _read_secret(
    *,
    what: str,
    env_name: str,
    path: Path | None,
    env: Mapping[str, str],
    max_bytes: int = 64 << 10,
) -> bytes | None:
    if env.get(env_name):
        return env[env_name].encode()
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError([f"{what}: cannot read {path}: {e.strerror or e}"]) from None
    if len(data) > max_bytes:
        raise ConfigError([f"{what}: {path} is larger than {max_bytes} bytes"])
    return data


def load_signing_key(config: RelayConfig, env: Mapping[str, str] | None = None) -> SigningKey:
    """The relay's signing key from ``RELAY_SIGNING_KEY`` or ``signing.key_file``."""
    env = os.environ if env is None else env
    s = config.signing
    data = _read_secret(what="signing.key_file", env_name=ENV_SIGNING_KEY, path=s.key_file, env=env)
    if data is None:
        raise ConfigError([f"signing.key_file: no signing key; set it or {ENV_SIGNING_KEY}"])
    source = ENV_SIGNING_KEY if env.get(ENV_SIGNING_KEY) else "signing.key_file"
    try:
        private = parse_signing_key(data, algorithm=s.algorithm)
    except ValueError as e:
        raise ConfigError([f"{source}: {e}"]) from None
    if s.algorithm == "ed25519":
        try:
            from cryptography.hazmat.primitives.asymmetric import ed25519

            ed25519.Ed25519PrivateKey.from_private_bytes(private)
        except ValueError as e:
            raise ConfigError([f"{source}: not a valid Ed25519 seed ({e})"]) from None
    else:
        from relay.verify.signatures import SM2_ORDER

        scalar = int.from_bytes(private, "big")
        if not 1 <= scalar < SM2_ORDER - 1:
            raise ConfigError([f"{source}: SM2 private key is outside [1, n-2]"])
    return SigningKey(s.algorithm, s.key_id, private, s.sm2_signer_id)


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """PEM bytes for grpc.ssl_server_credentials / ssl_channel_credentials."""

    cert_chain: bytes
    private_key: bytes = b""
    root_certificates: bytes | None = None

    def __repr__(self) -> str:
        return "TlsMaterial(...)"


def _read_pem(what: str, path: Path, *, marker: bytes) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read((1 << 20) + 1)
    except OSError as e:
        raise ConfigError([f"{what}: cannot read {path}: {e.strerror or e}"]) from None
    if len(data) > 1 << 20:
        raise ConfigError([f"{what}: {path} is larger than 1 MiB"])
    if marker not in data:
        kind = marker.decode().strip("- ").removeprefix("BEGIN ")
        raise ConfigError([f"{what}: {path} holds no PEM {kind}"])
    return data


def _check_cert_pem(what: str, data: bytes, path: Path) -> None:
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ConfigError([f"{what}: {path} is not a readable PEM certificate ({e})"]) from None


def _check_key_pem(what: str, data: bytes) -> None:
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError([f"{what}: not a readable unencrypted PEM private key ({e})"]) from None


def load_server_tls(config: RelayConfig, env: Mapping[str, str] | None = None) -> TlsMaterial:
    """Certificate, key (``RELAY_TLS_KEY`` overrides ``tls.key``) and client CA of the
    server. Raises ConfigError when ``tls`` is absent or a file is unusable."""
    env = os.environ if env is None else env
    tls = config.tls
    if tls is None:
        raise ConfigError(["tls: required (plaintext only with --insecure-dev)"])
    chain = _read_pem("tls.cert", tls.cert, marker=b"-----BEGIN CERTIFICATE-----")
    _check_cert_pem("tls.cert", chain, tls.cert)
    key = _read_secret(what="tls.key", env_name=ENV_TLS_KEY, path=tls.key, env=env)
    if key is None:
        raise ConfigError([f"tls.key: no TLS key; set it or {ENV_TLS_KEY}"])
    _check_key_pem(ENV_TLS_KEY if env.get(ENV_TLS_KEY) else "tls.key", key)
    roots = None
    if tls.client_ca is not None:
        roots = _read_pem("tls.client_ca", tls.client_ca, marker=b"-----BEGIN CERTIFICATE-----")
        _check_cert_pem("tls.client_ca", roots, tls.client_ca)
    return TlsMaterial(chain, key, roots)


def load_adapter_client_tls(
    config: RelayConfig, env: Mapping[str, str] | None = None
) -> TlsMaterial | None:
    """The client certificate and key the relay presents to adapters, if configured."""
    env = os.environ if env is None else env
    a = config.adapters
    if a.client_cert is None:
        return None
    chain = _read_pem("adapters.client_cert", a.client_cert, marker=b"-----BEGIN CERTIFICATE")
    _check_cert_pem("adapters.client_cert", chain, a.client_cert)
    key = _read_secret(
        what="adapters.client_key", env_name=ENV_ADAPTER_CLIENT_KEY, path=a.client_key, env=env
    )
    if key is None:
        raise ConfigError(
            [f"adapters.client_key: client_cert needs a key; set it or {ENV_ADAPTER_CLIENT_KEY}"]
        )
    _check_key_pem("adapters.client_key", key)
    return TlsMaterial(chain, key)


# --------------------------------------------------------------------------- descriptors


def parse_descriptor(data: bytes, *, source: str) -> types_pb2.ChainDescriptor:
    """A ChainDescriptor from proto JSON or the same structure in YAML (field names as in
    the proto JSON mapping, bytes base64). Unknown fields are refused. Raises ConfigError."""
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise ConfigError([f"{source}: larger than {MAX_DESCRIPTOR_BYTES} bytes"])
    try:
        value = load_yaml(data.decode("utf-8"), aliases=True, string_keys=False, what="descriptors")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{source}: not UTF-8 (byte {e.start})"]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{source}: {where}{e.problem}"]) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError([f"{source}: not valid JSON or YAML: {e}"]) from None
    except ValueError as e:  # e.g. an integer longer than Python converts (4300 digits)
        raise ConfigError([f"{source}: a value cannot be read: {str(e)[:120]}"]) from None
    if not isinstance(value, dict):
        raise ConfigError([f"{source}: expected a ChainDescriptor object"])
    problem = structure_problem(value, max_depth=MAX_YAML_DEPTH, max_values=MAX_DESCRIPTOR_BYTES)
    if problem is not None:
        raise ConfigError([f"{source}: {problem}"])
    descriptor = types_pb2.ChainDescriptor()
    try:
        json_format.ParseDict(value, descriptor, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as e:
        raise ConfigError([f"{source}: not a valid ChainDescriptor: {e}"]) from None
    if not descriptor.chain_id:
        raise ConfigError([f"{source}: chain_id: required field is missing"])
    return descriptor


def load_descriptors(config: RelayConfig) -> list[types_pb2.ChainDescriptor]:
    """Every bootstrap descriptor named in ``chains``. Raises ConfigError listing every
    unreadable or invalid file, and chain ids named twice."""
    problems: list[str] = []
    out: list[types_pb2.ChainDescriptor] = []
    seen: dict[str, int] = {}
    for i, path in enumerate(config.chains):
        where = f"chains[{i}]"
        try:
            with path.open("rb") as f:
                data = f.read(MAX_DESCRIPTOR_BYTES + 1)
            d = parse_descriptor(data, source=f"{where} ({path})")
        except OSError as e:
            problems.append(f"{where}: cannot read {path}: {e.strerror or e}")
            continue
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        if d.chain_id in seen:
            problems.append(
                f"{where}: chain_id {d.chain_id!r} is also in chains[{seen[d.chain_id]}]"
            )
            continue
        seen[d.chain_id] = i
        out.append(d)
    if problems:
        raise ConfigError(problems)
    return out


# ---------------------------------------------------------------------------- validation


def serve_problems(
    config: RelayConfig, *, insecure_dev: bool = False, env: Mapping[str, str] | None = None
) -> list[str]:
    """Every problem for which ``relay serve`` refuses the configuration before it opens the
    store, each naming its field: ``tls`` present, its certificate, key and client CA
    readable and the certificate and key a usable pair; client certificates required and an
    ``access`` section present (issue 5); ``tls.client_ca`` given whenever ``access`` is;
    the engine settings and adapter client key; the signing key. ``insecure_dev`` relaxes
    exactly what ``relay serve --insecure-dev`` relaxes: ``tls`` absent,
    ``tls.require_client_cert: false`` and ``access`` absent. relay/service/app.py
    start_relay refuses with all of them; ``relay config validate`` prints them all."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def attempt(fn: Any) -> Any:
        try:
            return fn()
        except ConfigError as e:
            problems.extend(e.problems)
            return None

    tls = config.tls
    if tls is None:
        if not insecure_dev:
            problems.append("tls: required; the relay serves plaintext only with --insecure-dev")
    else:
        material = attempt(lambda: load_server_tls(config, env))
        if material is not None:
            # The same check the HTTPS ports make (Python's ssl, which gRPC's TLS agrees
            # with): a certificate whose key does not belong to it cannot serve at all, so
            # it is refused whether or not listen.ops or listen.web is set. Imported here:
            # relay.service.https builds on this module.
            from relay.service.https import server_ssl_context

            attempt(lambda: server_ssl_context(material))
    if not insecure_dev:  # issue 5: mutual TLS and access control are not optional
        if tls is not None and not tls.require_client_cert:
            problems.append(
                "tls.require_client_cert: false is allowed only with --insecure-dev; the "
                "gRPC API requires client certificates (mutual TLS)"
            )
        if config.access is None:
            problems.append(
                "access: required; without it callers are not identified and court grants "
                "are not enforced (run without access control only with --insecure-dev)"
            )
    if config.access is not None and tls is not None and tls.client_ca is None:
        # relay/access/setup.py refuses this too, but only once the store is open.
        problems.append(
            "tls.client_ca: required with access: (the CA of court, partner and operator "
            "certificates)"
        )
    attempt(lambda: engine_settings(config, env))
    attempt(lambda: load_signing_key(config, env))
    return problems


def check_files(
    config: RelayConfig, env: Mapping[str, str] | None = None, *, insecure_dev: bool = False
) -> list[str]:
    """Every problem ``relay serve`` would meet with a configuration whose fields are valid:
    :func:`serve_problems`, then the files and secrets it reads later (chain descriptors,
    the store's directory or connection string, the client defaults), every problem
    collected."""
    problems = serve_problems(config, insecure_dev=insecure_dev, env=env)
    try:
        load_descriptors(config)
    except ConfigError as e:
        problems.extend(e.problems)
    if config.store.path is not None:
        parent = config.store.path.parent
        if not parent.is_dir():
            problems.append(f"store.path: directory {parent} does not exist")
    if config.store.backend == "postgres":
        try:
            store_dsn(env)
        except ConfigError as e:
            problems.extend(e.problems)
    for name in ("ca", "cert"):
        path = getattr(config.client, name)
        if path is not None and not path.is_file():
            problems.append(f"client.{name}: {path} does not exist")
    return problems


def config_problems(path: str | os.PathLike[str], problems: Sequence[str]) -> str:
    """One line for the problems of the config file ``path``: prefixed with the path unless
    each problem already names it (a file the loader could not read does)."""
    text = "; ".join(problems)
    name = str(path)
    return text if all(p.startswith(name) for p in problems) else f"{name}: {text}"


def validate_file(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    insecure_dev: bool = False,
) -> list[str]:
    """Every problem with a configuration file, or an empty list when ``relay serve``
    (with ``--insecure-dev`` when ``insecure_dev``) would accept it: the fields first (a
    field error stops there), then :func:`check_files`."""
    try:
        config = load_config(path)
    except ConfigError as e:
        return e.problems
    return check_files(config, env, insecure_dev=insecure_dev)


# ---------------------------------------------------------------------- engine settings


# Config field -> EngineSettings field, for fields left unset taking the engine's default.
_ENGINE_FIELDS: Final = (
    ("sync", "interval", "sync_interval_s"),
    ("sync", "jitter", "sync_jitter"),
    ("sync", "backoff_max", "sync_backoff_max_s"),
    ("sync", "round_timeout", "sync_round_timeout_s"),
    ("sync", "max_light_blocks_per_fetch", "max_light_blocks_per_fetch"),
    ("sync", "max_skipping_verifications", "max_skipping_verifications"),
    ("sync", "on_demand_verification", "on_demand_verification"),
    ("sync", "prune_interval", "prune_interval_s"),
    ("sync", "verify_threads", "verify_threads"),
    ("adapters", "deadline", "adapter_deadline_s"),
    ("adapters", "retries", "adapter_retries"),
    ("adapters", "retry_base_delay", "retry_base_delay_s"),
    ("adapters", "retry_max_delay", "retry_max_delay_s"),
    ("adapters", "breaker_failures", "breaker_failure_threshold"),
    ("adapters", "breaker_reset", "breaker_reset_s"),
    ("adapters", "max_message_bytes", "max_message_bytes"),
    ("adapters", "max_stream_items", "max_stream_items"),
    ("adapters", "max_stream_bytes", "max_stream_bytes"),
    ("limits", "query_deadline", "query_deadline_s"),
    ("limits", "max_trust_path", "max_trust_path"),
    ("store", "lease_ttl", "lease_ttl_s"),
    ("store", "replica_id", "replica_id"),
)


def engine_settings(config: RelayConfig, env: Mapping[str, str] | None = None) -> EngineSettings:
    """relay.engine.settings.EngineSettings from the configuration (and the adapter client
    key from ``RELAY_ADAPTER_CLIENT_KEY`` when set). Raises ConfigError."""
    from relay.engine.settings import EngineSettings

    kwargs: dict[str, Any] = {}
    for section, name, target in _ENGINE_FIELDS:
        value = getattr(getattr(config, section), name)
        if value is not None:
            kwargs[target] = value
    client = load_adapter_client_tls(config, env)
    if client is not None:
        kwargs["adapter_client_cert_pem"] = client.cert_chain
        kwargs["adapter_client_key_pem"] = client.private_key
    try:
        return EngineSettings(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError([f"engine settings: {e}"]) from None
