"""Helpers shared by the family modules: reading the kit's configuration files once per audit."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlparse

from socle.constants import ANN_ROUTES, RETENTION_CNIL_CEILING_DAYS, RETENTION_FLOOR_DAYS

from .. import configs
from ..evidence import ConfigFile, Evidence, Workload, annotations, dig, meta, running
from ..model import Finding, ObjRef, failed, judge, missing


@dataclass
class Parsed:
    file: ConfigFile
    data: Any


def parsed(ev: Evidence, key: str, parser, contains: str | None = None,
           program: str | None = None, blocks: tuple[str, ...] = ()) -> Iterator[Parsed | Finding]:
    """The configuration files named `key`, parsed once per audit.

    With `program`, the files are first those the containers running it actually load — their command line,
    arguments or environment name the file, resolved through their volumeMounts to a ConfigMap key, whatever that
    key is called; a file that resolves to nothing is missing evidence of the workload. ConfigMaps carrying `key`
    that no container loads are judged too (a stray configuration is still the kit's). A file that does not parse,
    or parses to nothing the program could run, is missing evidence of every control that reads it; so is the file
    of a namespace of the stack's inventory (`blocks`: where the program runs) absent from the evidence."""
    cache_key = (key, contains, parser, program)
    if cache_key not in ev.parsed_files:
        results: list[Parsed | Finding] = []
        # The same text is parsed once per audit (namespaces deployed from one blueprint carry identical files);
        # the parsed value is shared, and controls only read it.
        texts: dict[tuple[Any, str], Any] = ev.parsed_files.setdefault(("texts",), {})  # type: ignore[assignment]
        for ns, block in sorted(ev.missing_namespaces.items()):
            if block in blocks:
                results.append(missing(ObjRef("Namespace", "", ns), f"namespace {ns} (block {block}), where {program or key} "
                                       f"runs, is not in the evidence: its {key} cannot be judged", key))
        files: list[ConfigFile] = []
        taken: set[tuple[Any, str]] = set()
        reported: set[tuple[Any, str]] = set()
        for loaded in ev.loaded(program) if program else ():
            if loaded.file is None:
                if (loaded.workload.ref, loaded.why) not in reported:
                    reported.add((loaded.workload.ref, loaded.why))
                    results.append(missing(loaded.workload.obj, f"configuration {loaded.why}", key))
                continue
            ident = (loaded.file.ref, loaded.file.key)
            if ident in taken:
                continue
            taken.add(ident)
            if contains is None or contains in loaded.file.text:
                files.append(loaded.file)
        files += [f for f in ev.config_files(key, contains) if (f.ref, f.key) not in taken]
        for f in files:
            # NGINX includes the other files of its ConfigMap: they are part of what is parsed.
            siblings = dict(sorted((f.obj.get("data") or {}).items())) if parser is _nginx else None
            text_key = (parser, f.text, json.dumps(siblings) if siblings else None)
            seen = texts.get(text_key)
            if seen is None:
                try:
                    seen = texts[text_key] = (True, parser(f.text, siblings) if siblings else parser(f.text))
                except configs.ConfigError as exc:
                    seen = texts[text_key] = (False, str(exc))
            ok, data = seen
            results.append(Parsed(f, data) if ok else
                           missing(f.obj, f"{f.key} cannot be judged: it does not parse as {key} ({data})", key))
        ev.parsed_files[cache_key] = results
    return iter(ev.parsed_files[cache_key])


def _nginx(text: str, siblings: dict[str, str] | None = None) -> configs.Directive:
    root = configs.nginx(text, siblings)
    if root.first("http") is None:
        raise configs.ConfigError("no http block: not a configuration NGINX would serve anything from")
    return root


def _postfix_main(text: str) -> dict:
    values = configs.postfix_main(text)
    if not values:
        raise configs.ConfigError("no parameter set")
    return values


def _oauth2(text: str) -> dict:
    values = configs.toml(text)
    if not isinstance(values, dict) or not values:
        raise configs.ConfigError("no setting")
    return values


def _rsyslog(text: str) -> list:
    statements = configs.rsyslog(text)
    if not statements:
        raise configs.ConfigError("no statement")
    return statements


Judge = Callable[["Parsed"], "Finding | Iterable[Finding]"]


def each(files: Iterable[Parsed | Finding], fn: Judge) -> Iterator[Finding]:
    """Judge every parsed file with `fn`; a file that did not parse is already a failure."""
    for p in files:
        if isinstance(p, Finding):
            yield p
            continue
        out = fn(p)
        if isinstance(out, Finding):
            yield out
        else:
            yield from out


def nginx_files(ev: Evidence) -> Iterator[Parsed | Finding]:
    return parsed(ev, "nginx.conf", _nginx, program="nginx", blocks=("gateway",))


def main_cf_files(ev: Evidence) -> Iterator[Parsed | Finding]:
    return parsed(ev, "main.cf", _postfix_main, program="postfix", blocks=("mss",))


def oauth2_files(ev: Evidence) -> Iterator[Parsed | Finding]:
    return parsed(ev, "oauth2-proxy.cfg", _oauth2, program="oauth2-proxy", blocks=("gateway",))


def _yaml_mapping(text: str) -> dict:
    import yaml

    from ..sources import YAMLReadError, load_yaml_documents

    try:  # as yaml.safe_load, with libyaml and bounded nesting
        docs = load_yaml_documents(text)
    except (yaml.YAMLError, YAMLReadError) as exc:
        raise configs.ConfigError(str(exc)) from None
    if len(docs) > 1:
        raise configs.ConfigError("expected a single document, found several")
    doc = docs[0] if docs else None
    if not isinstance(doc, dict):
        raise configs.ConfigError("not a mapping")
    return doc


def hapi_files(ev: Evidence) -> Iterator[Parsed | Finding]:
    return (p for p in parsed(ev, "application.yaml", _yaml_mapping, program="hapi", blocks=("fhir",))
            if not isinstance(p, Parsed) or "hapi" in p.data)


def aggregator_files(ev: Evidence) -> Iterator[Parsed | Finding]:
    return parsed(ev, "rsyslog.conf", _rsyslog, contains="imtcp", program="rsyslogd",
                  blocks=("audit",))


def forwarder_files(ev: Evidence) -> Iterator[Parsed | Finding]:
    return parsed(ev, "rsyslog.conf", _rsyslog, contains="omfwd", program="rsyslogd",
                  blocks=("gateway", "fhir", "mss"))


def routes(cm: dict) -> list[dict] | None:
    """The route index the gateway ConfigMap declares (annotation), or None when it has none."""
    raw = annotations(cm).get(ANN_ROUTES)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return []
    # An index the controls cannot read as a list of routes (an entry not an object, a host not a string) is
    # read as no index at all: every server then fails for its missing route entry.
    if not isinstance(value, list) or not all(isinstance(r, dict) and isinstance(r.get("host", ""), str) for r in value):
        return []
    return value


def api_servers(root: configs.Directive) -> list[configs.Directive]:
    """TLS virtual servers that serve an API: a real server_name and no handshake rejection."""
    out = []
    for s in configs.nginx_servers(root):
        if not configs.listens_tls(s) or s.value("ssl_reject_handshake") == "on":
            continue
        if any(n not in ("_", "") for n in configs.server_names(s)):
            out.append(s)
    return out


def proxy_locations(server: configs.Directive) -> list[configs.Directive]:
    """Locations that pass requests to a backend (internal auth sub-requests excluded)."""
    return [loc for loc in server.all("location") if loc.first("proxy_pass") is not None and loc.first("internal") is None]


def location_for(server: configs.Directive, uri: str) -> configs.Directive | None:
    """The location NGINX chooses for a URI: exact match, else the longest prefix unless `^~` marks it, first
    matching regex in order, else that prefix (nested locations not followed)."""
    best: configs.Directive | None = None
    for loc in server.all("location"):
        args = loc.args
        if args[:1] == ["="]:
            if args[1:2] == [uri]:
                return loc
        elif len(args) == 1 or args[:1] == ["^~"]:
            prefix = args[-1]
            if uri.startswith(prefix) and (best is None or len(prefix) > len(best.args[-1])):
                best = loc
    if best is not None and best.args[:1] == ["^~"]:
        return best
    for loc in server.all("location"):
        if len(loc.args) == 2 and loc.args[0] in ("~", "~*"):
            try:
                if re.search(loc.args[1], uri, re.I if loc.args[0] == "~*" else 0):
                    return loc
            except re.error:
                continue
    return best


def oauth2_services(ev: Evidence) -> set[tuple[str, str]]:
    """(name, namespace) of the kit's Services whose selector reaches the pods of a workload running oauth2-proxy."""
    cache = ev.parsed_files.setdefault(("oauth2-services",), [])  # type: ignore[arg-type]
    if not cache:
        pods: dict[str, list[dict]] = {}  # namespace -> pod labels of the oauth2-proxy workloads (one pass)
        for w in ev.workloads():
            if any(running(c) == "oauth2-proxy" for c in w.containers(init=False)):
                pods.setdefault(w.namespace, []).append(w.pod_meta.get("labels") or {})
        out = set()
        for svc in ev.scoped("Service"):
            selector = dig(svc, "spec", "selector") or {}
            m = meta(svc)
            if selector and any(selector.items() <= labels.items() for labels in pods.get(m.get("namespace", ""), ())):
                out.add((m.get("name", ""), m.get("namespace", "")))
        cache.append(out)
    return cache[0]


def proxied_service(loc: configs.Directive | None, namespace: str) -> tuple[str, str] | None:
    """The in-cluster Service (name, namespace) a location's proxy_pass sends to, when its URL names one."""
    url = loc.value("proxy_pass") if loc is not None else None
    if not url or "$" in url:
        return None
    host = urlparse(url).hostname or ""
    parts = host.split(".")
    if len(parts) > 2 and parts[2] != "svc":
        return None  # a host outside the cluster
    return parts[0], parts[1] if len(parts) > 1 else namespace


def tls_directive(server: configs.Directive, http: configs.Directive | None, name: str) -> str | None:
    """A directive's effective value for a server (server level first, then http level)."""
    value = server.value(name)
    if value is None and http is not None:
        value = http.value(name)
    return value


def workloads_in(ev: Evidence, namespace: str) -> list[Workload]:
    return ev.workloads_in(namespace)


def name_of(obj: dict) -> str:
    return meta(obj).get("name", "")


def openssl_list(value: str) -> list[str]:
    return [v for v in value.replace(",", ":").replace(" ", ":").split(":") if v]


def _why_not(suite: str) -> str:
    """What a TLS 1.2 suite outside an allow-list lacks: forward-secret ECDHE key exchange, an AEAD cipher."""
    lacks = [msg for bad, msg in ((not suite.startswith("ECDHE-"), "no ECDHE key exchange"),
                                  (not any(a in suite for a in ("GCM", "CHACHA20", "CCM")), "not AEAD")) if bad]
    return f"{suite} ({', '.join(lacks)})" if lacks else suite


def cipher_problems(value: str | None, allowed: tuple[str, ...], what: str, listed: str = "the allowed list") -> list[str]:
    if not value:
        return [f"{what}: no cipher list set (the library default includes non-AEAD suites)"]
    extra = [_why_not(c) for c in openssl_list(value) if c not in allowed]
    return [f"{what}: {', '.join(extra)} not in {listed}"] if extra else []


# --- Postfix rules shared by TLS-01/02, MSS-02/03 and the host checks ----------------------------------

OLD_TLS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"})
POSTFIX_PROTOCOL_KEYS = ("smtpd_tls_protocols", "smtpd_tls_mandatory_protocols", "smtp_tls_protocols",
                         "smtp_tls_mandatory_protocols")


def postfix_protocol_problems(values: dict[str, str]) -> list[str]:
    """Protocol settings that leave SSL, TLS 1.0 or 1.1 enabled (Postfix's default for each is `>=TLSv1`)."""
    out = []
    for key in POSTFIX_PROTOCOL_KEYS:
        old = sorted(configs.postfix_protocols(values.get(key, ">=TLSv1")) & OLD_TLS)
        if old:
            out.append(f"{key} allows {', '.join(old)}")
    return out


def postfix_tls13_problems(values: dict[str, str]) -> list[str]:
    """Protocol settings that leave TLS 1.3 out (TLS-01: 1.3 preferred, hence offered)."""
    return [f"{key} leaves TLS 1.3 out" for key in POSTFIX_PROTOCOL_KEYS
            if "TLSv1.3" not in configs.postfix_protocols(values.get(key, ">=TLSv1"))]


def postfix_cipher_problems(values: dict[str, str], allowed: tuple[str, ...], listed: str = "the allowed list") -> list[str]:
    """Mandatory cipher grades other than `high`, and suites of the `high` list outside `allowed`."""
    out = [f"{side}_tls_mandatory_ciphers is {values.get(f'{side}_tls_mandatory_ciphers', 'medium')}, not high: "
           f"tls_high_cipherlist does not apply" for side in ("smtpd", "smtp")
           if values.get(f"{side}_tls_mandatory_ciphers", "medium") != "high"]
    return out + cipher_problems(values.get("tls_high_cipherlist"), allowed, "tls_high_cipherlist", listed)


def postfix_problems(p: Parsed, rule: Callable[[dict[str, str]], list[str]]) -> list[str]:
    """A rule over Postfix parameters, judged on main.cf and on every smtpd/smtp service of the master.cf beside it
    that overrides parameters (`-o name=value`): what each listener and client actually runs with."""
    main = p.data
    problems = rule(main)
    text = (p.file.obj.get("data") or {}).get("master.cf")
    if not isinstance(text, str):
        return problems
    try:
        services = configs.postfix_master(text)
    except configs.ConfigError as exc:
        return problems + [f"master.cf does not parse: {exc}"]
    for svc in services:
        if svc.command in ("smtpd", "smtp") and svc.overrides:
            problems += [f"master.cf service {svc.service}: {x}" for x in rule({**main, **svc.overrides}) if x not in problems]
    return problems


def retention(ev: Evidence) -> Iterator[Finding]:
    """The audit log's retention, as the seal script applies it (TRACE-01, MSS-07): at least the floor."""
    scripts = ev.config_files("seal.sh")
    if not scripts:
        for f in ev.config_files("rsyslog.conf", "imtcp"):
            yield failed(f.obj, "no seal/retention script: records are not kept for a known period", "rsyslog.conf")
    for f in scripts:
        m = re.search(r'^RETENTION_DAYS="?(\d+)"?\s*$', f.text, re.M)
        if not m:
            yield failed(f.obj, "RETENTION_DAYS not set in seal.sh", "seal.sh")
            continue
        days = int(m.group(1))
        ok = f"records kept {days} days (floor {RETENTION_FLOOR_DAYS}, CSP R.6113-9-2)"
        if days > RETENTION_CNIL_CEILING_DAYS:  # met, but the CNIL asks for a justification beyond one year
            ok += (f"; above the CNIL's recommended one year ({RETENTION_CNIL_CEILING_DAYS} days): the justification "
                   "must be documented")
        yield judge(f.obj, [f"records kept {days} days, below the floor of {RETENTION_FLOOR_DAYS} (CSP R.6113-9-2)"]
                    if days < RETENTION_FLOOR_DAYS else [], ok, "seal.sh")
