"""Demo PKI (pulumi_tls): a throw-away health-PKI-like root and an internal CA, with the certificates
every block needs. Production stacks never use it (PKI-01): they reference existing Secrets instead.

Every key and certificate ends up in a Kubernetes Secret only; nothing here is written to a ConfigMap.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from socle.constants import CERT_EXPIRY_ALERT_DAYS

from .common import child

VALIDITY_HOURS_CA = 24 * 365 * 3
VALIDITY_HOURS_LEAF = 24 * 397
CRL_VALIDITY_DAYS = 30


@dataclass(frozen=True)
class LeafSpec:
    """One certificate: where its Secret goes, its names, server or client use."""

    key: str  # logical name
    common_name: str
    dns_names: Sequence[str]
    usage: str  # "server" | "client" | "both"
    issuer: str  # "health" | "internal"
    secrets: Sequence[tuple[str, str]]  # (namespace, secret name)


@dataclass(frozen=True)
class BundleSpec:
    issuer: str  # "health" | "internal"
    secrets: Sequence[tuple[str, str]]
    with_crl: bool = False  # True: the Secret holds crl.pem (signed by the CA), else ca.crt


def _crl_pem(ca_key_pem: str, ca_cert_pem: str, today: _dt.date | None = None) -> str:
    """An empty, signed CRL for the demo root (PKI-02: mTLS listeners always check one).

    The same on every run of one day: issued at midnight UTC of the day (or when the CA starts, if later), signed
    with deterministic ECDSA (RFC 6979). A deploy, then a preview, the same day finds nothing to change (before, the
    CRL was re-signed at each run and its Secret replaced); a deploy on a later day renews it."""
    key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    day = today or _dt.datetime.now(_dt.timezone.utc).date()
    issued = max(_dt.datetime.combine(day, _dt.time(), _dt.timezone.utc), cert.not_valid_before_utc.replace(microsecond=0))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(issued)
        .next_update(issued + _dt.timedelta(days=CRL_VALIDITY_DAYS))
    )
    deterministic = {"ecdsa_deterministic": True} if isinstance(key, ec.EllipticCurvePrivateKey) else {}
    crl = builder.sign(private_key=key, algorithm=hashes.SHA256(), **deterministic)
    return crl.public_bytes(serialization.Encoding.PEM).decode()


class DemoPki(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        organisation: str,
        leaves: Sequence[LeafSpec],
        bundles: Sequence[BundleSpec],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("socle:pki:DemoPki", name, None, opts)
        organisation = organisation[:64]  # X.509 upper bound of an O or CN attribute
        self.cas: dict[str, tuple[tls.PrivateKey, tls.SelfSignedCert]] = {}
        for issuer, cn in (
            ("health", "DEMO health PKI root - not IGC-Sante - not for production"),
            ("internal", "DEMO internal CA - not for production"),
        ):
            key = tls.PrivateKey(f"{name}-{issuer}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child(self))
            cert = tls.SelfSignedCert(
                f"{name}-{issuer}-ca",
                private_key_pem=key.private_key_pem,
                is_ca_certificate=True,
                validity_period_hours=VALIDITY_HOURS_CA,
                allowed_uses=["cert_signing", "crl_signing"],
                subject={"common_name": cn, "organization": organisation, "country": "FR"},
                opts=child(self),
            )
            self.cas[issuer] = (key, cert)

        for leaf in leaves:
            ca_key, ca_cert = self.cas[leaf.issuer]
            key = tls.PrivateKey(f"{name}-{leaf.key}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child(self))
            csr = tls.CertRequest(
                f"{name}-{leaf.key}-csr",
                private_key_pem=key.private_key_pem,
                subject={"common_name": leaf.common_name[:64], "organization": organisation, "country": "FR"},
                dns_names=list(leaf.dns_names),
                opts=child(self),
            )
            uses = ["digital_signature", "key_agreement"]
            if leaf.usage in ("server", "both"):
                uses.append("server_auth")
            if leaf.usage in ("client", "both"):
                uses.append("client_auth")
            cert = tls.LocallySignedCert(
                f"{name}-{leaf.key}-cert",
                cert_request_pem=csr.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca_cert.cert_pem,
                validity_period_hours=VALIDITY_HOURS_LEAF,
                early_renewal_hours=24 * CERT_EXPIRY_ALERT_DAYS,  # PKI-03: renewed when ANS would warn
                allowed_uses=uses,
                opts=child(self),
            )
            for namespace, secret in leaf.secrets:
                k8s.core.v1.Secret(
                    f"{name}-{namespace}-{secret}",
                    metadata={"name": secret, "namespace": namespace, "labels": {"socle.esante.fr/pki": "demo"}},
                    type="kubernetes.io/tls",
                    string_data={
                        "tls.crt": cert.cert_pem,
                        "tls.key": key.private_key_pem,
                        "ca.crt": ca_cert.cert_pem,
                    },
                    opts=child(self),
                )

        for bundle in bundles:
            ca_key, ca_cert = self.cas[bundle.issuer]
            data: dict[str, pulumi.Input[str]]
            if bundle.with_crl:
                data = {
                    "crl.pem": pulumi.Output.all(ca_key.private_key_pem, ca_cert.cert_pem).apply(
                        lambda kc: _crl_pem(kc[0], kc[1])
                    )
                }
            else:
                data = {"ca.crt": ca_cert.cert_pem}
            for namespace, secret in bundle.secrets:
                k8s.core.v1.Secret(
                    f"{name}-{namespace}-{secret}",
                    metadata={"name": secret, "namespace": namespace, "labels": {"socle.esante.fr/pki": "demo"}},
                    type="Opaque",
                    string_data=data,
                    opts=child(self),
                )
        self.register_outputs({})
