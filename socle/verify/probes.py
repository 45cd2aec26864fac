"""Probes: what a client sees of the running daemons, each result named with the requirement it proves.

Protocol versions and suites are enumerated by `sslyze` (a scanner nobody on this project wrote); the other
probes speak HTTP, SMTP, syslog and the PostgreSQL protocol with the standard clients (Python's ssl, http.client,
smtplib; psql). Every probe targets 127.0.0.1."""
from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import re
import secrets
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from socle.constants import HSTS_MIN_MAX_AGE, MSS_TLS12_SUITES, TLS12_AEAD_SUITES

from .harness import GOOD_TOKEN, LOCAL, AuditLog, Gateway, Postgres, Relay, require, which
from .pki import Issued, TestPki


@dataclass(frozen=True)
class Probe:
    requirement: str
    name: str
    ok: bool
    detail: str


def probe(requirement: str, name: str, ok: bool, detail: str) -> Probe:
    return Probe(requirement, name, bool(ok), detail)


# --- sslyze ------------------------------------------------------------------------------------------------

SSLYZE_VERSIONS = {"ssl_2_0_cipher_suites": "SSLv2", "ssl_3_0_cipher_suites": "SSLv3", "tls_1_0_cipher_suites": "TLSv1.0",
                   "tls_1_1_cipher_suites": "TLSv1.1", "tls_1_2_cipher_suites": "TLSv1.2", "tls_1_3_cipher_suites": "TLSv1.3"}


def sslyze_path() -> str | None:
    """sslyze from PATH, else from the tools virtualenv `.ci/run` and `socle verify` create (.venv-tools)."""
    found = shutil.which("sslyze")
    if found:
        return found
    here = Path(__file__).resolve().parents[2] / ".venv-tools" / "bin" / "sslyze"
    return str(here) if here.exists() else None


