"""TLS and PKI: protocol versions, suites, HSTS and redirects, trust bundles, revocation (TLS-01..03, PKI-01..04)."""
from __future__ import annotations

import re
from typing import Iterator

from socle.constants import HSTS_MIN_MAX_AGE, TLS12_AEAD_SUITES

from .. import configs
from ..evidence import Evidence, argv, dig
from ..model import Context, Control, Finding, failed, judge, not_applicable
from . import registrar
from ._common import (
    OLD_TLS as OLD,
    Parsed,
    aggregator_files,
    api_servers,
    cipher_problems,
    each,
    main_cf_files,
    nginx_files,
    parsed,
    postfix_cipher_problems,
    postfix_problems,
    postfix_protocol_problems,
    postfix_tls13_problems,
    tls_directive,
)

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "TLS")
TLS = ("anssi-tls", "pgssi-s")


def _nginx_protocols(server: configs.Directive, http: configs.Directive | None) -> set[str]:
    value = tls_directive(server, http, "ssl_protocols")
    # NGINX's default (1.23+) is TLSv1.2 TLSv1.3; older releases also enable TLSv1 and TLSv1.1.
    return set(value.split()) if value else {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}


def _tls_servers(p: Parsed) -> Iterator[tuple[configs.Directive, configs.Directive | None]]:
    http = p.data.first("http")
    for s in configs.nginx_servers(p.data):
        if configs.listens_tls(s):
            yield s, http


def _nginx_protocol_problems(p: Parsed) -> list[str]:
    out = []
    for s, http in _tls_servers(p):
        name = " ".join(s.value("server_name", "_").split())
        protocols = _nginx_protocols(s, http)
        if old := sorted(protocols & OLD):
            out.append(f"server {name} offers {', '.join(old)}")
        if "TLSv1.3" not in protocols:
            out.append(f"server {name} does not offer TLS 1.3 (ssl_protocols {' '.join(sorted(protocols))})")
    return out


def _imtcp(p: Parsed) -> list[dict[str, str]]:
    """The OpenSSL settings of each TLS listener module of an aggregator."""
    return [configs.gnutls_priority(st.params.get("gnutlsprioritystring", ""))
            for st in p.data if st.type == "module" and st.params.get("load") == "imtcp"]


def _postgres_files(ev: Evidence):
    return parsed(ev, "postgresql.conf", configs.postgresql_conf, program="postgres")


@control("TLS-01", "TLS 1.2 minimum, 1.3 preferred; SSL, TLS 1.0 and 1.1 never offered", "critical", TLS,
         ("anssi-tls", "ci-sis-transport"),
         "Set tls.min_version to TLSv1.2 (or TLSv1.3) and re-render; never list SSLv3, TLSv1 or TLSv1.1.")
def tls_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def postgres(p: Parsed) -> Finding:
        minimum = p.data.get("ssl_min_protocol_version", "TLSv1.2")
        maximum = p.data.get("ssl_max_protocol_version", "")
        problems = ([] if p.data.get("ssl") == "on" else ["ssl is not on"]) + \
            ([f"ssl_min_protocol_version is {minimum}"] if configs.tls_versions_from_min(minimum) & OLD else []) + \
            ([f"ssl_max_protocol_version is {maximum}: TLS 1.3 left out"] if maximum not in ("", "TLSv1.3") else [])
        return judge(p.file.obj, problems, "database: TLS on, 1.2 minimum, 1.3 offered", "postgresql.conf")

    def aggregator(p: Parsed) -> Finding:
        problems = []
        for m in _imtcp(p):
            if not m.get("MinProtocol") or configs.tls_versions_from_min(m["MinProtocol"]) & OLD:
                problems.append(f"imtcp MinProtocol is {m.get('MinProtocol') or 'unset'}")
            if m.get("MaxProtocol") not in (None, "", "TLSv1.3"):
                problems.append(f"imtcp MaxProtocol is {m['MaxProtocol']}: TLS 1.3 left out")
        return judge(p.file.obj, problems, "audit log listener: TLS 1.2 minimum, 1.3 offered", "rsyslog.conf")

    yield from each(nginx_files(ev), lambda p: judge(p.file.obj, _nginx_protocol_problems(p),
                                                    "every TLS server offers TLS 1.2 and 1.3 only", "nginx.conf"))
    yield from each(main_cf_files(ev), lambda p: judge(
        p.file.obj, postfix_problems(p, lambda v: postfix_protocol_problems(v) + postfix_tls13_problems(v)),
        "inbound and outbound SMTP: TLS 1.2 minimum, 1.3 offered", "main.cf"))
    yield from each(aggregator_files(ev), aggregator)
    yield from each(_postgres_files(ev), postgres)


