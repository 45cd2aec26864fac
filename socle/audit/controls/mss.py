"""MSSanté relay (MSS-01..08), judged on the Postfix main.cf / master.cf the relay runs."""
from __future__ import annotations

from typing import Iterator

from socle.constants import ANN_MAILBOX_PURGE_DAYS, MSS_TLS12_SUITES

from .. import configs
from ..evidence import Evidence, annotations, dig, meta
from ..model import Context, Control, Finding, failed, judge
from . import registrar
from ._common import (
    Parsed,
    each,
    forwarder_files,
    main_cf_files,
    postfix_cipher_problems,
    postfix_protocol_problems,
    retention,
    workloads_in,
)

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "MSS")
MSS = ("mssante",)


def _master(p: Parsed) -> list[configs.MasterService]:
    text = (p.file.obj.get("data") or {}).get("master.cf")
    return configs.postfix_master(text) if text else []


@control("MSS-01", "Every SMTP connection encrypted, no cleartext fallback; auth only over TLS", "critical", MSS,
         ("mssante",), "smtpd_tls_security_level = encrypt and smtpd_tls_auth_only = yes, with no weaker master.cf override.")
def mss_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def relay(p: Parsed) -> Finding:
        problems = [f"{k} is {p.data.get(k, 'unset')}, not {v}" for k, v in
                    (("smtpd_tls_security_level", "encrypt"), ("smtpd_tls_auth_only", "yes")) if p.data.get(k) != v]
        try:
            services = _master(p)
        except configs.ConfigError as exc:
            problems.append(f"master.cf does not parse: {exc}")
            services = []
        problems += [f"master.cf service {svc.service} lowers smtpd_tls_security_level to {level}" for svc in services
                     if svc.command == "smtpd" and (level := svc.overrides.get("smtpd_tls_security_level")) not in (None, "encrypt")
                     and svc.overrides.get("smtpd_tls_wrappermode") != "yes"]
        return judge(p.file.obj, problems, "STARTTLS required before MAIL, auth only over TLS", "main.cf")

    yield from each(main_cf_files(ev), relay)


@control("MSS-02", "TLS 1.2 minimum on SMTP", "critical", MSS + ("anssi-tls",), ("mssante",),
         "Set smtpd/smtp_tls_(mandatory_)protocols to >=TLSv1.2.")
def mss_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    yield from each(main_cf_files(ev), lambda p: judge(p.file.obj, postfix_protocol_problems(p.data),
                                                      "SMTP in and out: TLS 1.2 minimum", "main.cf"))


@control("MSS-03", "TLS 1.2 suites from the MSSanté list (ECDHE-RSA-AES256/128-GCM)", "high", MSS + ("anssi-tls",),
         ("mssante", "anssi-tls"), "Keep tls_high_cipherlist to the MSSanté suites and the mandatory cipher grade `high`.")
def mss_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    yield from each(main_cf_files(ev), lambda p: judge(p.file.obj, postfix_cipher_problems(p.data, MSS_TLS12_SUITES),
                                                      f"suites {', '.join(MSS_TLS12_SUITES)}", "main.cf"))


@control("MSS-04", "IGC-Santé server certificate presented; peers verified against the IGC-Santé CAs", "high", MSS,
         ("mssante",), "Keep smtp_tls_security_level = secure (or verify) with the trust bundle; mount the server certificate Secret.")
def mss_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def relay(p: Parsed) -> Finding:
        level = p.data.get("smtp_tls_security_level", "none")
        chain = p.data.get("smtpd_tls_chain_files") or p.data.get("smtpd_tls_cert_file")
        problems = [] if level in ("verify", "secure") else [f"outbound smtp_tls_security_level is {level}, peers not verified"]
        problems += [] if chain else ["no server certificate (smtpd_tls_chain_files)"]
        problems += [why for path in configs.postfix_list(chain or "") for ok, why in [ev.secret_backed(p.file.obj, path)] if not ok]
        problems += [] if p.data.get("smtp_tls_CAfile") else ["no smtp_tls_CAfile"]
        return judge(p.file.obj, problems, f"server certificate from a Secret; outbound {level}", "main.cf")

    yield from each(main_cf_files(ev), relay)


