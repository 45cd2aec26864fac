"""Evidence sources, one interface: each returns an `Evidence` of plain Kubernetes objects.

- render:   the offline render of a stack (the Pulumi program under the SDK's mocks);
- snapshot: a file written by `kubectl get … -o yaml|json` (a List, or several YAML documents);
- live:     the current kube context or a kubeconfig, read-only, one LIST per kind (pages of 500 followed).
"""
from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any, Callable

import yaml
from yaml.events import (AliasEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent,
                         SequenceStartEvent, StreamEndEvent)
from yaml.nodes import ScalarNode

from socle.constants import AUDITED_RESOURCES

from .evidence import Evidence, describe, dig, malformed
from .model import ObjRef
from .runner import AuditInputError


def snapshot_command(output: str = "cluster.json") -> str:
    """The kubectl command that exports every kind the audit reads (what `--snapshot` expects). JSON: a regional
    cluster's export (20,000 objects) reads in a fraction of a second, YAML in several seconds."""
    kinds = ",".join(plural if not group else f"{plural}.{group}" for group, _v, plural, _k, _n in AUDITED_RESOURCES)
    return f"kubectl get {kinds} --all-namespaces -o json > {output}"


def from_render(stack) -> Evidence:
    from socle.render import object_path, run_program

    rendered = run_program(stack)
    files = {ObjRef.of(o): object_path(o) for o in rendered.objects}
    return Evidence(source=f"render:{stack.name}", objects=rendered.objects, target=f"stack {stack.name} ({stack.file})",
                    files=files)


MAX_DEPTH = 100  # nesting levels of a snapshot: Kubernetes objects use about 20; deeper is refused, not parsed
MAX_LISTED = 20  # malformed objects named one by one in the error; the rest are counted


def from_snapshot(path: Path) -> Evidence:
    """The evidence of a `kubectl get -o json|yaml` export. The cyclic garbage collector pauses while it is read:
    a regional cluster's export is millions of small containers, none in a cycle, which the collector would
    otherwise rescan again and again (the JSON parse of 20,000 objects took three times as long)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _from_snapshot(path)
    finally:
        if collecting:
            gc.enable()


def _from_snapshot(path: Path) -> Evidence:
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
            form = "json"
        else:
            docs = load_yaml_documents(text)
            form = "yaml"
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else (f"line {exc.lineno}: " if isinstance(exc, json.JSONDecodeError) else "")
        raise AuditInputError(f"{shown}: {where}not valid YAML or JSON ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:  # JSON nested deeper than the interpreter's recursion limit
        raise AuditInputError(f"{shown}: nested too deep to be read (more than {MAX_DEPTH} levels)") from None
    except YAMLReadError as exc:
        raise AuditInputError(f"{shown}: {exc}") from None
    placed: list[tuple[Any, str]] = []
    for i, doc in enumerate(docs):
        where = f"document {i + 1}" if len(docs) > 1 else ""
        if isinstance(doc, list):  # a bare sequence of objects
            placed += [(d, f"{where} item {j}".lstrip()) for j, d in enumerate(doc)]
        elif not (doc is None and form == "yaml"):  # an empty YAML document (`---` at the end) holds nothing
            placed.append((doc, where or "document 1"))
    objects, problems = flatten(placed)
    problems += malformed(objects)
    if problems:
        raise AuditInputError(_input_problems(shown, problems))
    return Evidence(source=f"snapshot:{shown}", objects=[o for o, _ in objects], target=f"snapshot {path.name}")


def _input_problems(shown: str, problems: list[str]) -> str:
    listed = "\n".join(f"  {p}" for p in problems[:MAX_LISTED])
    more = f"\n  … and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return (f"{shown}: {len(problems)} malformed or duplicate object(s); nothing audited (fix the export and "
            f"run again):\n{listed}{more}")


def flatten(placed: list[tuple[Any, str]]) -> tuple[list[tuple[Any, str]], list[str]]:
    """Objects with where they were found; `List` objects (kubectl's and the API server's `*List`) replaced by their
    items. An item of a List that is not an object (`null`, a string) is a problem, never dropped silently."""
    objects: list[tuple[Any, str]] = []
    problems: list[str] = []
    todo = list(reversed(placed))
    while todo:  # iterative: a List nested in a List nested in … cannot exhaust the stack
        obj, where = todo.pop()
        if isinstance(obj, dict) and isinstance(obj.get("kind"), str) and obj["kind"].endswith("List") \
                and "items" in obj:
            items = obj["items"]
            if items is None:
                continue  # an empty list as some clients write it
            if not isinstance(items, list):
                problems.append(f"{describe(obj, where)}: items: expected a list, got {_kind_of(items)}")
                continue
            prefix = "" if where == "document 1" else f"{where} "
            todo.extend(reversed([(item, f"{prefix}items[{i}]") for i, item in enumerate(items)]))
        elif not isinstance(obj, dict):
            problems.append(f"{where}: not a Kubernetes object: {_kind_of(obj)}"
                            + (f" {obj!r:.40}" if isinstance(obj, (str, int, float)) else ""))
        else:
            objects.append((obj, where))
    return objects, problems


def _kind_of(value: Any) -> str:
    return "null" if value is None else {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
                                         int: "a number", float: "a number"}.get(type(value), type(value).__name__)


# --- YAML: libyaml's C parser, nesting bounded ----------------------------------------------------------
#
# PyYAML's loaders compose a document recursively: in pure Python a deep document ends in RecursionError, in
# libyaml's Cython composer it can crash the process (100 000 nested lists do), and libyaml's scanner is
# quadratic in the flow nesting depth. So the snapshot is read event by event from the parser (which keeps its
# own stacks, no recursion), the depth counted as it goes and the read stopped past MAX_DEPTH, and the Python
# values built here from the events: the same values as `yaml.safe_load_all` (same implicit resolvers, same
# constructors), about 7 times faster than `CSafeLoader`'s composer and constructor on a large export.
# A document using what this reader does not build (anchors, aliases, explicit tags, merge keys, non-scalar
# keys) is read again by the ordinary safe loader, once its depth is known to be bounded.

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NO_KEY = object()
_PLAIN_TAGS = (None, "!")


class YAMLReadError(Exception):
    """YAML this reader refuses: nested deeper than MAX_DEPTH, or a scalar its type cannot hold (`2024-13-45`)."""

    def __init__(self, line: int | None, problem: str):
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.line, self.problem = line, problem


class _Unusual(Exception):
    """A construct the event reader leaves to PyYAML's safe loader."""


