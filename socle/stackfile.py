"""Stack files: find, load and validate them; every problem at once, each with file and key path."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from socle.blueprints import Blueprint, registry

from .secretvalue import DECRYPTED, NOT_ENCRYPTED

CONFIG_NS = "socle"
KNOWN_KEYS = {f"{CONFIG_NS}:blueprint", f"{CONFIG_NS}:blueprintVersion", f"{CONFIG_NS}:params", f"{CONFIG_NS}:audit",
              f"{CONFIG_NS}:blueprintDigest"}  # the certified blueprint the stack is pinned to (socle.certify)
# The providers the kit's program uses, with the configuration keys each one reads (from its schema: the
# pulumi-kubernetes provider's `config.variables`; random and tls read none): a key of one of these namespaces that
# the provider does not know is a typo the provider would silently ignore. Other namespaces (`pulumi:`, or a
# provider the stack's owner uses for their own resources, such as `aws:` or `scaleway:`) are passed through as
# Pulumi passes them.
PROVIDER_KEYS: dict[str, frozenset[str]] = {
    "kubernetes": frozenset({
        "cluster", "clusterIdentifier", "context", "deleteUnreachable", "enableConfigMapMutable", "enableReplaceCRD",
        "enableSecretMutable", "enableServerSideApply", "kubeconfig", "namespace", "renderYamlToDirectory",
        "skipUpdateUnreachable", "strictMode", "suppressDeprecationWarnings", "suppressHelmHookWarnings"}),
    "random": frozenset(),
    "tls": frozenset(),
}
TOP_LEVEL_KEYS = {"config", "encryptionsalt", "secretsprovider", "encryptedkey", "environment"}


@dataclass(frozen=True)
class Problem:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return _visible(f"{self.file}:{self.path}: {self.message}")


def _visible(text: str) -> str:
    """Control characters (terminal escapes, line breaks) shown as escapes: a key or a value from a stack file
    never moves the reader's cursor, clears the screen or starts a line of its own."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


