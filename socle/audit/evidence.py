"""Evidence: the plain Kubernetes objects an audit judges, whatever their source, and views over them.

The audit's scope is the kit: its namespaces (label `app.kubernetes.io/part-of=socle`) with everything in them,
whoever created it, and the kit's objects elsewhere (cluster-scoped objects and Velero objects carrying the label).
"""
from __future__ import annotations

import functools
import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterable

from .model import ObjRef

from socle.constants import KIT, LABEL_BLOCK, LABEL_PROFILE, PART_OF

# The blocks of the kit, one namespace each: `<short_name>-<block>` (socle/blueprints/etablissement BLOCKS).
KIT_BLOCKS = ("gateway", "fhir", "mss", "audit")
# The value of the namespace's block label (socle.esante.fr/block) for each namespace suffix.
BLOCK_LABEL = {"gateway": "gateway", "fhir": "fhir", "mss": "relay", "audit": "auditlog"}

POD_OWNERS = {"Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"), "DaemonSet": ("spec", "template"),
              "ReplicaSet": ("spec", "template"), "Job": ("spec", "template"),
              "CronJob": ("spec", "jobTemplate", "spec", "template")}


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def labels(obj: dict) -> dict[str, str]:
    return meta(obj).get("labels") or {}


def annotations(obj: dict) -> dict[str, str]:
    return meta(obj).get("annotations") or {}


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


@dataclass
class Workload:
    """Anything that makes pods: its pod template (or the Pod itself)."""

    obj: dict
    pod_meta: dict
    pod_spec: dict

    @property
    def ref(self) -> ObjRef:
        return ObjRef.of(self.obj)

    @property
    def kind(self) -> str:
        return self.obj.get("kind", "")

    @property
    def namespace(self) -> str:
        return meta(self.obj).get("namespace", "")

    def containers(self, init: bool = True) -> list[dict]:
        out = list(self.pod_spec.get("containers") or [])
        if init:
            out = list(self.pod_spec.get("initContainers") or []) + out
        return out

    def volume(self, name: str) -> dict | None:
        return next((v for v in self.pod_spec.get("volumes") or [] if v.get("name") == name), None)

    def volume_at(self, container: dict, path: str) -> tuple[dict | None, str]:
        """The volume a path of the container lies on (longest mount prefix) and the path inside it."""
        best, rest = None, ""
        for m in container.get("volumeMounts") or []:
            mp = m.get("mountPath", "").rstrip("/") or "/"
            if path == mp or path.startswith(mp + "/"):
                if best is None or len(mp) > len(best.get("mountPath", "").rstrip("/")):
                    best, rest = m, path[len(mp):].lstrip("/")
        return (self.volume(best["name"]) if best else None), rest


@dataclass
class ConfigFile:
    obj: dict  # the ConfigMap
    key: str
    text: str

    @property
    def ref(self) -> ObjRef:
        return ObjRef.of(self.obj)