@control("TLS-02", "TLS 1.2 suites: ECDHE with AEAD only", "high", TLS, ("anssi-tls",),
         "Use the kit's suite list (ECDHE with AES-GCM or ChaCha20-Poly1305); remove any keyword or CBC/RSA suite.")
def tls_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def nginx(p: Parsed) -> Finding:
        problems = [x for s, http in _tls_servers(p) for x in cipher_problems(
            tls_directive(s, http, "ssl_ciphers"), TLS12_AEAD_SUITES, f"server {s.value('server_name', '_')} ssl_ciphers")]
        return judge(p.file.obj, sorted(set(problems)), "only ECDHE+AEAD suites", "nginx.conf")

    yield from each(nginx_files(ev), nginx)
    yield from each(main_cf_files(ev), lambda p: judge(
        p.file.obj, postfix_problems(p, lambda v: postfix_cipher_problems(v, TLS12_AEAD_SUITES)), "only ECDHE+AEAD suites",
        "main.cf"))
    yield from each(aggregator_files(ev), lambda p: judge(
        p.file.obj, [x for m in _imtcp(p) for x in cipher_problems(m.get("CipherString"), TLS12_AEAD_SUITES, "imtcp CipherString")],
        "only ECDHE+AEAD suites", "rsyslog.conf"))
    yield from each(_postgres_files(ev), lambda p: judge(
        p.file.obj, cipher_problems(p.data.get("ssl_ciphers"), TLS12_AEAD_SUITES, "ssl_ciphers"), "only ECDHE+AEAD suites",
        "postgresql.conf"))


_HSTS = re.compile(r"max-age=(\d+)")
_REDIRECT = re.compile(r"^30[1278]$")


def _hsts_problems(server: configs.Directive) -> list[str]:
    name = server.value("server_name", "_")
    problems = []
    blocks = [("server", server)] + [(f"location {' '.join(loc.args)}", loc) for loc in server.all("location")]
    server_headers = server.all("add_header")
    for where, block in blocks:
        headers = block.all("add_header")
        if where != "server" and not headers:
            headers = server_headers  # NGINX inherits add_header only when the location sets none
        if where != "server" and block.first("return") is None and block.first("proxy_pass") is None:
            continue
        hsts = [h for h in headers if h.args and h.args[0].lower() == "strict-transport-security"]
        if not hsts:
            problems.append(f"{name} {where}: no Strict-Transport-Security header")
            continue
        m = _HSTS.search(hsts[0].args[1] if len(hsts[0].args) > 1 else "")
        if not m or int(m.group(1)) < HSTS_MIN_MAX_AGE:
            problems.append(f"{name} {where}: HSTS max-age below {HSTS_MIN_MAX_AGE}")
        if "always" not in hsts[0].args[2:]:
            problems.append(f"{name} {where}: HSTS header not sent on error responses ('always' missing)")
    return problems


@control("TLS-03", "The gateway serves nothing over cleartext HTTP: port 80 only redirects; HSTS on every HTTPS response",
         "high",
         TLS + ("doctrine",), ("ci-sis-transport", "anssi-tls"),
         "Keep the plain-HTTP server to a single `return 308 https://$host$request_uri`; set gateway.hsts_max_age ≥ 31536000.")
