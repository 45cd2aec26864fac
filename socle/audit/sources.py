"""Evidence sources, one interface: each returns an `Evidence` of plain Kubernetes objects.

- render:   the offline render of a stack (the Pulumi program under the SDK's mocks);
- snapshot: a file written by `kubectl get … -o yaml|json` (a List, or several YAML documents);
- live:     the current kube context or a kubeconfig, read-only, one LIST per kind (pages of 500 followed).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import yaml

from socle.constants import AUDITED_RESOURCES

from .evidence import Evidence, normalise
from .model import ObjRef
from .runner import AuditInputError


def snapshot_command(output: str = "cluster.yaml") -> str:
    """The kubectl command that exports every kind the audit reads (what `--snapshot` expects)."""
    kinds = ",".join(plural if not group else f"{plural}.{group}" for group, _v, plural, _k, _n in AUDITED_RESOURCES)
    return f"kubectl get {kinds} --all-namespaces -o yaml > {output}"


def from_render(stack) -> Evidence:
    from socle.render import object_path, run_program

    rendered = run_program(stack)
    files = {ObjRef.of(o): object_path(o) for o in rendered.objects}
    return Evidence(source=f"render:{stack.name}", objects=rendered.objects, target=f"stack {stack.name} ({stack.file})",
                    files=files)


def from_snapshot(path: Path) -> Evidence:
    shown = str(path)
    if not path.is_file():
        raise AuditInputError(f"{shown}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AuditInputError(f"{shown}: not UTF-8 text") from None
    try:
        if text.lstrip().startswith(("{", "[")):
            docs = [json.loads(text)]
        else:
            docs = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else (f"line {exc.lineno}: " if isinstance(exc, json.JSONDecodeError) else "")
        raise AuditInputError(f"{shown}: {where}not valid YAML or JSON ({getattr(exc, 'problem', None) or exc})") from None
    if docs and isinstance(docs[0], list):
        docs = docs[0]
    objects = normalise(d for d in docs if d is not None)
    bad = [i for i, o in enumerate(objects) if not (o.get("kind") and (o.get("metadata") or {}).get("name"))]
    if bad:
        raise AuditInputError(f"{shown}: {len(bad)} document(s) are not Kubernetes objects (no kind or metadata.name), "
                              f"first at index {bad[0]}")
    return Evidence(source=f"snapshot:{shown}", objects=objects, target=f"snapshot {path.name}")


Progress = Callable[[str, int], None]


def from_live(kubeconfig: str | None = None, context: str | None = None, progress: Progress | None = None) -> Evidence:
    """Read the cluster with the caller's credentials: GET only, one LIST per kind across all namespaces."""
    from kubernetes import config as kconfig
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    try:
        client = kconfig.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
        contexts, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, FileNotFoundError, OSError) as exc:
        raise AuditInputError(f"kubeconfig {kubeconfig or '(default)'}: {exc}") from None
    name = context or (active or {}).get("name", "current-context")
    objects: list[dict] = []
    forbidden: list[str] = []
    with client:
        for group, version, plural, kind, _namespaced in AUDITED_RESOURCES:
            base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
            token = None
            count = 0
            while True:
                query = [("limit", 500)] + ([("continue", token)] if token else [])
                method, url, headers, body, post = client.param_serialize(
                    "GET", f"{base}/{plural}", query_params=query, header_params={"Accept": "application/json"},
                    auth_settings=["BearerToken"])
                try:
                    resp = client.call_api(method, url, header_params=headers, body=body, post_params=post,
                                           _request_timeout=30)
                    resp.read()
                except ApiException as exc:
                    raise AuditInputError(f"live:{name}: listing {plural}: {exc.status} {exc.reason}") from None
                except Exception as exc:  # connection refused, TLS, DNS: the cluster cannot be read
                    raise AuditInputError(f"live:{name}: cannot reach the API server ({type(exc).__name__}: {exc})") from None
                if resp.status == 404:
                    break  # API group not served (e.g. Velero not installed): no objects of this kind
                if resp.status in (401, 403):
                    forbidden.append(f"{plural}{'.' + group if group else ''}")
                    break
                if resp.status >= 400:
                    raise AuditInputError(f"live:{name}: listing {plural}: HTTP {resp.status}")
                page = json.loads(resp.data or b"{}")
                for item in page.get("items") or []:
                    item.setdefault("apiVersion", f"{group}/{version}" if group else version)
                    item.setdefault("kind", kind)
                    objects.append(item)
                    count += 1
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
            if progress:
                progress(kind, count)
    if forbidden:
        raise AuditInputError(f"live:{name}: not allowed to list {', '.join(forbidden)}; bind the socle-auditor "
                              "ClusterRole to your identity (see `socle auditor-kubeconfig`)")
    server = client.configuration.host
    return Evidence(source=f"live:{name}", objects=objects, target=f"cluster {name} ({server})")
