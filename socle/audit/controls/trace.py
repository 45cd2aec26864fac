"""Traceability: sources wired to the audit log, attributable records, sealed storage, mutual TLS (TRACE-01..05)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Iterator

from .. import configs
from ..evidence import BLOCK_LABEL, Evidence, Loaded, Workload, argv, dig, env_value
from ..model import Context, Control, Finding, ObjRef, failed, judge, missing
from . import registrar
from ._common import Parsed, aggregator_files, api_servers, each, forwarder_files, hapi_files, nginx_files, retention

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "TRACE")
TRACE = ("pgssi-s", "hds")
SOURCE_BLOCKS = ("gateway", "fhir", "relay")


_LOCAL = ("127.0.0.1", "localhost", "0.0.0.0", "::1", "::", "")


def _by_workload(loaded: list[Loaded]) -> dict[int, list[Loaded]]:
    out: dict[int, list[Loaded]] = {}
    for x in loaded:
        out.setdefault(id(x.workload), []).append(x)
    return out


def _forwarder_ports(forwarders: list[Loaded]) -> set[str] | None:
    """The local syslog ports (imudp/imtcp) of the log forwarders running in a pod; None: no forwarder runs there."""
    ports: set[str] | None = None
    for loaded in forwarders:
        if loaded.file is None or "omfwd" not in loaded.file.text:
            continue
        ports = ports if ports is not None else set()
        try:
            statements = configs.rsyslog(loaded.file.text)
        except configs.ConfigError:
            continue
        ports |= {st.params.get("port", "514") for st in statements if st.type == "input"
                  and st.params.get("type") in ("imudp", "imtcp") and st.params.get("address", "") in _LOCAL}
    return ports


def _syslog_port(target: str) -> str | None:
    """The local port of an NGINX `syslog:server=ADDR[:PORT],...` log target (None: not to this pod)."""
    params = dict(kv.split("=", 1) for kv in target[len("syslog:"):].split(",") if "=" in kv)
    server = params.get("server", "")
    host, _, port = server.rpartition(":") if server.count(":") == 1 or server.startswith("[") else (server, "", "")
    return (port or "514") if host.strip("[]") in _LOCAL else None


def _gateway_records(p: Parsed, ports: set[str]) -> list[str]:
    """Every proxied location of every API server logs its accesses to a local syslog port the forwarder reads."""
    http = p.data.first("http")
    problems = []
    for s in api_servers(p.data):
        for loc in [loc for loc in s.all("location") if loc.first("proxy_pass") is not None and loc.first("internal") is None]:
            logs = loc.all("access_log") or s.all("access_log") or (http.all("access_log") if http else [])
            sent = [d for d in logs if d.args and d.args[0].startswith("syslog:") and _syslog_port(d.args[0]) in ports]
            if not sent:
                problems.append(f"{s.value('server_name')} location {' '.join(loc.args)}: access log not sent to the log "
                                f"forwarder (no access_log syslog:server=127.0.0.1:PORT on port {', '.join(sorted(ports)) or 'none'})")
    return problems


def _fhir_records(ev: Evidence, w: Workload, c: dict, p: Parsed, ports: set[str]) -> list[str]:
    """The FHIR server's access logger exists and logback sends it to a local syslog port the forwarder reads."""
    logger = str((((p.data.get("hapi") or {}).get("fhir") or {}).get("logger") or {}).get("name") or "")
    if not logger:
        return ["the FHIR server writes no access log (no hapi.fhir.logger)"]
    path = env_value(c, "LOGGING_CONFIG")[1]
    if not path:
        return [f"the FHIR access log {logger} stays with the image's logging (no LOGGING_CONFIG the evidence holds)"]
    file, why = ev.resolve(w, c, path)
    if file is None:
        return [f"the FHIR logging configuration cannot be read: {why}"]
    if "<!DOCTYPE" in file.text or "<!ENTITY" in file.text:
        return [f"{file.key}: a document type or entity declaration, not read"]
    try:
        root = ET.fromstring(file.text)
    except ET.ParseError as exc:
        return [f"{file.key} does not parse: {exc}"]
    appenders = {a.get("name"): a for a in root.iter("appender")}
    for lg in root.iter("logger"):
        if lg.get("name") != logger or (lg.get("level") or "INFO").upper() in ("OFF", "ERROR", "WARN"):
            continue
        for ref in lg.iter("appender-ref"):
            a = appenders.get(ref.get("ref"))
            if a is not None and (a.get("class") or "").endswith("SyslogAppender") \
                    and (a.findtext("syslogHost") or "").strip() in _LOCAL and (a.findtext("port") or "514").strip() in ports:
                return []
    return [f"the FHIR access log {logger} is not sent to the log forwarder ({file.key}: no syslog appender on port "
            f"{', '.join(sorted(ports)) or 'none'})"]


