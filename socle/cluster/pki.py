"""The local control plane's PKI: one cluster CA for the API server and its clients, one for etcd, and the
service-account signing key. Certificates are made once per state folder and kept (keys 0600)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    return x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(directory: Path, name: str, cn: str) -> Pair:
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    if pair.cert.is_file() and pair.key.is_file():
        return pair
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_private(pair.key, _key_pem(key))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def _leaf(directory: Path, name: str, ca: Pair, cn: str, orgs: tuple[str, ...] = (), hosts: tuple[str, ...] = (),
          server: bool = False, client: bool = False) -> Pair:
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    if pair.cert.is_file() and pair.key.is_file():
        return pair
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    usages = [u for u, on in ((ExtendedKeyUsageOID.SERVER_AUTH, server), (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if on]
    builder = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                            crl_sign=False, content_commitment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if hosts:
        names: list[x509.GeneralName] = []
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(pair.key, _key_pem(key))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


@dataclass(frozen=True)
class Pki:
    ca: Pair
    etcd_ca: Pair
    etcd_server: Pair
    etcd_client: Pair  # the API server's client certificate towards etcd
    apiserver: Pair
    apiserver_kubelet: Pair  # the API server's client certificate towards kubelets (kwok)
    admin: Pair
    controller_manager: Pair
    scheduler: Pair
    kwok: Pair
    service_account: Pair  # service-account tokens: `cert` is the public key that verifies them, `key` signs them


def make(directory: Path) -> Pki:
    """The certificates of the local control plane, made once in `directory` (mode 0700)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    loopback = ("127.0.0.1", "localhost")
    ca = _ca(directory, "ca", "socle-local-cluster-ca")
    etcd_ca = _ca(directory, "etcd-ca", "socle-local-etcd-ca")
    sa, sa_pub = directory / "service-account.key", directory / "service-account.pub"
    if not (sa.is_file() and sa_pub.is_file()):
        key = _key()
        _write_private(sa, _key_pem(key))
        sa_pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return Pki(
        ca=ca, etcd_ca=etcd_ca,
        etcd_server=_leaf(directory, "etcd-server", etcd_ca, "etcd", hosts=loopback, server=True, client=True),
        etcd_client=_leaf(directory, "apiserver-etcd-client", etcd_ca, "kube-apiserver-etcd-client", client=True),
        apiserver=_leaf(directory, "apiserver", ca, "kube-apiserver", server=True,
                        hosts=(*loopback, "10.96.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                               "kubernetes.default.svc.cluster.local")),
        apiserver_kubelet=_leaf(directory, "apiserver-kubelet-client", ca, "kube-apiserver-kubelet-client",
                                ("kubeadm:cluster-admins",), client=True),
        admin=_leaf(directory, "admin", ca, "socle-admin", ("system:masters",), client=True),
        controller_manager=_leaf(directory, "controller-manager", ca, "system:kube-controller-manager", client=True),
        scheduler=_leaf(directory, "scheduler", ca, "system:kube-scheduler", client=True),
        kwok=_leaf(directory, "kwok", ca, "kwok-controller", ("system:masters",), client=True),
        service_account=Pair(sa_pub, sa),
    )


def issue_client(directory: Path, name: str, ca: Pair, cn: str, orgs: tuple[str, ...] = ()) -> Pair:
    """A client certificate of the cluster CA (e.g. an auditor's), made once."""
    return _leaf(directory, name, ca, cn, orgs, client=True)
