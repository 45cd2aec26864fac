"""MSSanté relay (MSS-01..08), judged on the Postfix main.cf / master.cf the relay runs."""
from __future__ import annotations

from typing import Iterator

from socle.constants import MSS_TLS12_SUITES

from .. import configs
from ..evidence import Evidence, annotations, meta
from ..model import Context, Control, Finding, failed, judge
from . import registrar
from ._common import Parsed, cipher_problems, forwarder_files, main_cf_files, workloads_in

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "MSS")
MSS = ("mssante",)
OLD = {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"}
ANN_PURGE = "socle.esante.fr/mailbox-purge-days"


def _master(p: Parsed) -> list[configs.MasterService]:
    text = (p.file.obj.get("data") or {}).get("master.cf")
    return configs.postfix_master(text) if text else []


def _relays(ev: Evidence) -> Iterator[Parsed | Finding]:
    return main_cf_files(ev)


@control("MSS-01", "Every SMTP connection encrypted, no cleartext fallback; auth only over TLS", "critical", MSS,
         ("mssante",), "smtpd_tls_security_level = encrypt and smtpd_tls_auth_only = yes, with no weaker master.cf override.")
def mss_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for p in _relays(ev):
        if not isinstance(p, Parsed):
            yield p
            continue
        problems = []
        if p.data.get("smtpd_tls_security_level") != "encrypt":
            problems.append(f"smtpd_tls_security_level is {p.data.get('smtpd_tls_security_level', 'unset')}, not encrypt")
        if p.data.get("smtpd_tls_auth_only") != "yes":
            problems.append("smtpd_tls_auth_only is not yes")
        try:
            services = _master(p)
        except configs.ConfigError as exc:
            problems.append(f"master.cf does not parse: {exc}")
            services = []
        for svc in services:
            if svc.command != "smtpd":
                continue
            level = svc.overrides.get("smtpd_tls_security_level")
            wrapper = svc.overrides.get("smtpd_tls_wrappermode") == "yes"
            if level is not None and level != "encrypt" and not wrapper:
                problems.append(f"master.cf service {svc.service} lowers smtpd_tls_security_level to {level}")
        yield judge(p.file.obj, problems, "STARTTLS required before MAIL, auth only over TLS", "main.cf")


@control("MSS-02", "TLS 1.2 minimum on SMTP", "critical", MSS + ("anssi-tls",), ("mssante",),
         "Set smtpd/smtp_tls_(mandatory_)protocols to >=TLSv1.2.")
def mss_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for p in _relays(ev):
        if not isinstance(p, Parsed):
            yield p
            continue
        problems = []
        for key in ("smtpd_tls_protocols", "smtpd_tls_mandatory_protocols", "smtp_tls_protocols", "smtp_tls_mandatory_protocols"):
            old = sorted(configs.postfix_protocols(p.data.get(key, ">=TLSv1")) & OLD)
            if old:
                problems.append(f"{key} allows {', '.join(old)}")
        yield judge(p.file.obj, problems, "SMTP in and out: TLS 1.2 minimum", "main.cf")


@control("MSS-03", "TLS 1.2 suites from the MSSanté list (ECDHE-RSA-AES256/128-GCM)", "high", MSS + ("anssi-tls",),
         ("mssante", "anssi-tls"), "Keep tls_high_cipherlist to the MSSanté suites and the mandatory cipher grade `high`.")
def mss_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for p in _relays(ev):
        if not isinstance(p, Parsed):
            yield p
            continue
        problems = []
        for side in ("smtpd", "smtp"):
            if p.data.get(f"{side}_tls_mandatory_ciphers", "medium") != "high":
                problems.append(f"{side}_tls_mandatory_ciphers is not high")
        problems += cipher_problems(p.data.get("tls_high_cipherlist"), MSS_TLS12_SUITES, "tls_high_cipherlist")
        yield judge(p.file.obj, problems, f"suites {', '.join(MSS_TLS12_SUITES)}", "main.cf")


@control("MSS-04", "IGC-Santé server certificate presented; peers verified against the IGC-Santé CAs", "high", MSS,
         ("mssante",), "Keep smtp_tls_security_level = secure (or verify) with the trust bundle; mount the server certificate Secret.")
def mss_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for p in _relays(ev):
        if not isinstance(p, Parsed):
            yield p
            continue
        problems = []
        level = p.data.get("smtp_tls_security_level", "none")
        if level not in ("verify", "secure"):
            problems.append(f"outbound smtp_tls_security_level is {level}, peers not verified")
        chain = p.data.get("smtpd_tls_chain_files") or p.data.get("smtpd_tls_cert_file")
        if not chain:
            problems.append("no server certificate (smtpd_tls_chain_files)")
        else:
            for path in configs.postfix_list(chain):
                ok, why = ev.secret_backed(p.file.obj, path)
                if not ok:
                    problems.append(why)
        if not p.data.get("smtp_tls_CAfile"):
            problems.append("no smtp_tls_CAfile")
        yield judge(p.file.obj, problems, f"server certificate from a Secret; outbound {level}", "main.cf")


def _refresh_containers(ev: Evidence, namespace: str) -> list[str]:
    out = []
    for w in workloads_in(ev, namespace):
        cms = {v["configMap"].get("name") for v in w.pod_spec.get("volumes") or [] if "configMap" in v}
        for cm in ev.scoped("ConfigMap"):
            if meta(cm).get("namespace") == namespace and meta(cm).get("name") in cms and "refresh-domains.sh" in (cm.get("data") or {}):
                out.append(str(w.ref))
    return sorted(set(out))


@control("MSS-05", "Mail exchanged only with ANS-authorized domains; the list refreshed automatically", "critical", MSS,
         ("mssante",), "Build relay_domains/transport_maps from relay.authorized_domains and keep the refresher running.")
def mss_05(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for p in _relays(ev):
        if not isinstance(p, Parsed):
            yield p
            continue
        problems = []
        for key in ("relay_domains", "transport_maps"):
            if not p.data.get(key):
                problems.append(f"{key} not set")
        if p.data.get("mynetworks", "").strip() not in ("", "127.0.0.0/8", "127.0.0.0/8 [::1]/128"):
            problems.append(f"mynetworks {p.data.get('mynetworks')} lets networks relay without checks")
        rcpt = configs.postfix_list(p.data.get("smtpd_recipient_restrictions", ""))
        if not rcpt or rcpt[-1] != "reject" or "check_recipient_access" not in rcpt:
            problems.append("smtpd_recipient_restrictions do not end with `reject` after the authorized-domain check")
        elif any(r.startswith("permit") for r in rcpt[: rcpt.index("check_recipient_access")]):
            problems.append("a permit comes before the authorized-domain check")
        ns = meta(p.file.obj).get("namespace", "")
        refresh = _refresh_containers(ev, ns)
        if not refresh:
            problems.append(f"no domain-list refresher in namespace {ns}")
        yield judge(p.file.obj, problems, f"authorized domains only, list refreshed by {', '.join(refresh)}", "main.cf")


@control("MSS-06", "Application mailboxes authenticate with the organisation certificate", "high", MSS, ("mssante",),
         "Set relay.require_client_certificate: true.")
def mss_06(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for p in _relays(ev):
        if not isinstance(p, Parsed):
            yield p
            continue
        problems = []
        if p.data.get("smtpd_tls_req_ccert") != "yes":
            problems.append("client certificates are not required (smtpd_tls_req_ccert)")
        if not p.data.get("relay_clientcerts"):
            problems.append("no relay_clientcerts list of organisation certificates")
        yield judge(p.file.obj, problems, "organisation certificate required", "main.cf")


@control("MSS-07", "Per-mailbox traces without message content, kept at least 183 days", "high", MSS + ("pgssi-s",),
         ("mssante",), "Keep debug and header/body logging off, the maillog forwarded, and audit.retention_days ≥ 183.")
def mss_07(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    forwarded = {}
    for f in forwarder_files(ev):
        if isinstance(f, Parsed):
            files = [st.params.get("file", "") for st in f.data if st.type == "input" and st.params.get("type") == "imfile"]
            forwarded.setdefault(meta(f.file.obj).get("namespace"), []).extend(files)
    for p in _relays(ev):
        if not isinstance(p, Parsed):
            yield p
            continue
        d = p.data
        problems = []
        if d.get("debug_peer_list", "").strip():
            problems.append("debug_peer_list logs whole sessions")
        for key in ("smtpd_tls_loglevel", "smtp_tls_loglevel"):
            if d.get(key, "0").isdigit() and int(d.get(key, "0")) > 1:
                problems.append(f"{key} {d[key]} dumps session content")
        for key in ("header_checks", "body_checks", "mime_header_checks", "nested_header_checks"):
            if d.get(key, "").strip():
                problems.append(f"{key} set: its actions log message lines")
        maillog = d.get("maillog_file")
        ns = meta(p.file.obj).get("namespace")
        if not maillog:
            problems.append("no maillog_file to forward to the audit log")
        elif maillog not in forwarded.get(ns, []):
            problems.append(f"{maillog} is not forwarded to the audit log")
        yield judge(p.file.obj, problems, "who/when/what logged without content, forwarded to the audit log", "main.cf")
    yield from _retention(ev, "MSS-07")


def _retention(ev: Evidence, rid: str) -> Iterator[Finding]:
    from socle.constants import RETENTION_FLOOR_DAYS
    import re

    scripts = ev.config_files("seal.sh")
    if not scripts:
        for p in ev.config_files("rsyslog.conf", "imtcp"):
            yield failed(p.obj, "no seal/retention script: records are not kept for a known period", "rsyslog.conf")
    for f in scripts:
        m = re.search(r'^RETENTION_DAYS="?(\d+)"?\s*$', f.text, re.M)
        if not m:
            yield failed(f.obj, "RETENTION_DAYS not set in seal.sh", "seal.sh")
            continue
        days = int(m.group(1))
        yield judge(f.obj, [f"records kept {days} days, below the floor of {RETENTION_FLOOR_DAYS}"] if days < RETENTION_FLOOR_DAYS else [],
                    f"records kept {days} days (floor {RETENTION_FLOOR_DAYS})", "seal.sh")


@control("MSS-08", "Mailboxes unused for more than a year are deleted after notice", "medium", MSS, ("mssante",),
         "Set relay.mailbox_purge_days ≤ 365.")
def mss_08(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for p in _relays(ev):
        if not isinstance(p, Parsed):
            yield p
            continue
        ns = meta(p.file.obj).get("namespace")
        for w in workloads_in(ev, ns):
            if p.file.obj["metadata"]["name"] not in {v.get("configMap", {}).get("name") for v in w.pod_spec.get("volumes") or []}:
                continue
            raw = annotations(w.obj).get(ANN_PURGE)
            if raw is None or not raw.isdigit():
                yield failed(w.obj, f"no {ANN_PURGE} annotation declaring the purge period")
            else:
                yield judge(w.obj, [f"purge after {raw} days, more than 365"] if int(raw) > 365 else [],
                            f"unused mailboxes purged after {raw} days")
