"""`socle upgrade STACK --to VERSION`: migrate a stack file to the kit's blueprint version, after proving that the
upgrade loses nothing.

1. Migration. The stack file records the blueprint's major version (`socle:blueprintVersion`); the blueprint's
   `migrations` map `(from, to)` versions to functions of the parameters (a dict). The chain from the stack's major
   to the kit's is applied, the result validated by the kit's parameter model; the stack file is edited in place,
   value by value, so that its comments survive (docs/UPGRADING.md says what a migration may lose).
2. Upgrade-safety check. The objects before (the kit's code at a git ref, with the stack file as it is: `--from-ref`;
   or the stack's deployed Pulumi state: `--from-state`) and after (this kit's code, with the migrated stack file)
   are compared object by object under the engine's URNs and aliases (socle/urns.py), with the replacement rules of
   pulumi-kubernetes (provider/pkg/provider/diff.go, `forceNew`). Every object that would be replaced or deleted is
   listed; a stateful one (StatefulSet, PersistentVolumeClaim, PersistentVolume, Namespace, StorageClass, any Velero
   object) stops the upgrade unless acknowledged by name, and nothing is written.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml

from . import urns

EXIT_BLOCKED = 1  # the check found an unacknowledged stateful replacement or deletion
EXIT_INVALID = 2  # bad input: version, ref, stack file, or a program that refuses its configuration

STATEFUL_KINDS = frozenset({"StatefulSet", "PersistentVolumeClaim", "PersistentVolume", "Namespace", "StorageClass"})
STATEFUL_GROUPS = frozenset({"velero.io"})  # Schedules, backup and snapshot locations, backups, restores


class UpgradeError(Exception):
    """One or more one-line problems; nothing was written."""

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


# --- versions and migrations ----------------------------------------------------------------------------------------

def parse_version(text: Any) -> tuple[int, ...]:
    """"1" or "1.2.3" -> (1,) or (1, 2, 3); ValueError otherwise."""
    parts = str(text).strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts):
        raise ValueError(f"{text!r} is not a version (MAJOR or MAJOR.MINOR.PATCH)")
    return tuple(int(p) for p in parts)


def migration_chain(bp, from_major: int, to_major: int) -> list[tuple[str, str, Callable[[dict], dict]]]:
    """The migrations from one major version to another, in order (breadth-first: fewest steps)."""
    steps: dict[int, list[tuple[int, str, str, Callable]]] = {}
    for (a, b), fn in bp.migrations.items():
        steps.setdefault(parse_version(a)[0], []).append((parse_version(b)[0], str(a), str(b), fn))
    paths: dict[int, list] = {from_major: []}
    frontier = [from_major]
    while frontier and to_major not in paths:
        nxt = []
        for v in frontier:
            for w, a, b, fn in sorted(steps.get(v, []), key=lambda s: s[0]):
                if w > v and w <= to_major and w not in paths:
                    paths[w] = paths[v] + [(a, b, fn)]
                    nxt.append(w)
        frontier = nxt
    if to_major not in paths:
        known = ", ".join(f"{a} -> {b}" for a, b in sorted(bp.migrations, key=lambda k: (parse_version(k[0]), parse_version(k[1]))))
        raise UpgradeError(f"no migration path for {bp.name} from {from_major} to {to_major} (this kit has: "
                           f"{known or 'no migration'})")
    return paths[to_major]


@dataclass(frozen=True)
class Migration:
    blueprint: str
    from_major: int
    to_major: int
    steps: tuple[str, ...]  # "1 -> 2", ...
    old_config: dict[str, Any]
    new_config: dict[str, Any]


def migrate(config: Any, file: str, to: str) -> Migration:
    """The stack's configuration migrated to `to` (which must be this kit's blueprint version or its major)."""
    from socle.blueprints import registry

    from .stackfile import CONFIG_NS

    key = f"{CONFIG_NS}:blueprintVersion"
    if not isinstance(config, dict):
        raise UpgradeError(f"{file}:config: must be a mapping")
    name = config.get(f"{CONFIG_NS}:blueprint")
    bp = registry().get(name) if isinstance(name, str) else None
    if bp is None:
        raise UpgradeError(f"{file}:config.{CONFIG_NS}:blueprint: unknown blueprint {name!r} "
                           f"(one of: {', '.join(sorted(registry()))})")
    try:
        target = parse_version(to)
    except ValueError as exc:
        raise UpgradeError(f"--to: {exc}") from None
    try:
        current = parse_version(config.get(key))[0]
    except ValueError:
        raise UpgradeError(f"{file}:config.{key}: {config.get(key)!r} is not a blueprint major version") from None
    kit = parse_version(bp.version)
    if target[0] < current:
        raise UpgradeError(f"--to {to}: the stack is at {bp.name} {current}; a downgrade is not supported "
                           "(restore the stack file and the state from before the upgrade instead)")
    if target[0] != kit[0] or (len(target) == 3 and target != kit) or (len(target) == 2 and target != kit[:2]):
        raise UpgradeError(f"--to {to}: unknown {bp.name} version for this kit, which has {bp.name} {bp.version} "
                           f"(use --to {kit[0]} or --to {bp.version}; another version needs the kit that ships it)")
    chain = migration_chain(bp, current, kit[0]) if current != kit[0] else []
    params = config.get(f"{CONFIG_NS}:params")
    new_params = copy.deepcopy(params)
    for a, b, fn in chain:
        if not isinstance(new_params, dict):
            break
        result = fn(copy.deepcopy(new_params))
        if not isinstance(result, dict):
            raise UpgradeError(f"{file}:config.{CONFIG_NS}:params: the migration {a} -> {b} of {bp.name} returned "
                               f"{type(result).__name__}, not the parameters")
        new_params = result
    new_config = dict(config)
    if chain:
        new_config[key] = str(kit[0])
        new_config[f"{CONFIG_NS}:params"] = new_params
    return Migration(bp.name, current, kit[0], tuple(f"{a} -> {b}" for a, b, _ in chain), config, new_config)


# --- the stack file, edited value by value ------------------------------------------------------------------------

class _Rewrite(Exception):
    """This node cannot be edited in place: its parent entry is rewritten whole."""


def _dump_flow(value: Any, style: str | None = None) -> str:
    if isinstance(value, str) and style == '"':
        return json.dumps(value, ensure_ascii=False)
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10 ** 6)
    if text.endswith("\n...\n"):
        text = text[: -len("\n...\n")]
    return text.strip()


def _dump_block(value: Any, indent: int) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


class _Editor:
    def __init__(self, text: str):
        self.text = text
        self.edits: list[tuple[int, int, str]] = []
        self.rewritten: list[str] = []  # key paths written whole

    def line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def line_end(self, index: int) -> int:
        nl = self.text.find("\n", index)
        return len(self.text) if nl < 0 else nl + 1

    @staticmethod
    def last(node: yaml.Node) -> int:
        """Index just after the node's last character of content (a block collection's end mark lies past the
        comments that follow it)."""
        if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
            return _Editor.last(node.value[-1][1])
        if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
            return _Editor.last(node.value[-1])
        return node.end_mark.index

    def entry_span(self, key: yaml.Node, value: yaml.Node) -> tuple[int, int]:
        start = self.line_start(key.start_mark.index)
        if self.text[start:key.start_mark.index].strip():  # `- key: v`: the first key of a list item
            raise _Rewrite()
        return start, self.line_end(self.last(value))

    def comments_above(self, start: int, indent: int) -> int:
        while start > 0:
            prev = self.line_start(start - 1)
            line = self.text[prev:start - 1]
            if not (line.startswith(" " * indent + "#") and not line[:indent].strip()):
                break
            start = prev
        return start

    def mapping(self, node: yaml.Node, old: dict, new: dict, path: str = "") -> None:
        if not isinstance(node, yaml.MappingNode) or node.flow_style or not node.value:
            raise _Rewrite()
        entries = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        if set(entries) != set(old):
            raise _Rewrite()
        removed = [k for k in old if k not in new]
        added = [k for k in new if k not in old]
        indent = node.value[0][0].start_mark.column
        for k in list(removed):  # a key renamed with its value unchanged: the key alone is rewritten
            same = [a for a in added if new[a] == old[k]]
            if len(same) == 1:
                key_node = entries[k][0]
                self.edits.append((key_node.start_mark.index, key_node.end_mark.index, _dump_flow(same[0])))
                removed.remove(k)
                added.remove(same[0])
        for k in removed:  # with the comment lines right above it, at its indentation: they describe it
            start, end = self.entry_span(*entries[k])
            self.edits.append((self.comments_above(start, indent), end, ""))
        for k in old:
            if k in new and old[k] != new[k]:
                key_node, value_node = entries[k]
                mark = (len(self.edits), len(self.rewritten))
                try:
                    self.value(value_node, old[k], new[k], f"{path}.{k}" if path else str(k))
                except _Rewrite:  # the entry written whole, instead of the edits made inside it
                    del self.edits[mark[0]:], self.rewritten[mark[1]:]
                    start, end = self.entry_span(key_node, value_node)
                    self.edits.append((start, end, _dump_block({k: new[k]}, indent)))
                    self.rewritten.append(f"{path}.{k}" if path else str(k))
        if added:
            at = self.line_end(self.last(node.value[-1][1]))
            if at == len(self.text) and not self.text.endswith("\n"):
                self.edits.append((at, at, "\n"))
            self.edits.append((at, at, _dump_block({k: new[k] for k in added}, indent)))

    def value(self, node: yaml.Node, old: Any, new: Any, path: str) -> None:
        if isinstance(old, dict) and isinstance(new, dict):
            self.mapping(node, old, new, path)
        elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and old:
            if not isinstance(node, yaml.SequenceNode) or node.flow_style:
                raise _Rewrite()
            for i, (item, a, b) in enumerate(zip(node.value, old, new)):
                if a != b:
                    self.value(item, a, b, f"{path}[{i}]")
        elif not isinstance(new, (dict, list)) and isinstance(node, yaml.ScalarNode):
            self.edits.append((node.start_mark.index, node.end_mark.index, _dump_flow(new, node.style)))
        else:
            raise _Rewrite()

    def result(self) -> str:
        text = self.text
        for start, end, replacement in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            text = text[:start] + replacement + text[end:]
        return text


def edit_stack_text(text: str, old_config: dict, new_config: dict) -> tuple[str, list[str]]:
    """The stack file's text with `config:` changed from old to new, value by value, comments kept. Returns (text,
    rewritten): the key paths of the entries written whole because their new value could not be placed in the old
    one's text (a flow-style `{...}` value, the first key of a list item removed): the comments inside them are lost.
    The result always parses to the new configuration (checked), else UpgradeError."""
    crlf = "\r\n" in text
    body = text.replace("\r\n", "\n")
    doc = yaml.safe_load(body)
    expected = dict(doc)
    expected["config"] = new_config
    root = yaml.compose(body, Loader=yaml.SafeLoader)
    config_node = next(v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "config")
    editor = _Editor(body)
    try:
        editor.mapping(config_node, old_config, new_config)
        out = editor.result()
    except _Rewrite:
        out = None
    if out is None or yaml.safe_load(out) != expected:
        raise UpgradeError("the migrated stack file could not be written back faithfully (its `config:` is not a "
                           "block mapping, or its text is unusual): migrate it by hand")
    return (out.replace("\n", "\r\n") if crlf else out), editor.rewritten


def stack_diff(old: str, new: str, name: str) -> list[str]:
    return [line.rstrip("\n") for line in difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                                              fromfile=f"{name} (before)", tofile=f"{name} (after)")]


def write_atomically(path: Path, text: str, expected_before: bytes) -> None:
    """Replace the file in one rename (same directory, mode kept); refused if it changed since it was read."""
    target = path.resolve()
    if target.read_bytes() != expected_before:
        raise UpgradeError(f"{path}: changed while the upgrade was being checked; nothing was written (run it again)")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".upgrade", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- renders, old and new -------------------------------------------------------------------------------------------

def code_root() -> Path:
    """The directory holding this kit's `socle` package (its components and blueprints inside)."""
    return Path(__file__).resolve().parent.parent