@control("TRACE-01", "Accesses through the gateway and the FHIR server recorded in the audit log; records kept ≥ 183 days "
         "(365 by default)", "critical", TRACE, ("anssi-logs", "hds"),
         "Wire every workload to the audit log (log-forwarder sidecar); set audit.retention_days ≥ 183.")
def trace_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # What the evidence shows: each source workload runs a forwarder to the audit log, and the gateway's and the FHIR
    # server's access logs are sent to it. Accesses outside these services (a shell in a pod, the database console)
    # are not in the kit's objects.
    gateways = {(p.file.ref, p.file.key): p for p in nginx_files(ev) if isinstance(p, Parsed)}
    fhirs = {(p.file.ref, p.file.key): p for p in hapi_files(ev) if isinstance(p, Parsed)}
    blocks = {name: ev.block_of(name) for name in ev.kit_namespaces}
    for name, block in sorted(ev.missing_namespaces.items()):
        if BLOCK_LABEL.get(block, block) in SOURCE_BLOCKS:
            yield missing(ObjRef("Namespace", "", name), f"namespace {name} (block {block}) is not in the evidence: "
                                                        "whether its workloads record accesses cannot be judged")
    forwarders, programs = _by_workload(ev.loaded("rsyslogd")), _by_workload(ev.loaded("nginx") + ev.loaded("hapi"))
    for w in ev.workloads():
        if blocks.get(w.namespace) not in SOURCE_BLOCKS:
            continue
        ports = _forwarder_ports(forwarders.get(id(w), []))
        unread = [x.why for x in forwarders.get(id(w), []) if x.file is None]
        if ports is None and unread:
            yield missing(w.obj, f"log forwarder configuration {unread[0]}")
            continue
        if ports is None:
            yield failed(w.obj, "no log forwarder to the audit log runs in the pod")
            continue
        problems = []
        for loaded in programs.get(id(w), []):
            if loaded.file is None:
                continue
            if (gw := gateways.get((loaded.file.ref, loaded.file.key))) is not None:
                problems += _gateway_records(gw, ports)
            if (fhir := fhirs.get((loaded.file.ref, loaded.file.key))) is not None:
                problems += _fhir_records(ev, w, loaded.container, fhir, ports)
        yield judge(w.obj, problems, "a log forwarder to the audit log runs in the pod"
                    + (" and receives the access log" if programs.get(id(w)) else ""))
    if not any(True for _ in aggregator_files(ev)):
        for name, ns in ev.kit_namespaces.items():
            if blocks.get(name) == "auditlog":
                yield failed(ns, "no audit log aggregator configuration in the audit namespace")
    yield from retention(ev)


@control("TRACE-02", "Each recorded action is attributable to one person or system", "high", TRACE, ("anssi-logs",),
         "Keep the client identity (certificate subject, user) in every access log format and the peer in the aggregator's records.")
def trace_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def gateway(p: Parsed) -> Finding:
        formats = {d.args[0]: " ".join(d.args[1:]) for d in p.data.walk() if d.name == "log_format" and d.args}
        used = sorted({d.args[1] for d in p.data.walk() if d.name == "access_log" and len(d.args) > 1})
        problems = [f"log_format {name} has no client identity" for name in used
                    if not re.search(r"\$(ssl_client_s_dn|remote_user|\w*_user)\b", formats.get(name, ""))]
        return judge(p.file.obj, problems or ([] if used else ["no access_log with a named format"]),
                     "access log carries the client certificate subject and user", "nginx.conf")

    def hapi(p: Parsed) -> Finding:
        fmt = str((((p.data.get("hapi") or {}).get("fhir") or {}).get("logger") or {}).get("format", ""))
        return judge(p.file.obj, [] if re.search(r"client[-_]s[-_]dn|remoteAddr|user", fmt, re.I) else ["FHIR access log has no caller identity"],
                     "FHIR access log carries the caller's certificate subject", "application.yaml")

    yield from each(nginx_files(ev), gateway)
    yield from each(hapi_files(ev), hapi)
    yield from each(aggregator_files(ev), lambda p: judge(
        p.file.obj, [] if re.search(r'name="fromhost(-ip)?"', p.file.text) else ["records do not keep the sending peer"],
        "records keep the authenticated peer", "rsyslog.conf"))


