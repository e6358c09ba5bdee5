"""Certificates for the test cluster: one small CA per component, serving certificates for loopback.

RSA keys in PKCS#1 PEM, which every consumer here reads (kube-apiserver, controller-runtime's
certificate rotator, Kueue's certificate watcher).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert: bytes
    key: bytes


@dataclass(frozen=True)
class Authority:
    """A certificate authority that issues serving certificates."""

    name: str
    pair: KeyPair
    _cert: Any
    _key: Any

    @classmethod
    def create(cls, name: str, organization: str = "", days: int = 3650) -> Authority:
        """A self-signed CA named ``name``; its certificate also verifies for DNS name ``name``.

        controller-runtime's certificate rotator checks a CA by verifying it for its own name.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        now = dt.datetime.now(dt.UTC)
        key = _key()
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        subject = x509.Name(attributes)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        from cryptography.hazmat.primitives import serialization

        pair = KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))
        return cls(name, pair, cert, key)

    @classmethod
    def load(cls, name: str, pair: KeyPair) -> Authority:
        """The authority whose PEM certificate and key are ``pair`` (written by another process)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        return cls(
            name,
            pair,
            x509.load_pem_x509_certificate(pair.cert),
            serialization.load_pem_private_key(pair.key, None),
        )

    def issue(
        self, common_name: str, dns_names: list[str], days: int = 3650, ips: tuple[str, ...] = ()
    ) -> KeyPair:
        """A serving certificate for ``dns_names``, 127.0.0.1 and ``ips``, signed by this CA."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)
        key = _key()
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        for ip in ("127.0.0.1", *ips):
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))

    def issue_client(self, common_name: str, organization: str = "", days: int = 3650) -> KeyPair:
        """A client certificate for user ``common_name`` in group ``organization``."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)
        key = _key()
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def webhook_secret_data(authority: Authority, serving: KeyPair) -> dict[str, bytes]:
    """The files of a webhook certificate Secret as controller-runtime's rotator keeps them."""
    return {
        "ca.crt": authority.pair.cert,
        "ca.key": authority.pair.key,
        "tls.crt": serving.cert,
        "tls.key": serving.key,
    }
