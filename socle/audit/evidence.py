"""Evidence: the plain Kubernetes objects an audit judges, whatever their source, and views over them.

The audit's scope is the kit: its namespaces (label `app.kubernetes.io/part-of=socle`) with everything in them,
whoever created it, and the kit's objects elsewhere (cluster-scoped objects and Velero objects carrying the label).
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterable

from .model import ObjRef

from socle.constants import KIT, LABEL_PROFILE, PART_OF

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
        self.objects = [seen[k] for k in sorted(seen)]
        self._index = seen
        self._kit_namespaces = {meta(o)["name"]: o for o in self.objects
                                if o["kind"] == "Namespace" and labels(o).get(PART_OF) == KIT}
        self._workloads: list[Workload] | None = None
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
        return [o for o in self.objects if (not kinds or o["kind"] in kinds) and self.in_scope(o)]

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
        name, ns = meta(cm).get("name"), meta(cm).get("namespace")
        out = []
        for w in self.workloads():
            if w.namespace != ns:
                continue
            vols = {v["name"] for v in w.pod_spec.get("volumes") or [] if dig(v, "configMap", "name") == name}
            for c in w.containers():
                for m in c.get("volumeMounts") or []:
                    if m.get("name") in vols:
                        out.append((w, c, m.get("mountPath", "")))
        return out

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