class StackError(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass(frozen=True)
class Stack:
    name: str
    file: str
    blueprint: Blueprint
    params: BaseModel
    config: dict[str, Any]  # the raw `config:` mapping of the stack file
    audit: Any = None  # socle.audit.config.AuditConfig: waivers and manual evidence references
    secretsprovider: str = ""  # the stack file's `secretsprovider` ("" = Pulumi's default for its backend)
    environments: tuple[str, ...] = ()  # ESC environments the stack file imports (`environment:`)

    @functools.cached_property
    def inventory(self):
        """What the tooling needs of the stack whatever its blueprint: profile, namespaces, auditors, registries
        (computed once: the parameters are frozen)."""
        return self.blueprint.inventory(self.params)

    @property
    def advisories(self) -> list[Problem]:
        """Valid values a recommendation advises against (the blueprint's `advisories`), as `file:key: message`."""
        from .certify import pin_advisories

        return [Problem(self.file, f"config.{CONFIG_NS}:params.{path}", message)
                for path, message in self.blueprint.advisories(self.params)] + \
            [Problem(self.file, path, message) for path, message in pin_advisories(self.blueprint, self.config, self.params)]


def kit_checkout() -> Path | None:
    """The kit's own checkout (a Pulumi project around the socle package), or None for an installed kit."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "Pulumi.yaml").is_file() and (root / "stacks").is_dir() else None


def project_root() -> Path:
    """The user's Pulumi project: the current directory or a parent holding Pulumi.yaml and stacks/; else the kit's
    own checkout when socle runs from one; else the current directory (`socle new` makes it a project)."""
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "Pulumi.yaml").is_file() and (d / "stacks").is_dir():
            return d
    return kit_checkout() or here


def resolve(stack: str) -> tuple[str, Path]:
    """STACK is a stack name (stacks/Pulumi.<name>.yaml) or a path to a stack file."""
    p = Path(stack)
    if p.suffix in (".yaml", ".yml") or "/" in stack:
        name = p.name
        for prefix, suffix in (("Pulumi.", ".yaml"), ("Pulumi.", ".yml")):
            if name.startswith(prefix) and name.endswith(suffix):
                name = name[len(prefix):-len(suffix)]
        return name, p
    return stack, project_root() / "stacks" / f"Pulumi.{stack}.yaml"


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required value missing"
    if err.get("input", "") is None and (kind.endswith("_type") or kind == "literal_error"):
        return "required value missing (empty)"
    msg = str(err.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind.endswith("_type") or kind in ("literal_error", "string_pattern_mismatch"):
        got = err.get("input")
        if not isinstance(got, (dict, list)):
            shown = json.dumps(got, default=str)
            msg += f" (got {shown[:80] + '…' if len(shown) > 80 else shown})"
    return msg


def secure_paths(tree: Any, path: str = "") -> list[str]:
    """Key paths of the values encrypted by `pulumi config set --secret [--path]` (`{secure: v1:...}`)."""
    if isinstance(tree, dict):
        if set(tree) == {"secure"} and isinstance(tree["secure"], str):
            return [path]
        return [p for k, v in tree.items() for p in secure_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(tree, list):
        return [p for i, v in enumerate(tree) for p in secure_paths(v, f"{path}[{i}]")]
    return []


SECRET_REFUSED = ("holds an encrypted value (`pulumi config set --secret`), but this key takes no secret: its value is "
                  "written in clear into a configuration file or an object. Keep the secret in a Kubernetes Secret and "
                  "give its name here, or use the key made for the secret (README: secrets)")


def validate_audit(config: dict[str, Any], file: str) -> tuple[Any, list[Problem]]:
    """The optional `socle:audit` section (waivers, manual evidence); every problem with its key path."""
    from .audit.config import AuditConfig, reference_problems

    key = f"config.{CONFIG_NS}:audit"
    raw = config.get(f"{CONFIG_NS}:audit")
    if raw is None:
        return AuditConfig(), []
    if not isinstance(raw, dict):
        return None, [Problem(file, key, "must be a mapping")]
    cfg = None
    try:
        cfg = AuditConfig.model_validate_json(json.dumps(raw, default=str))
    except ValidationError as exc:
        shapes = [Problem(file, f"{key}.{_loc(tuple(e['loc']))}", _message(e)) for e in exc.errors()]
    else:
        shapes = []
    # Unknown or unsuitable requirement IDs are reported with the shape problems: every problem at once.
    problems = shapes + [Problem(file, f"{key}.{path}", message) for path, message in reference_problems(cfg or raw)]
    return (cfg if not problems else None), problems


def _params(bp: Blueprint, params_raw: dict, file: str, decrypted: bool) -> tuple[BaseModel | None, list[Problem]]:
    """The parameter model of `socle:params`, or every problem of its shape. An encrypted value (`{secure: ...}`) is
    accepted where the model takes a secret (socle.secretvalue), refused by its key path anywhere else;
    `decrypted`: the engine's run of the program, which gets clear values."""
    prefix = f"config.{CONFIG_NS}:params"
    encrypted = secure_paths(params_raw)
    try:
        return bp.model.model_validate_json(json.dumps(params_raw, default=str), context={DECRYPTED: decrypted}), []
    except ValidationError as exc:
        problems: list[Problem] = []
        refused = set()
        for err in exc.errors():
            loc = _loc(tuple(err["loc"]))
            secret = next((e for e in encrypted if loc == e or loc.startswith((f"{e}.", f"{e}["))), None)
            if secret is not None:
                if secret not in refused:
                    refused.add(secret)
                    problems.append(Problem(file, f"{prefix}.{secret}", SECRET_REFUSED))
                continue
            problems.append(Problem(file, f"{prefix}.{loc}" if loc else prefix, _message(err)))
        return None, problems


def secret_problems(config: Any, file: str) -> list[Problem]:
    """What the stack file itself must hold encrypted, and where it may: secrets in clear, and encrypted values at
    keys that take no secret (the program checks this on the file, since the engine hands it decrypted values)."""
    params_raw = config.get(f"{CONFIG_NS}:params") if isinstance(config, dict) else None
    name = config.get(f"{CONFIG_NS}:blueprint") if isinstance(params_raw, dict) else None
    bp = registry().get(name) if isinstance(name, str) else None
    if bp is None:
        return []
    return [p for p in _params(bp, params_raw, file, decrypted=False)[1] if p.message in (SECRET_REFUSED, NOT_ENCRYPTED)]


def validate_config(config: Any, file: str, decrypted: bool = False) -> tuple[Blueprint | None, BaseModel | None, list[Problem]]:
    """Validate the `config:` mapping of a stack file; returns (blueprint, params, problems)."""
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append(Problem(file, path, message))

    if not isinstance(config, dict):
        add("config", "must be a mapping")
        return None, None, problems
    for key in sorted(config, key=str):
        ns = str(key).split(":", 1)[0] if ":" in str(key) else None
        if key in KNOWN_KEYS:
            continue
        if ns == CONFIG_NS or ns is None:
            add(f"config.{key}", f"unknown key (expected one of {', '.join(sorted(KNOWN_KEYS))})")
        elif ns in PROVIDER_KEYS and str(key).split(":", 1)[1].split(".", 1)[0] not in PROVIDER_KEYS[ns]:
            known = PROVIDER_KEYS[ns]
            add(f"config.{key}", f"the {ns} provider reads no such key, so it would be ignored"
                + (f" (its keys: {', '.join(sorted(known))})" if known else f" (the {ns} provider reads no configuration)"))
    blueprints = registry()
    name = config.get(f"{CONFIG_NS}:blueprint")
    bp = None
    if name is None:
        add(f"config.{CONFIG_NS}:blueprint", f"required value missing (one of: {', '.join(sorted(blueprints))})")
    elif not isinstance(name, str) or name not in blueprints:
        add(f"config.{CONFIG_NS}:blueprint", f"unknown blueprint {name!r} (one of: {', '.join(sorted(blueprints))})")
    else:
        bp = blueprints[name]
        version = config.get(f"{CONFIG_NS}:blueprintVersion")
        if version is None:
            add(f"config.{CONFIG_NS}:blueprintVersion", f"required value missing (this kit has {name} {bp.version}: use \"{bp.major}\")")
        elif str(version) != bp.major:
            add(f"config.{CONFIG_NS}:blueprintVersion",
                f"stack written for {name} major version {version}; this kit has {bp.version} (major {bp.major})")
    params_raw = config.get(f"{CONFIG_NS}:params")
    if params_raw is None:
        add(f"config.{CONFIG_NS}:params", "required value missing")
    elif not isinstance(params_raw, dict):
        add(f"config.{CONFIG_NS}:params", "must be a mapping")
    if bp is None or not isinstance(params_raw, dict):
        return bp, None, problems

    prefix = f"config.{CONFIG_NS}:params"
    params, more = _params(bp, params_raw, file, decrypted)
    problems += more
    if params is None:
        return bp, None, problems
    for path, message in bp.refusals(params):
        add(f"{prefix}.{path}", message)
    from .certify import pin_problems

    for path, message in pin_problems(bp, config, params):  # a pinned production stack runs the certified blueprint
        add(path, message)
    if not problems:
        from socle.components.grammar import GrammarError

        try:
            files = bp.config_files(params)
        except GrammarError as exc:
            files = {}
            for path in value_paths(params.model_dump(), exc.values) or [""]:
                add(f"{prefix}.{path}" if path else prefix, f"cannot be written in {exc.file}: {exc.detail}")
        # A block's files are spread over its ConfigMaps: together under the API server's limit, each one is.
        from socle.components.common import CONFIGMAP_LIMIT

        blocks: dict[str, list[tuple[int, str]]] = {}
        for name, text in files.items():
            blocks.setdefault(name.split("/", 1)[0], []).append((len(name.encode()) + len(text.encode()), name))
        for block, sizes in sorted(blocks.items()):
            if sum(s for s, _ in sizes) > CONFIGMAP_LIMIT:
                size, name = max(sizes)
                add(prefix, f"the {block} configuration would not fit in its ConfigMaps (1 MiB each): {name} alone is "
                            f"{size} bytes; shorten the lists that fill it")
    return bp, (params if not problems else None), problems


def value_paths(tree: Any, values: tuple[str, ...] | list[str]) -> list[str]:
    """Key paths of the parameters holding one of `values`: exactly, else as a part of it (a value the kit built
    from several parameters, such as an upstream URL)."""
    leaves: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str) and node:
            leaves.append((path, node))

    walk(tree, "")
    exact = [p for p, leaf in leaves if leaf in values]
    if exact:
        return exact
    parts = [(p, leaf) for p, leaf in leaves if len(leaf) >= 3 and any(leaf in v or v in leaf for v in values if len(v) >= 3)]
    # A value that can break out of its slot holds a line break or a character of some configuration syntax.
    risky = [p for p, leaf in parts if not leaf.isprintable() or any(c in leaf for c in "\"';{}$`\\")]
    return risky or [p for p, _ in parts]


