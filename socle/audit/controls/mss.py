"""MSSanté relay (MSS-01..08), judged on the Postfix main.cf / master.cf the relay runs."""
from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Iterator

from socle.constants import ANN_MAILBOX_PURGE_DAYS, MSS_TLS12_SUITES

from .. import configs
from ..evidence import Evidence, annotations, argv, dig, meta
from ..model import Context, Control, Finding, declared, failed, judge, missing
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


# MSS-05: the ANS white list of the MSSanté trust space, and the kit's refresher program that reads it: SHA-256 of
# the program file (socle/components/templates/refresh_domains.py). tests/test_mssante_list.py runs that very program
# against a local list server and real Postfix: it keeps the previous maps on any download, TLS, parse or
# plausibility error. Another program (the former grep script, a local edit) is not judged fail-closed.
WHITE_LIST_URL = "https://espacedeconfiance.mssante.fr/listeblanchemssante.xml"
REFRESHER_SHA256 = "964cb31d06d4bca1ea20f0000ff6ad2797e1b56e6bef063f65c7aa509c25d972"
REFRESHER_MAPS = ("recipient_access", "relay_domains")  # the maps the program writes
# Postfix daemons notice a replaced indexed file and restart; a texthash (or plain file) table is read once per
# process, so a refreshed list would go unseen until a restart.
INDEXED = ("hash", "btree", "lmdb", "cdb", "dbm", "sdbm")
ANN_MSSANTE_MODE = "socle.esante.fr/mssante-mode"


def _secret_at(w, c: dict, path: str) -> str | None:
    vol, _ = w.volume_at(c, path)
    return dig(vol or {}, "secret", "secretName")