def tls_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def nginx(p: Parsed) -> Finding:
        problems = []
        for s in configs.nginx_servers(p.data):
            if configs.listens_tls(s):
                continue
            name = s.value("server_name", "_")
            blocks = [s] + s.all("location")
            if any(d.name in ("proxy_pass", "root", "alias", "fastcgi_pass", "uwsgi_pass", "grpc_pass") for b in blocks for d in b.walk()):
                problems.append(f"plain-HTTP server {name} serves content")
            returns = [d for b in blocks for d in b.all("return")]
            if not returns or any(not (_REDIRECT.match(r.args[0]) and len(r.args) > 1 and r.args[1].startswith("https://"))
                                  for r in returns):
                problems.append(f"plain-HTTP server {name} does not only redirect to https://")
        for s in api_servers(p.data):
            problems += _hsts_problems(s)
        return judge(p.file.obj, problems, "port 80 only redirects; HSTS ≥ 1 year on every HTTPS response", "nginx.conf")

    yield from each(nginx_files(ev), nginx)


def _mtls_servers(p: Parsed) -> list[configs.Directive]:
    return [s for s in api_servers(p.data) if s.value("ssl_verify_client") in ("on", "optional")]


@control("PKI-01", "Inter-system endpoints trust only a CA bundle mounted from a Secret, never the system CA store", "high",
         ("pgssi-s", "mssante"),
         ("ci-sis-transport", "mssante"),
         "Mount the IGC-Santé trust bundle Secret (pki.trust_bundle_secret) and point every mTLS listener and the relay at it.")
def pki_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def nginx(p: Parsed) -> Finding:
        servers = _mtls_servers(p)
        if not servers:
            return not_applicable(p.file.obj, "no listener verifies client certificates", "nginx.conf")
        http = p.data.first("http")
        problems = []
        for s in servers:
            name = s.value("server_name")
            if not (tls_directive(s, http, "ssl_client_certificate") or tls_directive(s, http, "ssl_trusted_certificate")):
                problems.append(f"{name}: no ssl_client_certificate")
            # Both directives add trust anchors for client verification: each one set must be the bundle Secret.
            for key in ("ssl_client_certificate", "ssl_trusted_certificate"):
                path = tls_directive(s, http, key)
                ok, why = ev.secret_backed(p.file.obj, path) if path else (True, "")
                if not ok:
                    problems.append(f"{name} {key} {why}")
        return judge(p.file.obj, problems, "client certificates checked against CAs from a Secret only", "nginx.conf")

    def postfix(p: Parsed) -> Finding:
        problems = []
        for key in ("smtpd_tls_CAfile", "smtp_tls_CAfile"):
            path = p.data.get(key)
            ok, why = ev.secret_backed(p.file.obj, path) if path else (False, "not set")
            if not ok:
                problems.append(f"{key} {why}")
        if p.data.get("smtp_tls_CApath") or p.data.get("smtpd_tls_CApath"):
            problems.append("a CApath (the system CA store) is configured besides the trust bundle")
        if p.data.get("tls_append_default_CA", "no") != "no":
            problems.append("tls_append_default_CA adds the system CA store")
        return judge(p.file.obj, problems, "relay peers verified against CAs from a Secret only", "main.cf")

    yield from each(nginx_files(ev), nginx)
    yield from each(main_cf_files(ev), postfix)


def _refresher(ev: Evidence, w, nginx: dict, crl_path: str) -> tuple[str, dict] | None:
    """The container of the same pod that runs the CRL refresh script, rewrites the CRL file and can signal NGINX,
    with the ConfigMap holding its script, if any."""
    vol, _ = w.volume_at(nginx, crl_path)
    if vol is None or "emptyDir" not in vol:
        return None  # a Secret or ConfigMap volume is only changed by a redeployment
    for c in w.containers(init=False):
        if c is nginx:
            continue
        mounts = {m.get("name"): m for m in c.get("volumeMounts") or []}
        writes_crl = vol["name"] in mounts and not mounts[vol["name"]].get("readOnly")
        scripts = [cm for n in mounts if (cm := ev.get("ConfigMap", w.namespace, dig(w.volume(n) or {}, "configMap", "name") or ""))
                   and isinstance((cm.get("data") or {}).get("crl-refresh.sh"), str)]
        runs_script = bool(scripts) and any("crl-refresh.sh" in a for a in argv(c))
        if writes_crl and runs_script and w.pod_spec.get("shareProcessNamespace") is True:
            return str(c.get("name")), scripts[0]
    return None


