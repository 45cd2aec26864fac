"""Tenant isolation on a regional platform (TEN-01, TEN-02): établissements hosted as tenants, each namespace labelled
with its tenant's key (FINESS or SIRET, socle.constants.LABEL_TENANT), the shared tenants served by the regional
gateway, one host each, in their own partition of the regional FHIR store. Not applicable to a single établissement.
"""
from __future__ import annotations

import re
from typing import Iterator
from urllib.parse import urlparse

from socle.constants import LABEL_TENANT

from .. import configs
from ..evidence import Evidence, dig, labels, meta
from ..model import Context, Control, Finding, ObjRef, failed, judge, missing, not_applicable
from . import registrar
from ._common import Parsed, each, hapi_files, location_for, nginx_files, proxied_service, tls_directive

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "TEN")
NAME_LABEL = "kubernetes.io/metadata.name"
TENANT_VAR = "$socle_tenant"
# Directives that hand a request to another server: a location with one of them serves content from a backend.
PASSES = ("proxy_pass", "grpc_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass")
# HAPI answers its partition management operations under any partition's path (creating, renaming, listing them).
MANAGEMENT = "$partition-management-list-partitions"


# --- TEN-01: NetworkPolicy peers against the namespaces' tenant labels ---------------------------------------------

def _selects(selector: dict, ns_labels: dict[str, str]) -> bool | str:
    """Whether a label selector selects a namespace with these labels; a string: why it cannot be evaluated."""
    if not isinstance(selector, dict):
        return "not a label selector"
    for key, value in (selector.get("matchLabels") or {}).items():
        if ns_labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or [])
        if op == "In":
            ok = key in ns_labels and ns_labels[key] in values
        elif op == "NotIn":
            ok = key not in ns_labels or ns_labels[key] not in values
        elif op == "Exists":
            ok = key in ns_labels
        elif op == "DoesNotExist":
            ok = key not in ns_labels
        else:
            return f"operator {op!r} is not a label selector operator"
        if not ok:
            return False
    return True


def _named(selector: dict) -> str | None:
    """The one namespace a selector names by its name label, if it names one that way."""
    value = (selector.get("matchLabels") or {}).get(NAME_LABEL) if isinstance(selector, dict) else None
    return value if isinstance(value, str) else None


@control("TEN-01", "A tenant's namespaces exchange no traffic with another tenant's", "critical", ("k8s",),
         ("kubernetes", "socle"),
         "Select peers by the name of a namespace of the same tenant (the kit's policies do); never an empty or broad "
         "namespaceSelector on a regional platform. Every namespace of the kit carries its tenant "
         f"({LABEL_TENANT}). Flows to addresses (ipBlock peers) are outside this control: K8S-02 judges them.")
def ten_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # Every namespace the evidence holds, of the kit or not: a selector reaches them all.
    namespaces = {meta(n)["name"]: labels(n) for n in ev.of_kind("Namespace")}
    tenant_of = {name: lab[LABEL_TENANT] for name, lab in namespaces.items() if lab.get(LABEL_TENANT)}
    if not tenant_of:
        for name in sorted(ev.kit_namespaces):
            yield not_applicable(ObjRef("Namespace", "", name), f"no namespace carries {LABEL_TENANT}: not a platform "
                                 "hosting établissements as tenants")
        return
    tenants = sorted(set(tenant_of.values()))
    # A namespace of the kit without its tenant: what it may exchange, and with whom, cannot be told.
    for name, ns in sorted(ev.kit_namespaces.items()):
        if name not in tenant_of:
            yield failed(ns, f"a namespace of the kit without its tenant ({LABEL_TENANT}) on a platform hosting "
                             f"{len(tenants)} tenant(s): its flows cannot be told from another tenant's")
    for pol in ev.scoped("NetworkPolicy"):
        ns = meta(pol).get("namespace", "")
        own = tenant_of.get(ns)
        if own is None:
            continue  # judged through its namespace's finding above (or outside any tenant)
        problems: list[str] = []
        unseen: list[str] = []
        for direction, side in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(dig(pol, "spec", direction, default=[]) or []):
                for j, peer in enumerate((rule or {}).get(side) or []):
                    selector = (peer or {}).get("namespaceSelector")
                    if selector is None:
                        continue  # pods of its own namespace, or an ipBlock (outside this control)
                    where = f"{direction}[{i}].{side}[{j}]"
                    name = _named(selector)
                    if name and name not in namespaces and name in ev.missing_namespaces:
                        unseen.append(f"{where} names namespace {name}, which is not in the evidence: its tenant "
                                      "cannot be told")
                        continue
                    others: dict[str, list[str]] = {}
                    for other, lab in sorted(namespaces.items()):
                        verdict = _selects(selector, lab)
                        if isinstance(verdict, str):
                            problems.append(f"{where}: its namespaceSelector cannot be evaluated ({verdict})")
                            break
                        if verdict and tenant_of.get(other) not in (None, own):
                            others.setdefault(tenant_of[other], []).append(other)
                    if others:
                        what = "selects every namespace" if not (selector.get("matchLabels") or selector.get("matchExpressions")) \
                            else "selects"
                        shown = "; ".join(f"tenant {t}: {', '.join(n)}" for t, n in sorted(others.items()))
                        problems.append(f"{where} {what}: namespaces of another tenant than {own} ({shown})")
        if problems:
            yield failed(pol, "; ".join(problems + unseen))
        elif unseen:
            yield missing(pol, "; ".join(unseen))
        else:
            yield judge(pol, [], f"every namespace peer is a namespace of tenant {own} (or of no tenant)")


