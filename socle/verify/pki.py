"""A throw-away PKI for one verification run, shaped like the health PKI the kit trusts in production:
a root, server certificates for the daemons, an organisation client certificate, an internal client certificate
for the log forwarders, a CRL, and a certificate from a CA nobody trusts (which every listener must refuse).

RSA 2048 keys and SHA-256 signatures, as IGC-Santé issues them; the MSSanté suites (ECDHE-RSA) need RSA keys.
Keys are written 0600 and only under the run's own directory."""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256, colon-separated upper-case hex (Postfix's format)
    serial: int = 0

    @property
    def directory(self) -> Path:
        return self.cert.parent


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


class Authority:
    def __init__(self, directory: Path, cn: str, org: str, now: dt.datetime):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.now = now
        self.key = rsa.generate_private_key(65537, 2048)
        self.name = _name(cn, org)
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = self.dir / "ca.crt"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, cn: str, *, dns: list[str] = (), server: bool = False, client: bool = False,
              org: str = "socle verify") -> Issued:
        key = rsa.generate_private_key(65537, 2048)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = (x509.CertificateBuilder().subject_name(_name(cn, org)).issuer_name(self.name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(self.now - dt.timedelta(days=1)).not_valid_after(self.now + dt.timedelta(days=90))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False))
        if dns:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        d = self.dir / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(d / "tls.key", key)
        (d / "ca.crt").write_bytes(self.cert_path.read_bytes())
        return Issued(d / "tls.crt", d / "tls.key", fingerprint(cert), cert.serial_number)

    def crl_bytes(self, revoked: list[int] = (), days: int = 7, encoding=serialization.Encoding.PEM) -> bytes:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.name).last_update(self.now)
                   .next_update(self.now + dt.timedelta(days=days)))
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(self.now).build())
        return builder.sign(self.key, hashes.SHA256()).public_bytes(encoding)

    def crl(self, days: int = 7) -> Path:
        path = self.dir / "crl.pem"
        path.write_bytes(self.crl_bytes(days=days))
        return path


class TestPki:
    """health: the PKI of inter-system endpoints (gateway, relay); internal: the audit-log transport;
    unknown: a CA no listener trusts."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, now: dt.datetime | None = None):
        now = now or dt.datetime.now(dt.timezone.utc)
        self.health = Authority(directory / "health", "AC RACINE SANTE TEST (socle verify)", "socle verify health PKI", now)
        self.internal = Authority(directory / "internal", "AC INTERNE TEST (socle verify)", "socle verify internal PKI", now)
        self.unknown = Authority(directory / "unknown", "AC INCONNUE (socle verify)", "nobody trusts this CA", now)
        self.org_client = self.health.issue("org-client", "Application mailbox (FINESS 990000001)", client=True,
                                            org="Centre Hospitalier de Verification")
        self.stranger = self.unknown.issue("stranger", "Stranger application", client=True)
        self.crl = self.health.crl()

    def org_client_cn(self) -> str:
        """The common name of the organisation certificate the probes present (the gateway forwards its DN)."""
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_pem_x509_certificate(self.org_client.cert.read_bytes())
        return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