def _refresher(ev: Evidence, p: Parsed, tables: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(refresher containers, problems, missing evidence): a container beside Postfix runs the kit's white-list parser,
    whose configuration names the ANS white list, the trust bundle Secret Postfix verifies its peers with, and the
    directory of the indexed maps Postfix reads, on a volume it writes."""
    maps = [str(_map_path(t)) for t in tables]
    users = ev.mounts_of(p.file.obj)
    if not users:
        return [], ["no workload runs this relay configuration"], []
    found, problems, unknown = [], [], []
    ca_secret_postfix = None
    for w, c, _ in users:
        ca = p.data.get("smtp_tls_CAfile")
        ca_secret_postfix = _secret_at(w, c, ca) if ca else None
        candidates = [o for o in w.containers(init=False) if o is not c and len(argv(o)) >= 3
                      and posixpath.basename(argv(o)[0]).startswith("python")]
        runs = []
        for o in candidates:
            program, why = ev.resolve(w, o, argv(o)[1])
            conf_file, why2 = ev.resolve(w, o, argv(o)[2])
            if program is None or conf_file is None:
                unknown.append(f"{w.ref} container {o.get('name')}: {why or why2}")
                continue
            runs.append((o, program, conf_file))
        if not runs:
            if not unknown:
                problems.append(f"{w.ref}: no container beside Postfix refreshes the domain list (the white-list parser)")
            continue
        for o, program, conf_file in runs:
            name = f"{w.ref} container {o.get('name')}"
            digest = hashlib.sha256(program.text.encode()).hexdigest()
            if digest != REFRESHER_SHA256:
                problems.append(f"{name}: the refresher program is not the kit's fail-closed white-list parser "
                                f"(sha256 {digest[:16]}…)")
                continue
            try:
                conf = json.loads(conf_file.text)
            except (ValueError, RecursionError):
                problems.append(f"{name}: its configuration {conf_file.key} is not JSON")
                continue
            if not isinstance(conf, dict):
                problems.append(f"{name}: its configuration {conf_file.key} is not an object")
                continue
            if conf.get("url") != WHITE_LIST_URL:
                problems.append(f"{name}: the domain list {str(conf.get('url'))[:120]} is not the ANS white list "
                                f"of the trust space ({WHITE_LIST_URL})")
            ca_file = str(conf.get("ca_file") or "")
            secret = _secret_at(w, o, ca_file) if ca_file.startswith("/") else None
            if secret is None:
                problems.append(f"{name}: the list's server is verified against {ca_file or 'nothing'}, which is not "
                                "on a Secret volume: not the IGC-Santé trust bundle")
            elif secret != ca_secret_postfix:
                problems.append(f"{name}: the list's server is verified against Secret {secret}, not the trust bundle "
                                f"Postfix verifies its peers with ({ca_secret_postfix or 'none'})")
            maps_dir = str(conf.get("maps_dir") or "")
            kinds = sorted({t.split(":", 1)[0] for t in tables if ":" in t} - {str(conf.get("map_type"))})
            if kinds:
                problems.append(f"{name}: it writes {conf.get('map_type')} maps, Postfix reads {', '.join(kinds)}")
            for path in maps:
                vol, rest = w.volume_at(c, path)
                target = posixpath.join(maps_dir, posixpath.basename(path))
                mount = next((m for m in o.get("volumeMounts") or [] if vol is not None and m.get("name") == vol.get("name")
                              and not m.get("readOnly")), None)
                theirs = w.volume_at(o, target) if mount else (None, "")
                if (posixpath.basename(path) not in REFRESHER_MAPS or mount is None or theirs[0] is not vol
                        or theirs[1] != rest):
                    problems.append(f"{name}: the authorized-domain map {path} is not one this refresher rewrites")
            found.append(name)
    return found, problems, unknown


def _external_problems(v: dict[str, str]) -> list[str]:
    """Mode external-operator: every message to the operator's relay, never to a recipient domain's MX."""
    out = [] if v.get("relayhost", "").strip() else ["relayhost not set: the relay delivers directly to each domain's MX"]
    for key in ("transport_maps", "sender_dependent_relayhost_maps", "sender_dependent_default_transport_maps"):
        if v.get(key, "").strip():
            out.append(f"{key} set: it may route domains around the operator's relay")
    for key in ("relay_transport", "default_transport"):
        if ":" in v.get(key, ""):
            out.append(f"{key} {v[key]} names its own next hop, not the operator's relay")
    return out


@control("MSS-05", "Mail exchanged only with the domains of the ANS white list, refreshed automatically and fail-closed; "
         "in external-operator mode only through the operator's relay", "critical", MSS, ("mssante",),
         "Keep relay.domain_list_url on the ANS white list and the domain-refresh container running the kit's program; "
         "without the ANS operator contract set relay.mode external-operator and relay.next_hop.")
def mss_05(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def relay(p: Parsed) -> Finding:
        problems = [] if p.data.get("relay_domains") else ["relay_domains not set"]
        if p.data.get("mynetworks", "").strip() not in ("", "127.0.0.0/8", "127.0.0.0/8 [::1]/128"):
            problems.append(f"mynetworks {p.data.get('mynetworks')} lets networks relay without checks")
        rcpt = configs.postfix_list(p.data.get("smtpd_recipient_restrictions", ""))
        if not rcpt or rcpt[-1] != "reject" or "check_recipient_access" not in rcpt:
            problems.append("smtpd_recipient_restrictions do not end with `reject` after the authorized-domain check")
        elif any(r.startswith("permit") for r in rcpt[: rcpt.index("check_recipient_access")]):
            problems.append("a permit comes before the authorized-domain check")
        parents = configs.postfix_list(p.data.get("parent_domain_matches_subdomains",
                                                  "relay_domains smtpd_access_maps"))  # Postfix's default has both
        widened = [k for k in ("relay_domains", "smtpd_access_maps") if k in parents]
        if widened:
            problems.append(f"parent_domain_matches_subdomains includes {', '.join(widened)}: a listed domain also "
                            "authorizes every subdomain")
        tables = configs.postfix_list(p.data.get("relay_domains", ""))
        fixed = [v for v in tables if _map_path(v) is None]
        if fixed:
            problems.append(f"relay_domains names fixed domains ({', '.join(fixed)}), not only the refreshed list")
        if "check_recipient_access" in rcpt and rcpt.index("check_recipient_access") + 1 < len(rcpt):
            tables.append(rcpt[rcpt.index("check_recipient_access") + 1])
        tables = [t for t in tables if _map_path(t)]
        if not tables:
            problems.append("no authorized-domain map (relay_domains, check_recipient_access) for a refresher to rewrite")
        for t in tables:
            kind = t.split(":", 1)[0] if ":" in t and not t.startswith("/") else "file"
            if kind not in INDEXED:
                problems.append(f"{t} is read once per Postfix process ({kind}): a refreshed list is not seen "
                                "until Postfix restarts")
        refreshers, stale, unknown = _refresher(ev, p, tables)
        problems += stale
        mode = annotations(p.file.obj).get(ANN_MSSANTE_MODE, "operator")
        if mode == "external-operator":
            problems += [f"external-operator: {x}" for x in postfix_problems(p, _external_problems)]
        if unknown and not problems:
            return missing(p.file.obj, "the domain-list refresher cannot be judged: " + "; ".join(unknown), "main.cf")
        delivery = ("every message through the operator's relay " + p.data.get("relayhost", "")
                    if mode == "external-operator" else "direct delivery to the listed domains (mode operator: the ANS "
                    "operator contract is the stack's declaration, not judged here)")
        return judge(p.file.obj, problems, f"only the domains of the ANS white list, refreshed fail-closed by "
                     f"{', '.join(refreshers)} against the trust bundle; {delivery}", "main.cf")

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
