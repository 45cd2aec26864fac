"""The host checks shared with the auditors' live suite, run here through testinfra's `local://` backend on
the configuration files the kit renders (and on deliberately weakened copies, which they must reject)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import testinfra
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from socle.components.gateway import nginx_conf
from socle import hostchecks
from tests.conftest import rendered_stack, require_tool
from tests.test_components import _gateway_args

LOCAL = testinfra.get_host("local://")
NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)


def _failed(results) -> dict[str, str]:
    return {r.requirement: r.detail for r in results if not r.ok}


def _postfix_dir(tmp_path: Path, weaken=None) -> Path:
    _, rendered, _ = rendered_stack("demo")
    cm = next(o for o in rendered.objects if o["kind"] == "ConfigMap" and "main.cf" in o.get("data", {}))
    main = cm["data"]["main.cf"]
    if weaken:
        main = weaken(main)
    (tmp_path / "main.cf").write_text(main)
    (tmp_path / "master.cf").write_text(cm["data"]["master.cf"])
    return tmp_path


def test_postfix_check_accepts_the_rendered_relay_config(tmp_path):
    require_tool("postconf")
    results = hostchecks.postfix(LOCAL, str(_postfix_dir(tmp_path)))
    assert {r.requirement for r in results} == {"MSS-01", "MSS-02", "MSS-03", "MSS-04", "MSS-06", "MSS-07"}
    assert _failed(results) == {}


def test_postfix_check_rejects_a_weakened_relay_config(tmp_path):
    require_tool("postconf")

    def weaken(main: str) -> str:
        return (main.replace("smtpd_tls_security_level = encrypt", "smtpd_tls_security_level = may")
                .replace("smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3, !TLSv1, !TLSv1.1", "smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3")
                .replace("smtp_tls_security_level = secure", "smtp_tls_security_level = may"))
    failed = _failed(hostchecks.postfix(LOCAL, str(_postfix_dir(tmp_path, weaken))))
    assert set(failed) == {"MSS-01", "MSS-02", "MSS-04"}
    assert "TLSv1, TLSv1.1" in failed["MSS-02"]


def _cert(tmp: Path, name: str, key, days: int, algo=hashes.SHA256(), issuer=None, issuer_key=None, ca=False) -> Path:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    cert = builder.sign(issuer_key or key, algo)
    path = tmp / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _key(tmp: Path, name: str, key, mode: int) -> Path:
    path = tmp / f"{name}.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(mode)
    return path


def test_certificate_and_key_checks(tmp_path):
    require_tool("openssl")
    good_key = ec.generate_private_key(ec.SECP256R1())
    good = _cert(tmp_path, "good", good_key, 365)
    assert _failed(hostchecks.certificates(LOCAL, [str(good)], NOW.date())) == {}
    weak = _cert(tmp_path, "weak", rsa.generate_private_key(65537, 1024), 365)
    expiring = _cert(tmp_path, "expiring", good_key, 10)
    # cryptography refuses to sign with SHA-1; OpenSSL still can, as old PKIs did.
    sha1 = tmp_path / "sha1.crt"
    LOCAL.run_expect([0], f"openssl req -x509 -newkey rsa:2048 -sha1 -nodes -keyout {tmp_path}/sha1.key -out {sha1} "
                          "-subj /CN=sha1-signed -days 365")
    failed = _failed(hostchecks.certificates(LOCAL, [str(good), str(weak), str(expiring), str(sha1)], NOW.date()))
    assert "expiring" in failed["PKI-03"] and "expires in 10 days" in failed["PKI-03"]
    assert "RSA 1024 bits" in failed["PKI-04"] and "CN=sha1-signed: signed with sha1" in failed["PKI-04"]
    assert _failed(hostchecks.key_files(LOCAL, [str(_key(tmp_path, "private", good_key, 0o440))])) == {}
    assert "lets others read it" in _failed(hostchecks.key_files(LOCAL, [str(_key(tmp_path, "open", good_key, 0o644))]))["K8S-08"]


def _nginx_tree(tmp_path: Path, tls_min: str = "TLSv1.2") -> Path:
    """The gateway's nginx.conf, rendered with local paths, and the files it names."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(tmp_path, "ca", ca_key, 365, ca=True)
    ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(tmp_path, "leaf", leaf_key, 90, issuer=ca_cert.subject, issuer_key=ca_key)
    dirs = {k: tmp_path / k for k in ("run", "cache", "server", "trust", "crl")}
    for d in dirs.values():
        d.mkdir()
    (dirs["server"] / "tls.crt").write_bytes(leaf.read_bytes())
    _key(dirs["server"], "tls", leaf_key, 0o600)
    (dirs["trust"] / "ca.crt").write_bytes(ca.read_bytes())
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject).last_update(NOW)
           .next_update(NOW + dt.timedelta(days=30)).sign(ca_key, hashes.SHA256()))
    (dirs["crl"] / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    conf = nginx_conf(_gateway_args(tls_min_version=tls_min), paths={
        "run": str(dirs["run"]), "cache": str(dirs["cache"]), "server_tls": str(dirs["server"]),
        "trust_bundle": str(dirs["trust"]), "crl": str(dirs["crl"])},
        listen_address="127.0.0.1:", http_port=18080, https_port=18443, access_logs=[str(tmp_path / "access.log")],
        error_log=str(tmp_path / "error.log"), auth_upstream="http://127.0.0.1:14180",
        upstreams={"dossier": "http://127.0.0.1:18081", "annuaire": "http://127.0.0.1:18082"})
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    return path


def test_nginx_check_reads_what_nginx_validated(tmp_path):
    require_tool("nginx")
    conf = _nginx_tree(tmp_path)
    assert _failed(hostchecks.nginx(LOCAL, str(conf))) == {}


def test_nginx_check_rejects_tls_1_0(tmp_path):
    require_tool("nginx")
    failed = _failed(hostchecks.nginx(LOCAL, str(_nginx_tree(tmp_path, tls_min="TLSv1"))))
    assert set(failed) == {"TLS-01"} and "TLSv1 TLSv1.1" in failed["TLS-01"]


def test_a_failing_command_is_an_error_not_a_pass(tmp_path):
    require_tool("postconf")
    with pytest.raises(RuntimeError, match="postconf"):
        hostchecks.postfix(LOCAL, str(tmp_path / "missing"))
