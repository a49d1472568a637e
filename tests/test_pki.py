"""The shared PKI: CA creation and loading, server and installation certificates, CSRs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ewsgate import pki

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_load_or_create_ca_writes_key_0600_and_reloads_same_ca(tmp_path):
    cert_path, key_path = tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.key"
    created = pki.load_or_create_ca(cert_path, key_path, now=NOW)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    loaded = pki.load_or_create_ca(cert_path, key_path, now=NOW)
    assert loaded.cert == created.cert
    assert loaded.key.public_key() == created.key.public_key()
    constraints = loaded.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0


def test_half_present_ca_is_refused_not_overwritten(tmp_path):
    cert_path, key_path = tmp_path / "ca.crt", tmp_path / "ca.key"
    pki.load_or_create_ca(cert_path, key_path, now=NOW)
    key_path.unlink()
    before = cert_path.read_bytes()
    with pytest.raises(pki.PkiError) as info:
        pki.load_or_create_ca(cert_path, key_path, now=NOW)
    assert info.value.code == "pki.ca_incomplete"
    assert cert_path.read_bytes() == before


def test_load_ca_refuses_a_key_of_another_ca(tmp_path):
    one, two = pki.create_ca(now=NOW), pki.create_ca(now=NOW)
    (tmp_path / "ca.crt").write_bytes(one.cert_pem)
    pki.write_private_key(tmp_path / "ca.key", two.key)
    with pytest.raises(pki.PkiError) as info:
        pki.load_ca(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert info.value.code == "pki.ca_key_mismatch"


def test_load_ca_refuses_a_leaf_certificate(tmp_path):
    ca = pki.create_ca(now=NOW)
    leaf = ca.issue_server_cert(dns_names=["x"], now=NOW)
    (tmp_path / "c.crt").write_bytes(leaf.cert_pem)
    pki.write_private_key(tmp_path / "c.key", leaf.key)
    with pytest.raises(pki.PkiError) as info:
        pki.load_ca(tmp_path / "c.crt", tmp_path / "c.key")
    assert info.value.code == "pki.not_a_ca"


def test_server_cert_names_and_usage():
    ca = pki.create_ca(now=NOW)
    issued = ca.issue_server_cert(dns_names=["localhost", "portal.example"],
                                  ip_addresses=["127.0.0.1", "::1"], now=NOW)
    san = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "portal.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("::1")]
    eku = issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert pki.is_issued_by(issued.cert, ca.cert)
    assert not pki.is_issued_by(issued.cert, pki.create_ca(now=NOW).cert)
    assert pki.key_from_pem(issued.key_pem).public_key() == issued.key.public_key()


def test_server_cert_needs_a_name():
    with pytest.raises(pki.PkiError) as info:
        pki.create_ca(now=NOW).issue_server_cert(now=NOW)
    assert info.value.code == "pki.no_names"


def test_installation_cert_from_csr_carries_only_the_ca_chosen_identity():
    ca = pki.create_ca(now=NOW)
    key = pki.generate_key()
    csr = pki.build_csr(key, common_name="installation 999 (asked for by the agent)")
    cert = ca.sign_installation_csr(csr, installation_id="42", now=NOW)
    assert pki.installation_id_from_cert(cert) == "42"
    assert cert.public_key() == key.public_key()
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "installation 42"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - NOW == pki.CLIENT_CERT_LIFETIME
    assert pki.is_issued_by(cert, ca.cert)


def test_lifetime_never_exceeds_the_ca():
    ca = pki.create_ca(now=NOW, lifetime=dt.timedelta(days=2))
    issued = ca.issue_installation_cert("7", now=NOW)
    assert issued.cert.not_valid_after_utc == ca.cert.not_valid_after_utc


def test_bad_csr_weak_key_and_tampered_signature_are_refused():
    ca = pki.create_ca(now=NOW)
    with pytest.raises(pki.PkiError) as info:
        ca.sign_installation_csr(b"not a csr", installation_id="1", now=NOW)
    assert info.value.code == "pki.bad_csr"
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(pki.PkiError) as info:
        ca.sign_installation_csr(pki.build_csr(weak), installation_id="1", now=NOW)
    assert info.value.code == "pki.weak_key"
    csr = x509.load_pem_x509_csr(pki.build_csr(pki.generate_key()))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(pki.PkiError) as info:
        ca.sign_installation_csr(tampered, installation_id="1", now=NOW)
    assert info.value.code == "pki.bad_csr"


def test_installation_id_must_be_uri_safe():
    with pytest.raises(pki.PkiError):
        pki.installation_uri("a/b")
    assert pki.installation_uri(5) == "urn:ewsgate:installation:5"


def test_cert_without_installation_san_names_nobody():
    server = pki.create_ca(now=NOW).issue_server_cert(dns_names=["x"], now=NOW)
    assert pki.installation_id_from_cert(server.cert) is None


def test_fingerprint_and_serial_forms():
    cert = pki.create_ca(now=NOW).issue_installation_cert("1", now=NOW).cert
    assert len(pki.fingerprint_sha256(cert)) == 64
    assert int(pki.serial_hex(cert), 16) == cert.serial_number


def test_naive_time_is_refused():
    with pytest.raises(pki.PkiError) as info:
        pki.create_ca(now=dt.datetime(2026, 1, 1))
    assert info.value.code == "pki.naive_time"
