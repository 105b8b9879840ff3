"""Client-side connection settings for the relay's API (CLI, tests, benchmarks): the server
address, the CA that issued the relay's certificate, an optional client certificate, and
the TLS name to check. Builds sync or asyncio channels from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTls:
    """PEM material of a TLS client. ``server_name`` overrides the name checked in the
    relay's certificate (default: the host of the address)."""

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    server_name: str | None = None

    def __repr__(self) -> str:
        return (
            f"ClientTls(server_name={self.server_name!r}, client_cert={self.cert_pem is not None})"
        )

    @classmethod
    def from_files(
        cls,
        *,
        ca: Path,
        cert: Path | None = None,
        key: Path | None = None,
        server_name: str | None = None,
    ) -> ClientTls:
        return cls(
            ca_pem=ca.read_bytes(),
            cert_pem=cert.read_bytes() if cert else None,
            key_pem=key.read_bytes() if key else None,
            server_name=server_name,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )

    def options(self) -> list[tuple[str, Any]]:
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []


DEFAULT_MAX_RECEIVE_BYTES = 64 << 20


def _options(tls: ClientTls | None, max_receive_bytes: int) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", max_receive_bytes)]
    if tls is not None:
        options += tls.options()
    return options


def channel(
    address: str, tls: ClientTls | None, *, max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
) -> grpc.Channel:
    """A blocking channel; plaintext when ``tls`` is None (only for --insecure-dev relays)."""
    options = _options(tls, max_receive_bytes)
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, tls.credentials(), options=options)


def aio_channel(
    address: str, tls: ClientTls | None, *, max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
) -> grpc.aio.Channel:
    """An asyncio channel; plaintext when ``tls`` is None."""
    options = _options(tls, max_receive_bytes)
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, tls.credentials(), options=options)


def local_address(listen: str) -> str:
    """The address a local client dials for a listen address: wildcard hosts become the
    loopback of the same family."""
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{host}:{port}"