# --- TEN-02: the tenant hosts of the regional gateway -----------------------------------------------------------

def _guard(block: configs.Directive, key: str) -> str | None:
    """The variable an `if ($V != $socle_tenant) { return 4xx; }` of this block compares with the host's tenant."""
    for d in block.all("if"):
        args = d.args
        if len(args) != 3 or args[1] != "!=":
            continue
        left, right = args[0], args[2]
        if right not in (TENANT_VAR, key):
            left, right = right, left
        if right not in (TENANT_VAR, key) or not left.startswith("$") or left == TENANT_VAR:
            continue
        codes = [r.args[0] for r in d.all("return") if r.args]
        if codes and re.fullmatch(r"4\d\d", codes[0]) and not any(d.first(p) for p in PASSES):
            return left
    return None


def _passes(loc: configs.Directive) -> list[configs.Directive]:
    return [d for d in [loc, *loc.walk()] if d.name in PASSES]


def _prefix(loc: configs.Directive) -> str | None:
    args = loc.args
    if len(args) == 1:
        return args[0]
    if len(args) == 2 and args[0] in ("^~", "="):
        return args[1]
    return None


def _partition_problems(loc: configs.Directive, key: str) -> list[str]:
    """Where a passing location sends a request: under /fhir/<key>/ whatever the client's path."""
    where = f"location {' '.join(loc.args)}"
    url = loc.value("proxy_pass") or ""
    path = urlparse(url).path if "://" in url else ""
    rewrites = [d for d in loc.walk() if d.name == "rewrite"]
    if rewrites:
        # A rewrite with `break` replaces the URI proxy_pass would send: the full rewritten URI is passed.
        first = rewrites[0]
        prefix = _prefix(loc)
        if first not in loc.children or len(first.args) != 3 or first.args[2] != "break":
            return [f"{where}: its first rewrite is not an unconditional `rewrite ... break`"]
        regex, target = first.args[0], first.args[1].replace(TENANT_VAR, key)
        if prefix is None or regex not in (f"^{re.escape(prefix)}(.*)$", f"^{prefix}(.*)$", f"^{prefix}(.*)"):
            return [f"{where}: rewrite {regex} does not take every path of the location (unmatched paths pass as sent)"]
        if target != f"/fhir/{key}/$1":
            return [f"{where}: rewrites to {first.args[1]}, not /fhir/{key}/$1 (the partition of tenant {key})"]
        return []
    if not path or path == "/":
        return [f"{where}: proxy_pass {url} passes the client's path as sent: any partition"]
    if not path.replace(TENANT_VAR, key).startswith(f"/fhir/{key}/") or "$" in path.replace(TENANT_VAR, key):
        return [f"{where}: proxy_pass {url} does not end in /fhir/{key}/ (the partition of tenant {key})"]
    return []


