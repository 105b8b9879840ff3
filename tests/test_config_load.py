"""The YAML configuration (relay/config.py): a valid file loads with paths resolved against
its directory; each kind of mistake is reported as one precise problem naming the field;
secrets come from the environment before files; descriptors load from proto JSON and YAML;
the engine gets its settings (unset fields keep the engine's defaults)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import relay_cli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.config import (
    ConfigError,
    load_config,
    load_descriptors,
    load_server_tls,
    load_signing_key,
    parse_config,
    parse_descriptor,
    validate_file,
)
from relay.engine.settings import EngineSettings
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.devconfig import write_dev_setup
from relay.testing.pki import write_dev_pki

MINIMAL: dict[str, Any] = {
    "listen": {"grpc": "127.0.0.1:7443", "health": "127.0.0.1:7080"},
    "store": {"path": "relay.db"},
    "signing": {"algorithm": "ed25519", "key_id": "relay-1", "key_file": "signing.key"},
}


def write(tmp_path: Path, data: Any, name: str = "relay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True))
    return path


def problems_of(tmp_path: Path, data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    return info.value.problems


def test_minimal_config_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.store.path == tmp_path / "relay.db"
    assert config.signing.key_file == tmp_path / "signing.key"
    assert config.tls is None and config.chains == [] and config.log_level == "INFO"


def test_dev_setup_validates_clean(tmp_path: Path) -> None:
    # The development setup has no access: section: clean for `serve --insecure-dev`, and
    # clean for production once the section is added (tests/test_config_serve.py refuses it).
    setup = write_dev_setup(tmp_path / "dev")
    assert validate_file(setup.config, insecure_dev=True) == []
    access = {"grants": {"京0105": {"domains": ["bank"], "queries": ["account"]}}}
    setup = write_dev_setup(tmp_path / "prod", overrides={"access": access})
    assert validate_file(setup.config) == []


def test_durations_and_sizes(tmp_path: Path) -> None:
    data = {
        **MINIMAL,
        "sync": {"interval": "250ms", "prune_interval": "2h", "round_timeout": 30},
        "store": {"path": "relay.db", "lease_ttl": "15s"},
        "access": {"max_proposal_lifetime": "7d"},
        "adapters": {"deadline": "1.5s", "max_message_bytes": "4MiB", "max_stream_bytes": "32MiB"},
        "limits": {"max_request_bytes": "64KiB", "query_deadline": "1m"},
        "shutdown_grace": "3s",
        "log_level": "debug",
    }
    c = load_config(write(tmp_path, data))
    assert c.sync.interval == 0.25 and c.sync.prune_interval == 7200 and c.sync.round_timeout == 30
    assert c.adapters.deadline == 1.5 and c.adapters.max_message_bytes == 4 << 20
    assert c.engine_settings().max_stream_bytes == 32 << 20
    assert c.limits.max_request_bytes == 65536 and c.limits.query_deadline == 60
    assert c.shutdown_grace == 3 and c.log_level == "DEBUG"
    assert c.store.lease_ttl == 15 and c.access is not None
    assert c.access.max_proposal_lifetime == 7 * 86400


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"listen": {"grpc": "127.0.0.1", "health": "127.0.0.1:1"}},
            "listen.grpc: expected host:port",
        ),
        ({"listen": {"grpc": "h:70000", "health": "h:1"}}, "listen.grpc: port 70000 is outside"),
        ({"listen": {"grpc": "::1:80", "health": "h:1"}}, "listen.grpc: write IPv6 addresses as"),
        ({"listen": {"grpc": "h:5", "health": "h:5"}}, "listen: grpc and health must listen"),
        ({"listen": {"grpc": "h:5"}}, "listen.health: required field is missing"),
        (
            {"store": {"path": "x", "backend": "mysql"}},
            "store.backend: Input should be 'sqlite' or 'postgres'",
        ),
        (
            {"store": {"path": "x", "backend": "postgres"}},
            "store: store.path is for backend sqlite",
        ),
        ({"store": {"path": ""}}, "store.path: path must not be empty"),
        ({"signing": {"algorithm": "rsa", "key_id": "k"}}, "signing.algorithm: "),
        ({"signing": {"algorithm": "ed25519", "key_id": "a b"}}, "signing.key_id: key_id must be"),
        (
            {"signing": {"algorithm": "ed25519", "key_id": "k", "sm2_signer_id": "x"}},
            "signing: sm2_signer_id applies only to algorithm sm2",
        ),
        ({"tls": {"cert": "c.pem", "require_client_cert": True}}, "tls: client_ca required"),
        ({"sync": {"interval": "soon"}}, "sync.interval: expected a duration such as 5s"),
        ({"sync": {"interval": 0}}, "sync.interval: Input should be greater than 0"),
        ({"sync": {"interval": True}}, "sync.interval: expected a duration such as 5s or 500ms"),
        ({"sync": {"jitter": 3}}, "sync.jitter: Input should be less than or equal to 1"),
        (
            {"limits": {"max_request_bytes": "5 bananas"}},
            "limits.max_request_bytes: expected a size",
        ),
        (
            {"limits": {"max_request_bytes": 10}},
            "limits.max_request_bytes: Input should be greater",
        ),
        ({"adapters": {"retries": -1}}, "adapters.retries: Input should be greater than or equal"),
        ({"adapters": {"client_key": "k.pem"}}, "adapters: client_key without client_cert"),
        ({"log_level": "chatty"}, "log_level: Input should be 'DEBUG'"),
        ({"version": 2}, "version: Input should be 1"),
        ({"tsl": {}}, "tsl: unknown field"),
        ({"sync": {"intervall": "1s"}}, "sync.intervall: unknown field"),
        ({"chains": "one.json"}, "chains: Input should be a valid list"),
    ],
)
def test_each_mistake_is_named(tmp_path: Path, patch: dict[str, Any], expected: str) -> None:
    problems = problems_of(tmp_path, {**MINIMAL, **patch})
    assert any(p.startswith(expected) for p in problems), problems


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    data = {**MINIMAL, "listen": {"grpc": "x", "health": "y"}, "log_level": 5, "extra": 1}
    problems = problems_of(tmp_path, data)
    assert len(problems) == 4, problems
    assert [p.split(":")[0] for p in problems] == [
        "listen.grpc",
        "listen.health",
        "log_level",
        "extra",
    ]


def test_secret_values_are_not_echoed(tmp_path: Path) -> None:
    data = {**MINIMAL, "signing": {**MINIMAL["signing"], "key_file": 12345}}
    problems = problems_of(tmp_path, data)
    assert problems and all("12345" not in p for p in problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: [unclosed", "line 1 column 18: expected ',' or ']'"),
        ("a: 1\na: 2\n", "line 2 column 1: duplicate key 'a'"),
        ("- just\n- a list\n", "(top level): expected a mapping"),
        ("tls:\n\tcert: x\n", "line 2 column 1: found character '\\t'"),
    ],
)
def test_syntax_problems_name_the_place(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    problems = validate_file(path)
    assert len(problems) == 1 and expected in problems[0], problems


def test_unreadable_and_oversized_files(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"\xff\xfe")
    assert validate_file(tmp_path / "latin1.yaml")[0].endswith("not UTF-8 (byte 0)")
    assert validate_file(tmp_path / "absent.yaml")[0].endswith(
        "cannot read: No such file or directory"
    )
    big = write(tmp_path, "a: " + "x" * (1 << 20))
    assert "larger than" in validate_file(big)[0]
    deep = write(tmp_path, "a: " + "[" * 40 + "]" * 40)
    assert "nested deeper" in validate_file(deep)[0]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        import yaml as _yaml

        data = _yaml.safe_load(text)
    except Exception:
        return
    try:
        parse_config(data)
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) and ": " in p for p in e.problems)


# ------------------------------------------------------------------------------ secrets


def _ed25519_pem() -> tuple[bytes, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key.private_bytes_raw()


def test_signing_key_from_file_pem_hex_and_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    pem, raw = _ed25519_pem()
    (tmp_path / "signing.key").write_bytes(pem)
    assert load_signing_key(config, env={}).private_key == raw
    (tmp_path / "signing.key").write_text("ab" * 32 + "\n")
    assert load_signing_key(config, env={}).private_key == bytes.fromhex("ab" * 32)
    # The environment wins over the file.
    key = load_signing_key(config, env={"RELAY_SIGNING_KEY": pem.decode()})
    assert key.private_key == raw and "private" not in repr(key).lower().replace("_", "")


def test_signing_key_problems(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError) as info:
        load_signing_key(config, env={})
    assert info.value.problems[0].startswith("signing.key_file: cannot read")
    (tmp_path / "signing.key").write_text("not a key")
    with pytest.raises(ConfigError) as info:
        load_signing_key(config, env={})
    assert "expected a PEM private key or 64 hex digits" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        load_signing_key(config, env={"RELAY_SIGNING_KEY": "zz"})
    assert info.value.problems[0].startswith("RELAY_SIGNING_KEY: ")
    pki = write_dev_pki(tmp_path / "pki")  # a P-256 key is not an Ed25519 key
    (tmp_path / "signing.key").write_bytes(pki.client_key.read_bytes())
    with pytest.raises(ConfigError) as info:
        load_signing_key(config, env={})
    assert "expected an Ed25519 key" in info.value.problems[0]


def test_sm2_signing_key(tmp_path: Path) -> None:
    from relay.service.app import make_signer

    data = {**MINIMAL, "signing": {"algorithm": "sm2", "key_id": "sm2-1", "key_file": "k"}}
    config = load_config(write(tmp_path, data))
    (tmp_path / "k").write_text("00" * 31 + "07")
    key = load_signing_key(config, env={})
    signer = make_signer(key)
    assert signer.algorithm == pb.SIGNATURE_ALGORITHM_SM2 and len(signer.public_key) == 65
    (tmp_path / "k").write_text("ff" * 32)  # >= the group order
    with pytest.raises(ConfigError, match="outside"):
        load_signing_key(config, env={})


def test_tls_material_and_key_from_environment(tmp_path: Path) -> None:
    pki = write_dev_pki(tmp_path / "pki")
    data = {**MINIMAL, "tls": {"cert": "pki/relay.pem", "client_ca": "pki/ca.pem"}}
    config = load_config(write(tmp_path, data))
    with pytest.raises(ConfigError, match=r"tls\.key: no TLS key; set it or RELAY_TLS_KEY"):
        load_server_tls(config, env={})
    material = load_server_tls(config, env={"RELAY_TLS_KEY": pki.server_key.read_text()})
    assert material.private_key == pki.server_key.read_bytes()
    assert material.root_certificates == pki.ca_cert.read_bytes()
    (tmp_path / "pki" / "relay.pem").write_text("garbage")
    with pytest.raises(ConfigError, match=r"tls\.cert: .* holds no PEM CERTIFICATE"):
        load_server_tls(config, env={"RELAY_TLS_KEY": pki.server_key.read_text()})


# -------------------------------------------------------------------------- descriptors


def _descriptor() -> pb.ChainDescriptor:
    return pb.ChainDescriptor(
        chain_id="re-1",
        institution="911101050000000000",
        domain=pb.DOMAIN_REAL_ESTATE,
        display_name_zh="不动产链",
        proof_spec=pb.PROOF_SPEC_ICS23_SMT,
        record_schema_version=1,
        party_key=pb.PartyKeySpec(hash_algorithm=pb.HASH_ALGORITHM_SHA256, salt=b"s" * 16),
        adapter=pb.AdapterEndpoint(grpc_address="localhost:9000"),
        registry_codes=["110105"],
        tendermint=pb.TendermintClientParams(
            anchor=pb.TendermintAnchor(light_block=b"\x01\x02", height=3)
        ),
    )


def test_descriptors_from_proto_json_and_yaml(tmp_path: Path) -> None:
    d = _descriptor()
    as_json = json_format.MessageToJson(d, ensure_ascii=False)
    write(tmp_path, as_json, "a.json")
    as_dict = json.loads(as_json)
    as_dict["chainId"] = "re-2"
    as_dict["registryCodes"] = ["110106"]
    write(tmp_path, yaml.safe_dump(as_dict, allow_unicode=True), "b.yaml")
    config = load_config(write(tmp_path, {**MINIMAL, "chains": ["a.json", "b.yaml"]}))
    loaded = load_descriptors(config)
    assert loaded[0] == d
    assert loaded[1].chain_id == "re-2" and loaded[1].party_key.salt == b"s" * 16
    assert base64.b64decode(as_dict["partyKey"]["salt"]) == b"s" * 16


def test_descriptor_problems_name_the_file(tmp_path: Path) -> None:
    d = json.loads(json_format.MessageToJson(_descriptor()))
    write(tmp_path, json.dumps({**d, "colour": "blue"}), "unknown.json")
    write(tmp_path, json.dumps({**d, "domain": "DOMAIN_SPACE"}), "badenum.json")
    write(tmp_path, json.dumps(d), "dup.json")
    write(tmp_path, json.dumps(d), "dup2.json")
    write(tmp_path, "{", "broken.json")
    data = {
        **MINIMAL,
        "chains": [
            "unknown.json",
            "badenum.json",
            "dup.json",
            "dup2.json",
            "broken.json",
            "no.json",
        ],
    }
    with pytest.raises(ConfigError) as info:
        load_descriptors(load_config(write(tmp_path, data)))
    p = info.value.problems
    assert len(p) == 5, p
    assert p[0].startswith("chains[0] (") and "colour" in p[0]
    assert p[1].startswith("chains[1] (") and "DOMAIN_SPACE" in p[1]
    assert p[2] == "chains[3]: chain_id 're-1' is also in chains[2]"
    assert p[3].startswith("chains[4] (") and "line" in p[3]
    assert p[4].startswith("chains[5]: cannot read")
    with pytest.raises(ConfigError, match="chain_id: required"):
        parse_descriptor(b"{}", source="x")


def test_engine_settings_mapping_keeps_engine_defaults(tmp_path: Path) -> None:
    pki = write_dev_pki(tmp_path / "pki")
    data = {
        **MINIMAL,
        "sync": {"interval": "1s", "verify_threads": 3},
        "adapters": {
            "deadline": "2s",
            "breaker_failures": 9,
            "client_cert": "pki/relay.pem",
            "client_key": "pki/relay.key",
        },
        "limits": {"query_deadline": "4s", "max_trust_path": 10},
    }
    config = load_config(write(tmp_path, data))
    s = config.engine_settings(env={})
    default = EngineSettings()
    assert s.sync_interval_s == 1 and s.verify_threads == 3
    assert s.adapter_deadline_s == 2 and s.breaker_failure_threshold == 9
    assert s.query_deadline_s == 4 and s.max_trust_path == 10
    assert s.adapter_client_cert_pem == pki.server_cert.read_bytes()
    assert s.adapter_client_key_pem == pki.server_key.read_bytes()
    # Fields the config leaves unset keep the engine's own defaults.
    assert s.adapter_retries == default.adapter_retries
    assert s.max_light_blocks_per_fetch == default.max_light_blocks_per_fetch
    plain = load_config(write(tmp_path, MINIMAL)).engine_settings(env={})
    assert plain == default


# ------------------------------------------------------------------- YAML aliases


def laughs(levels: int = 9, fan: int = 10) -> str:
    """A few hundred bytes of nested YAML aliases that stand for fan**levels values."""
    lines = ["l0: &l0 [" + ",".join(['"x"'] * fan) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def test_alias_expansion_is_refused_not_walked(tmp_path: Path) -> None:
    # 10**9 values in 476 bytes: walking them (the depth check, then pydantic) used to hang
    # `relay config validate` and `relay serve` on this file.
    path = write(tmp_path, laughs() + "listen: {grpc: '127.0.0.1:1'}\n")
    problems = validate_file(path)
    assert len(problems) == 1 and "expands to more than" in problems[0], problems
    assert problems[0].startswith(f"{path}: ")
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_descriptor(laughs().encode(), source="laughs.yaml")


def test_config_cli_refuses_alias_bomb_promptly(tmp_path: Path) -> None:
    path = write(tmp_path, laughs() + "listen: {grpc: '127.0.0.1:1'}\n")
    done = relay_cli("config", "validate", str(path), timeout=60)  # the old code never ended
    assert done.returncode == 2, done
    assert "expands to more than" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_modest_aliases_still_load(tmp_path: Path) -> None:
    # Anchors and aliases are ordinary YAML: an operator may name a value once and use it
    # twice. Only expansion beyond the file's size budget is refused.
    text = (
        "listen: {grpc: '127.0.0.1:7443', health: '127.0.0.1:7080'}\n"
        "signing: {algorithm: ed25519, key_id: &name relay-1, key_file: signing.key}\n"
        "store: {path: relay.db, replica_id: *name}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.store.replica_id == "relay-1" and config.signing.key_id == "relay-1"
