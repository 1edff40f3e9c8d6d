"""Throw-away certificate authorities for end-to-end tests, made at session start (never committed).

Two CAs: the *origin* CA signs the local upstream servers' certificates (one leaf per SNI name,
issued on first use), and the *proxy* CA is handed to every mitmdump as its own CA, so all guard
processes of a session share one `ca_bundle` that clients trust.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_DAY = datetime.timedelta(days=1)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class CertificateAuthority:
    """A CA key and certificate that can issue leaves."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, name: str) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for one DNS name."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + _DAY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _pem_cert(cert), _pem_key(key)


class TestPKI:
    """The session's two CAs, written under `folder`."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.origin = CertificateAuthority("autodiscover-guard test origin CA")
        self.proxy = CertificateAuthority("autodiscover-guard test proxy CA")
        self.origin_ca_bundle = folder / "origin-ca.pem"
        self.origin_ca_bundle.write_bytes(_pem_cert(self.origin.cert))
        self.proxy_ca_bundle = folder / "proxy-ca-cert.pem"
        self.proxy_ca_bundle.write_bytes(_pem_cert(self.proxy.cert))
        self._lock = threading.Lock()
        self._leaves: dict[str, tuple[Path, Path]] = {}

    def leaf(self, name: str) -> tuple[Path, Path]:
        """(cert file, key file) of an origin leaf for `name`, issued once."""
        with self._lock:
            if name not in self._leaves:
                self._leaves[name] = self.write_leaf(f"leaf-{len(self._leaves)}", *self.origin.issue(name))
            return self._leaves[name]

    def write_leaf(self, stem: str, cert: bytes, key: bytes) -> tuple[Path, Path]:
        """Write a leaf's PEMs as `<stem>.crt` / `<stem>.key` in the PKI folder; returns their paths."""
        paths = (self.folder / f"{stem}.crt", self.folder / f"{stem}.key")
        paths[0].write_bytes(cert)
        paths[1].write_bytes(key)
        return paths

    def install_proxy_ca(self, confdir: Path) -> None:
        """Give a mitmproxy confdir the shared proxy CA (key + certificate in `mitmproxy-ca.pem`)."""
        confdir.mkdir(parents=True, exist_ok=True)
        (confdir / "mitmproxy-ca.pem").write_bytes(_pem_key(self.proxy.key) + _pem_cert(self.proxy.cert))
        (confdir / "mitmproxy-ca.pem").chmod(0o600)
