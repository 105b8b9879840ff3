"""Who is calling: the identity and role carried by a TLS client certificate (issue 5).

Certificate layout (the operator's CA issues these; ``relay pki init`` makes a dev set):

* Subject ``OU`` (exactly one): the role, one of ``court``, ``partner``, ``operator``,
  ``public``.
* Subject ``O`` (exactly one): the code the role acts for. Courts: the court code as used in
  case numbers (法院代字, e.g. ``京0105``). Partners: the institution's code (unified social
  credit code, as in ``ChainDescriptor.institution``). Optional for operators and the public
  role.
* Subject ``CN``: the person or service holding the certificate (recorded as "who").
* Extended key usage must include ``clientAuth``.

The certificate chain, validity period and issuer (only the configured ``tls.client_ca``) are
checked by the TLS handshake itself; a missing, expired or foreign certificate never reaches
this module. Here the subject is mapped to an :class:`Identity`; a subject that does not
follow the layout is refused with ``UNAUTHENTICATED`` naming what is wrong.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from relay.service.errors import ServiceError

MAX_CERT_PEM_BYTES = 64 << 10
MAX_CODE_CHARS = 64
MAX_NAME_CHARS = 128
# In --insecure-dev mode only: "role:code:name", e.g. "court:京0105:clerk-1".
DEV_IDENTITY_HEADER = "x-relay-dev-identity"


class Role(enum.StrEnum):
    COURT = "court"
    PARTNER = "partner"
    OPERATOR = "operator"
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``code`` is the court or institution code ("" when the
    role has none); ``name`` the certificate's CN; ``fingerprint`` its SHA-256 (hex)."""

    role: Role
    code: str
    name: str
    fingerprint: str = ""

    @property
    def principal(self) -> str:
        """``role:code/name``: the key of rate limits and the "who" of records."""
        return f"{self.role.value}:{self.code}/{self.name}"


def _unauthenticated(message: str) -> ServiceError:
    return ServiceError("UNAUTHENTICATED", message)


def _one(subject: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str | None:
    values = subject.get_attributes_for_oid(oid)
    if len(values) > 1:
        raise _unauthenticated(f"client certificate subject has {len(values)} {label} values")
    if not values:
        return None
    value = values[0].value
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return text.strip()


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """Map a (handshake-verified) client certificate to an Identity, or raise
    ServiceError(UNAUTHENTICATED) naming what the subject lacks."""
    subject = cert.subject
    role_text = _one(subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")
    roles = ", ".join(r.value for r in Role)
    if role_text is None:
        raise _unauthenticated(
            f"client certificate has no subject OU; the OU is the role ({roles})"
        )
    try:
        role = Role(role_text.lower())
    except ValueError:
        raise _unauthenticated(
            f"client certificate OU {role_text[:40]!r} is not a role; expected one of {roles}"
        ) from None
    code = _one(subject, NameOID.ORGANIZATION_NAME, "O (code)") or ""
    name = _one(subject, NameOID.COMMON_NAME, "CN (name)") or ""
    if role in (Role.COURT, Role.PARTNER) and not code:
        raise _unauthenticated(
            f"a {role.value} certificate needs the {role.value}'s code in its subject O"
        )
    if len(code) > MAX_CODE_CHARS or len(name) > MAX_NAME_CHARS:
        raise _unauthenticated("client certificate subject O or CN is too long")
    if not name:
        raise _unauthenticated("client certificate has no subject CN")
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise _unauthenticated("client certificate lacks the clientAuth extended key usage")
    fingerprint = cert.fingerprint(_SHA256).hex()
    return Identity(role=role, code=code, name=name, fingerprint=fingerprint)


_SHA256 = hashes.SHA256()


@lru_cache(maxsize=4096)
def identity_from_pem(pem: bytes) -> Identity:
    """:func:`identity_from_certificate` for a PEM certificate (cached by its bytes)."""
    if len(pem) > MAX_CERT_PEM_BYTES:
        raise _unauthenticated("client certificate is larger than 64 KiB")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise _unauthenticated("client certificate does not parse") from None
    return identity_from_certificate(cert)


def identity_from_context(context: Any, *, insecure_dev: bool = False) -> Identity:
    """The caller of a grpc.aio call: from the TLS peer certificate, or, only when the
    relay runs ``--insecure-dev`` without TLS, from the ``x-relay-dev-identity`` header."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert") or []
    if pems:
        return identity_from_pem(bytes(pems[0]))
    if insecure_dev and not auth.get("transport_security_type"):
        for key, value in context.invocation_metadata() or ():
            if key == DEV_IDENTITY_HEADER:
                return parse_dev_identity(value if isinstance(value, str) else value.decode())
        raise _unauthenticated(
            f"--insecure-dev: no TLS, so the caller must name itself in the "
            f"{DEV_IDENTITY_HEADER} header as role:code:name"
        )
    raise _unauthenticated(
        "no client certificate: the relay's API requires one issued by the operator's CA "
        "(pass --cert and --key, or set client.cert and client.key in the config)"
    )


def parse_dev_identity(text: str) -> Identity:
    """``role:code:name`` (insecure development mode only)."""
    parts = text.split(":", 2)
    if len(parts) != 3 or len(text) > 256:
        raise _unauthenticated(f"{DEV_IDENTITY_HEADER} must be role:code:name")
    try:
        role = Role(parts[0])
    except ValueError:
        raise _unauthenticated(f"{DEV_IDENTITY_HEADER}: unknown role {parts[0][:40]!r}") from None
    if role in (Role.COURT, Role.PARTNER) and not parts[1]:
        raise _unauthenticated(f"{DEV_IDENTITY_HEADER}: a {role.value} needs a code")
    if not parts[2]:
        raise _unauthenticated(f"{DEV_IDENTITY_HEADER}: the name is empty")
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Identity(role=role, code=parts[1], name=parts[2], fingerprint="dev-" + digest[:16])