@dataclass
class Evidence:
    """Objects of one source. `source` is `render:STACK`, `snapshot:FILE` or `live:CONTEXT`."""

    source: str
    objects: list[dict]
    target: str  # the stack or cluster the evidence describes
    files: dict[ObjRef, str] = field(default_factory=dict)  # rendered file of an object, when there is one

    def __post_init__(self) -> None:
        seen: dict[ObjRef, dict] = {}
        for obj in self.objects:
            if isinstance(obj, dict) and obj.get("kind") and meta(obj).get("name"):
                seen[ObjRef.of(obj)] = obj
        self.objects = [seen[k] for k in sorted(seen, key=lambda r: (r.kind, r.namespace, r.name))]  # ObjRef order, C-speed
        self._index = seen
        # Indexes built once, so that no control rescans every object per namespace or per ConfigMap:
        # objects by kind (in the order of `objects`), the scoped ones by kind and by (kind, namespace).
        self._by_kind: dict[str, list[dict]] = {}
        for o in self.objects:
            self._by_kind.setdefault(o["kind"], []).append(o)
        self.expected_namespaces: dict[str, str] = {}  # namespace name -> block, from the stack's inventory
        self.expected_origin = ""
        labelled = {meta(o)["name"]: o for o in self._by_kind.get("Namespace", []) if labels(o).get(PART_OF) == KIT}
        self._kit_namespaces = dict(labelled)
        # A namespace named as the kit names its blocks (`<prefix>-<block>`, the prefix of a labelled kit namespace)
        # is the kit's whatever its labels say: the audited party does not take a namespace out of scope by
        # stripping a label.
        prefixes = {n.rsplit("-", 1)[0] for n in labelled if "-" in n and n.rsplit("-", 1)[1] in KIT_BLOCKS}
        for o in self._by_kind.get("Namespace", []):
            name = meta(o)["name"]
            if name not in labelled and "-" in name and name.rsplit("-", 1)[0] in prefixes \
                    and name.rsplit("-", 1)[1] in KIT_BLOCKS:
                self._kit_namespaces[name] = o
        self._build_scope()

    def expect_namespaces(self, expected: dict[str, str], origin: str) -> None:
        """The kit's namespaces the stack's inventory names (namespace -> block): recognised by name whatever
        their labels, and each one absent from the evidence is missing evidence."""
        self.expected_namespaces = dict(expected)
        self.expected_origin = origin
        added = False
        for name in expected:
            ns = self._index.get(ObjRef("Namespace", "", name))
            if ns is not None and name not in self._kit_namespaces:
                self._kit_namespaces[name] = ns
                added = True
        if added:
            self._build_scope()

    @property
    def missing_namespaces(self) -> dict[str, str]:
        """Namespaces of the stack's inventory (name -> block) that the evidence does not hold."""
        return {n: b for n, b in self.expected_namespaces.items() if n not in self._kit_namespaces}

    @property
    def unlabelled_namespaces(self) -> list[dict]:
        """Kit namespaces (recognised by name) that do not carry the kit's label."""
        return [o for _, o in sorted(self._kit_namespaces.items()) if labels(o).get(PART_OF) != KIT]

    def block_of(self, namespace: str | None) -> str | None:
        """The block (label value: gateway, fhir, relay, auditlog) of a kit namespace: the stack's inventory when the
        audit has one (a label is the audited party's claim), else its label, else its name's suffix."""
        if not namespace or namespace not in self._kit_namespaces:
            return None
        if namespace in self.expected_namespaces:
            return BLOCK_LABEL.get(self.expected_namespaces[namespace], self.expected_namespaces[namespace])
        label = labels(self._kit_namespaces[namespace]).get(LABEL_BLOCK)
        if label:
            return label
        return BLOCK_LABEL.get(namespace.rsplit("-", 1)[-1])

    def _build_scope(self) -> None:
        self._scoped_kind: dict[str, list[dict]] = {}
        self._scoped_ns: dict[tuple[str, Any], list[dict]] = {}
        for kind, objs in self._by_kind.items():
            mine = self._scoped_kind[kind] = [o for o in objs if self.in_scope(o)]
            for o in mine:
                self._scoped_ns.setdefault((kind, meta(o).get("namespace")), []).append(o)
        self._workloads: list[Workload] | None = None
        self._workloads_ns: dict[Any, list[Workload]] | None = None
        self._mounts: dict[tuple[Any, Any], list[tuple[Workload, dict, str]]] | None = None
        self.parsed_files: dict[tuple, list] = {}  # (file name, filter, parser) -> parse results, shared by controls

    # --- scope -------------------------------------------------------------------------------------------
    @property
    def kit_namespaces(self) -> dict[str, dict]:
        return self._kit_namespaces

    def in_scope(self, obj: dict) -> bool:
        ns = meta(obj).get("namespace")
        if ns and ns in self.kit_namespaces:
            return True
        return labels(obj).get(PART_OF) == KIT

    def scoped(self, *kinds: str) -> list[dict]:
        """The objects of the kit of these kinds (all kinds when none given), in the order of `objects`."""
        if not kinds:
            return [o for o in self.objects if self.in_scope(o)]
        if len(kinds) == 1:
            return list(self._scoped_kind.get(kinds[0], ()))
        return [o for k in sorted(set(kinds)) for o in self._scoped_kind.get(k, ())]

    def scoped_in(self, kind: str, namespace: str | None) -> list[dict]:
        """The objects of the kit of one kind in one namespace (an index lookup, not a scan)."""
        return list(self._scoped_ns.get((kind, namespace), ()))

    def of_kind(self, kind: str) -> list[dict]:
        """Every object of one kind, in scope or not."""
        return list(self._by_kind.get(kind, ()))

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self._index.get(ObjRef(kind, namespace, name))

    def ref_file(self, ref: ObjRef) -> str:
        return self.files.get(ref, "")

    # --- declared facts ---------------------------------------------------------------------------------
    def namespace_annotation(self, key: str) -> set[str]:
        return {annotations(o)[key] for o in self.kit_namespaces.values() if key in annotations(o)}

    def declared_profile(self) -> str | None:
        values = {labels(o).get(LABEL_PROFILE) for o in self.kit_namespaces.values()} - {None}
        if not values:
            return None
        return "production" if "production" in values else sorted(values)[0]

    # --- workloads and configuration files ------------------------------------------------------------
    def workloads(self) -> list[Workload]:
        if self._workloads is None:
            self._workloads = self._find_workloads()
        return self._workloads

    def workloads_in(self, namespace: str | None) -> list[Workload]:
        if self._workloads_ns is None:
            self._workloads_ns = {}
            for w in self.workloads():
                self._workloads_ns.setdefault(w.namespace, []).append(w)
        return list(self._workloads_ns.get(namespace, ()))

    def _find_workloads(self) -> list[Workload]:
        out = []
        for obj in self.scoped(*POD_OWNERS, "Pod"):
            if obj["kind"] in ("Pod", "ReplicaSet", "Job") and meta(obj).get("ownerReferences"):
                continue  # judged through the object that owns it
            if obj["kind"] == "Pod":
                out.append(Workload(obj, meta(obj), obj.get("spec") or {}))
                continue
            template = dig(obj, *POD_OWNERS[obj["kind"]], default={}) or {}
            out.append(Workload(obj, template.get("metadata") or {}, template.get("spec") or {}))
        return out

    def config_files(self, key: str, contains: str | None = None) -> list[ConfigFile]:
        out = []
        for cm in self.scoped("ConfigMap"):
            text = (cm.get("data") or {}).get(key)
            if isinstance(text, str) and (contains is None or contains in text):
                out.append(ConfigFile(cm, key, text))
        return out

    def mounts_of(self, cm: dict) -> list[tuple[Workload, dict, str]]:
        """(workload, container, mount path) for every container that mounts this ConfigMap."""
        if self._mounts is None:
            self._mounts = self._index_mounts()
        return list(self._mounts.get((meta(cm).get("namespace"), meta(cm).get("name")), ()))

    def _index_mounts(self) -> dict[tuple[Any, Any], list[tuple[Workload, dict, str]]]:
        """(namespace, ConfigMap name) -> its mounts, workload by workload, container by container: built once."""
        out: dict[tuple[Any, Any], list[tuple[Workload, dict, str]]] = {}
        for w in self.workloads():
            volumes: dict[Any, list[Any]] = {}
            for v in w.pod_spec.get("volumes") or []:
                name = dig(v, "configMap", "name")
                if name is not None and name not in volumes.setdefault(v["name"], []):
                    volumes[v["name"]].append(name)
            if not volumes:
                continue
            for c in w.containers():
                for m in c.get("volumeMounts") or []:
                    for name in volumes.get(m.get("name"), ()):
                        out.setdefault((w.namespace, name), []).append((w, c, m.get("mountPath", "")))
        return out

    # --- the configuration each container actually runs ---------------------------------------------------
    def loaded(self, program: str) -> list["Loaded"]:
        """For every container of the kit that runs `program` (PROGRAMS), each configuration file its command line,
        arguments or environment make it load, resolved through its volumeMounts to a ConfigMap key (or why not)."""
        cache = self.parsed_files.setdefault(("loaded",), {})  # type: ignore[arg-type]
        if program not in cache:
            out = []
            for w in self.workloads():
                for c in w.containers():
                    if running(c) != program:
                        continue
                    for path, why in config_paths(program, c):
                        if path is None:
                            out.append(Loaded(w, c, "", None, why))
                            continue
                        file, why = self.resolve(w, c, path)
                        out.append(Loaded(w, c, path, file, why))
            cache[program] = out
        return cache[program]

    def resolve(self, w: Workload, c: dict, path: str) -> tuple["ConfigFile | None", str]:
        """The ConfigMap key a file path of a container reads, or why the evidence does not hold it."""
        path = norm_path(path)
        where = f"{w.ref} container {c.get('name')}: {path}"
        mount = None
        for m in c.get("volumeMounts") or []:
            mp = norm_path(m.get("mountPath", "") or "/")
            if path == mp or path.startswith(mp.rstrip("/") + "/"):
                if mount is None or len(mp) > len(norm_path(mount.get("mountPath", "") or "/")):
                    mount = m
        if mount is None:
            return None, f"{where} is on no volume: the file comes from the image, which the evidence does not hold"
        mp = norm_path(mount.get("mountPath", "") or "/")
        inner = path[len(mp):].lstrip("/")
        if mount.get("subPath"):
            inner = posixpath.join(mount["subPath"], inner) if inner else mount["subPath"]
        vol = w.volume(mount.get("name", ""))
        if vol is None:
            return None, f"{where}: volume {mount.get('name')} is not declared by the pod"
        sources = [vol["configMap"]] if isinstance(vol.get("configMap"), dict) else \
            [s["configMap"] for s in dig(vol, "projected", "sources", default=[]) or []
             if isinstance(s, dict) and isinstance(s.get("configMap"), dict)]
        if not sources:
            kind = next((k for k in ("secret", "emptyDir", "persistentVolumeClaim", "projected", "hostPath") if k in vol),
                        "volume")
            return None, f"{where} lies on {kind} volume {vol.get('name')}, whose content the evidence does not hold"
        for src in sources:
            name = src.get("name")
            items = src.get("items")
            if items:
                key = next((i.get("key") for i in items if isinstance(i, dict) and norm_path(str(i.get("path"))) == inner), None)
                if key is None:
                    continue
            else:
                key = inner
            cm = self.get("ConfigMap", w.namespace, str(name))
            if cm is None:
                return None, f"{where}: ConfigMap {w.namespace}/{name} (volume {vol.get('name')}) is not in the evidence"
            text = (cm.get("data") or {}).get(key)
            if not isinstance(text, str):
                return None, f"{where}: ConfigMap {w.namespace}/{name} has no key {key}"
            return ConfigFile(cm, key, text), ""
        return None, f"{where}: no ConfigMap of volume {vol.get('name')} carries that file"

    def secret_backed(self, cm: dict, path: str) -> tuple[bool, str]:
        """Whether a path named in a config file lies on a Secret volume in every container mounting the file."""
        users = self.mounts_of(cm)
        if not users:
            return False, f"{path}: no workload mounts {meta(cm).get('name')}"
        for w, c, _ in users:
            vol, _rest = w.volume_at(c, path)
            if vol is None:
                return False, f"{path}: not on any volume of {w.ref} container {c.get('name')}"
            if "secret" not in vol and not _projected_secret(vol):
                return False, f"{path}: volume {vol.get('name')} of {w.ref} is not a Secret"
        return True, ""


