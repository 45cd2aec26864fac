"""Checks of what the running daemons actually loaded, on any pytest-testinfra host.

The same functions run in the auditors' live suite inside the pods (testinfra's `kubectl://` backend) and in
the real-daemon tests on local daemons started from the rendered configs (`local://`). Each returns one
`HostCheck` per requirement it judges; a host check never changes anything on the host.
"""
from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt

from socle.audit import configs
from socle.audit.controls._common import OLD_TLS, POSTFIX_PROTOCOL_KEYS, postfix_cipher_problems, postfix_protocol_problems
from socle.constants import CERT_EXPIRY_ALERT_DAYS, MSS_TLS12_SUITES, TLS12_AEAD_SUITES



@dataclass(frozen=True)
class HostCheck:
    requirement: str
    ok: bool
    detail: str


def _check(requirement: str, problems: list[str], ok: str) -> HostCheck:
    return HostCheck(requirement, not problems, "; ".join(problems) if problems else ok)


def _run(host: Any, command: str) -> str:
    result = host.run(command)
    if result.rc != 0:
        raise RuntimeError(f"`{command}` failed on {host.backend.get_hostname()}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _extra(allowed: tuple[str, ...], value: str) -> list[str]:
    return [c for c in value.replace(",", ":").split(":") if c and c not in allowed]


# --- Postfix ------------------------------------------------------------------------------------------

POSTFIX_KEYS = ("smtpd_tls_security_level", "smtpd_tls_auth_only", *POSTFIX_PROTOCOL_KEYS, "smtpd_tls_mandatory_ciphers",
                "smtp_tls_mandatory_ciphers", "tls_high_cipherlist", "smtp_tls_security_level", "smtpd_tls_req_ccert",
                "relay_clientcerts", "debug_peer_list", "smtpd_tls_loglevel")


def postfix(host: Any, config_dir: str | None = None) -> list[HostCheck]:
    """`postconf` of the running configuration: MSS-01, MSS-02, MSS-03, MSS-04, MSS-06, MSS-07 — the rules of the
    catalogue's controls applied to what Postfix reports, defaults included."""
    base = "postconf" + (f" -c {shlex.quote(config_dir)}" if config_dir else "")
    values = configs.postfix_main(_run(host, f"{base} {' '.join(POSTFIX_KEYS)}"))
    level = values.get("smtp_tls_security_level", "")
    return [
        _check("MSS-01", [f"{k} = {values.get(k)}" for k, v in (("smtpd_tls_security_level", "encrypt"), ("smtpd_tls_auth_only", "yes"))
                          if values.get(k) != v], "STARTTLS required, auth only over TLS"),
        _check("MSS-02", postfix_protocol_problems(values), "TLS 1.2 minimum in and out"),
        _check("MSS-03", postfix_cipher_problems(values, MSS_TLS12_SUITES), "MSSanté suites only"),
        _check("MSS-04", [] if level in ("verify", "secure") else [f"smtp_tls_security_level = {level}"], f"outbound {level}"),
        _check("MSS-06", [] if values.get("smtpd_tls_req_ccert") == "yes" and values.get("relay_clientcerts") else
               ["client certificates not required or not allow-listed"], "organisation certificate required"),
        _check("MSS-07", ([f"debug_peer_list = {values['debug_peer_list']}"] if values.get("debug_peer_list") else [])
               + ([f"smtpd_tls_loglevel = {values.get('smtpd_tls_loglevel')}"] if values.get("smtpd_tls_loglevel", "0") not in ("0", "1") else []),
               "no session content logged"),
    ]


# --- NGINX --------------------------------------------------------------------------------------------

def nginx(host: Any, conf: str | None = None) -> list[HostCheck]:
    """`nginx -T`: the configuration NGINX validated and runs (TLS-01, TLS-02, API-01 client certificates)."""
    dump = _run(host, "nginx -T" + (f" -c {shlex.quote(conf)}" if conf else "") )
    sections = dump.split("# configuration file ")
    main = sections[1].split("\n", 1)[1] if len(sections) > 1 else dump
    # every file NGINX loaded, by name: what nginx.conf includes (a regional gateway's tenant-server.conf) is read too
    loaded = {}
    for section in sections[1:]:
        head, _, text = section.partition("\n")
        loaded[head.rstrip(":").rsplit("/", 1)[-1]] = text
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "dump.conf").write_text(main, encoding="utf-8")
        root = configs.nginx(Path(tmp, "dump.conf").read_text(encoding="utf-8"), loaded)
    http = root.first("http")
    protocols, ciphers, mtls = [], [], []
    for s in configs.nginx_servers(root):
        if not configs.listens_tls(s) or s.value("ssl_reject_handshake") == "on":
            continue
        name = s.value("server_name", "_")
        value = s.value("ssl_protocols") or (http.value("ssl_protocols") if http else None) or "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"
        if set(value.split()) & OLD_TLS:
            protocols.append(f"{name}: ssl_protocols {value}")
        cipher = s.value("ssl_ciphers") or (http.value("ssl_ciphers") if http else None) or "HIGH:!aNULL:!MD5"
        extra = _extra(TLS12_AEAD_SUITES, cipher)
        if extra:
            ciphers.append(f"{name}: {', '.join(extra)}")
        if s.value("ssl_verify_client") == "on" and not s.value("ssl_client_certificate"):
            mtls.append(f"{name}: ssl_verify_client on without a CA file")
    return [
        _check("TLS-01", protocols, "TLS 1.2/1.3 only"),
        _check("TLS-02", ciphers, "ECDHE+AEAD suites only"),
        _check("API-01", mtls, "client certificates checked against a CA file"),
    ]


