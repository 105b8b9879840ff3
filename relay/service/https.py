"""The TLS context of the relay's HTTP ports (the ops port and the public verification page).

Issue 5: every listening port except the health port speaks TLS. The ops port and the page
serve the relay's own server certificate, the same certificate and key as the gRPC API
(relay/config.py load_server_tls), so there is one certificate to issue, rotate and pin.
The verification page asks for no client certificate: it is public by design. The ops port
asks for one without requiring it (``client_ca``): Prometheus and probes read /metrics,
/healthz and /readyz without one (the network policy limits who may), while a change of
process state (``PUT /loglevel``) needs an operator's certificate (relay/web/ops.py).

Python's ``ssl`` loads a certificate and key only from files, while the key may come from
the ``RELAY_TLS_KEY`` environment variable; the PEM is handed over through an anonymous
in-memory file (Linux ``memfd``) so the key never touches a disk, with a private temporary
directory as the fallback on other systems.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from relay.config import ConfigError, TlsMaterial

# TLS 1.0 and 1.1 are deprecated (RFC 8996); gRPC's own floor is 1.2 as well.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


@contextlib.contextmanager
def _pem_paths(cert_chain: bytes, private_key: bytes) -> Iterator[tuple[str, str]]:
    """Paths ``load_cert_chain`` can read the two PEMs from, valid inside the block."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        fds = [memfd_create("relay-tls-cert"), memfd_create("relay-tls-key")]
        try:
            for fd, data in zip(fds, (cert_chain, private_key), strict=True):
                os.write(fd, data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="relay-tls-") as directory:  # mode 0700
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert.write_bytes(cert_chain)
        key.touch(mode=0o600)
        key.write_bytes(private_key)
        yield str(cert), str(key)


def server_ssl_context(tls: TlsMaterial, *, client_ca: bytes | None = None) -> ssl.SSLContext:
    """An HTTPS server context (TLS 1.2 or later) with the relay's certificate chain and
    key. With ``client_ca`` (PEM) it asks clients for a certificate issued by that CA and
    refuses the handshake for any other, but lets clients without one connect; without it
    no client certificate is asked for. Raises ConfigError when the certificate and key
    (or the CA) do not load (e.g. the key does not belong to the certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    if client_ca is not None:
        try:
            context.load_verify_locations(cadata=client_ca.decode("ascii", errors="replace"))
        except ssl.SSLError as e:
            raise ConfigError([f"tls.client_ca: cannot be loaded ({e.reason or e})"]) from None
        context.verify_mode = ssl.CERT_OPTIONAL
    with _pem_paths(tls.cert_chain, tls.private_key) as (cert, key):
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as e:
            raise ConfigError(
                [f"tls: the certificate and key cannot serve HTTPS ({e.reason or e})"]
            ) from None
    return context