@dataclass
class Loaded:
    """One configuration file a container loads: the ConfigMap key it resolves to, or why it could not be."""

    workload: Workload
    container: dict
    path: str
    file: ConfigFile | None
    why: str = ""


# The programs whose configuration the audit judges: the executable (or image) that runs them.
PROGRAMS = {"nginx": "nginx", "rsyslogd": "rsyslog", "postfix": "postfix", "oauth2-proxy": "oauth2-proxy",
            "postgres": "postgres", "hapi": "hapi"}
_DEFAULTS = {"nginx": "/etc/nginx/nginx.conf", "rsyslogd": "/etc/rsyslog.conf", "postfix": "/etc/postfix/main.cf"}


_SHELLS = ("sh", "bash", "ash", "dash")


def argv(c: dict) -> list[str]:
    """The command line a container runs; `sh -c 'exec nginx -c …'` reads as the command it execs (a script of one
    simple command; anything else stays the shell's)."""
    return list(_argv(tuple(str(a) for a in (c.get("command") or []) + (c.get("args") or []))))


@functools.lru_cache(maxsize=4096)
def _argv(out: tuple[str, ...]) -> tuple[str, ...]:
    # Cached on the command line itself: a regional cluster runs the same few command lines in every namespace.
    if len(out) >= 3 and posixpath.basename(out[0]) in _SHELLS and out[1] == "-c":
        import shlex

        lexer = shlex.shlex(out[2], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:
            return out
        if words and words[0] == "exec":
            words = words[1:]
        if words and not any(w and set(w) <= set("();<>|&") for w in words):  # one simple command, no operator
            return tuple(words)
    return out


def _image_name(c: dict) -> str:
    image = str(c.get("image") or "").split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def env_value(c: dict, name: str) -> tuple[bool, str | None]:
    """(set, literal value) of an environment variable; (True, None) when it comes from elsewhere (valueFrom)."""
    for e in reversed(c.get("env") or []):
        if isinstance(e, dict) and e.get("name") == name:
            return True, e.get("value") if "valueFrom" not in e else None
    return False, None


def running(c: dict) -> str | None:
    """The program (a key of PROGRAMS) a container runs: its executable, else its image when it keeps the image's
    own entrypoint; None for anything else (a shell script, a tool)."""
    args = argv(c)
    exe = posixpath.basename(args[0]) if args else ""
    if exe in PROGRAMS:
        return exe
    if env_value(c, "SPRING_CONFIG_LOCATION")[0] and "hapi" in _image_name(c):
        return "hapi"
    if c.get("command") or args:
        if not (args and args[0].startswith("-")):
            return None  # an explicit command that is not one of the programs
    image = _image_name(c)
    if "hapi" in image:
        return "hapi"
    for prog, marker in PROGRAMS.items():
        if prog != "hapi" and (image == marker or image.startswith(marker + "-") or image == prog):
            return prog
    return None


def _option(args: list[str], short: str | None, long: str | None) -> tuple[bool, str | None]:
    """(given, value) of `-x VALUE`, `-xVALUE`, `--long=VALUE` or `--long VALUE`; the last occurrence wins."""
    found, value = False, None
    for i, a in enumerate(args):
        if short and a == short:
            found, value = True, args[i + 1] if i + 1 < len(args) else None
        elif short and a.startswith(short) and len(a) > len(short) and not a.startswith("--"):
            found, value = True, a[len(short):]
        elif long and a == long:
            found, value = True, args[i + 1] if i + 1 < len(args) else None
        elif long and a.startswith(long + "="):
            found, value = True, a[len(long) + 1:]
    return found, value


def config_paths(program: str, c: dict) -> list[tuple[str | None, str]]:
    """The configuration files a container of `program` loads: (path, "") or (None, why it cannot be known)."""
    args = argv(c)
    name = c.get("name")
    if program in ("nginx", "rsyslogd"):
        given, value = _option(args[1:] if args and posixpath.basename(args[0]) == program else args,
                               "-c" if program == "nginx" else "-f", None)
        if given and not value:
            return [(None, f"container {name}: {program} option without a file")]
        return [(value or _DEFAULTS[program], "")]
    if program == "postfix":
        given, value = _option(args[1:] if args else args, "-c", None)
        if given and not value:
            return [(None, f"container {name}: postfix -c without a directory")]
        return [(posixpath.join(value, "main.cf") if value else _DEFAULTS["postfix"], "")]
    if program == "oauth2-proxy":
        given, value = _option(args, "-config", "--config")
        if not value:
            env_set, env = env_value(c, "OAUTH2_PROXY_CONFIG")
            value = env
            if not value:
                return [(None, f"container {name}: oauth2-proxy runs without a configuration file (--config) "
                               "the evidence holds" + (" (OAUTH2_PROXY_CONFIG not a literal)" if env_set else ""))]
        return [(value, "")]
    if program == "postgres":
        value = None
        for i, a in enumerate(args):
            opt = a[2:] if a.startswith("--") else (args[i + 1] if a == "-c" and i + 1 < len(args) else
                                                   a[2:] if a.startswith("-c") else "")
            if opt.startswith("config_file="):
                value = opt.split("=", 1)[1]
        if not value:
            return [(None, f"container {name}: postgres runs the configuration of its data directory "
                           "(no -c config_file=), which the evidence does not hold")]
        return [(value, "")]
    if program == "hapi":
        env_set, env = env_value(c, "SPRING_CONFIG_LOCATION")
        if not env:
            return [(None, f"container {name}: HAPI runs its built-in configuration"
                           + (" (SPRING_CONFIG_LOCATION not a literal)" if env_set else
                              " (no SPRING_CONFIG_LOCATION)") + ", which the evidence does not hold")]
        out: list[tuple[str | None, str]] = []
        for loc in (x.strip() for x in env.split(",") if x.strip()):
            if loc.startswith("optional:"):
                loc = loc[len("optional:"):]
            if loc.startswith("classpath:"):
                out.append((None, f"container {name}: {loc} is inside the image, which the evidence does not hold"))
                continue
            if loc.startswith("file:"):
                loc = "/" + loc[len("file:"):].lstrip("/")
            out.append((posixpath.join(loc, "application.yaml") if loc.endswith("/") else loc, ""))
        return out
    return []


def _projected_secret(vol: dict) -> bool:
    sources = dig(vol, "projected", "sources", default=[]) or []
    return bool(sources) and all("secret" in s for s in sources)


def normalise(objects: Iterable[Any]) -> list[dict]:
    """Flatten `List` objects (kubectl's and the API server's `*List`) into their items."""
    out: list[dict] = []
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        if isinstance(obj.get("items"), list) and str(obj.get("kind", "")).endswith("List"):
            out += normalise(obj["items"])
        else:
            out.append(obj)
    return out


def norm_path(path: str) -> str:
    return posixpath.normpath(path)


# --- the shape of the objects the controls read ---------------------------------------------------------
#
# Every object of a snapshot or a live read is checked once, before any control runs: the fields the controls
# read must have the type Kubernetes gives them. A field that is absent is fine (the controls judge absence);
# `null` is taken as absent for lists and mappings (the controls read `x or []`), never for a string or a number.
# A malformed object is an input error (exit 2) naming the object and the field: the audit never judges a
# snapshot it cannot read as Kubernetes would, and never stops on a traceback.

class _Str:
    """A string (`null` allowed when `nullable`)."""

    def __init__(self, nullable: bool = False):
        self.nullable = nullable


STR, OPT_STR = _Str(), _Str(nullable=True)
INT = "int"  # an integer (not a boolean)
MAP = "map"  # any mapping
STR_MAP = "str-map"  # a mapping of strings to strings
STR_LIST = "str-list"  # a list of strings

Shape = Any  # _Str | "int" | "map" | "str-map" | "str-list" | dict (mapping with these fields) | [shape] (list of)

_SELECTOR = {"matchLabels": STR_MAP, "matchExpressions": [{"key": STR, "operator": STR, "values": STR_LIST}]}
_CONTAINER = {
    "name": STR, "image": STR, "command": STR_LIST, "args": STR_LIST,
    "env": [{"name": STR, "value": OPT_STR, "valueFrom": MAP}],
    "envFrom": [MAP],
    "volumeMounts": [{"name": STR, "mountPath": STR, "subPath": STR}],
    "ports": [MAP], "readinessProbe": MAP, "livenessProbe": MAP,
    "resources": {"requests": MAP, "limits": MAP},
    "securityContext": {"capabilities": {"add": STR_LIST, "drop": STR_LIST}, "seccompProfile": {"type": STR}},
}
_POD_SPEC = {
    "containers": [_CONTAINER], "initContainers": [_CONTAINER],
    "volumes": [{"name": STR, "configMap": {"name": STR}, "secret": {"secretName": STR},
                 "projected": {"sources": [MAP]}, "persistentVolumeClaim": {"claimName": STR}, "emptyDir": MAP}],
    "securityContext": {"seccompProfile": {"type": STR}},
    "serviceAccountName": OPT_STR, "nodeSelector": STR_MAP,
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": STR, "operator": STR, "values": STR_LIST}]}]}}},
    "topologySpreadConstraints": [{"topologyKey": STR}],
}
_TEMPLATE = {"metadata": {"labels": STR_MAP, "annotations": STR_MAP}, "spec": _POD_SPEC}
_CLAIM = {"metadata": {"name": STR}, "spec": {"storageClassName": OPT_STR}}
_WORKLOAD_SPEC = {"replicas": INT, "template": _TEMPLATE, "selector": _SELECTOR, "volumeClaimTemplates": [_CLAIM],
                  "persistentVolumeClaimRetentionPolicy": {"whenDeleted": STR}}
_RULES = [{"verbs": STR_LIST, "resources": STR_LIST, "apiGroups": STR_LIST, "resourceNames": STR_LIST}]
_PEERS = [MAP]

SHAPES: dict[str, dict] = {
    "Pod": {"spec": _POD_SPEC},
    "Deployment": {"spec": _WORKLOAD_SPEC}, "StatefulSet": {"spec": _WORKLOAD_SPEC},
    "DaemonSet": {"spec": _WORKLOAD_SPEC}, "ReplicaSet": {"spec": _WORKLOAD_SPEC}, "Job": {"spec": _WORKLOAD_SPEC},
    "CronJob": {"spec": {"jobTemplate": {"spec": _WORKLOAD_SPEC}}},
    "ConfigMap": {"data": STR_MAP},
    "NetworkPolicy": {"spec": {"podSelector": _SELECTOR, "policyTypes": STR_LIST,
                               "ingress": [{"from": _PEERS, "ports": [MAP]}], "egress": [{"to": _PEERS, "ports": [MAP]}]}},
    "Service": {"spec": {"type": STR, "ports": [MAP], "externalIPs": STR_LIST}},
    "Ingress": {"spec": MAP},
    "ServiceAccount": {},
    "ClusterRole": {"rules": _RULES}, "Role": {"rules": _RULES},
    "ClusterRoleBinding": {"roleRef": {"name": STR, "kind": STR}, "subjects": [{"name": STR, "kind": STR}]},
    "RoleBinding": {"roleRef": {"name": STR, "kind": STR}, "subjects": [{"name": STR, "kind": STR}]},
    "PodDisruptionBudget": {"spec": {"selector": _SELECTOR}},
    "StorageClass": {"provisioner": STR, "reclaimPolicy": STR, "parameters": STR_MAP,
                     "allowedTopologies": [{"matchLabelExpressions": [{"key": STR, "values": STR_LIST}]}]},
    "PersistentVolumeClaim": {"spec": {"storageClassName": OPT_STR}},
    "BackupStorageLocation": {"spec": {"config": {"region": STR}}},
    "Schedule": {"spec": {"schedule": STR, "template": {"includedNamespaces": STR_LIST, "storageLocation": STR,
                                                        "ttl": STR}}},
}
_METADATA = {"name": STR, "namespace": OPT_STR, "labels": STR_MAP, "annotations": STR_MAP, "ownerReferences": [MAP]}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _shape_problems(value: Any, shape: Shape, path: str, out: list[str]) -> None:
    """Append `path: expected …, got …` for every field of `value` that does not have its shape."""
    if type(shape) is dict and type(value) is dict:  # the common case first: a mapping with its fields
        for key, sub in shape.items():
            if key in value:
                _shape_problems(value[key], sub, f"{path}.{key}" if path else key, out)
        return
    if isinstance(shape, _Str):
        if not isinstance(value, str) and not (value is None and shape.nullable):
            out.append(f"{path}: expected a string, got {_type_name(value)}")
        return
    if value is None:
        if shape == INT:
            out.append(f"{path}: expected an integer, got null")
        return  # a null list or mapping reads as absent
    if shape == INT:
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{path}: expected an integer, got {_type_name(value)}")
    elif shape == MAP:
        if not isinstance(value, dict):
            out.append(f"{path}: expected a mapping, got {_type_name(value)}")
    elif shape == STR_MAP:
        if not isinstance(value, dict):
            out.append(f"{path}: expected a mapping, got {_type_name(value)}")
            return
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str):
                out.append(f"{path}.{k}: expected a string, got {_type_name(v)}" if isinstance(k, str) else
                           f"{path}: key {k!r} is not a string")
    elif shape == STR_LIST:
        if not isinstance(value, list):
            out.append(f"{path}: expected a list of strings, got {_type_name(value)}")
            return
        for i, v in enumerate(value):
            if not isinstance(v, str):
                out.append(f"{path}[{i}]: expected a string, got {_type_name(v)}")
    elif isinstance(shape, list):
        if not isinstance(value, list):
            out.append(f"{path}: expected a list, got {_type_name(value)}")
            return
        item = shape[0]
        for i, v in enumerate(value):
            if (isinstance(item, dict) or item in (MAP, STR_MAP)) and not isinstance(v, dict):
                out.append(f"{path}[{i}]: expected a mapping, got {_type_name(v)}")
            else:
                _shape_problems(v, item, f"{path}[{i}]", out)
    elif isinstance(shape, dict):
        if not isinstance(value, dict):
            out.append(f"{path}: expected a mapping, got {_type_name(value)}")
            return
        for key, sub in shape.items():
            if key in value:
                _shape_problems(value[key], sub, f"{path}.{key}" if path else key, out)