def _refresh_containers(ev: Evidence, namespace: str) -> list[str]:
    out = []
    for w in workloads_in(ev, namespace):
        cms = {dig(v, "configMap", "name") for v in w.pod_spec.get("volumes") or [] if "configMap" in v}
        for name in cms:
            cm = ev.get("ConfigMap", namespace, name) if isinstance(name, str) else None
            if cm is not None and ev.in_scope(cm) and "refresh-domains.sh" in (cm.get("data") or {}):
                out.append(str(w.ref))
    return sorted(set(out))


@control("MSS-05", "Mail exchanged only with ANS-authorized domains; the list refreshed automatically", "critical", MSS,
         ("mssante",), "Build relay_domains/transport_maps from relay.authorized_domains and keep the refresher running.")
def mss_05(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def relay(p: Parsed) -> Finding:
        problems = [f"{key} not set" for key in ("relay_domains", "transport_maps") if not p.data.get(key)]
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
        return judge(p.file.obj, problems, f"authorized domains only, list refreshed by {', '.join(refresh)}", "main.cf")

    yield from each(main_cf_files(ev), relay)


@control("MSS-06", "Application mailboxes authenticate with the organisation certificate", "high", MSS, ("mssante",),
         "Set relay.require_client_certificate: true.")
def mss_06(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def relay(p: Parsed) -> Finding:
        ns = meta(p.file.obj).get("namespace")
        lists = [cm["data"]["client_certs"] for cm in ev.scoped_in("ConfigMap", ns)
                 if isinstance((cm.get("data") or {}).get("client_certs"), str)]
        problems = [msg for bad, msg in (
            (p.data.get("smtpd_tls_req_ccert") != "yes", "client certificates are not required (smtpd_tls_req_ccert)"),
            (not p.data.get("relay_clientcerts"), "no relay_clientcerts list of organisation certificates"),
            (bool(p.data.get("relay_clientcerts")) and not any(line.strip() for text in lists for line in text.splitlines()),
             "the relay_clientcerts list is empty: no application mailbox can relay"),
        ) if bad]
        return judge(p.file.obj, problems, "organisation certificate required", "main.cf")

    yield from each(main_cf_files(ev), relay)


@control("MSS-07", "Per-mailbox traces without message content, kept at least 183 days", "high", MSS + ("pgssi-s",),
         ("mssante",), "Keep debug and header/body logging off, the maillog forwarded, and audit.retention_days ≥ 183.")
def mss_07(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    forwarded: dict[str, list[str]] = {}
    for f in forwarder_files(ev):
        if isinstance(f, Parsed):
            forwarded.setdefault(meta(f.file.obj).get("namespace", ""), []).extend(
                st.params.get("file", "") for st in f.data if st.type == "input" and st.params.get("type") == "imfile")

    def relay(p: Parsed) -> Finding:
        d = p.data
        problems = ["debug_peer_list logs whole sessions"] if d.get("debug_peer_list", "").strip() else []
        problems += [f"{key} {d[key]} dumps session content" for key in ("smtpd_tls_loglevel", "smtp_tls_loglevel")
                     if d.get(key, "0").isdigit() and int(d.get(key, "0")) > 1]
        problems += [f"{key} set: its actions log message lines"
                     for key in ("header_checks", "body_checks", "mime_header_checks", "nested_header_checks") if d.get(key, "").strip()]
        maillog = d.get("maillog_file")
        if not maillog:
            problems.append("no maillog_file to forward to the audit log")
        elif maillog not in forwarded.get(meta(p.file.obj).get("namespace", ""), []):
            problems.append(f"{maillog} is not forwarded to the audit log")
        return judge(p.file.obj, problems, "who/when/what logged without content, forwarded to the audit log", "main.cf")

    yield from each(main_cf_files(ev), relay)
    yield from retention(ev)


@control("MSS-08", "Mailboxes unused for more than a year are deleted after notice", "medium", MSS, ("mssante",),
         "Set relay.mailbox_purge_days ≤ 365.")
def mss_08(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def relay(p: Parsed) -> Iterator[Finding]:
        for w, _c, _ in ev.mounts_of(p.file.obj):
            raw = annotations(w.obj).get(ANN_MAILBOX_PURGE_DAYS)
            if raw is None or not raw.isdigit():
                yield failed(w.obj, f"no {ANN_MAILBOX_PURGE_DAYS} annotation declaring the purge period")
            else:
                yield judge(w.obj, [f"purge after {raw} days, more than 365"] if int(raw) > 365 else [],
                            f"unused mailboxes purged after {raw} days")

    yield from each(main_cf_files(ev), relay)
