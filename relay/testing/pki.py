"""A throwaway X.509 PKI for tests, benchmarks and the demo: one CA issuing server and client
certificates (ECDSA P-256, RFC 5280 profile: basicConstraints, keyUsage, extendedKeyUsage,
subjectAltName), written as PEM files. Never for production: the keys are unencrypted and
the CA key sits next to the certificates. Production certificates come from the operator's
own CA (issue "Access and onboarding").

The subject's organizational unit is where issue 5 will carry a role (``court``,
``partner``, ``operator``) and the organization where it carries the court or institution
code, so the same helper can later issue role certificates without changing callers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_VALIDITY = dt.timedelta(days=30)
# Certificates start an hour in the past so small clock differences between processes never
# make a fresh certificate "not yet valid".
_BACKDATE = dt.timedelta(hours=1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _validity(
    not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """Defaults: from an hour ago for DEFAULT_VALIDITY; an end in the past (an expired
    certificate) moves the default start back before it."""
    if not_before is None:
        not_before = _now() - _BACKDATE
        if not_after is not None and not_after <= not_before:
            not_before = not_after - DEFAULT_VALIDITY
    return not_before, not_after or not_before + DEFAULT_VALIDITY


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, as objects and as PEM."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``<name>.pem`` and ``<name>.key`` (mode 0600) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{name}.pem"
        key_path = directory / f"{name}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path


def _name(
    common_name: str, *, organization: str | None = None, organizational_unit: str | None = None
) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if organizational_unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit))
    return x509.Name(attributes)


class TestCA:
    """A self-signed CA that issues leaf certificates. Create with :meth:`create`."""

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, issued: Issued) -> None:
        self.issued = issued

    @property
    def cert_pem(self) -> bytes:
        return self.issued.cert_pem

    @classmethod
    def create(
        cls,
        common_name: str = "relay test CA",
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> TestCA:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _validity(not_before, not_after)
        name = _name(common_name)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(Issued(cert, key))

    def issue(
        self,
        common_name: str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
        organization: str | None = None,
        organizational_unit: str | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """Issue a leaf certificate for a fresh P-256 key. ``server``/``client`` set the
        extended key usages; at least one is required. Pass ``not_after`` in the past for
        an expired certificate (tests of refusal)."""
        if not (server or client):
            raise ValueError("a leaf certificate needs server and/or client usage")
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _validity(not_before, not_after)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        ca_cert = self.issued.cert
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                _name(
                    common_name,
                    organization=organization,
                    organizational_unit=organizational_unit,
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issued.key.public_key()),
                critical=False,
            )
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return Issued(builder.sign(self.issued.key, hashes.SHA256()), key)

    def issue_server(
        self,
        common_name: str = "localhost",
        *,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1", "::1"),
        client: bool = False,
    ) -> Issued:
        """A server certificate for local tests (``localhost``, 127.0.0.1, ::1)."""
        return self.issue(
            common_name,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            server=True,
            client=client,
        )

    def issue_client(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        organizational_unit: str | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """A client certificate (TLS client authentication only)."""
        return self.issue(
            common_name,
            client=True,
            organization=organization,
            organizational_unit=organizational_unit,
            not_after=not_after,
        )


@dataclass(frozen=True, slots=True)
class DevPki:
    """Paths of a PKI written by :func:`write_dev_pki`."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def write_dev_pki(directory: Path, *, client_name: str = "relay-dev-client") -> DevPki:
    """Create a CA, a relay server certificate (localhost) and one client certificate in
    ``directory``: ``ca.pem``, ``relay.pem``/``relay.key``, ``client.pem``/``client.key``.
    The relay certificate also allows client use, so the relay can present it to partner
    adapters that ask for one."""
    ca = TestCA.create()
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert = directory / "ca.pem"
    ca_cert.write_bytes(ca.cert_pem)
    server_cert, server_key = ca.issue_server("relay", client=True).write(directory, "relay")
    client_cert, client_key = ca.issue_client(client_name).write(directory, "client")
    return DevPki(directory, ca_cert, server_cert, server_key, client_cert, client_key)


# ------------------------------------------------------------------ access (issue 5)


@dataclass(frozen=True, slots=True)
class AccessPki:
    """Paths of a PKI written by :func:`write_access_pki`: the CA, the relay's server
    certificate, one client certificate per identity (``<name>.pem``/``<name>.key``, subject
    OU = role, O = code, CN = name; see relay/access/identity.py) and one proposal-signing
    key per partner institution (``<institution>.signing`` holding ``ed25519:<hex seed>``)."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]
    institution_keys: dict[str, Path]


DEFAULT_IDENTITIES: tuple[tuple[str, str, str], ...] = (
    ("court-bj-chaoyang", "court", "京0105"),
    ("court-sh-pudong", "court", "沪0115"),
    ("partner-realestate", "partner", "11110105MB0000001X"),
    ("partner-bank", "partner", "91110000100000000A"),
    ("operator-1", "operator", ""),
    ("operator-2", "operator", ""),
    ("public", "public", ""),
)


def write_access_pki(
    directory: Path,
    *,
    identities: Sequence[tuple[str, str, str]] = DEFAULT_IDENTITIES,
    ca: TestCA | None = None,
) -> AccessPki:
    """A CA, a relay certificate (localhost) and role certificates for ``identities``
    (``(name, role, code)``), plus an Ed25519 proposal-signing key per partner code. Refuses
    to overwrite an existing ``ca.pem``."""
    import os

    directory.mkdir(parents=True, exist_ok=True)
    ca_cert = directory / "ca.pem"
    if ca_cert.exists():
        raise FileExistsError(f"{ca_cert} exists; choose an empty directory")
    ca = ca or TestCA.create("relay dev CA")
    ca_cert.write_bytes(ca.cert_pem)
    server_cert, server_key = ca.issue_server("relay", client=True).write(directory, "relay")
    clients: dict[str, tuple[Path, Path]] = {}
    keys: dict[str, Path] = {}
    for name, role, code in identities:
        issued = ca.issue_client(name, organization=code or None, organizational_unit=role)
        clients[name] = issued.write(directory, name)
        if role == "partner" and code not in keys:
            path = directory / f"{code}.signing"
            path.touch(mode=0o600)
            path.write_text(f"ed25519:{os.urandom(32).hex()}\n")
            keys[code] = path
    return AccessPki(directory, ca_cert, server_cert, server_key, clients, keys)
