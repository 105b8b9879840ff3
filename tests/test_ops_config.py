"""relay/config.py's operations fields: ``listen.ops`` and ``listen.web`` (optional,
host:port, every listener on its own port) and the ``logging`` section (level overriding
``log_level``, format json or text)."""

from __future__ import annotations

from typing import Any

import pytest

from relay.config import ConfigError, parse_config


def base(**sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": {"grpc": "0.0.0.0:7443", "health": "0.0.0.0:7080"},
        "store": {"path": "/var/lib/relay/relay.db"},
        "signing": {"algorithm": "ed25519", "key_id": "k-1"},
    }
    for name, value in sections.items():
        config[name] = {**config.get(name, {}), **value}
    return config


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    return info.value.problems


def test_ops_and_web_are_optional_addresses() -> None:
    plain = parse_config(base())
    assert (plain.listen.ops, plain.listen.web) == (None, None)
    full = parse_config(base(listen={"ops": "0.0.0.0:9090", "web": "[::1]:8080"}))
    assert (full.listen.ops, full.listen.web) == ("0.0.0.0:9090", "[::1]:8080")
    assert problems(base(listen={"ops": "9090"})) == ["listen.ops: expected host:port, got '9090'"]


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ({"ops": "0.0.0.0:7080"}, "health and ops must listen on different ports"),
        ({"web": "0.0.0.0:7443"}, "grpc and web must listen on different ports"),
        ({"ops": "0.0.0.0:9090", "web": "0.0.0.0:9090"}, "ops and web must listen"),
    ],
)
def test_listeners_need_their_own_ports(listen: dict[str, str], message: str) -> None:
    (problem,) = problems(base(listen=listen))
    assert problem.startswith("listen: ") and message in problem


def test_port_zero_may_repeat() -> None:
    config = parse_config(
        base(listen={"grpc": "127.0.0.1:0", "health": "127.0.0.1:0", "ops": "127.0.0.1:0"})
    )
    assert config.listen.ops == "127.0.0.1:0"


def test_logging_section() -> None:
    default = parse_config(base())
    assert (default.logging.format, default.effective_log_level) == ("json", "INFO")
    text = parse_config({**base(), "log_level": "warning", "logging": {"format": "TEXT"}})
    assert (text.logging.format, text.effective_log_level) == ("text", "WARNING")
    debug = parse_config({**base(), "log_level": "ERROR", "logging": {"level": "debug"}})
    assert debug.effective_log_level == "DEBUG"
    (problem,) = problems({**base(), "logging": {"format": "xml"}})
    assert problem.startswith("logging.format:")
    (problem,) = problems({**base(), "logging": {"colour": True}})
    assert problem == "logging.colour: unknown field"