def _hapi_partitioning(p: Parsed) -> list[str]:
    fhir = dig(p.data, "hapi", "fhir", default={}) or {}
    part = fhir.get("partitioning") or {}
    problems = []
    if part.get("request_tenant_partitioning_mode") is not True:
        problems.append("hapi.fhir.partitioning.request_tenant_partitioning_mode is not true: the path does not choose "
                        "the partition")
    if part.get("allow_references_across_partitions") is not False:
        problems.append("hapi.fhir.partitioning.allow_references_across_partitions is not false: a resource may "
                        "reference another tenant's")
    if fhir.get("client_id_strategy") != "NOT_ALLOWED":
        problems.append(f"hapi.fhir.client_id_strategy is {fhir.get('client_id_strategy') or 'unset (ALPHANUMERIC)'}, "
                        "not NOT_ALLOWED: client-chosen ids are unique across partitions, which tells a tenant "
                        "another's ids")
    return problems


@control("TEN-02", "Each tenant host of the regional gateway admits only that tenant's organisation certificates and "
         "reaches only its partition", "critical", ("doctrine", "pgssi-s"), ("ci-sis-transport", "socle"),
         "Keep the regional gateway's tenant hosts as rendered: client certificate required, the map of certificate "
         "subjects to tenants checked against the host's tenant (403), only /fhir/ passed to the FHIR store under "
         "/fhir/<tenant>/, partition management never forwarded, and the store partitioned by request tenant.")
def ten_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    stores: dict[str, list[str]] = {}  # namespace of a FHIR store tenant hosts reach -> the hosts

    def gateway(p: Parsed) -> Finding:
        http = p.data.first("http")
        ns = meta(p.file.obj).get("namespace", "")
        maps = {m.args[1]: m for m in http.all("map") if len(m.args) == 2} if http else {}
        tenant_servers = [s for s in configs.nginx_servers(p.data) if any(d.args[:1] == [TENANT_VAR] for d in s.all("set"))]
        if not tenant_servers:
            return not_applicable(p.file.obj, "no server sets $socle_tenant: no tenant host", "nginx.conf")
        problems: list[str] = []
        keys = {" ".join(configs.server_names(s)) or "(no server_name)":
                next(" ".join(d.args[1:]) for d in s.all("set") if d.args[:1] == [TENANT_VAR]) for s in tenant_servers}
        admitted: dict[str, list[str]] = {}  # certificate subject (NGINX compares them case-blind) -> hosts admitting it
        shown: dict[str, str] = {}  # that subject as first written
        used: set[str] = set()  # the maps the hosts' guards read
        for server in tenant_servers:
            host = " ".join(configs.server_names(server)) or "(no server_name)"
            key = keys[host]
            what = f"host {host} (tenant {key or '(empty)'})"
            if not key or "$" in key:
                problems.append(f"{what}: $socle_tenant is not a tenant's key")
                continue
            resets = [d for d in server.walk() if d.name == "set" and d.args[:1] == [TENANT_VAR] and d.args[1:] != [key]]
            if resets:
                problems.append(f"{what}: $socle_tenant set again to {' '.join(resets[0].args[1:])} inside the server")
            if tls_directive(server, http, "ssl_verify_client") != "on":
                problems.append(f"{what}: ssl_verify_client is {tls_directive(server, http, 'ssl_verify_client') or 'off'}, "
                                "not on: no organisation certificate required")
            root = next((loc for loc in server.all("location") if loc.args == ["/"]), None)
            if root is None or _passes(root) or not re.fullmatch(r"4\d\d", (root.value("return") or "").split(" ")[0]):
                problems.append(f"{what}: location / does not refuse (404) what is not the FHIR API")
            server_guard = _guard(server, key)
            serving = [loc for loc in server.walk() if loc.name == "location" and _passes(loc) and loc.first("internal") is None]
            if not serving:
                problems.append(f"{what}: no location passes requests to the FHIR store")
            guards: set[str] = set()
            for loc in serving:
                where = f"{what} location {' '.join(loc.args)}"
                var = _guard(loc, key) or server_guard
                if var is None:
                    problems.append(f"{where}: no 403 when the certificate's tenant is not the host's "
                                    f"(if ($V != $socle_tenant) {{ return 403; }})")
                else:
                    guards.add(var)
                for d in _passes(loc):
                    if d.name != "proxy_pass":
                        problems.append(f"{where}: {d.name} {' '.join(d.args)} is not the FHIR store")
                        continue
                    svc = proxied_service(_holder(loc, d), ns)
                    if svc is None:
                        problems.append(f"{where}: proxy_pass {' '.join(d.args)} is not a Service of the cluster")
                    else:
                        stores.setdefault(svc[1], []).append(host)
                problems += [f"{what} {x}" for x in _partition_problems(loc, key)]
                prefix = _prefix(loc)
                if prefix is not None:
                    target = location_for(server, prefix + MANAGEMENT)
                    if target is not None and _passes(target) and target.first("internal") is None:
                        problems.append(f"{where}: {prefix}{MANAGEMENT} is passed to the store: HAPI's partition "
                                        "management answers there (any tenant's partitions)")
            used |= guards
            for var in sorted(guards):
                for dn, value in _entries(maps.get(var)):
                    if value == key:
                        admitted.setdefault(dn.lower(), []).append(host)
                        shown.setdefault(dn.lower(), dn)
        for var in sorted(used):
            problems += _map_problems(maps.get(var), var, set(keys.values()))
        for dn, hosts in sorted(admitted.items()):
            if len(set(hosts)) > 1:
                problems.append(f"certificate subject {shown[dn]} admitted by the hosts of several tenants: "
                                f"{', '.join(f'{h} ({keys[h]})' for h in sorted(set(hosts)))}")
        return judge(p.file.obj, problems, f"{len(tenant_servers)} tenant host(s), each requiring a client certificate, "
                     "admitting only its tenant's certificate subjects and passing only /fhir/ to its own partition",
                     "nginx.conf")

    yield from each(nginx_files(ev), gateway)
    if not stores:
        return
    seen: set[str] = set()
    for p in hapi_files(ev):
        if isinstance(p, Finding):
            yield p
            continue
        store_ns = meta(p.file.obj).get("namespace", "")
        if store_ns not in stores:
            continue
        seen.add(store_ns)
        yield judge(p.file.obj, _hapi_partitioning(p), "partitioned by request tenant (the path names the partition), "
                    "no reference across partitions, server-assigned ids only", "application.yaml")
    for store_ns in sorted(set(stores) - seen):
        yield missing(ObjRef("Namespace", "", store_ns), f"the FHIR store the tenant hosts "
                      f"{', '.join(sorted(set(stores[store_ns])))} reach has no application.yaml in the evidence: "
                      "whether it keeps tenants in their partitions cannot be judged", "application.yaml")


