"""MSSanté relay (MSS-01..08), judged on the Postfix main.cf / master.cf the relay runs."""
from __future__ import annotations

from typing import Iterator

from socle.constants import ANN_MAILBOX_PURGE_DAYS, MSS_TLS12_SUITES

from .. import configs
from ..evidence import Evidence, annotations, argv, dig, meta
from ..model import Context, Control, Finding, declared, failed, judge
from . import registrar
from ._common import (
    Parsed,
    each,
    forwarder_files,
    main_cf_files,
    postfix_cipher_problems,
    postfix_problems,
    postfix_protocol_problems,
    retention,
)

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "MSS")
MSS = ("mssante",)


# Outbound levels that never fall back to cleartext.
MANDATORY_TLS = ("encrypt", "dane-only", "fingerprint", "verify", "secure")


def _encryption_problems(v: dict[str, str]) -> list[str]:
    out = []
    if v.get("smtpd_tls_wrappermode") != "yes" and v.get("smtpd_tls_security_level") != "encrypt":
        out.append(f"smtpd_tls_security_level is {v.get('smtpd_tls_security_level', 'unset')}, not encrypt: "
                   "inbound mail accepted in cleartext")
    if v.get("smtpd_tls_auth_only") != "yes":
        out.append(f"smtpd_tls_auth_only is {v.get('smtpd_tls_auth_only', 'unset')}, not yes: authentication offered before TLS")
    level = v.get("smtp_tls_security_level", "none")
    if level not in MANDATORY_TLS:
        out.append(f"smtp_tls_security_level is {level}: outbound mail falls back to cleartext")
    return out


@control("MSS-01", "Every SMTP connection encrypted, no cleartext fallback; auth only over TLS", "critical", MSS,
         ("mssante",), "smtpd_tls_security_level = encrypt and smtpd_tls_auth_only = yes, with no weaker master.cf override.")
def mss_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def relay(p: Parsed) -> Finding:
        return judge(p.file.obj, postfix_problems(p, _encryption_problems),
                     "STARTTLS required before MAIL, auth only over TLS, outbound TLS mandatory", "main.cf")

    yield from each(main_cf_files(ev), relay)


@control("MSS-02", "TLS 1.2 minimum on SMTP", "critical", MSS + ("anssi-tls",), ("mssante",),
         "Set smtpd/smtp_tls_(mandatory_)protocols to >=TLSv1.2.")
def mss_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    yield from each(main_cf_files(ev), lambda p: judge(p.file.obj, postfix_problems(p, postfix_protocol_problems),
                                                      "SMTP in and out: TLS 1.2 minimum", "main.cf"))


@control("MSS-03", "TLS 1.2 suites from the MSSanté list (ECDHE-RSA-AES256/128-GCM)", "high", MSS + ("anssi-tls",),
         ("mssante", "anssi-tls"), "Keep tls_high_cipherlist to the MSSanté suites and the mandatory cipher grade `high`.")
def mss_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    yield from each(main_cf_files(ev), lambda p: judge(
        p.file.obj, postfix_problems(p, lambda v: postfix_cipher_problems(v, MSS_TLS12_SUITES, "the MSSanté list")),
        f"suites {', '.join(MSS_TLS12_SUITES)}", "main.cf"))


@control("MSS-04", "A server certificate from a Secret presented; peers verified against a trust bundle Secret", "high", MSS,
         ("mssante",), "Keep smtp_tls_security_level = secure (or verify) with the trust bundle; mount the server certificate Secret.")