def object_problems(obj: Any) -> list[str]:
    """What in one object does not have the shape the audit reads (empty: well-formed)."""
    if not isinstance(obj, dict):
        return [f"not an object: {_type_name(obj)}"]
    out: list[str] = []
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        out.append(f"kind: expected a non-empty string, got {_type_name(kind) if kind != '' else 'an empty string'}")
    if "apiVersion" in obj and not isinstance(obj["apiVersion"], str):
        out.append(f"apiVersion: expected a string, got {_type_name(obj['apiVersion'])}")
    md = obj.get("metadata")
    if not isinstance(md, dict):
        out.append(f"metadata: expected a mapping, got {_type_name(md)}")
        return out
    name = md.get("name")
    if not isinstance(name, str) or not name:
        out.append(f"metadata.name: expected a non-empty string, got {_type_name(name) if name != '' else 'an empty string'}")
    _shape_problems(md, _METADATA, "metadata", out)
    out = list(dict.fromkeys(out))  # metadata.name may be reported twice
    shape = SHAPES.get(kind) if isinstance(kind, str) else None
    if shape:
        _shape_problems(obj, shape, "", out)
    return out


def describe(obj: Any, where: str) -> str:
    """How an object is named in an input error: Kind/namespace/name when it can be read, and where it is."""
    if isinstance(obj, dict):
        md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        kind, ns, name = obj.get("kind"), md.get("namespace"), md.get("name")
        parts = [str(p) for p in (kind or "?", ns, name or "?") if p not in (None, "")]
        return f"{'/'.join(parts)} ({where})"
    return where


def malformed(objects: list[tuple[Any, str]]) -> list[str]:
    """One line per malformed object (`Kind/ns/name (where): field: expected …`) and per duplicate object.

    `objects` are (object, where it was found: `items[3]`, `document 2`, `Deployment list`)."""
    out: list[str] = []
    seen: dict[ObjRef, list[str]] = {}
    for obj, where in objects:
        problems = object_problems(obj)
        if problems:
            out.append(f"{describe(obj, where)}: {'; '.join(problems)}")
            continue
        seen.setdefault(ObjRef.of(obj), []).append(where)
    for ref, places in seen.items():
        if len(places) > 1:
            out.append(f"{ref}: duplicate object, {len(places)} copies ({', '.join(places)}): "
                       "the audit cannot tell which one the cluster runs")
    return out