def _holder(loc: configs.Directive, d: configs.Directive) -> configs.Directive:
    """The block directly holding `d` within a location (for proxied_service, which reads its proxy_pass)."""
    for block in [loc, *loc.walk()]:
        if d in block.children:
            return block
    return loc


def _entries(m: configs.Directive | None) -> list[tuple[str, str]]:
    """The (source value, result) entries of a map, its parameters aside."""
    if m is None:
        return []
    return [(e.name, " ".join(e.args)) for e in m.children if e.name not in ("default", "hostnames", "volatile")]


def _map_problems(m: configs.Directive | None, var: str, tenant_keys: set[str]) -> list[str]:
    """The map the host's guard reads: the verified certificate's subject to a tenant, nobody by default."""
    if m is None:
        return [f"{var} is not a map of certificate subjects: the guard compares nothing the certificate says"]
    out = []
    if m.args[0] != "$ssl_client_s_dn":
        out.append(f"map {var} reads {m.args[0]}, not the verified certificate's subject ($ssl_client_s_dn)")
    default = m.value("default", "")
    if default in tenant_keys or "$" in default:
        out.append(f"map {var}: default {default!r} admits certificates of no listed subject")
    if m.first("hostnames") is not None:
        out.append(f"map {var} matches subjects with wildcards (hostnames)")
    for dn, value in _entries(m):
        if dn.startswith("~"):
            out.append(f"map {var}: {dn} is a pattern, not one certificate subject")
        if "$" in value:
            out.append(f"map {var}: subject {dn} maps to {value}, a variable, not a tenant's key")
    return out