def environments(doc: Any) -> tuple[str, ...]:
    """The ESC environments a stack file imports: `environment: [org/env, ...]` or `environment: {imports: [...]}`."""
    env = doc.get("environment") if isinstance(doc, dict) else None
    if isinstance(env, dict):
        env = env.get("imports")
    if isinstance(env, str):
        env = [env]
    return tuple(str(e) for e in env) if isinstance(env, list) else ()


def _resolved(config: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """The stack file's configuration over the values the engine resolved (ESC environments): the stack file's own
    value wins, as in Pulumi."""
    merged = dict(resolved)
    merged.update(config)
    return merged


def load(stack: str, resolved: dict[str, Any] | None = None) -> Stack:
    """Load and validate a stack; raises StackError with every problem found. `resolved`: configuration the Pulumi
    engine resolved for the stack (its ESC environments), under the stack file's own values."""
    name, path = resolve(stack)
    shown = display(path)
    if not path.is_file():
        raise StackError([Problem(shown, "-", f"no such stack file (stack '{name}': expected {display(path)})")])
    # Duplicate keys, key types, tags, aliases, size: every problem at once.
    from .safeyaml import load_stack_file

    doc = load_stack_file(path, shown)  # raises StackError, never a YAML or decoding traceback
    if not isinstance(doc, dict):
        raise StackError([Problem(shown, "-", "a stack file is a mapping with a `config:` key")])
    problems = [Problem(shown, str(k), "unknown top-level key") for k in sorted(doc, key=str) if k not in TOP_LEVEL_KEYS]
    envs = environments(doc)
    if "config" not in doc:
        if not envs:
            problems.append(Problem(shown, "config", "required value missing"))
            raise StackError(problems)
        doc["config"] = {}
    config = doc["config"]
    if resolved and isinstance(config, dict):
        config = _resolved(config, resolved)
    from .tenants import relocate, with_tenants

    config, tenant_files, more = with_tenants(config, path, name)  # a regional stack's tenants, one file each
    problems += more
    bp, params, more = validate_config(config, shown)
    more = relocate(more, tenant_files)
    if envs and not resolved:
        # Offline, ESC environments cannot be opened: a value the stack file lacks may come from one of them.
        more = [Problem(p.file, p.path, f"not in the stack file: ESC environment(s) {', '.join(envs)} may set it, "
                        "which socle cannot read offline (`socle preview` resolves them through the Pulumi engine)")
                if p.message.startswith("required value missing") else p for p in more]
    problems += more
    audit, more = validate_audit(config, shown) if isinstance(config, dict) else (None, [])
    problems += more
    if problems or bp is None or params is None:
        raise StackError(problems)
    if audit is not None:
        audit.with_namespaces(bp.inventory(params).namespaces).with_base_dir(path.resolve().parent)
    return Stack(name=name, file=shown, blueprint=bp, params=params, config=config, audit=audit,
                 secretsprovider=str(doc.get("secretsprovider") or ""), environments=envs)


def pulumi_config(config: dict[str, Any]) -> dict[str, str]:
    """Config as the Pulumi engine hands it to a program: objects JSON-encoded, scalars as strings."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, (dict, list)):
            out[key] = json.dumps(value, default=str, sort_keys=True)
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out