manual("TRACE-03", "Records follow FHIR AuditEvent (IHE BALP) where the source is FHIR", "medium", TRACE + ("doctrine",),
       ("socle",), "Enable a BALP AuditEvent interceptor in the FHIR server.",
       "The HAPI FHIR starter has no configuration switch for BALP AuditEvents: record how AuditEvents are produced "
       "(interceptor, version) and a sample.")


@control("TRACE-04", "Logs centralised and tamper-evident (append-only files sealed by a keyed hash chain)", "high", TRACE,
         ("anssi-logs", "socle"), "Keep the aggregator writing read-only daily files on its volume and the seal container running, "
         "with the seal key Secret mounted in the seal container only.")
def trace_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def aggregator(p: Parsed) -> Finding:
        files = [st for st in p.data if st.type == "action" and st.params.get("type") == "omfile"]
        problems = [] if files else ["no file output"]
        problems += [f"omfile fileCreateMode {mode} lets others write or read" for st in files
                     if not re.match(r"^0?[0-7][0-4]0$", mode := st.params.get("filecreatemode", "0644"))]
        users = ev.mounts_of(p.file.obj)
        if not users:
            problems.append("no workload runs this aggregator")
        for w, _c, _ in users:
            seals = [c for c in w.containers() if _seal_script(ev, w, c) is not None]
            if not seals:
                problems.append(f"{w.ref} has no seal container")
            else:
                problems += [f"{w.ref} container {c.get('name')} mounts seal.sh but does not run it: nothing is sealed"
                             for c in seals if not any("seal.sh" in a for a in argv(c))]
                problems += _seal_key_problems(ev, w)
                problems += _seal_state_problems(ev, w)
            if w.kind == "StatefulSet" and not dig(w.obj, "spec", "volumeClaimTemplates"):
                problems.append(f"{w.ref} keeps records on no persistent volume")
        return judge(p.file.obj, problems, "append-only daily files on a persistent volume, sealed into an HMAC-SHA256 chain "
                     "whose key only the seal container mounts; the seal's last link kept on a volume of its own",
                     "rsyslog.conf")

    yield from each(aggregator_files(ev), aggregator)


def _seal_script(ev: Evidence, w, container: dict) -> str | None:
    """The seal script of a ConfigMap the container mounts, if any."""
    for m in container.get("volumeMounts") or []:
        cm = dig(w.volume(m.get("name")) or {}, "configMap", "name")
        text = ((ev.get("ConfigMap", w.namespace, cm) or {}).get("data") or {}).get("seal.sh") if cm else None
        if isinstance(text, str):
            return text
    return None


_KEY_FILE = re.compile(r"""^KEY_FILE=(['"]?)([^'"\s]+)\1\s*$""", re.M)
_STATE_DIR = re.compile(r"""^STATE_DIR=(['"]?)([^'"\s]+)\1\s*$""", re.M)


def _seal_state_problems(ev: Evidence, w) -> list[str]:
    """TRACE-04: the seal remembers its last link on a persistent volume (a claim), so that the truncation of the
    chain is still detected after the pod restarts; an emptyDir forgets it with the pod."""
    problems = []
    for c in w.containers():
        script = _seal_script(ev, w, c)
        if script is None:
            continue
        m = _STATE_DIR.search(script)
        if not m:
            problems.append(f"{w.ref} seal.sh keeps no memory of its last link (STATE_DIR): a truncated chain goes unnoticed")
            continue
        name = next((mt.get("name") for mt in sorted(c.get("volumeMounts") or [], key=lambda x: -len(str(x.get("mountPath"))))
                     if m.group(2) == mt.get("mountPath") or m.group(2).startswith(str(mt.get("mountPath")).rstrip("/") + "/")), None)
        claims = {(t.get("metadata") or {}).get("name") for t in dig(w.obj, "spec", "volumeClaimTemplates", default=[]) or []}
        vol = w.volume(name) if name else None
        if name not in claims and not dig(vol or {}, "persistentVolumeClaim", "claimName"):
            problems.append(f"{w.ref} container {c.get('name')} keeps the seal's last link ({m.group(2)}) on no persistent "
                            "volume: a pod restart forgets it, and a truncated chain goes unnoticed")
    return problems