def load_yaml_documents(text: str) -> list[Any]:
    """Every YAML document of `text` (as `yaml.safe_load_all`), refusing nesting deeper than MAX_DEPTH."""
    try:
        return _read_events(text, build=True)
    except _Unusual:
        _read_events(text, build=False)  # the depth only: the safe loader's composer recurses
        try:
            return list(yaml.load_all(text, Loader=_Loader))
        except (ValueError, OverflowError) as exc:  # e.g. a timestamp with month 13
            raise YAMLReadError(None, f"a value cannot be read ({exc})") from None


def _read_events(text: str, build: bool) -> list[Any]:
    loader = _Loader(text)
    resolvers = loader.yaml_implicit_resolvers
    constructors = loader.yaml_constructors
    get_event = loader.get_event
    docs: list[Any] = []
    stack: list[Any] = []  # the collections being built
    keys: list[Any] = []  # per mapping being built: the key waiting for its value (_NO_KEY: none)
    depth = 0
    try:
        while True:
            ev = get_event()
            cls = ev.__class__
            if cls is ScalarEvent:
                if not build:
                    continue
                if ev.anchor is not None or ev.tag not in _PLAIN_TAGS:
                    raise _Unusual
                value: Any = ev.value
                if ev.implicit[0]:  # plain scalar: null, bool, int, float, timestamp or str, as the safe loader resolves
                    candidates = resolvers.get(value[0] if value else "")
                    if candidates:
                        for tag, regexp in candidates:
                            if regexp.match(value):
                                if tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
                                    raise _Unusual
                                try:
                                    value = constructors[tag](loader, ScalarNode(tag, value))
                                except (ValueError, OverflowError) as exc:
                                    raise YAMLReadError(ev.start_mark.line + 1, f"{value!r} cannot be read ({exc})") from None
                                break
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                depth += 1
                if depth > MAX_DEPTH:
                    raise YAMLReadError(ev.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
                if not build:
                    continue
                if ev.anchor is not None or (ev.tag not in _PLAIN_TAGS and not ev.implicit):
                    raise _Unusual
                stack.append({} if cls is MappingStartEvent else [])
                keys.append(_NO_KEY)
                continue
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                depth -= 1
                if not build:
                    continue
                value = stack.pop()
                keys.pop()
            elif cls is StreamEndEvent:
                return docs
            elif cls is AliasEvent:
                if build:
                    raise _Unusual
                continue
            else:  # stream and document start/end
                continue
            if not stack:
                docs.append(value)
                continue
            top = stack[-1]
            if top.__class__ is list:
                top.append(value)
            elif keys[-1] is _NO_KEY:
                if value.__class__ is dict or value.__class__ is list:
                    raise _Unusual  # a collection as a key: the safe loader says what is wrong with it
                keys[-1] = value
            else:
                top[keys[-1]] = value
                keys[-1] = _NO_KEY
    finally:
        loader.dispose()


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
    placed: list[tuple[Any, str]] = []
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
                try:
                    page = json.loads(resp.data or b"{}")
                except (ValueError, RecursionError):
                    raise AuditInputError(f"live:{name}: listing {plural}: the answer is not JSON") from None
                items = page.get("items") if isinstance(page, dict) else None
                if not isinstance(items, list) and not (isinstance(page, dict) and items is None):
                    raise AuditInputError(f"live:{name}: listing {plural}: the answer is not a list of objects")
                for item in items or []:
                    if isinstance(item, dict):
                        item.setdefault("apiVersion", f"{group}/{version}" if group else version)
                        item.setdefault("kind", kind)
                    placed.append((item, f"{kind} list item {count}"))
                    count += 1
                token = dig(page, "metadata", "continue")
                if not token:
                    break
            if progress:
                progress(kind, count)
    if forbidden:
        raise AuditInputError(f"live:{name}: not allowed to list {', '.join(forbidden)}; bind the socle-auditor "
                              "ClusterRole to your identity (see `socle auditor-kubeconfig`)")
    objects, problems = flatten(placed)
    problems += malformed(objects)
    if problems:
        raise AuditInputError(_input_problems(f"live:{name}", problems))
    server = client.configuration.host
    return Evidence(source=f"live:{name}", objects=[o for o, _ in objects], target=f"cluster {name} ({server})")
