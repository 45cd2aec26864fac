"""Kubernetes platform hardening (K8S-01..10), from ANSSI and CIS practice."""
from __future__ import annotations

import functools

import re
from typing import Iterator

from socle.constants import (ADMISSION_POLICIES, ANN_ALLOWED_REGISTRIES, ANN_PSS_EXCEPTION, AUDITOR_EXEC_ROLE, AUDITOR_ROLE, KIT,
                             LABEL_PROFILE, PART_OF)

from ..evidence import Evidence, annotations, dig, labels, meta
from ..model import Context, Control, Finding, ObjRef, declared, failed, judge, missing, not_applicable
from . import registrar

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "K8S")
K8S = ("k8s",)
SRC = ("kubernetes", "socle")
ANN_API_ACCESS = "socle.esante.fr/api-access"


@control("K8S-01", "Every namespace of the kit enforces Pod Security `restricted`", "high", K8S, SRC,
         "Label the namespace pod-security.kubernetes.io/enforce=restricted (or waive it with the stated exception).")
def k8s_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for name, ns in sorted(ev.kit_namespaces.items()):
        level = labels(ns).get("pod-security.kubernetes.io/enforce", "(none)")
        exception = annotations(ns).get(ANN_PSS_EXCEPTION)
        problems = [] if level == "restricted" else [f"enforces {level}" + (f" (stated exception: {exception})" if exception else "")]
        if labels(ns).get(PART_OF) != KIT:
            # Recognised by its name (the stack's inventory, or the kit's naming): a stripped label takes a
            # namespace out of the kit's own tooling and policies, and is a finding of its own.
            problems.append(f"a namespace of the kit without the label {PART_OF}={KIT}")
        yield judge(ns, problems, "enforces restricted")
    for name, block in sorted(ev.missing_namespaces.items()):
        yield missing(ObjRef("Namespace", "", name), f"namespace {name} of block {block} ({ev.expected_origin}) "
                                                    "is not in the evidence")


def _empty_selector(sel) -> bool:
    return isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions")


def _every_namespace(peer: dict) -> bool:
    """A peer `{namespaceSelector: {}}` (with no pod selector, or an empty one): every pod of every namespace."""
    return "namespaceSelector" in peer and _empty_selector(peer.get("namespaceSelector") or {}) \
        and _empty_selector(peer.get("podSelector") or {})


def _default_deny(pol: dict) -> bool:
    spec = pol.get("spec") or {}
    sel = spec.get("podSelector") or {}
    return (not sel.get("matchLabels") and not sel.get("matchExpressions")
            and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
            and not spec.get("ingress") and not spec.get("egress"))


@control("K8S-02", "Default-deny ingress and egress in every namespace; only declared flows allowed", "high", K8S, SRC,
         "Keep the zone's default-deny-all policy; allow flows one by one with pod and namespace selectors or CIDRs.")
def k8s_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    policies = ev.scoped("NetworkPolicy")
    for name, ns in sorted(ev.kit_namespaces.items()):
        mine = ev.scoped_in("NetworkPolicy", name)
        deny = [meta(p)["name"] for p in mine if _default_deny(p)]
        yield judge(ns, [] if deny else ["no default-deny policy for both ingress and egress"], f"default deny ({', '.join(deny)})")
    for pol in policies:
        spec = pol.get("spec") or {}
        problems = []
        for direction, peer_key in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(spec.get(direction) or []):
                peers = rule.get(peer_key)
                if not peers and not rule.get("ports"):
                    problems.append(f"{direction}[{i}] allows all traffic")
                elif peers and any(p == {} for p in peers):
                    problems.append(f"{direction}[{i}] has an empty peer (every pod of every namespace)")
                elif peers and any(_every_namespace(p) for p in peers):
                    problems.append(f"{direction}[{i}] has a peer selecting every namespace (an empty namespaceSelector)")
        if problems:
            yield failed(pol, "; ".join(problems))


def _sec(container: dict, pod: dict, key: str):
    value = dig(container, "securityContext", key)
    return dig(pod, "securityContext", key) if value is None else value


@control("K8S-03", "Containers: non-root, no privilege escalation, read-only root FS, capabilities dropped, seccomp",
         "critical", K8S, SRC, "Use the kit's container security context (runAsNonRoot, readOnlyRootFilesystem, drop ALL, RuntimeDefault).")
