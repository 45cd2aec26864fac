"""A report bundle signed by the auditor verifies, with the kit and with OpenSSL alone, and any change shows."""
from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from socle.audit.signing import MANIFEST, SIGNATURE, SigningError, sign, verify
from tests.conftest import require_tool


def _issue(tmp, name: str, issuer=None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    ikey, iname = (issuer[0], issuer[1].subject) if issuer else (key, subject)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(iname).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(ikey, hashes.SHA256()))
    (tmp / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture
def bundle(tmp_path):
    require_tool("openssl")
    keys = tmp_path / "keys"
    keys.mkdir()
    ca = _issue(keys, "certification-body", ca=True)
    _issue(keys, "alice", issuer=ca)
    _issue(keys, "other-ca", ca=True)
    reports = tmp_path / "audit"
    reports.mkdir()
    for name, text in (("report.html", "<html>PASS</html>"), ("report.json", '{"status": "pass"}'), ("junit.xml", "<x/>")):
        (reports / name).write_text(text)
    sign(reports, keys / "alice.key", keys / "alice.pem")
    return reports, keys


def test_a_signed_bundle_verifies_with_the_kit_and_with_openssl_alone(bundle):
    reports, keys = bundle
    result = verify(reports, keys / "certification-body.pem")
    assert result.verified and result.signer == "CN=alice", result.problems
    assert subprocess.run(["sha256sum", "-c", MANIFEST], cwd=reports, capture_output=True).returncode == 0
    res = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", SIGNATURE, "-content", MANIFEST,
                          "-CAfile", str(keys / "certification-body.pem"), "-purpose", "any", "-out", "/dev/null"],
                         cwd=reports, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("change", ["edit", "add", "remove", "manifest"])
def test_any_change_to_the_bundle_is_named(bundle, change):
    reports, keys = bundle
    if change == "edit":
        (reports / "report.json").write_text('{"status": "fail"}')
    elif change == "add":
        (reports / "extra.md").write_text("added later")
    elif change == "remove":
        (reports / "junit.xml").unlink()
    else:  # the manifest rewritten to match an edited report: the signature no longer does
        (reports / "report.json").write_text('{"status": "fail"}')
        import hashlib

        text = (reports / MANIFEST).read_text().splitlines()
        digest = hashlib.sha256(b'{"status": "fail"}').hexdigest()
        (reports / MANIFEST).write_text("".join((f"{digest}  report.json" if ln.endswith("report.json") else ln) + "\n"
                                                for ln in text))
    result = verify(reports, keys / "certification-body.pem")
    assert not result.verified
    expected = {"edit": "report.json: changed", "add": "extra.md: not in the signed manifest",
                "remove": "junit.xml: listed in the manifest but missing", "manifest": "does not verify"}[change]
    assert any(expected in p for p in result.problems), result.problems


def test_an_untrusted_signer_or_no_trust_anchor_is_never_verified(bundle):
    reports, keys = bundle
    other = verify(reports, keys / "other-ca.pem")
    assert other.signature_ok and not other.signer_trusted and not other.verified
    assert any("does not chain" in p for p in other.problems)
    anchorless = verify(reports)
    assert anchorless.signature_ok and not anchorless.verified
    assert any("identity was not checked" in p for p in anchorless.problems)


def test_a_key_that_does_not_match_the_certificate_is_refused(bundle, tmp_path):
    reports, keys = bundle
    with pytest.raises(SigningError, match="not the certificate"):
        sign(reports, keys / "alice.key", keys / "other-ca.pem")


def test_cli_signs_and_verifies_and_exits_1_on_a_changed_report(bundle):
    from typer.testing import CliRunner

    from socle.cli import app

    reports, keys = bundle
    cli = CliRunner()
    res = cli.invoke(app, ["audit-report", "sign", str(reports), "--key", str(keys / "alice.key"), "--cert", str(keys / "alice.pem")])
    assert res.exit_code == 0, res.output
    ok = cli.invoke(app, ["audit-report", "verify", str(reports), "--ca", str(keys / "certification-body.pem")])
    assert ok.exit_code == 0 and "verified" in ok.output and "CN=alice" in ok.output
    assert cli.invoke(app, ["audit-report", "verify", str(reports)]).exit_code == 1  # no trust anchor: never "verified"
    (reports / "report.html").write_text("<html>edited</html>")
    bad = cli.invoke(app, ["audit-report", "verify", str(reports), "--ca", str(keys / "certification-body.pem")])
    assert bad.exit_code == 1 and "NOT VERIFIED report.html: changed" in bad.output
    assert cli.invoke(app, ["audit-report", "verify", str(reports / "nope")]).exit_code == 2