def project_name(root: Path) -> str:
    try:
        doc = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8"))
        return str(doc.get("name") or "socle")
    except (OSError, yaml.YAMLError, AttributeError):
        return "socle"


def companions(stack_path: Path, name: str) -> Path:
    """The folder beside a stack file named after the stack (a regional stack's `tenants/`): part of the stack."""
    return stack_path.resolve().parent / name


@contextmanager
def scratch_project(project: str, stack_name: str, stack_text: str, extra: Path | None = None) -> Iterator[Path]:
    """A temporary project: Pulumi.yaml, the stack file's text, and its companion folder (copied)."""
    with tempfile.TemporaryDirectory(prefix="socle-upgrade-project-") as tmp:
        root = Path(tmp)
        (root / "Pulumi.yaml").write_text(f"name: {project}\nruntime: python\n", encoding="utf-8")
        (root / "stacks").mkdir()
        (root / "stacks" / f"Pulumi.{stack_name}.yaml").write_text(stack_text, encoding="utf-8")
        if extra is not None and extra.is_dir():
            shutil.copytree(extra, root / "stacks" / stack_name, symlinks=False)
        yield root


def record_in_subprocess(code_dir: Path, stack_name: str, stack_text: str, config: dict[str, Any], project: str,
                         program: str = "socle.program:run", timeout: float = 600,
                         extra: Path | None = None) -> list[dict[str, Any]]:
    """The resources the program at `code_dir` registers for the stack (socle/urns.py, in a separate interpreter,
    in a scratch project holding the stack file's text and its companion folder `extra`)."""
    from .stackfile import pulumi_config

    with scratch_project(project, stack_name, stack_text, extra) as root:
        request = {"program": program, "stack": stack_name, "project": project, "config": pulumi_config(config)}
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPATH", None)
        run = subprocess.run([sys.executable, "-c", urns.BOOTSTRAP, str(code_dir), str(Path(urns.__file__).resolve())],
                             input=json.dumps(request), capture_output=True, text=True, cwd=root, env=env, timeout=timeout)
    try:
        answer = json.loads(run.stdout)
    except ValueError:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise UpgradeError(f"the program at {code_dir} failed: {tail[:500]}") from None
    if "error" in answer:
        lines = [line for line in str(answer["error"]).splitlines() if line.strip()]
        raise UpgradeError(*[f"the program at {code_dir} refused the stack: {lines[0] if lines else '?'}"] + lines[1:])
    return answer["resources"]