def k8s_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for w in ev.workloads():
        problems = []
        for c in w.containers():
            n = c.get("name")
            sc = c.get("securityContext") or {}
            if sc.get("privileged") is True:
                problems.append(f"{n}: privileged")
            if _sec(c, w.pod_spec, "runAsNonRoot") is not True or _sec(c, w.pod_spec, "runAsUser") == 0:
                problems.append(f"{n}: may run as root")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{n}: privilege escalation allowed")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{n}: writable root filesystem")
            caps = dig(sc, "capabilities", default={}) or {}
            if "ALL" not in (caps.get("drop") or []):
                problems.append(f"{n}: capabilities not all dropped")
            if caps.get("add"):
                problems.append(f"{n}: adds capabilities {', '.join(caps['add'])}")
            seccomp = dig(sc, "seccompProfile", "type") or dig(w.pod_spec, "securityContext", "seccompProfile", "type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{n}: no seccomp profile")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if w.pod_spec.get(key):
                problems.append(f"{key} is on")
        yield judge(w.obj, problems, "every container hardened")


@control("K8S-04", "Requests and limits on every container; ResourceQuota and LimitRange per namespace", "medium", K8S, SRC,
         "Set CPU and memory requests and limits; keep the zone's quota and limit range.")
def k8s_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for w in ev.workloads():
        problems = []
        for c in w.containers():
            res = c.get("resources") or {}
            missing = [f"{k}.{r}" for k in ("requests", "limits") for r in ("cpu", "memory") if not (res.get(k) or {}).get(r)]
            if missing:
                problems.append(f"{c.get('name')}: no {', '.join(missing)}")
        yield judge(w.obj, problems, "requests and limits on every container")
    for name, ns in sorted(ev.kit_namespaces.items()):
        problems = [f"no {kind}" for kind in ("ResourceQuota", "LimitRange")
                    if not ev.scoped_in(kind, name)]
        yield judge(ns, problems, "ResourceQuota and LimitRange present")


_IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
# An exact version: a version number with at least two parts (1.27.4-alpine, v8.0.0, 16.6, 2025-06); a bare major
# (`16`, `v8`) or a name (`stable`, `alpine`) moves with every release.
_EXACT_VERSION = re.compile(r"^v?\d+([.-]\d+)+")


def _registries(ev: Evidence, ctx: Context) -> set[str]:
    if ctx.allowed_registries:
        return set(ctx.allowed_registries)
    return {r for v in ev.namespace_annotation(ANN_ALLOWED_REGISTRIES) for r in v.split()}


@control("K8S-05", "Images from allowed registries, pinned to an exact version or digest, never `latest`", "high", K8S, SRC,
         "Name the registry explicitly and pin every image (images.* and images.allowed_registries).")