def mss_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # Whether the certificate and the CAs are IGC-Santé's is in the Secrets, which the audit does not read
    # (PKI-03/04: the certificate inventory or the live host checks).
    def verified(v: dict[str, str]) -> list[str]:
        level = v.get("smtp_tls_security_level", "none")
        return [] if level in ("verify", "secure") else [f"outbound smtp_tls_security_level is {level}, peers not verified"]

    def relay(p: Parsed) -> Finding:
        level = p.data.get("smtp_tls_security_level", "none")
        chain = p.data.get("smtpd_tls_chain_files") or p.data.get("smtpd_tls_cert_file")
        problems = postfix_problems(p, verified)
        problems += [] if chain else ["no server certificate presented (smtpd_tls_chain_files)"]
        problems += [f"server certificate {why}" for path in configs.postfix_list(chain or "")
                     for ok, why in [ev.secret_backed(p.file.obj, path)] if not ok]
        ca = p.data.get("smtp_tls_CAfile")
        ok, why = ev.secret_backed(p.file.obj, ca) if ca else (False, "not set")
        problems += [] if ok else [f"peers verified against smtp_tls_CAfile {why}"]
        return judge(p.file.obj, problems, f"server certificate from a Secret; outbound {level} against the trust bundle Secret",
                     "main.cf")

    yield from each(main_cf_files(ev), relay)


def _map_path(value: str) -> str | None:
    """The file of a Postfix lookup table (`texthash:/path`, `hash:/path`, or a bare path)."""
    path = value.split(":", 1)[1] if ":" in value and not value.startswith("/") else value
    return path if path.startswith("/") else None


def _refreshed(ev: Evidence, p: Parsed, maps: list[str]) -> tuple[list[str], list[str]]:
    """(refresher containers, problems): every authorized-domain map Postfix reads lies on a volume that a container
    of the same pod, running the domain refresh script, writes."""
    users = ev.mounts_of(p.file.obj)
    if not users:
        return [], ["no workload runs this relay configuration"]
    found, problems = set(), []
    for w, c, _ in users:
        refreshers = []
        for other in w.containers(init=False):
            scripts = [n for n in (m.get("name") for m in other.get("volumeMounts") or [])
                       if "refresh-domains.sh" in ((ev.get("ConfigMap", w.namespace, str(dig(w.volume(str(n)) or {}, "configMap", "name")))
                                                    or {}).get("data") or {})]
            if other is not c and scripts and any("refresh-domains.sh" in a for a in argv(other)):
                refreshers.append(other)
        for path in maps:
            vol, _ = w.volume_at(c, path)
            writers = [str(r.get("name")) for r in refreshers if vol is not None and any(
                m.get("name") == vol.get("name") and not m.get("readOnly") for m in r.get("volumeMounts") or [])]
            if not writers:
                problems.append(f"{w.ref}: the authorized-domain map {path} is not rewritten by a domain-list refresher")
            found.update(f"{w.ref} container {n}" for n in writers)
    return sorted(found), problems


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
        relay_domains = configs.postfix_list(p.data.get("relay_domains", ""))
        maps = [path for v in relay_domains if (path := _map_path(v))]
        fixed = [v for v in relay_domains if _map_path(v) is None]
        if fixed:
            problems.append(f"relay_domains names fixed domains ({', '.join(fixed)}), not only the refreshed list")
        if "check_recipient_access" in rcpt and rcpt.index("check_recipient_access") + 1 < len(rcpt):
            maps += [path for path in [_map_path(rcpt[rcpt.index("check_recipient_access") + 1])] if path]
        if not maps:
            problems.append("no authorized-domain map (relay_domains, check_recipient_access) for a refresher to rewrite")
        refresh, stale = _refreshed(ev, p, maps)
        problems += stale
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
    # The purge period is the stack's annotation; no object of the kit purges mailboxes or sends the notice.
    def relay(p: Parsed) -> Iterator[Finding]:
        for w, _c, _ in ev.mounts_of(p.file.obj):
            raw = annotations(w.obj).get(ANN_MAILBOX_PURGE_DAYS)
            if raw is None or not raw.isdigit():
                yield failed(w.obj, f"no {ANN_MAILBOX_PURGE_DAYS} annotation declaring the purge period")
            elif int(raw) > 365:
                yield failed(w.obj, f"purge after {raw} days, more than 365")
            else:
                yield declared(w.obj, f"unused mailboxes purged after {raw} days and notified, by the stack's declaration "
                                      f"({ANN_MAILBOX_PURGE_DAYS}) only: no purge job or notice the audit can see; "
                                      "the auditor checks the purge procedure and its notices")

    yield from each(main_cf_files(ev), relay)