def validate_text(stack_text: str, stack_name: str, shown: str, project: str, extra: Path | None) -> list[str]:
    """Every problem `socle validate` would find in the stack file's new text (with its companion files), each
    shown under the stack file's own name."""
    from .stackfile import StackError, load

    with scratch_project(project, stack_name, stack_text, extra) as root:
        try:
            load(str(root / "stacks" / f"Pulumi.{stack_name}.yaml"))
        except StackError as exc:
            here, there = str(root / "stacks"), str(Path(shown).parent)
            return [str(dataclasses.replace(p, file=p.file.replace(here, there, 1))) for p in exc.problems]
    return []


def export_ref(ref: str, repo: Path, into: Path) -> tuple[str, Path, Path]:
    """The kit's repository at git `ref` extracted into `into`; returns the commit id, where the kit's code
    (`repo`, relative to the repository's top) lies in the extracted tree, and the repository's top."""
    def git(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120, **kw)

    try:
        top = git("rev-parse", "--show-toplevel", text=True)
    except FileNotFoundError:
        raise UpgradeError("--from-ref needs git, which is not installed (or use --from-state)") from None
    if top.returncode != 0:
        raise UpgradeError(f"--from-ref: the kit at {repo} is not a git checkout (use --from-state)")
    found = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", text=True)
    if found.returncode != 0 or not found.stdout.strip():
        raise UpgradeError(f"--from-ref {ref}: no such commit in {top.stdout.strip()}")
    commit = found.stdout.strip()
    archive = git("archive", "--format=tar", commit)
    if archive.returncode != 0:
        raise UpgradeError(f"--from-ref {ref}: git archive failed: {archive.stderr.decode(errors='replace').strip()[:300]}")
    import io

    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    top_dir = Path(top.stdout.strip()).resolve()
    return commit, into / repo.resolve().relative_to(top_dir), top_dir


