"""The throwaway PKI (relay/testing/pki.py): a CA whose leaves carry the usages TLS checks,
files written with private keys readable by the owner only, expired certificates on request
(issue 5's refusal tests), and the subject fields issue 5 maps to roles."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from relay.testing.pki import TestCA, write_dev_pki


def test_dev_pki_files(tmp_path: Path) -> None:
    pki = write_dev_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    client = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf in (server, client):
        assert leaf.issuer == ca.subject
        ca.public_key().verify(
            leaf.signature, leaf.tbs_certificate_bytes, leaf.signature_algorithm_parameters
        )
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    client_usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(client_usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for key in (pki.server_key, pki.client_key):
        assert key.stat().st_mode & 0o077 == 0


def test_role_fields_and_expiry() -> None:
    ca = TestCA.create()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    court = ca.issue_client(
        "clerk-7", organization="京0105", organizational_unit="court", not_after=past
    )
    subject = court.cert.subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "京0105"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "court"
    assert court.cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    with pytest.raises(ValueError, match="server and/or client usage"):
        ca.issue("nothing")