_SLEEP = re.compile(r"\bsleep\s+(\d+)([smhd]?)\b")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _refresh_problems(script_cm: dict) -> list[str]:
    """PKI-02: the refresh loop runs at least daily and has distribution points to fetch from. The CRL's own
    nextUpdate is not in the evidence (the CRL is fetched at run time): a daily refresh is what can be checked."""
    data = script_cm.get("data") or {}
    waits = [int(n) * _UNIT[u] for n, u in _SLEEP.findall(data.get("crl-refresh.sh", ""))]
    problems = []
    if not waits:
        problems.append("the refresh script has no readable interval (sleep)")
    elif max(waits) > 86400:
        problems.append(f"the CRL is refreshed every {max(waits)} s, less often than daily")
    if not any(line.strip() for line in str(data.get("crl-urls", "")).splitlines()):
        problems.append("no CRL distribution point (crl-urls) to refresh from")
    return problems


@control("PKI-02", "Peer certificates checked for revocation; the CRL refreshed at least daily", "high",
         ("pgssi-s",), ("ci-sis-transport",),
         "Configure ssl_crl on every mTLS listener and set pki.crl_urls so the CRL refresher runs beside NGINX.")
def pki_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def nginx(p: Parsed) -> Iterator[Finding]:
        servers = _mtls_servers(p)
        if not servers:
            yield not_applicable(p.file.obj, "no listener verifies client certificates", "nginx.conf")
            return
        missing = [f"{s.value('server_name')}: no ssl_crl" for s in servers if not s.value("ssl_crl")]
        crls = sorted({s.value("ssl_crl") for s in servers if s.value("ssl_crl")})
        users = ev.mounts_of(p.file.obj)
        if not users:
            yield failed(p.file.obj, "no workload runs this gateway configuration", "nginx.conf")
        for w, c, _ in users:
            problems, refreshers = list(missing), set()
            for crl in crls:
                r = _refresher(ev, w, c, crl)
                if r is None:
                    problems.append(f"{crl} is not refreshed (no CRL refresher container beside {c.get('name')})")
                else:
                    refreshers.add(r[0])
                    problems += [f"{crl}: {x}" for x in _refresh_problems(r[1])]
            yield judge(w.obj, problems, f"CRL on every mTLS listener, refreshed at least daily by container "
                                         f"{', '.join(sorted(refreshers))}")

    def postfix(p: Parsed) -> Finding:
        if p.data.get("smtpd_tls_req_ccert") != "yes":
            return not_applicable(p.file.obj, "the relay does not require client certificates", "main.cf")
        # Postfix has no CRL support: a fingerprint allow-list is its revocation mechanism.
        restrictions = configs.postfix_list(p.data.get("smtpd_client_restrictions", ""))
        ok = p.data.get("relay_clientcerts") and restrictions[:1] == ["permit_tls_clientcerts"] and restrictions[-1:] == ["reject"]
        return judge(p.file.obj, [] if ok else ["Postfix cannot check CRLs and no fingerprint allow-list (relay_clientcerts "
                                                "with `permit_tls_clientcerts, reject`) stands in for it"],
                     "client certificates allow-listed by fingerprint (relay_clientcerts): a revoked one is removed from the list",
                     "main.cf")

    yield from each(nginx_files(ev), nginx)
    yield from each(main_cf_files(ev), postfix)


manual("PKI-03", "Server and structure certificates valid and not about to expire (alert 60 days before)", "high",
       ("pgssi-s",), ("ci-sis-transport",),
       "Renew certificates that expire within 60 days (ANS warns 60 days before an IGC-Santé certificate expires and renews only a valid one); record the certificate inventory with expiry dates.",
       "Certificates live in Secrets, which the audit does not read: record the certificate inventory (subject, "
       "expiry) or run the live host checks (`pytest tests/infra --evidence live`), which read the mounted certificates.")
manual("PKI-04", "RSA keys ≥ 2048 bits (or EC P-256+), signatures SHA-256 or stronger", "medium", ("pgssi-s", "anssi-tls"),
       ("anssi-tls",),
       "Re-issue any certificate with a weaker key or signature.",
       "Key sizes and signature algorithms of the mounted certificates: the live host checks read them; otherwise "
       "record the certificate inventory.")
