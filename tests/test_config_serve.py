"""What ``relay serve`` refuses, ``relay config validate`` refuses too, all at once: one
function (relay/config.py serve_problems) lists every start-up problem of a configuration,
and relay/service/app.py start_relay raises it while validate_file prints it. The four
production refusals (no ``tls:``, no ``access:``, ``tls.require_client_cert: false``, a
certificate with a key that is not its own) are each named by their field, several are
named together, and ``--insecure-dev`` relaxes exactly the first three. And durations: the
day unit (``max_proposal_lifetime: 7d`` as the README writes it) and ``store.lease_ttl`` as
a duration like every other, each with its limits kept."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import relay_cli as cli
from pydantic import BaseModel, BeforeValidator

from relay import config as relay_config
from relay.config import ConfigError, parse_config, validate_file
from relay.service.app import start_relay
from relay.service.devconfig import DevSetup, write_dev_setup

ACCESS: dict[str, Any] = {
    "grants": {"京0105": {"domains": ["real-estate", "bank"], "queries": ["ownership"]}},
    "operators": ["ops-alice", "ops-bob"],
    "approvals_required": 2,
}

# name -> (how the production config is spoiled, the start of the one problem it causes)
Edit = Callable[[dict[str, Any]], object]
REFUSALS: dict[str, tuple[Edit, str]] = {
    "no tls": (
        lambda d: d.pop("tls"),
        "tls: required; the relay serves plaintext only with --insecure-dev",
    ),
    "no access": (lambda d: d.pop("access"), "access: required; without it callers are not"),
    "client certificates off": (
        lambda d: d["tls"].update(require_client_cert=False),
        "tls.require_client_cert: false is allowed only with --insecure-dev",
    ),
    "key of another certificate": (
        lambda d: d["tls"].update(key=d["client"]["key"]),
        "tls: the certificate and key cannot serve HTTPS (KEY_VALUES_MISMATCH)",
    ),
}
RELAXED_BY_INSECURE_DEV = ("no tls", "no access", "client certificates off")


def production_setup(directory: Path, *edits: Edit) -> DevSetup:
    """A development setup turned production (an access: section), then spoiled."""
    setup = write_dev_setup(directory, overrides={"access": ACCESS})
    data = yaml.safe_load(setup.config.read_text())
    for edit in edits:
        edit(data)
    setup.config.write_text(yaml.safe_dump(data, allow_unicode=True))
    return setup


def serve_refusal(setup: DevSetup, *, insecure_dev: bool = False) -> list[str]:
    """The problems start_relay refuses with (it must refuse before opening anything)."""
    config = relay_config.load_config(setup.config)
    with pytest.raises(ConfigError) as info:
        asyncio.run(start_relay(config, insecure_dev=insecure_dev))
    assert not (setup.directory / "relay.db").exists()
    return info.value.problems


# ------------------------------------------------------------------ production refusals


def test_the_production_setup_itself_is_clean(tmp_path: Path) -> None:
    setup = production_setup(tmp_path)
    assert validate_file(setup.config) == []
    assert validate_file(setup.config, insecure_dev=True) == []


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_validate_and_serve_refuse_each_the_same_way(tmp_path: Path, case: str) -> None:
    edit, expected = REFUSALS[case]
    setup = production_setup(tmp_path, edit)
    problems = validate_file(setup.config)
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    assert serve_refusal(setup) == problems


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_config_validate_command_names_the_field_and_exits_2(tmp_path: Path, case: str) -> None:
    edit, expected = REFUSALS[case]
    setup = production_setup(tmp_path, edit)
    out = cli("config", "validate", str(setup.config))
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout.splitlines()[0].startswith(expected), out.stdout
    assert "OK" not in out.stdout.splitlines() and "Traceback" not in out.stderr


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_insecure_dev_relaxes_exactly_what_serve_relaxes(tmp_path: Path, case: str) -> None:
    edit, expected = REFUSALS[case]
    setup = production_setup(tmp_path, edit)
    relaxed = validate_file(setup.config, insecure_dev=True)
    if case in RELAXED_BY_INSECURE_DEV:
        assert relaxed == []
    else:  # a key that does not fit cannot serve at all, development or not
        assert len(relaxed) == 1 and relaxed[0].startswith(expected), relaxed
        assert serve_refusal(setup, insecure_dev=True) == relaxed


def test_every_problem_is_named_by_validate_and_by_serve(tmp_path: Path) -> None:
    no_tls, tls_problem = REFUSALS["no tls"]
    no_access, access_problem = REFUSALS["no access"]
    setup = production_setup(tmp_path, no_tls, no_access)
    problems = validate_file(setup.config)
    assert len(problems) == 2, problems
    assert problems[0].startswith(tls_problem) and problems[1].startswith(access_problem)
    assert serve_refusal(setup) == problems

    out = cli("config", "validate", str(setup.config))
    assert (out.returncode, out.stdout.splitlines()) == (2, problems), out.stderr
    out = cli("serve", "--config", str(setup.config))
    assert out.returncode == 2, out.stderr
    assert tls_problem in out.stderr and access_problem in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (setup.directory / "relay.db").exists()


def test_key_of_another_certificate_and_missing_access_together(tmp_path: Path) -> None:
    edit, key_problem = REFUSALS["key of another certificate"]
    setup = production_setup(tmp_path, edit, REFUSALS["no access"][0])
    problems = validate_file(setup.config)
    assert [p.split(":")[0] for p in problems] == ["tls", "access"], problems
    assert problems[0].startswith(key_problem)
    assert serve_refusal(setup) == problems


def test_access_without_a_client_ca_is_refused_before_the_store_opens(tmp_path: Path) -> None:
    """With --insecure-dev client certificates may be off, but access: still needs the CA
    that issues court certificates (relay/access/setup.py would refuse it later)."""

    def no_client_ca(d: dict[str, Any]) -> None:
        d["tls"].pop("client_ca")
        d["tls"]["require_client_cert"] = False

    setup = production_setup(tmp_path, no_client_ca)
    problems = validate_file(setup.config, insecure_dev=True)
    assert len(problems) == 1 and problems[0].startswith("tls.client_ca: required with access")
    assert serve_refusal(setup, insecure_dev=True) == problems


def test_config_validate_insecure_dev_flag(tmp_path: Path) -> None:
    """``relay config validate --insecure-dev`` checks as ``relay serve --insecure-dev``
    starts: the development setup (no access:) passes, a foreign key still does not."""
    setup = production_setup(tmp_path / "dev", REFUSALS["no access"][0])
    out = cli("config", "validate", "--insecure-dev", str(setup.config))
    assert (out.returncode, out.stdout) == (0, "OK\n"), out.stdout + out.stderr
    edit, key_problem = REFUSALS["key of another certificate"]
    setup = production_setup(tmp_path / "bad", edit)
    out = cli("config", "validate", "--insecure-dev", str(setup.config))
    assert out.returncode == 2 and out.stdout.startswith(key_problem), out.stdout + out.stderr


# -------------------------------------------------------------------------- durations

MINIMAL: dict[str, Any] = {
    "listen": {"grpc": "127.0.0.1:7443", "health": "127.0.0.1:7080"},
    "store": {"path": "relay.db"},
    "signing": {"algorithm": "ed25519", "key_id": "relay-1", "key_file": "signing.key"},
}
WEEK = 7 * 86400


def test_the_readme_access_example_validates() -> None:
    access = {
        "audience": "relay-bj-prod",
        "grants": {"京0105": {"domains": ["real-estate", "bank"], "queries": ["ownership"]}},
        "institution_keys": [
            {
                "institution": "91110000100000000A",
                "key_id": "bank-k1",
                "algorithm": "ed25519",
                "public_key": "ab" * 32,
            }
        ],
        "approvals_required": 2,
        "operators": ["operator-1", "operator-2", "operator-3"],
        "max_proposal_lifetime": "7d",
        "rate": {"per_second": 50, "burst": 100, "max_in_flight": 16},
    }
    config = parse_config({**MINIMAL, "access": access})
    assert config.access is not None and config.access.max_proposal_lifetime == WEEK


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", WEEK), ("1.5d", 1.5 * 86400), (" 2 d ", 2 * 86400), ("1d", 86400), ("90m", 5400)],
)
def test_the_day_unit(text: str, seconds: float) -> None:
    config = parse_config({**MINIMAL, "access": {"max_proposal_lifetime": text}})
    assert config.access is not None and config.access.max_proposal_lifetime == seconds
    config = parse_config({**MINIMAL, "shutdown_grace": text})
    assert config.shutdown_grace == seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8d", "access.max_proposal_lifetime: Input should be less than or equal to 604800"),
        ("7.5d", "access.max_proposal_lifetime: Input should be less than or equal to 604800"),
        ("1w", "access.max_proposal_lifetime: expected a duration such as 5s, 500ms, 2m, 1h or 7d"),
        ("7days", "access.max_proposal_lifetime: expected a duration"),
        ("d", "access.max_proposal_lifetime: expected a duration"),
        ("0d", "access.max_proposal_lifetime: Input should be greater than 0"),
    ],
)
def test_day_unit_keeps_the_limits(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, "access": {"max_proposal_lifetime": text}})
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(expected)


@pytest.mark.parametrize(
    ("value", "seconds"), [("15s", 15.0), ("500ms", 0.5), (30, 30.0), ("1h", 3600.0), (2.5, 2.5)]
)
def test_lease_ttl_is_a_duration(value: object, seconds: float) -> None:
    config = parse_config({**MINIMAL, "store": {"path": "x.db", "lease_ttl": value}})
    assert config.store.lease_ttl == seconds
    assert config.engine_settings({}).lease_ttl_s == seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2h", "store.lease_ttl: Input should be less than or equal to 3600"),
        ("1d", "store.lease_ttl: Input should be less than or equal to 3600"),
        ("0s", "store.lease_ttl: Input should be greater than 0"),
        ("soon", "store.lease_ttl: expected a duration such as 5s"),
        (True, "store.lease_ttl: expected a duration such as 5s or 500ms, not a boolean"),
    ],
)
def test_lease_ttl_keeps_its_limits(value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, "store": {"path": "x.db", "lease_ttl": value}})
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(expected)


def test_lease_ttl_default_is_15_seconds() -> None:
    assert parse_config(MINIMAL).store.lease_ttl == 15.0


# Float fields that are not durations (so plain numbers only).
NOT_DURATIONS = {("SyncConfig", "jitter"), ("AccessRateConfig", "per_second")}


def is_duration(annotation: Any) -> bool:
    """Whether a config field's annotation parses durations (relay.config._duration)."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, BeforeValidator) and arg.func is relay_config._duration:
            return True
        if is_duration(arg):
            return True
    return False


def _float_fields() -> list[tuple[str, str, Any]]:
    out = []
    for model in vars(relay_config).values():
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        if model.__module__ != relay_config.__name__:
            continue
        hints = typing.get_type_hints(model, include_extras=True)
        for name in model.model_fields:
            hint = hints[name]
            if "float" in repr(hint):
                out.append((model.__name__, name, hint))
    return out


def test_every_seconds_field_is_a_duration() -> None:
    """No config field takes plain seconds while the others take ``15s`` (store.lease_ttl
    did): each float field is a duration, or one of the few that are not time at all."""
    fields = _float_fields()
    assert ("StoreConfig", "lease_ttl") in {(m, n) for m, n, _ in fields}
    wrong = [
        (m, n) for m, n, hint in fields if (m, n) not in NOT_DURATIONS and not is_duration(hint)
    ]
    assert wrong == []
    assert all(not is_duration(h) for m, n, h in fields if (m, n) in NOT_DURATIONS)