def k8s_05(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    allowed = _registries(ev, ctx)
    # Without a list (the auditor's --allowed-registries, or the namespaces' annotation), "allowed" cannot be judged.
    for w in ev.workloads():
        problems = []
        for c in w.containers():
            image = str(c.get("image", ""))
            m = _IMAGE.match(image)
            if not m:
                problems.append(f"{c.get('name')}: unreadable image reference {image!r}")
                continue
            first = m.group("name").split("/", 1)[0]
            explicit = "/" in m.group("name") and ("." in first or ":" in first or first == "localhost")
            if not explicit:
                problems.append(f"{c.get('name')}: {image} does not name its registry")
            elif allowed and first not in allowed:
                problems.append(f"{c.get('name')}: registry {first} not allowed ({', '.join(sorted(allowed))})")
            tag = m.group("tag")
            if not m.group("digest") and tag == "latest":
                problems.append(f"{c.get('name')}: {image} is `latest`, not pinned")
            elif not m.group("digest") and (not tag or not _EXACT_VERSION.match(tag)):
                problems.append(f"{c.get('name')}: {image} is not pinned to an exact version or a digest")
        if problems or allowed:
            yield judge(w.obj, problems, f"images pinned, from allowed registries ({', '.join(sorted(allowed))})")
        else:
            yield missing(w.obj, f"images pinned; whether their registries are allowed cannot be judged: no list of allowed "
                                 f"registries (the auditor's --allowed-registries or the namespaces' {ANN_ALLOWED_REGISTRIES})")


@control("K8S-06", "Service account tokens not mounted unless the workload calls the API", "medium", K8S, SRC,
         "Set automountServiceAccountToken: false, or annotate the workload with the API access it needs.")
def k8s_06(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    accounts = {(meta(sa).get("namespace"), meta(sa).get("name")): sa for sa in ev.scoped("ServiceAccount")}
    for w in ev.workloads():
        reason = annotations(w.obj).get(ANN_API_ACCESS)
        pod_value = w.pod_spec.get("automountServiceAccountToken")
        sa = accounts.get((w.namespace, w.pod_spec.get("serviceAccountName") or "default"))
        mounted = pod_value if pod_value is not None else (sa or {}).get("automountServiceAccountToken", True) is not False
        # A projected serviceAccountToken volume mounts a token whatever automountServiceAccountToken says.
        projected = [str(v.get("name")) for v in w.pod_spec.get("volumes") or []
                     if any(isinstance(src, dict) and "serviceAccountToken" in src
                            for src in dig(v, "projected", "sources", default=[]) or [])]
        if (mounted or projected) and reason:
            # That the workload calls the API is the stack's annotation: no object shows the calls.
            yield declared(w.obj, f"token mounted; the workload calls the API by its annotation {ANN_API_ACCESS} only "
                                  f"({reason}): the auditor checks that it does")
        else:
            problems = (["service account token mounted"] if mounted else []) + \
                [f"service account token mounted by projected volume {v}" for v in projected]
            yield judge(w.obj, problems, "no service account token")


@control("K8S-07", "Only the gateway and the relay are reachable from outside; no NodePort", "high", K8S, SRC,
         "Use ClusterIP services; expose only the gateway and the relay through a LoadBalancer.")
def k8s_07(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    blocks = {name: ev.block_of(name) for name in ev.kit_namespaces}
    for svc in ev.scoped("Service"):
        spec = svc.get("spec") or {}
        kind = spec.get("type", "ClusterIP")
        block = blocks.get(meta(svc).get("namespace"))
        problems = []
        if kind == "NodePort" or any(p.get("nodePort") and kind != "LoadBalancer" for p in spec.get("ports") or []):
            problems.append("NodePort service")
        if kind == "LoadBalancer" and block not in ("gateway", "relay"):
            problems.append(f"LoadBalancer in the {block} block")
        if spec.get("externalIPs"):
            problems.append("externalIPs set")
        yield judge(svc, problems, f"{kind}" + (" (entry point)" if kind == "LoadBalancer" else ""))
    for ing in ev.scoped("Ingress"):
        block = blocks.get(meta(ing).get("namespace"))
        yield judge(ing, [] if block == "gateway" else [f"Ingress in the {block} block"], "Ingress of the gateway")
    # A pod on the node's network or with a host port is reachable at the node's address, whatever its Services.
    for w in ev.workloads():
        problems = (["hostNetwork: reachable on the node's addresses"] if w.pod_spec.get("hostNetwork") else []) + \
            [f"{c.get('name')}: hostPort {p.get('hostPort')} reachable on the node's addresses" for c in w.containers()
             for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort")]
        if problems:
            yield failed(w.obj, "; ".join(problems))


_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
_SECRET_ASSIGN = re.compile(
    r"""^\s*["']?([\w.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key)[\w.-]*)["']?\s*[:=]\s*["']?([^"'\s#]+)""",
    re.I | re.M)
_PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


_NOT_A_VALUE = ("_file", "-file", "_env", "_path", "file", "_ref", "_name", "_encryption", "_method", "_mode", "_type",
                "_algorithm", "_length", "_header", "_expire", "_refresh")


def _literal_secret(key: str, value: str) -> bool:
    """A secret-named setting with a literal value (not a path, an environment reference or a setting *about* secrets)."""
    k = key.lower()
    if k.endswith(_NOT_A_VALUE) or value.startswith(("${", "$", "/")):
        return False
    return value.lower() not in ("", "true", "false", "none", "null", '""', "''")


@control("K8S-08", "Secrets only through Secret references, never literal env values or ConfigMap contents", "critical",
         K8S + ("pgssi-s",), SRC, "Move the value into a Secret and reference it (secretKeyRef or a Secret volume).")
def k8s_08(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for w in ev.workloads():
        problems = [f"{c.get('name')}: {e.get('name')} is a literal value" for c in w.containers()
                    for e in c.get("env") or [] if _SECRET_NAME.search(str(e.get("name", ""))) and "value" in e]
        problems += [f"{c.get('name')}: {e.get('name')} comes from ConfigMap {dig(e, 'valueFrom', 'configMapKeyRef', 'name')}, "
                     "not a Secret" for c in w.containers() for e in c.get("env") or []
                     if _SECRET_NAME.search(str(e.get("name", ""))) and dig(e, "valueFrom", "configMapKeyRef")]
        yield judge(w.obj, problems, "secret values only through Secret references")
    for cm in ev.scoped("ConfigMap"):
        problems = [p for key, text in sorted((cm.get("data") or {}).items()) if isinstance(text, str)
                    for p in _secret_values(key, text)]
        yield judge(cm, problems, "no secret value")


@functools.lru_cache(maxsize=1024)
def _secret_values(key: str, text: str) -> tuple[str, ...]:
    """K8S-08: what in one ConfigMap file is a secret value. Cached: the same files recur in every namespace."""
    problems = []
    if _SECRET_NAME.search(key) and _literal_secret(key, text.strip()):
        problems.append(f"{key} holds a secret value (a ConfigMap key named as a secret)")
    if _PEM_KEY.search(text):
        problems.append(f"{key} holds a private key")
    for m in _SECRET_ASSIGN.finditer(text):
        if _literal_secret(m.group(1), m.group(2)):
            problems.append(f"{key}: {m.group(1)} has a literal value")
    return tuple(problems)


def _protects(pdb: dict, replicas: int) -> bool:
    """A budget that keeps at least one pod through a voluntary disruption."""
    spec = pdb.get("spec") or {}

    def count(value) -> int | None:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
            return -(-int(value[:-1]) * replicas // 100)  # rounded up, as the disruption controller does
        return None

    if "minAvailable" in spec:
        n = count(spec["minAvailable"])
        return n is None or n >= 1
    if "maxUnavailable" in spec:
        n = count(spec["maxUnavailable"])
        return n is None or n < replicas
    return True  # minAvailable 1 by default


@control("K8S-09", "Production: ≥ 2 replicas of stateless services, PodDisruptionBudgets, spread across zones", "medium",
         K8S, ("ans-k8s", "socle"), "Set replicas ≥ 2 in production; keep the kit's PDB and topology spread; label the "
         f"namespaces of a production environment {LABEL_PROFILE}=production (the production profile of the stack).")
def k8s_09(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # The profile is the auditor's, never the namespaces' (runner.make_context). A namespace whose label claims a
    # weaker profile than the one judged would have its production rules relaxed by whoever reads the label
    # (the kit's own checks, an operator, a less careful audit): the claim itself fails this control.
    if ctx.production:
        for name, ns in sorted(ev.kit_namespaces.items()):
            claimed = labels(ns).get(LABEL_PROFILE)
            if claimed is None:
                continue
            yield judge(ns, [] if claimed == "production" else
                        [f"label {LABEL_PROFILE}={claimed} claims a weaker profile than the one judged (production): "
                         "its production requirements apply all the same"], "declares the production profile judged")
    for w in ev.workloads():
        if w.kind != "Deployment":
            continue
        if not ctx.production:
            yield not_applicable(w.obj, f"{ctx.profile} profile")
            continue
        problems = []
        replicas = dig(w.obj, "spec", "replicas", default=1)
        if replicas < 2:
            problems.append(f"{replicas} replica(s)")
        pod_labels = w.pod_meta.get("labels") or {}
        budgets = [p for p in ev.scoped_in("PodDisruptionBudget", w.namespace)
                   if (dig(p, "spec", "selector", "matchLabels", default={}) or {}).items() <= pod_labels.items()
                   and dig(p, "spec", "selector", "matchLabels")]
        if not budgets:
            problems.append("no PodDisruptionBudget")
        elif not any(_protects(p, replicas) for p in budgets):
            problems.append("its PodDisruptionBudget lets every pod be evicted at once")
        if not any("zone" in t.get("topologyKey", "") for t in w.pod_spec.get("topologySpreadConstraints") or []):
            problems.append("not spread across zones")
        yield judge(w.obj, problems, f"{replicas} replicas, PDB, spread across zones")


@control("K8S-10", "Auditors get a read-only role (get/list/watch, no Secret contents)", "medium", K8S, SRC,
         "Keep the socle-auditor ClusterRole read-only and bound; exec only in the optional socle-auditor-exec role.")
def k8s_10(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    role = ev.get("ClusterRole", "", AUDITOR_ROLE)
    if role is None:
        yield failed(ObjRef("ClusterRole", "", AUDITOR_ROLE), "no auditor ClusterRole")
    else:
        problems = []
        for i, rule in enumerate(role.get("rules") or []):
            verbs = set(rule.get("verbs") or [])
            if verbs - {"get", "list", "watch"}:
                problems.append(f"rules[{i}] grants {', '.join(sorted(verbs - {'get', 'list', 'watch'}))}")
            resources = set(rule.get("resources") or [])
            if "secrets" in resources or "*" in resources:
                problems.append(f"rules[{i}] reads {'Secrets' if 'secrets' in resources else 'every resource'}")
            if "" not in (rule.get("apiGroups") or [""]) and "*" in (rule.get("apiGroups") or []):
                problems.append(f"rules[{i}] covers every API group")
            if any("/" in r for r in resources):
                problems.append(f"rules[{i}] grants subresources {', '.join(sorted(r for r in resources if '/' in r))}")
        bound = [b for b in ev.of_kind("ClusterRoleBinding")
                 if dig(b, "roleRef", "name") == AUDITOR_ROLE and b.get("subjects")]
        if not bound:
            problems.append("not bound to any auditor")
        # The auditors get nothing more: their subjects bound to another role are not read-only any more.
        auditors = {(s.get("kind"), s.get("name")) for b in bound for s in b.get("subjects") or []}
        for b in ev.of_kind("ClusterRoleBinding") + ev.of_kind("RoleBinding"):
            other = dig(b, "roleRef", "name")
            if other in (AUDITOR_ROLE, AUDITOR_EXEC_ROLE):
                continue
            for kind, name in sorted({(s.get("kind"), s.get("name")) for s in b.get("subjects") or []} & auditors):
                problems.append(f"auditors ({kind} {name}) also bound to {dig(b, 'roleRef', 'kind')} {other} by {ObjRef.of(b)}")
        yield judge(role, problems, f"read-only, bound to {', '.join(s.get('name', '?') for b in bound for s in b.get('subjects'))}")
    for r in ev.scoped("Role"):
        if meta(r).get("name") != AUDITOR_EXEC_ROLE:
            continue
        extra = [rule for rule in r.get("rules") or []
                 if not (set(rule.get("resources") or []) <= {"pods", "pods/exec"}
                         and set(rule.get("verbs") or []) <= {"get", "list", "create"}
                         and ("create" not in (rule.get("verbs") or []) or rule.get("resources") == ["pods/exec"]))]
        yield judge(r, ["grants more than exec into pods"] if extra else [], "exec into pods only (live host checks)")


def _selects_kit(binding: dict) -> bool:
    """The binding's match covers the kit's objects: a namespace or object selector that requires the kit's label
    (and nothing that would exclude them) — an empty match would cover the whole cluster, a foreign label none."""
    match = dig(binding, "spec", "matchResources") or {}
    for key in ("namespaceSelector", "objectSelector"):
        sel = match.get(key) or {}
        if (sel.get("matchLabels") or {}).get(PART_OF) == KIT and not sel.get("matchExpressions"):
            return not match.get("excludeResourceRules")
    return False


@control("K8S-11", "The kit's admission policies are present and bound to deny in its namespaces", "high", K8S, SRC,
         "Keep the platform layer's ValidatingAdmissionPolicies and their bindings (validationActions Deny) as "
         "rendered; re-run socle up if one was deleted or changed.")
def k8s_11(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for name, requirement in ADMISSION_POLICIES.items():
        ref = ObjRef("ValidatingAdmissionPolicy", "", name)
        policy = ev.get("ValidatingAdmissionPolicy", "", name)
        if policy is None:
            yield failed(ref, f"admission policy {name} ({requirement}) is not in the cluster: nothing refuses a "
                              "violating object at admission")
            continue
        problems = []
        if dig(policy, "spec", "failurePolicy") not in (None, "Fail"):
            problems.append(f"failurePolicy {dig(policy, 'spec', 'failurePolicy')}: a policy error admits the object")
        if not dig(policy, "spec", "validations"):
            problems.append("no validation")
        bindings = [b for b in ev.of_kind("ValidatingAdmissionPolicyBinding") if dig(b, "spec", "policyName") == name]
        denying = [b for b in bindings if "Deny" in (dig(b, "spec", "validationActions") or [])]
        if not bindings:
            problems.append("not bound: it judges nothing")
        elif not denying:
            problems.append(f"bound without Deny ({', '.join(sorted({a for b in bindings for a in dig(b, 'spec', 'validationActions') or []}))}): "
                            "violations are only reported")
        elif not any(_selects_kit(b) for b in denying):
            problems.append("its binding does not select the kit's namespaces or objects (app.kubernetes.io/part-of=socle)")
        yield judge(policy, problems, f"{requirement} enforced at admission (bound with Deny to the kit's objects)")