def sslyze(port: int, sni: str, starttls: str | None = None, client: Issued | None = None) -> dict[str, list[str]]:
    """Accepted suites by protocol version, as sslyze enumerates them."""
    exe = sslyze_path()
    if exe is None:
        raise RuntimeError("sslyze is not installed (pip install sslyze==6.3.1, or let .ci/run create .venv-tools)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scan.json"
        cmd = [exe, "--quiet", f"--json_out={out}", "--mozilla_config=disable", "--sslv2", "--sslv3", "--tlsv1",
               "--tlsv1_1", "--tlsv1_2", "--tlsv1_3", "--sni", sni, f"{LOCAL}:{port}"]
        if starttls:
            cmd[2:2] = [f"--starttls={starttls}"]
        if client:
            cmd[2:2] = [f"--cert={client.cert}", f"--key={client.key}"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if not out.exists():
            raise RuntimeError(f"sslyze failed: {result.stderr.strip()[-500:]}")
        data = json.loads(out.read_text())
    scan = data["server_scan_results"][0]
    if scan["scan_status"] != "COMPLETED":
        raise RuntimeError(f"sslyze could not connect: {scan.get('connectivity_error_trace')}")
    accepted = {}
    for key, version in SSLYZE_VERSIONS.items():
        part = scan["scan_result"][key]
        if part["status"] != "COMPLETED":
            raise RuntimeError(f"sslyze {version} scan {part['status']}: {part.get('error_trace')}")
        accepted[version] = [c["cipher_suite"]["openssl_name"] for c in part["result"]["accepted_cipher_suites"]]
    return accepted


def tls_probes(accepted: dict[str, list[str]], allowed: tuple[str, ...], rid_versions: str, rid_suites: str, what: str) -> list[Probe]:
    old = {v: s for v, s in accepted.items() if v in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1") and s}
    extra = sorted(set(accepted["TLSv1.2"]) - set(allowed))
    return [
        probe(rid_versions, f"{what}: SSL, TLS 1.0 and 1.1 refused (sslyze)", not old,
              "refused" if not old else f"accepted {old}"),
        probe(rid_versions, f"{what}: TLS 1.3 accepted (sslyze)", accepted["TLSv1.3"], ", ".join(accepted["TLSv1.3"]) or "refused"),
        probe(rid_suites, f"{what}: only allowed TLS 1.2 suites offered (sslyze)", accepted["TLSv1.2"] and not extra,
              f"offered {', '.join(accepted['TLSv1.2'])}" + (f"; not allowed: {', '.join(extra)}" if extra else "")),
    ]


# --- TLS and HTTP clients ---------------------------------------------------------------------------------

def handshake_with(port: int, sni: str, version: ssl.TLSVersion, starttls_smtp: bool = False) -> str | None:
    """The negotiated protocol when the client offers exactly `version`, or None when the server refuses it.
    The client side is opened to every version (SECLEVEL=0), so a refusal is the server's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():  # offering an old version is the point of this probe
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection((LOCAL, port), timeout=10) as raw:
        if starttls_smtp:
            f = raw.makefile("rwb")
            f.readline()
            f.write(b"EHLO probe.verify.test\r\n")
            f.flush()
            while not f.readline()[3:4] == b" ":
                pass
            f.write(b"STARTTLS\r\n")
            f.flush()
            f.readline()
        try:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                return tls.version()
        except (ssl.SSLError, ConnectionError, OSError):
            return None


def https(port: int, sni: str, ca: Path, method: str = "GET", path: str = "/", headers: dict | None = None,
          body: bytes = b"", client: Issued | None = None,
          raw_headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTPS request with SNI, the server certificate verified against `ca`; `raw_headers` receives every
    response header as sent (several Set-Cookie)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if client:
        ctx.load_cert_chain(client.cert, client.key)
    conn = http.client.HTTPSConnection(LOCAL, port, context=ctx, timeout=20)
    sock = socket.create_connection((LOCAL, port), timeout=20)
    conn.sock = ctx.wrap_socket(sock, server_hostname=sni)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", sni)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    if body or method in ("POST", "PUT"):
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body or None)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if raw_headers is not None:
        raw_headers.extend(resp.getheaders())
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def _size(value: str) -> int:
    m = re.match(r"^(\d+)([kKmM]?)$", value)
    assert m, value
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


# --- gateway ---------------------------------------------------------------------------------------------

def gateway(gw: Gateway, pki: TestPki) -> list[Probe]:
    out: list[Probe] = []
    ca = pki.health.cert_path
    routes = list(gw.args.routes)
    sensitive = next((r for r in routes if r.mtls), None)
    route = sensitive or routes[0]
    client = pki.org_client if route.mtls else None
    auth = {"Authorization": f"Bearer {GOOD_TOKEN}"} if route.token_validation else {}

    accepted = sslyze(gw.https_port, route.host)
    out += tls_probes(accepted, TLS12_AEAD_SUITES, "TLS-01", "TLS-02", "gateway")
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        got = handshake_with(gw.https_port, route.host, version)
        out.append(probe("TLS-01", f"gateway: a {version.name} client is refused", got is None,
                         "handshake refused" if got is None else f"negotiated {got}"))

    status, headers, _ = https(gw.https_port, route.host, ca, path="/health", client=client)
    hsts = headers.get("strict-transport-security", "")
    m = re.search(r"max-age=(\d+)", hsts)
    out.append(probe("TLS-03", "gateway: HSTS on HTTPS responses", m and int(m.group(1)) >= HSTS_MIN_MAX_AGE,
                     f"{status} Strict-Transport-Security: {hsts or '(none)'}"))
    out.append(probe("GW-04", "gateway: the health route answers GET without a token", status == 200, f"GET /health -> {status}"))
    status, _, _ = https(gw.https_port, route.host, ca, method="POST", path="/health", client=client)
    out.append(probe("GW-04", "gateway: the health route refuses other methods", status in (403, 405), f"POST /health -> {status}"))

    before = len(gw.backend.requests)
    conn = http.client.HTTPConnection(LOCAL, gw.http_port, timeout=10)
    conn.request("POST", "/fhir/Patient", body=b'{"resourceType":"Patient"}', headers={"Host": route.host})
    resp = conn.getresponse()
    resp.read()
    location = resp.getheader("Location") or ""
    out.append(probe("TLS-03", "gateway: port 80 only redirects to HTTPS",
                     resp.status in (301, 302, 307, 308) and location.startswith(f"https://{route.host}/")
                     and len(gw.backend.requests) == before, f"{resp.status} Location: {location}"))

    if sensitive:
        refused = []
        for label, cert in (("no client certificate", None), ("a certificate from an unknown CA", pki.stranger)):
            try:
                status, _, _ = https(gw.https_port, route.host, ca, path="/fhir/Patient", headers=auth, client=cert)
            except (ssl.SSLError, ConnectionError) as exc:
                status = f"TLS refused ({exc.__class__.__name__})"
            refused.append(status)
            out.append(probe("API-01", f"gateway: sensitive route refuses {label}", status != 200 and len(gw.backend.requests) == before,
                             f"GET /fhir/Patient -> {status}"))
        status, _, body = https(gw.https_port, route.host, ca, path="/fhir/Patient", headers=auth, client=pki.org_client)
        seen = gw.backend.requests[-1] if len(gw.backend.requests) > before else {}
        expected_cn = pki.org_client_cn()
        out.append(probe("API-01", "gateway: sensitive route accepts the organisation certificate",
                         status == 200 and f"CN={expected_cn}" in str(seen.get("client_dn")),
                         f"GET /fhir/Patient -> {status}, backend saw client DN {seen.get('client_dn')!r}"))
    if route.token_validation:
        n = len(gw.backend.requests)
        status, _, _ = https(gw.https_port, route.host, ca, path="/fhir/Patient", client=client,
                             headers={"Authorization": "Bearer forged"})
        out.append(probe("API-03", "gateway: a call with a forged token is refused", status == 401 and len(gw.backend.requests) == n,
                         f"-> {status}"))

    limit = _size(route.max_body)
    marker = f"BODY-MARKER-{secrets.token_hex(8)}"
    small = json.dumps({"resourceType": "Patient", "note": marker}).encode()
    status_ok, _, _ = https(gw.https_port, route.host, ca, method="POST", path="/fhir/Patient", headers=auth, body=small, client=client)
    big = marker.encode() + b"x" * (limit + 1 - len(marker))
    try:
        status_big, _, _ = https(gw.https_port, route.host, ca, method="POST", path="/fhir/Patient", headers=auth, body=big, client=client)
    except (ConnectionError, ssl.SSLError) as exc:
        status_big = f"connection closed ({exc.__class__.__name__})"
    out.append(probe("GW-06", f"gateway: a body over {route.max_body} is refused", status_big == 413 and status_ok == 200,
                     f"{len(small)} bytes -> {status_ok}; {len(big)} bytes -> {status_big}"))

    time.sleep(0.3)  # NGINX writes the access log line when the request ends
    lines = [line for line in gw.access_log.read_text().splitlines() if line.strip()]
    problems = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"not JSON: {line[:80]}")
            continue
        if not re.fullmatch(r"[0-9a-f]{32}", str(rec.get("request_id", ""))):
            problems.append(f"no request id: {line[:80]}")
    if marker in gw.access_log.read_text():
        problems.append("a request body reached the access log")
    out.append(probe("GW-05", "gateway: access log lines are JSON with a request id and no body", lines and not problems,
                     f"{len(lines)} lines" + (f"; {'; '.join(problems[:3])}" if problems else "")))
    return out


def crl_refresh(gw: Gateway, pki: TestPki) -> list[Probe]:
    """PKI-02 end to end: the rendered refresher fetches a CRL revoking the organisation certificate from the
    (local) distribution point, NGINX reloads it and refuses that certificate; a failed download keeps the CRL."""
    from cryptography.hazmat.primitives import serialization

    if gw.crl_server is None:
        return []
    route = next(r for r in gw.args.routes if r.mtls)
    auth = {"Authorization": f"Bearer {GOOD_TOKEN}"} if route.token_validation else {}
    ca = pki.health.cert_path
    before, _, _ = https(gw.https_port, route.host, ca, path="/fhir/metadata", headers=auth, client=pki.org_client)
    gw.crl_server.crl = pki.health.crl_bytes(revoked=[pki.org_client.serial], encoding=serialization.Encoding.DER)  # type: ignore[attr-defined]
    for name, text in gw.refresh_files().items():
        (gw.dir / name).write_text(text, encoding="utf-8")
    script, log = gw.dir / "crl-refresh.sh", gw.dir / "crl-refresh.log"
    proc = subprocess.Popen(["sh", str(script)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        status, deadline = before, time.monotonic() + 20
        while time.monotonic() < deadline and status == 200:
            time.sleep(0.5)
            status, _, _ = https(gw.https_port, route.host, ca, path="/fhir/metadata", headers=auth, client=pki.org_client)
        out = [probe("PKI-02", "gateway: a certificate revoked at the distribution point is refused after the CRL refresh",
                     before == 200 and status == 400, f"before {before}, after refresh {status}; refresher: "
                     f"{log.read_text().strip().splitlines()[-1:] or ['(silent)']}")]
        gw.crl_server.crl = None  # type: ignore[attr-defined]  # the distribution point now fails
        time.sleep(2.5)
        status, _, _ = https(gw.https_port, route.host, ca, path="/fhir/metadata", headers=auth, client=pki.org_client)
        text = log.read_text()
        out.append(probe("PKI-02", "gateway: a failed CRL download keeps the current CRL (the revocation stays)",
                         "keeping the current CRL" in text and status == 400, f"after a failed download: {status}"))
    finally:
        proc.terminate()
        proc.wait(5)
    return out


# --- relay -----------------------------------------------------------------------------------------------

def _smtp(relay: Relay) -> smtplib.SMTP:
    s = smtplib.SMTP(LOCAL, relay.port, local_hostname="probe.verify.test", timeout=20)
    s.ehlo()
    return s


def _starttls(s: smtplib.SMTP, pki: TestPki, cert: Issued | None) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.health.cert_path))
    ctx.check_hostname = False  # the relay's own name is checked below, against its certificate
    if cert:
        ctx.load_cert_chain(cert.cert, cert.key)
    s.starttls(context=ctx)
    s.ehlo()


def relay(r: Relay, pki: TestPki) -> list[Probe]:
    out: list[Probe] = []
    hostname = r.args.hostname
    domains = sorted(r.args.authorized_domains)

    s = _smtp(r)
    code, msg = s.mail("app@verify.test")
    s.close()
    out.append(probe("MSS-01", "relay: MAIL FROM before STARTTLS is refused with 530", code == 530, f"{code} {msg.decode()}"))

    for label, cert in (("no client certificate", None), ("a certificate from an unknown CA", pki.stranger)):
        try:
            s = _smtp(r)
            _starttls(s, pki, cert)
            code, msg = s.mail("app@verify.test")
            detail = f"MAIL FROM -> {code} {msg.decode()[:80]}"
            refused = code >= 400
            with contextlib.suppress(Exception):
                s.close()
        except (smtplib.SMTPException, ssl.SSLError, ConnectionError) as exc:
            refused, detail = True, f"session ended: {exc.__class__.__name__} {str(exc)[:80]}"
        if r.args.require_client_certificate:
            out.append(probe("MSS-06", f"relay: STARTTLS with {label} cannot relay", refused, detail))

    marker = f"CONTENT-MARKER-{secrets.token_hex(8)}"
    s = _smtp(r)
    _starttls(s, pki, pki.org_client)
    cert = ssl.DER_cert_to_PEM_cert(s.sock.getpeercert(binary_form=True))  # type: ignore[union-attr]
    out.append(probe("MSS-04", "relay: presents its server certificate from the health PKI", hostname in _names(cert),
                     f"certificate names {_names(cert)}"))
    s.mail("app@verify.test")
    code, msg = s.rcpt("someone@outside-mssante.example")
    out.append(probe("MSS-05", "relay: a domain outside the authorized list is refused", code >= 500, f"RCPT -> {code} {msg.decode()[:90]}"))
    s.rset()
    s.mail("app@verify.test")
    code, msg = s.rcpt(f"doctor@{domains[0]}")
    data_code, data_msg = (s.data(f"Subject: probe\r\n\r\n{marker}\r\n".encode()) if code == 250 else (0, b""))
    s.quit()
    out.append(probe("MSS-05", f"relay: mail to an authorized domain ({domains[0]}) is accepted into the queue",
                     code == 250 and data_code == 250, f"RCPT -> {code}; DATA -> {data_code} {data_msg.decode()[:60]}"))

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "TLS is required" not in r.log():
        time.sleep(0.3)
    log = r.log()
    leaked = any(line.upper().startswith(("MAIL", "DATA")) for session in r.sink.sessions for line in session)
    out.append(probe("MSS-04", "relay: no delivery to a next hop without verified TLS",
                     "TLS is required, but was not offered" in log and not leaked,
                     "deferred: next hop offered no TLS" if not leaked else "the sink received a message in clear"))
    problems = [] if re.search(r"from=<app@verify\.test>", log) else ["no sender"]
    problems += [] if re.search(rf"to=<doctor@{re.escape(domains[0])}>", log) else ["no recipient"]
    problems += [] if re.search(r"TLS connection established from \S+\[127\.0\.0\.1\]", log) else ["no client identity"]
    problems += ["message content in the log"] if marker in log else []
    out.append(probe("MSS-07", "relay: log lines carry sender, recipient and client identity, no content", not problems,
                     "; ".join(problems) or "sender, recipient, TLS client identity logged; no content"))

    accepted = sslyze(r.port, hostname, starttls="smtp", client=pki.org_client)
    out += tls_probes(accepted, MSS_TLS12_SUITES, "MSS-02", "MSS-03", "relay (STARTTLS)")
    return out


def relay_trace(r: Relay, al: AuditLog) -> list[Probe]:
    """MSS-07 / TRACE-01: the relay's log lines reach the audit log through its forwarder (imfile on the maillog)."""
    rec = _landed(al, "from=<app@verify.test>", 15)
    return [probe("MSS-07", "relay log lines (sender, recipient, client) recorded in the audit log through the forwarder",
                  rec is not None and str(rec.get("app", "")).startswith("postfix"),
                  f"recorded: {str((rec or {}).get('msg', ''))[:120]}" if rec else "nothing recorded")]


def _names(pem: str) -> list[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem.encode())
    with contextlib.suppress(x509.ExtensionNotFound):
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    return []


# --- PostgreSQL --------------------------------------------------------------------------------------------

def _psql(pg: Postgres, conninfo: str, sql: str, superuser: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGPASSWORD": pg.superuser_password if superuser else pg.password, "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run([require("psql"), conninfo, "-Atc", sql], capture_output=True, text=True, env=env)


def postgres(pg: Postgres, pki: TestPki) -> list[Probe]:
    out: list[Probe] = []
    base = f"host=localhost hostaddr={LOCAL} port={pg.port} dbname={pg.database} user={pg.user}"
    plain = _psql(pg, f"{base} sslmode=disable", "SELECT 1")
    out.append(probe("TLS-01", "postgres: a connection without TLS is refused", plain.returncode != 0 and "no encryption" in plain.stderr,
                     plain.stderr.strip().splitlines()[-1] if plain.stderr.strip() else f"rc {plain.returncode}: {plain.stdout.strip()}"))
    tls = _psql(pg, f"{base} sslmode=verify-full sslrootcert={pki.internal.cert_path}",
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    out.append(probe("TLS-01", "postgres: TLS with the server certificate verified (verify-full)",
                     tls.returncode == 0 and tls.stdout.strip().startswith("t|TLSv1."), (tls.stdout or tls.stderr).strip()))
    stored = _psql(pg, f"host={pg.paths['socket']} port={pg.port} dbname=postgres user=postgres",
                   f"SELECT rolpassword ~ '^SCRAM-SHA-256\\$' FROM pg_authid WHERE rolname = '{pg.user}'", superuser=True)
    time.sleep(0.5)
    log = pg.log_text()
    method = re.search(rf'connection authenticated: identity="{pg.user}" method=(\S+)', log)
    out.append(probe("K8S-08", "postgres: passwords are SCRAM-SHA-256 (stored and on the wire)",
                     stored.stdout.strip() == "t" and method and method.group(1) == "scram-sha-256",
                     f"stored SCRAM: {stored.stdout.strip() or stored.stderr.strip()}; auth method {method.group(1) if method else '?'}"))
    line = re.search(rf"client=127\.0\.0\.1 LOG:  connection authorized: user={pg.user} database={pg.database} .*SSL enabled.*", log)
    out.append(probe("TRACE-01", "postgres: connections are logged with user, database, client and TLS",
                     line is not None, line.group(0)[:160] if line else "no connection line in the log"))
    return out


# --- audit log ---------------------------------------------------------------------------------------------

def _send_syslog(al: AuditLog, pki: TestPki, message: str, cert: Issued | None) -> str:
    ctx = ssl.create_default_context(cafile=str(pki.internal.cert_path))
    ctx.check_hostname = True
    if cert:
        ctx.load_cert_chain(cert.cert, cert.key)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    frame = f"<134>1 {now} gateway-0 gateway - - - {message}\n".encode()
    try:
        with socket.create_connection((LOCAL, al.port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=al.host) as tls:
            tls.sendall(frame)
            tls.settimeout(1)
            with contextlib.suppress(socket.timeout, ssl.SSLError, ConnectionError):
                tls.recv(1)  # the aggregator sends nothing; a reset here means it dropped us
        return "sent"
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return f"refused ({exc.__class__.__name__})"


def _landed(al: AuditLog, marker: str, wait: float) -> dict | None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for f in al.data.glob("audit-*.jsonl"):
            for line in f.read_text(errors="replace").splitlines():
                if marker in line:
                    return json.loads(line)
        time.sleep(0.2)
    return None


def auditlog(al: AuditLog, pki: TestPki) -> list[Probe]:
    out: list[Probe] = []
    anonymous = f"ANON-{secrets.token_hex(6)}"
    sent = _send_syslog(al, pki, f"access by someone {anonymous}", None)
    out.append(probe("TRACE-05", "audit log: a sender without a client certificate is refused",
                     _landed(al, anonymous, 3) is None, f"{sent}; nothing recorded"))
    stranger = f"STRANGER-{secrets.token_hex(6)}"
    sent = _send_syslog(al, pki, f"access {stranger}", pki.stranger)
    out.append(probe("TRACE-05", "audit log: a sender with a certificate from an unknown CA is refused",
                     _landed(al, stranger, 2) is None, f"{sent}; nothing recorded"))
    marker = f"AUTH-{secrets.token_hex(6)}"
    _send_syslog(al, pki, f'{{"request_id":"{marker}","user":"rpps-810000000001"}}', al.sender)
    rec = _landed(al, marker, 10)
    out.append(probe("TRACE-04", "audit log: a message from an authenticated sender lands as a JSON line",
                     rec is not None and {"time", "peer", "app", "msg"} <= set(rec or {}),
                     f"recorded: {json.dumps(rec)[:160]}" if rec else "not recorded"))
    return out


def trace_chain(gw: Gateway, al: AuditLog, pki: TestPki) -> list[Probe]:
    """TRACE-01/02 end to end: an HTTPS request to the gateway reaches the audit log through the log forwarder
    (UDP on 127.0.0.1, then mutual TLS with the aggregator's name checked) as a JSON line naming the caller."""
    if not gw.syslog_port:
        return []
    route = next((r for r in gw.args.routes if r.mtls), gw.args.routes[0])
    auth = {"Authorization": f"Bearer {GOOD_TOKEN}"} if route.token_validation else {}
    marker = f"trace-{secrets.token_hex(6)}"
    status, _, _ = https(gw.https_port, route.host, pki.health.cert_path, path=f"/fhir/Patient/{marker}", headers=auth,
                         client=pki.org_client if route.mtls else None)
    rec = _landed(al, marker, 15)
    inner: dict = {}
    with contextlib.suppress(json.JSONDecodeError, TypeError, AttributeError):
        inner = json.loads(str((rec or {}).get("msg", "")).strip())  # the gateway's JSON access log line
    actor = inner.get("client_s_dn") or inner.get("user")
    return [
        probe("TRACE-01", "gateway request recorded in the audit log through the forwarder (mutual TLS)",
              rec is not None and rec.get("app") == "gateway", f"GET -> {status}; recorded as {json.dumps(rec)[:140] if rec else 'nothing'}"),
        probe("TRACE-02", "the recorded access names its caller and request id",
              bool(actor) and actor != "-" and re.fullmatch(r"[0-9a-f]{32}", str(inner.get("request_id", ""))) is not None,
              f"actor {actor!r}, request_id {inner.get('request_id')!r}"),
    ]


def run_seal(al: AuditLog, data: Path, when: dt.datetime, key_file: Path | None = None, state: Path | None = None) -> None:
    """Run the rendered seal.sh under `sh`, as the seal container does, with its clock set to `when` (UTC)."""
    state = state or data.parent / f"{data.name}-state"
    script = data.parent / f"{data.name}-seal.sh"
    script.write_text(al.seal(key_file=key_file, state_dir=state))
    stamp = int(when.replace(tzinfo=dt.timezone.utc).timestamp())
    run = subprocess.run(["sh", str(script), str(data), str(stamp)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"seal.sh failed: {run.stderr.strip()}")


def seal(al: AuditLog, workdir: Path, today: dt.date | None = None) -> list[Probe]:
    """Three past days sealed by the rendered seal script, one run a day as the pod does, with the key file the
    pod mounts; then tampered with, the chain rebuilt without the key and its newest entries removed."""
    from socle.auditlog import check_chain

    today = today or dt.datetime.now(dt.timezone.utc).date()
    key = al.write_seal_key()
    out: list[Probe] = []
    days = [today - dt.timedelta(days=n) for n in (3, 2, 1)]

    def at(day: dt.date, hour: int = 1) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour))

    def check(d: Path, k: bytes | None = key):
        return check_chain(d, today, al.args.retention_days, k)

    def sealed_dir(name: str) -> Path:
        d = workdir / name
        d.mkdir(parents=True)
        for i, day in enumerate(days):
            (d / f"audit-{day}.jsonl").write_text("".join(f'{{"n":{i}{j},"msg":"line {j}"}}\n' for j in range(3)))
        for day in days:
            run_seal(al, d, at(day + dt.timedelta(days=1)))
        return d

    d = sealed_dir("intact")
    report = check(d)
    chain = (d / "chain.sha256").read_text().splitlines()
    out.append(probe("TRACE-04", "seal: the rendered seal script chains every closed day and a heartbeat per run, "
                     "keyed with the Secret's key, and the chain verifies", report.intact and report.sealed == 3 and report.runs == 3,
                     f"{len(chain)} links, {report.sealed} files, {report.runs} runs; {report.problems or 'verified with the key'}"))
    unkeyed = check(d, None)
    out.append(probe("TRACE-04", "seal: without the key the chain is never reported intact", not unkeyed.intact,
                     "links not verified" if not unkeyed.intact else "reported intact without the key"))
    for name, what, tamper, target in (
        ("edited", "an edited line", lambda p: p.write_text(p.read_text().replace("line 1", "line X")), 1),
        ("deleted", "a deleted line", lambda p: p.write_text("".join(p.read_text().splitlines(keepends=True)[1:])), 0),
        ("removed", "a removed file", lambda p: p.unlink(), 2),
    ):
        d = sealed_dir(name)
        victim = d / f"audit-{days[target]}.jsonl"
        os.chmod(victim, 0o640)
        tamper(victim)
        problems = check(d).problems
        first = problems[0] if problems else ""
        out.append(probe("TRACE-04", f"seal: {what} is detected, naming the first broken file",
                         victim.name in first, first or "not detected"))

    # The writer's attack: re-seal an edited file into a new chain with the script and a key of its own.
    d = sealed_dir("rebuilt")
    victim = d / f"audit-{days[1]}.jsonl"
    os.chmod(victim, 0o640)
    victim.write_text('{"n":0,"msg":"nothing happened"}\n')
    (d / "chain.sha256").unlink()
    forged = workdir / "forged-key"
    forged.write_text(secrets.token_hex(32))
    run_seal(al, d, at(today, 2), key_file=forged, state=workdir / "forged-state")
    problems = check(d).problems
    out.append(probe("TRACE-04", "seal: a chain rebuilt without the key is detected at its first line",
                     bool(problems) and "line 1" in problems[0], problems[0] if problems else "not detected"))
    # The newest file and its chain lines removed: the seal's next run finds its last link gone.
    d = sealed_dir("truncated")
    newest = d / f"audit-{days[2]}.jsonl"
    os.chmod(newest, 0o640)
    newest.unlink()
    lines = (d / "chain.sha256").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if newest.name in line)
    (d / "chain.sha256").write_text("".join(lines[:cut]))
    run_seal(al, d, at(today, 2))
    problems = check(d).problems
    out.append(probe("TRACE-04", "seal: the newest file and its chain lines removed are detected (alarm at the next run)",
                     any("alarm" in p for p in problems), "; ".join(problems) or "not detected"))
    return out


def tool_versions() -> dict[str, str]:
    out = {}
    for prog, args in (("nginx", ["-v"]), ("postconf", ["-d", "mail_version"]), ("rsyslogd", ["-v"]), ("postgres", ["--version"])):
        exe = which(prog)
        if exe:
            r = subprocess.run([exe, *args], capture_output=True, text=True)
            out[prog] = (r.stdout or r.stderr).strip().splitlines()[0]
    return out