# --- PostgreSQL ---------------------------------------------------------------------------------------

def postgres(host: Any, socket_dir: str, port: int) -> list[HostCheck]:
    """`SHOW` of the running server over its Unix socket: TLS-01 (ssl on, TLS 1.2), password hashing, connection
    logs. Credentials come from the host's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB environment (the
    container's own, from its Secret): the password never appears on a command line or in a log."""
    def show(name: str) -> str:
        sql = shlex.quote(f"SHOW {name}")
        return _run(host, f'PGPASSWORD="$POSTGRES_PASSWORD" psql -h {shlex.quote(socket_dir)} -p {port} '
                          f'-U "$POSTGRES_USER" -d "${{POSTGRES_DB:-$POSTGRES_USER}}" -Atc {sql}').strip()

    ssl, minimum = show("ssl"), show("ssl_min_protocol_version")
    return [
        _check("TLS-01", ([] if ssl == "on" else [f"ssl = {ssl}"])
               + ([] if minimum in ("TLSv1.2", "TLSv1.3") else [f"ssl_min_protocol_version = {minimum}"]), f"ssl on, {minimum} minimum"),
        _check("K8S-08", [] if show("password_encryption") == "scram-sha-256" else ["passwords not hashed with SCRAM"],
               "SCRAM-SHA-256 password hashing"),
        _check("TRACE-01", [f"{k} = {v}" for k, v in ((k, show(k)) for k in ("log_connections", "log_disconnections")) if v != "on"],
               "connections and disconnections logged"),
    ]


# --- certificates and key files --------------------------------------------------------------------------

def certificates(host: Any, paths: list[str], today: "dt.date | None" = None,
                 alert_days: int = CERT_EXPIRY_ALERT_DAYS) -> list[HostCheck]:
    """PKI-03 expiry and PKI-04 key size / signature of mounted certificates, read with `cat` and parsed here
    (no openssl needed in the image)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    now = dt.datetime.combine(today or dt.date.today(), dt.time(), tzinfo=dt.timezone.utc)
    expiry, strength = [], []
    for p in paths:
        f = host.file(p)
        if not f.exists:
            expiry.append(f"{p} missing")
            continue
        for cert in x509.load_pem_x509_certificates(f.content):
            name = cert.subject.rfc4514_string()
            left = (cert.not_valid_after_utc - now).days
            if left < alert_days:
                expiry.append(f"{p} ({name}) expires in {left} days")
            key = cert.public_key()
            if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
                strength.append(f"{name}: RSA {key.key_size} bits")
            elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
                strength.append(f"{name}: EC {key.curve.name}")
            algo = cert.signature_hash_algorithm
            if algo is not None and algo.name in ("md5", "sha1", "sha224"):
                strength.append(f"{name}: signed with {algo.name}")
    return [_check("PKI-03", expiry, f"{len(paths)} certificate file(s) valid beyond {alert_days} days"),
            _check("PKI-04", strength, "keys ≥ RSA 2048 / EC P-256, SHA-256+ signatures")]


def key_files(host: Any, paths: list[str]) -> list[HostCheck]:
    """Private keys mounted from Secrets readable by their owner and group only (K8S-08)."""
    problems = []
    for p in paths:
        f = host.file(p)
        if not f.exists:
            problems.append(f"{p} missing")
        elif f.mode & 0o007:
            problems.append(f"{p} mode {oct(f.mode)} lets others read it")
    return [_check("K8S-08", problems, f"{len(paths)} key file(s) not readable by others")]