def _secrets_of(w, container: dict) -> set[str]:
    """Every Secret the container can read: secret and projected volumes it mounts, env and envFrom."""
    names: set[str] = set()
    for m in container.get("volumeMounts") or []:
        vol = w.volume(m.get("name")) or {}
        names.add(dig(vol, "secret", "secretName"))
        names.update(dig(s, "secret", "name") for s in dig(vol, "projected", "sources", default=None) or [] if isinstance(s, dict))
    for e in container.get("env") or []:
        names.add(dig(e, "valueFrom", "secretKeyRef", "name"))
    for e in container.get("envFrom") or []:
        names.add(dig(e, "secretRef", "name"))
    return {n for n in names if isinstance(n, str) and n}


def _seal_key_problems(ev: Evidence, w) -> list[str]:
    """TRACE-04: the chain is keyed (seal.sh reads KEY_FILE) with a Secret that the seal container mounts and no
    other container of the pod can read — the rsyslog container that writes the files must not be able to forge links."""
    problems: list[str] = []
    keys: set[str] = set()
    seals = [c for c in w.containers() if _seal_script(ev, w, c) is not None]
    for c in seals:
        m = _KEY_FILE.search(_seal_script(ev, w, c) or "")
        if not m:
            problems.append(f"{w.ref} seal.sh has no key (KEY_FILE): anyone who can write the volume can rebuild the chain")
            continue
        vol, _ = w.volume_at(c, m.group(2))
        secret = dig(vol or {}, "secret", "secretName")
        if not secret:
            problems.append(f"{w.ref} container {c.get('name')} does not mount the seal key {m.group(2)} from a Secret")
        else:
            keys.add(secret)
    for c in w.containers():
        if any(c is s for s in seals):
            continue
        for secret in sorted(_secrets_of(w, c) & keys):
            problems.append(f"{w.ref} container {c.get('name')} can read the seal key Secret {secret}: the writer could forge links")
    if keys and w.pod_spec.get("shareProcessNamespace") is True:
        problems.append(f"{w.ref} shares its process namespace: every container can read the seal's key through /proc")
    return problems


@control("TRACE-05", "Log transport to the aggregator is TLS with mutual authentication", "high", TRACE, ("anssi-logs", "socle"),
         "Keep streamDriver mode 1 with x509 authentication on the aggregator input and on every forwarder.")
def trace_05(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def aggregator(p: Parsed) -> Finding:
        modules = [st for st in p.data if st.type == "module"]
        tls = [st for st in modules if st.params.get("load") == "imtcp"]
        problems = [] if tls else ["no TLS input"]
        for st in tls:
            if st.params.get("streamdriver.mode") != "1":
                problems.append("imtcp streamDriver.mode is not 1 (TLS)")
            if st.params.get("streamdriver.authmode") not in ("x509/certvalid", "x509/name"):
                problems.append(f"imtcp authMode {st.params.get('streamdriver.authmode', 'anon')} does not authenticate senders")
        if any(st.params.get("load") in ("imudp", "imptcp") for st in modules):
            problems.append("a cleartext input (imudp/imptcp) is loaded")
        return judge(p.file.obj, problems, "TLS input requiring certificates from the internal CA", "rsyslog.conf")

    def forwarder(p: Parsed) -> Finding:
        problems = []
        defaults = {k: v for st in p.data if st.type == "global" for k, v in st.params.items()}
        for st in p.data:
            if st.type == "action" and st.params.get("type") == "omfwd":
                if st.params.get("streamdrivermode") != "1":
                    problems.append("omfwd without TLS (streamDriverMode 1)")
                if st.params.get("streamdriverauthmode") not in ("x509/name", "x509/certvalid"):
                    problems.append(f"omfwd authMode {st.params.get('streamdriverauthmode', 'anon')} does not check the aggregator")
                for what in ("cert", "key"):
                    path = st.params.get(f"streamdriver.{what}file") or defaults.get(f"defaultnetstreamdriver{what}file")
                    ok, why = ev.secret_backed(p.file.obj, path) if path else (False, "not set")
                    if not ok:
                        problems.append(f"omfwd presents no client certificate: {what} file {why}")
        return judge(p.file.obj, problems, "forwarded over TLS, aggregator's certificate checked, client certificate presented", "rsyslog.conf")

    yield from each(aggregator_files(ev), aggregator)
    yield from each(forwarder_files(ev), forwarder)
