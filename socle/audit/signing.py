"""A detached signature of an audit report bundle, so a certification body can check that the reports it reads are
the ones the auditor signed.

`sign(dir, key, cert)` writes `MANIFEST.sha256` (one `SHA256  NAME` line per file of the bundle, sorted, the
`sha256sum` format) and `MANIFEST.sha256.p7s`, a CMS (PKCS #7) detached signature of the manifest made with the
auditor's key by `cryptography`, the signer's certificate included. Anyone can check it with OpenSSL alone:

    sha256sum -c MANIFEST.sha256
    openssl cms -verify -binary -inform DER -in MANIFEST.sha256.p7s -content MANIFEST.sha256 -CAfile CA.pem -purpose any

`verify(dir, ca)` does both: every listed file present with its hash, no unlisted file, and the signature checked by
OpenSSL's CMS implementation against the given CA (the trust anchor of the auditors, e.g. the certification body's
CA). Without a CA the signature is still checked, but the signer's identity is not: that is never reported as
verified.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

MANIFEST = "MANIFEST.sha256"
SIGNATURE = MANIFEST + ".p7s"


class SigningError(ValueError):
    """A usage or input problem: one sentence, exit 2."""


def _bundle(directory: Path) -> list[str]:
    if not directory.is_dir() or directory.is_symlink():
        raise SigningError(f"{directory} is not a directory")
    names = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            rel = str((Path(root) / name).relative_to(directory))
            if rel not in (MANIFEST, SIGNATURE) and not name.startswith("."):
                names.append(rel)
    if not names:
        raise SigningError(f"{directory} holds no report to sign")
    return sorted(names)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def manifest(directory: Path) -> str:
    return "".join(f"{_sha256(directory / name)}  {name}\n" for name in _bundle(directory))


def sign(directory: Path, key_file: Path, cert_file: Path) -> tuple[Path, Path]:
    """Write the manifest and its detached CMS signature; returns their paths."""
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(f"cannot read the signing key or certificate: {exc}") from None
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise SigningError(f"{cert_file} is not the certificate of {key_file}")
    text = manifest(directory).encode()
    signature = (pkcs7.PKCS7SignatureBuilder().set_data(text).add_signer(cert, key, hashes.SHA256())
                 .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))
    paths = (directory / MANIFEST, directory / SIGNATURE)
    for path, content in zip(paths, (text, signature)):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return paths


@dataclass
class Verification:
    files_ok: bool = False
    signature_ok: bool = False
    signer_trusted: bool = False
    signer: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.files_ok and self.signature_ok and self.signer_trusted and not self.problems


def verify(directory: Path, ca_file: Path | None = None) -> Verification:
    """Check the bundle's files against the manifest and the manifest's signature (OpenSSL CMS)."""
    result = Verification()
    man, sig = directory / MANIFEST, directory / SIGNATURE
    if not man.is_file() or not sig.is_file():
        raise SigningError(f"{directory} holds no {MANIFEST} and {SIGNATURE}: it was not signed")
    listed: dict[str, str] = {}
    for line in man.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = _bundle(directory)
    for name in sorted(set(listed) | set(present)):
        if name not in present:
            result.problems.append(f"{name}: listed in the manifest but missing")
        elif name not in listed:
            result.problems.append(f"{name}: not in the signed manifest")
        elif _sha256(directory / name) != listed[name]:
            result.problems.append(f"{name}: changed since it was signed (SHA-256 differs)")
    result.files_ok = not result.problems
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SigningError("openssl is needed to check the CMS signature (Debian package openssl)")
    certs = pkcs7.load_der_pkcs7_certificates(sig.read_bytes())
    result.signer = certs[0].subject.rfc4514_string() if certs else "?"
    args = [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig), "-content", str(man),
            "-purpose", "any", "-out", os.devnull]
    if ca_file is None:
        res = subprocess.run(args + ["-noverify"], capture_output=True, text=True, timeout=60)
        result.signature_ok = res.returncode == 0
        if result.signature_ok:
            result.problems.append(f"signature matches the certificate it carries ({result.signer}), but the signer's "
                                   "identity was not checked: give --ca with the auditors' trust anchor")
    else:
        res = subprocess.run(args + ["-CAfile", str(ca_file)], capture_output=True, text=True, timeout=60)
        result.signature_ok = result.signer_trusted = res.returncode == 0
        if res.returncode != 0:
            # Tell a broken signature from an untrusted signer.
            loose = subprocess.run(args + ["-noverify"], capture_output=True, text=True, timeout=60)
            result.signature_ok = loose.returncode == 0
    if not result.signature_ok:
        result.problems.append(f"the signature of {MANIFEST} does not verify: {res.stderr.strip().splitlines()[-1:] or ['?']}")
    elif ca_file is not None and not result.signer_trusted:
        result.problems.append(f"the signer ({result.signer}) does not chain to {ca_file}")
    return result