def state_records(stack_name: str, root: Path, stack_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of the stack's deployed state (`pulumi stack export`, Automation API), as urns.py records
    them. Secret values stay encrypted: they are compared as unknown."""
    from pulumi import automation as auto

    from . import engine

    path = engine.program_path()
    if engine.missing_programs(path)[:1] == ["pulumi"]:
        raise UpgradeError("--from-state needs the Pulumi CLI (or build it with `socle cluster build`), or use --from-ref")
    be = engine.backend(root)
    problem = engine.secrets_problem(engine.secrets_provider(stack_doc, be))
    if problem:  # `pulumi stack export` opens the state's secrets manager
        raise UpgradeError(f"--from-state: {problem}")
    env = {"PULUMI_BACKEND_URL": be.url, "PATH": path, **engine.QUIET_ENV}
    os.environ["PATH"] = path
    try:
        ws = auto.LocalWorkspace(work_dir=str(root), env_vars=env)
        deployment = auto.Stack.select(stack_name, ws).export_stack().deployment or {}
    except auto.CommandError as exc:
        said = [line.split("error:", 1)[1].strip() for line in str(exc).splitlines() if "error:" in line]
        raise UpgradeError(f"--from-state: the state of stack {stack_name} in {be.url} ({be.origin}) could not be read: "
                           f"{(said or ['see `pulumi stack export`'])[-1][:300]}") from None
    return records_from_state(deployment)


def records_from_state(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in deployment.get("resources") or []:
        typ = str(r.get("type", ""))
        if typ == urns.ROOT_STACK_TYPE or typ.startswith("pulumi:providers:") or r.get("external") or r.get("delete"):
            continue
        parent = r.get("parent") or ""
        if parent and urns.qualified_type(parent) == urns.ROOT_STACK_TYPE:
            parent = ""
        rec = {"urn": r["urn"], "type": typ, "name": urns.urn_name(r["urn"]), "parent": parent,
               "custom": bool(r.get("custom")), "protect": bool(r.get("protect")),
               "retainOnDelete": bool(r.get("retainOnDelete")), "aliases": []}
        if r.get("custom"):
            rec["inputs"] = _state_inputs(r.get("inputs") or {})
        out.append(rec)
    return out


def _state_inputs(value: Any) -> Any:
    if isinstance(value, dict):
        if urns.SECRET_SIG in value:
            return dict(STATE_SECRET)
        return {k: _state_inputs(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_state_inputs(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _stack_at_ref(path: Path, name: str, export: Path, top: Path, text: str, config: dict[str, Any],
                  ref: str) -> tuple[str, dict[str, Any], Path, str]:
    """The stack file (and its companion folder) the old code was deployed with: the repository's own at the ref
    when it tracks the stack file there (the example stacks), else the file as it is (a stack of yours, which the
    kit's history lacks)."""
    from .safeyaml import load_stack_yaml
    from .stackfile import StackError

    try:
        rel = path.resolve().relative_to(top)
    except ValueError:
        rel = None
    old = export / rel if rel is not None else None
    if old is None or not old.is_file():
        return text.replace("\r\n", "\n"), config, companions(path, name), "the stack file as it is"
    old_text = old.read_text(encoding="utf-8").replace("\r\n", "\n")
    try:
        doc = load_stack_yaml(old_text, f"{rel}@{ref}")
    except StackError as exc:
        raise UpgradeError(*[str(p) for p in exc.problems]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise UpgradeError(f"{rel}@{ref}:config: a stack file is a mapping with a `config:` mapping")
    return old_text, doc["config"], old.parent / name, f"the stack file as the repository has it there ({rel})"


# --- the comparison -------------------------------------------------------------------------------------------------

def _gvk(type_: str) -> tuple[str, str, str] | None:
    """("apps", "v1", "StatefulSet") of `kubernetes:apps/v1:StatefulSet`; None for other packages."""
    parts = type_.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return None
    group, version = parts[1].rsplit("/", 1)
    return group, version, parts[2]


_SELECTOR = ("matchExpressions", "matchLabels")
_STATEFULSET = (".spec.podManagementPolicy", ".spec.revisionHistoryLimit", ".spec.selector", ".spec.serviceName",
                ".spec.volumeClaimTemplates")
_POD_CONTAINER = ("args", "command", "env", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "ports",
                  "readinessProbe", "resources", "securityContext", "stdin", "stdinOnce", "terminationMessagePath",
                  "terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts", "workingDir")
_POD = tuple(f".spec.{f}" for f in (
    "affinity", "automountServiceAccountToken", "dnsConfig", "dnsPolicy", "enableServiceLinks", "hostAliases",
    "hostIPC", "hostNetwork", "hostPID", "hostname", "imagePullSecrets", "nodeName", "nodeSelector", "overhead",
    "preemptionPolicy", "priority", "priorityClassName", "readinessGates", "restartPolicy", "runtimeClassName",
    "schedulerName", "securityContext", "serviceAccount", "serviceAccountName", "shareProcessNamespace", "subdomain",
    "terminationGracePeriodSeconds", "volumes")) + tuple(
    f"{p}[*].{f}" for p in (".spec.containers", ".spec.initContainers") for f in _POD_CONTAINER)
_CORE = {
    "PersistentVolume": tuple(f".spec.{s}" for s in (
        "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume", "flocker",
        "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs", "photonPersistentDisk",
        "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume")),
    "PersistentVolumeClaim": (".spec.accessModes", ".spec.selector", ".spec.storageClassName", ".spec.volumeName"),
    "Pod": _POD,
    "ResourceQuota": (".spec.scopes",),
    "Service": (".spec.clusterIP",),
}
_JOB = (".spec.completions", ".spec.parallelism", ".spec.selector", ".spec.template")
_BINDING = (".roleRef",)
# pulumi-kubernetes 4.x, provider/pkg/provider/diff.go (`forceNew`), by (group, version): kind -> paths.
FORCE_NEW: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("apps", "v1beta1"): {"StatefulSet": _STATEFULSET},
    ("apps", "v1beta2"): {"DaemonSet": (".spec.selector",), "Deployment": (".spec.selector",), "StatefulSet": _STATEFULSET},
    ("apps", "v1"): {"DaemonSet": (".spec.selector",), "Deployment": (".spec.selector",), "StatefulSet": _STATEFULSET},
    ("core", "v1"): _CORE,
    ("policy", "v1beta1"): {"PodDisruptionBudget": (".spec",)},
    **{("rbac.authorization.k8s.io", v): {"ClusterRoleBinding": _BINDING, "RoleBinding": _BINDING}
       for v in ("v1alpha1", "v1beta1", "v1")},
    ("storage.k8s.io", "v1"): {"StorageClass": (".parameters", ".provisioner")},
    **{("batch", v): {"Job": _JOB} for v in ("v1beta1", "v1", "v2alpha1")},
}


def force_new_paths(type_: str, obj: dict[str, Any], secret_mutable: bool = False,
                    configmap_mutable: bool = False) -> tuple[str, ...]:
    """The fields of a Kubernetes object whose change makes pulumi-kubernetes replace it."""
    gvk = _gvk(type_)
    if gvk is None:
        return ()
    group, version, kind = gvk
    paths: tuple[str, ...] = (".metadata.name", ".metadata.namespace")
    kinds = FORCE_NEW.get((group, version))
    if kinds is None:
        return paths
    immutable = obj.get("immutable") is True
    if group == "core" and kind == "Secret" and (not secret_mutable or immutable):
        return paths + (".type", ".stringData", ".data")
    if kind in kinds:
        return paths + kinds[kind]
    if group == "core" and kind == "ConfigMap" and (not configmap_mutable or immutable):
        return paths + (".binaryData", ".data")
    return paths


_MISSING = object()


def values_at(obj: Any, path: str) -> list[Any]:
    """The values at a `.a.b[*].c` path (one per `[*]` expansion; _MISSING where absent)."""
    values = [obj]
    for part in path.strip(".").split("."):
        star = part.endswith("[*]")
        name = part[:-3] if star else part
        nxt = []
        for v in values:
            v = v.get(name, _MISSING) if isinstance(v, dict) else _MISSING
            if star:
                nxt.extend(v if isinstance(v, list) else [_MISSING])
            else:
                nxt.append(v)
        values = nxt
    return values


STATE_SECRET = {"secret": "<encrypted in the state>"}
# Inputs of other providers that change in place (terraform-provider-tls: no RequiresReplace); every other input of
# the tls and random resources replaces them.
UPDATABLE = {"tls:index/locallySignedCert:LocallySignedCert": {"earlyRenewalHours"},
             "tls:index/selfSignedCert:SelfSignedCert": {"earlyRenewalHours"}}


def _has_secret(value: Any) -> bool:
    """A value the deployed state holds encrypted: not comparable offline."""
    if isinstance(value, dict):
        return value == STATE_SECRET or any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


def _comparable(value: Any) -> Any:
    return None if value is _MISSING else value


@dataclass(frozen=True)
class Change:
    action: str  # "replace" or "delete"
    object: str  # Kind/namespace/name (Kubernetes), else type::name
    urn: str
    reason: str
    stateful: bool
    protected: bool = False
    acknowledged: bool = False

    def line(self) -> str:
        verdict = ""
        if self.stateful:
            verdict = ("  [stateful: acknowledged]" if self.acknowledged else
                       f"  [stateful: BLOCKED — acknowledge with --acknowledge {self.object}]")
        if self.protected:
            verdict += "  [protected: the engine refuses it until the old code's protection is lifted]"
        return f"{self.action.upper():7} {self.object}: {self.reason}{verdict}"


@dataclass
class Comparison:
    changes: list[Change] = field(default_factory=list)
    kept: int = 0  # same URN, nothing that forces a replacement
    moved: list[tuple[str, str]] = field(default_factory=list)  # (old URN, new URN) matched through an alias
    created: list[str] = field(default_factory=list)  # objects only the new code has
    updated: int = 0  # kept or moved, with inputs that change in place
    unknown: list[str] = field(default_factory=list)  # fields that cannot be compared offline (deployed secrets)
    warnings: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> list[Change]:
        return [c for c in self.changes if c.stateful and not c.acknowledged]


def object_id(rec: dict[str, Any]) -> str:
    """Kind/namespace/name of a Kubernetes object (Kind/name when cluster-scoped), as `--acknowledge` and
    `socle up --allow-replace` name it; `type::name` for other resources."""
    gvk = _gvk(rec["type"])
    meta = (rec.get("inputs") or {}).get("metadata") or {}
    if gvk and meta.get("name"):
        return "/".join(p for p in (gvk[2], meta.get("namespace"), meta.get("name")) if p)
    return f"{rec['type']}::{rec['name']}"


def is_stateful(type_: str) -> bool:
    gvk = _gvk(type_)
    return gvk is not None and (gvk[2] in STATEFUL_KINDS or gvk[0] in STATEFUL_GROUPS)


def _alias_urns(rec: dict[str, Any], stack: str, project: str, used: dict[str, str]) -> list[str]:
    """The engine's generateAliases (pkg/resource/deploy/step_generator.go): each alias collapsed to a URN, then
    the aliases inherited from a parent that itself matched its old state through an alias."""
    def collapse(alias: dict[str, Any]) -> str:
        if "urn" in alias:
            return alias["urn"]
        parent = alias.get("parent") or ""
        if not parent:
            parent = rec["parent"]
        elif parent in used:
            parent = used[parent]
        if alias.get("noParent") or (parent and urns.qualified_type(parent) == urns.ROOT_STACK_TYPE):
            parent = ""
        return urns.make_urn(alias.get("stack") or stack, alias.get("project") or project, parent,
                             alias.get("type") or rec["type"], alias.get("name") or rec["name"])

    def inherited(child_type: str, child_name: str, parent_name: str, parent_alias: str) -> str:
        name = child_name
        if child_name.startswith(parent_name):
            name = urns.urn_name(parent_alias) + child_name[len(parent_name):]
        return urns.make_urn(stack, project, parent_alias, child_type, name)

    out: list[str] = []
    for alias in rec.get("aliases") or []:
        out.append(collapse(alias))
    parent = rec["parent"]
    if parent and parent in used:
        parent_alias, parent_name = used[parent], urns.urn_name(parent)
        out.append(inherited(rec["type"], rec["name"], parent_name, parent_alias))
        for alias in rec.get("aliases") or []:
            child = collapse(alias)
            out.append(inherited(urns.urn_type(child), urns.urn_name(child), parent_name, parent_alias))
    seen: set[str] = set()
    return [u for u in out if not (u in seen or seen.add(u))]


def compare(old: list[dict[str, Any]], new: list[dict[str, Any]], *, stack: str, project: str,
            acknowledged: Iterable[str] = (), secret_mutable: bool = False, configmap_mutable: bool = False,
            from_state: bool = False) -> Comparison:
    """What `pulumi up` of the new program would do to the old resources, object by object."""
    acks = set(acknowledged)
    result = Comparison()
    matched: dict[str, str] = {}  # old URN -> new URN
    used: dict[str, str] = {}  # new URN -> old URN, when matched through an alias
    renewed_urns: set[str] = set()  # new URNs of the resources created or replaced: their outputs are new values
    old = [r for r in old if not r["type"].startswith("pulumi:providers:")]
    new = [r for r in new if not r["type"].startswith("pulumi:providers:")]
    olds = {r["urn"]: r for r in old}
    for rec in new:
        found = rec["urn"] if rec["urn"] in olds else None
        if found is None:
            for alias in _alias_urns(rec, stack, project, used):
                if alias in olds and alias not in matched:
                    found = alias
                    used[rec["urn"]] = alias
                    break
        if found is None:
            if rec.get("custom"):
                result.created.append(rec["urn"])
                renewed_urns.add(rec["urn"])
            continue
        matched[found] = rec["urn"]
        if found != rec["urn"]:
            result.moved.append((found, rec["urn"]))
        was = olds[found]
        if not (was.get("custom") and rec.get("custom")):
            continue
        reasons: list[str] = []
        a, b = was.get("inputs") or {}, rec.get("inputs") or {}
        derived = dict(rec.get("derived") or {}) if from_state else {}
        if _gvk(rec["type"]) is not None:
            paths = list(force_new_paths(rec["type"], b, secret_mutable, configmap_mutable))
        else:  # tls, random: every input of theirs replaces the resource, but a few. A deployed state also holds
            # the defaults their provider filled in: only the inputs the program gives are compared with it.
            given = b if from_state else (*a, *b)
            paths = sorted({f".{k}" for k in given if k not in UPDATABLE.get(rec["type"], ())})
        paths += [f".{p}" if p != "*" else "" for p in rec.get("replaceOnChanges") or []]
        for path in paths:
            if path == "":
                before, after = [a], [b]
            else:
                before, after = values_at(a, path), values_at(b, path)
            if [_comparable(v) for v in before] == [_comparable(v) for v in after]:
                continue
            top = path.strip(".").split(".")[0].split("[")[0]
            if top in derived:  # computed from generated values: changed only if their resource is new
                renewed = [u for u in derived[top] if u in renewed_urns]
                if renewed:
                    reasons.append(f"{path.strip('.')} (from {urns.urn_type(renewed[0])} {urns.urn_name(renewed[0])}, "
                                   "created anew)")
                else:
                    result.unknown.append(f"{object_id(was)} {path.strip('.')}")
                continue
            if _has_secret(before) or _has_secret(after):
                result.unknown.append(f"{object_id(was)} {path.strip('.')}")
                continue
            reasons.append(path.strip(".") or "any input (replaceOnChanges: *)")
        if reasons:
            renewed_urns.add(rec["urn"])
            if ".metadata.name" in [f".{r}" for r in reasons]:
                reasons = [f"metadata.name {_meta(a, 'name')} -> {_meta(b, 'name')}"] + [r for r in reasons if r != "metadata.name"]
            stateful = is_stateful(was["type"])
            ident = object_id(was)
            result.changes.append(Change("replace", ident, found, ", ".join(reasons) + " (a replacement: deleted and "
                                         "created again)", stateful, bool(was.get("protect") and rec.get("protect")),
                                         stateful and ident in acks))
        else:
            if a != b:
                result.updated += 1
            if found == rec["urn"]:
                result.kept += 1
            if is_stateful(was["type"]) and was.get("protect") and not rec.get("protect"):
                result.warnings.append(f"{object_id(was)} loses its protection (protect): a later change could delete it")
    new_ids: dict[str, str] = {}
    for rec in new:
        if rec["urn"] in result.created:
            new_ids.setdefault(object_id(rec), rec["urn"])
    for urn, was in olds.items():
        if urn in matched or not was.get("custom"):
            continue
        ident = object_id(was)
        again = new_ids.get(ident)
        reason = (f"the new code registers it as {again} without an alias to {urn}: deleted and created again"
                  if again else f"no resource of the new code has its URN ({urn}) or an alias to it")
        if was.get("retainOnDelete"):
            reason += " (retainOnDelete: left in the cluster, no longer managed)"
        stateful = is_stateful(was["type"])
        result.changes.append(Change("delete", ident, urn, reason, stateful, bool(was.get("protect")),
                                     stateful and ident in acks))
    result.changes.sort(key=lambda c: (not c.stateful, c.action, c.object))
    known = {c.object for c in result.changes}
    result.warnings += [f"--acknowledge {a}: the upgrade neither replaces nor deletes it" for a in sorted(acks - known)]
    return result


def _meta(obj: dict[str, Any], key: str) -> str:
    return str(((obj.get("metadata") or {}).get(key)) or "?")


# --- the command ----------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    code: int
    comparison: Comparison | None = None
    written: bool = False
    new_text: str | None = None


def run(stack: str, to: str, from_ref: str | None, from_state: bool, acknowledge: list[str], dry_run: bool,
        say: Callable[[str], None], warn: Callable[[str], None], code_dir: Path | None = None) -> Outcome:
    """`socle upgrade`: every line through `say` (stdout) or `warn` (stderr); returns the exit code."""
    from .safeyaml import load_stack_file
    from .stackfile import StackError, display, project_root, resolve

    code_dir = code_dir or code_root()
    if (from_ref is None) == (not from_state):
        warn("socle upgrade: give exactly one source of the objects as deployed: --from-ref GIT_REF (the kit's code "
             "the stack was deployed with) or --from-state (the stack's Pulumi state)")
        return Outcome(EXIT_INVALID)
    bad = [a for a in acknowledge if a.count("/") not in (1, 2) or not all(a.split("/"))]
    if bad:
        warn(f"socle upgrade: --acknowledge takes Kind/namespace/name or Kind/name (got {', '.join(map(repr, bad))})")
        return Outcome(EXIT_INVALID)
    name, path = resolve(stack)
    shown = display(path)
    if not path.is_file():
        warn(f"{shown}:-: no such stack file (stack '{name}')")
        return Outcome(EXIT_INVALID)
    raw = path.read_bytes()
    try:
        doc = load_stack_file(path, shown)
    except StackError as exc:
        for p in exc.problems:
            warn(str(p))
        return Outcome(EXIT_INVALID)
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        warn(f"{shown}:config: a stack file is a mapping with a `config:` mapping")
        return Outcome(EXIT_INVALID)
    try:
        mig = migrate(doc["config"], shown, to)
        bp_name = mig.blueprint
        text = raw.decode("utf-8")
        if mig.new_config != mig.old_config:
            new_text, rewritten = edit_stack_text(text, mig.old_config, mig.new_config)
        else:
            new_text, rewritten = text, []
        root = project_root()
        project = project_name(root)
        extra = companions(path, name)
        problems = validate_text(new_text.replace("\r\n", "\n"), name, shown, project, extra)
        if problems:
            raise UpgradeError(*problems)
        say(f"socle upgrade: stack {name} ({shown}), {bp_name} {mig.from_major} -> {mig.to_major}"
            + (f" through migration(s) {', '.join(mig.steps)}" if mig.steps else " (no migration)"))
        new_args = dict(code_dir=code_dir, stack_name=name, stack_text=new_text.replace("\r\n", "\n"),
                     config=mig.new_config, project=project, extra=extra)
        if from_ref is not None:
            with tempfile.TemporaryDirectory(prefix="socle-upgrade-ref-") as tmp:
                commit, old_code, top = export_ref(from_ref, code_dir, Path(tmp))
                old_text, old_config, old_extra, which = _stack_at_ref(path, name, Path(tmp), top, text, mig.old_config,
                                                                       from_ref)
                say(f"before: the kit's code at {from_ref} ({commit[:12]}) with {which}; after: the kit's code in "
                    f"{code_dir} with the migrated stack file")
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(2) as pool:  # two interpreters at once
                    later = pool.submit(record_in_subprocess, **new_args)
                    try:
                        old = record_in_subprocess(old_code, name, old_text, old_config, project, extra=old_extra)
                    finally:
                        new_error = later.exception()
                    if new_error is not None:
                        raise new_error
                    new = later.result()
        else:
            say(f"before: stack {name}'s deployed state; after: the kit's code in {code_dir} with the migrated stack file")
            old = state_records(name, root, doc)
            new = record_in_subprocess(**new_args)
    except UpgradeError as exc:
        lines = [line if line.startswith(shown) else f"socle upgrade: {line}" for line in exc.lines]
        if len(lines) == 1:
            warn(f"{lines[0]}; nothing was written")
        else:
            for line in lines:
                warn(line)
            warn(f"{len(lines)} problem(s); nothing was written.")
        return Outcome(EXIT_INVALID)
    flags = {k: str(doc["config"].get(f"kubernetes:{k}", "")).lower() == "true"
             for k in ("enableSecretMutable", "enableConfigMapMutable")}
    result = compare(old, new, stack=name, project=project, acknowledged=acknowledge,
                     secret_mutable=flags["enableSecretMutable"], configmap_mutable=flags["enableConfigMapMutable"],
                     from_state=from_ref is None)
    for line in stack_diff(text, new_text, shown):
        say(line)
    for key in rewritten:
        warn(f"{shown}:config.{key}: written whole (its new value could not be placed in the old one's text): the "
             "comments inside it are not kept")
    ids = {r["urn"]: object_id(r) for r in new}
    for before, after in result.moved:
        was, now = urns.split_urn(before), urns.split_urn(after)
        what = " -> ".join(dict.fromkeys((f"{was[2]}::{was[3]}", f"{now[2]}::{now[3]}")))
        say(f"MOVED   {ids.get(after, after)}: keeps its state through an alias ({what})")
    for change in result.changes:
        say(change.line())
    for w in result.warnings:
        warn(f"warning: {w}")
    if result.unknown:
        say(f"not comparable offline (secret values in the deployed state, or computed from generated keys and "
            f"passwords): {len(result.unknown)} field(s), e.g. {result.unknown[0]}")
    replaced = sum(c.action == "replace" for c in result.changes)
    deleted = sum(c.action == "delete" for c in result.changes)
    say(f"{result.kept} resources keep their URN, {len(result.moved)} keep their state through an alias, "
        f"{result.updated} change in place, {len(result.created)} are created, {replaced} replaced, {deleted} deleted.")
    if result.blocked:
        warn(f"socle upgrade: {len(result.blocked)} stateful object(s) would be replaced or deleted, their data with "
             "them: " + ", ".join(c.object for c in result.blocked) + ". Nothing was written. If that is what you "
             "want, name each one: " + " ".join(f"--acknowledge {c.object}" for c in result.blocked))
        return Outcome(EXIT_BLOCKED, result, new_text=new_text)
    if new_text == text:
        say(f"{shown}: unchanged (the stack file needs no migration); the upgrade loses no stateful object.")
        return Outcome(0, result, new_text=new_text)
    if dry_run:
        say(f"--dry-run: {shown} not written.")
        return Outcome(0, result, new_text=new_text)
    try:
        write_atomically(path, new_text, raw)
    except UpgradeError as exc:
        warn(f"socle upgrade: {exc}")
        return Outcome(EXIT_INVALID, result, new_text=new_text)
    say(f"{shown}: upgraded to {bp_name} {mig.to_major}; deploy with `socle up {name}`.")
    return Outcome(0, result, written=True, new_text=new_text)
