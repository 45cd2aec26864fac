"""What `socle preview|up|destroy` need before the Pulumi engine runs: the programs, an environment that downloads
nothing, and a cluster that answers. Each problem is one sentence (exit 2), found before anything is deployed."""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path


class EngineError(Exception):
    """One sentence: what is missing or unreachable, and what to do."""


# The engine looks for the language host and the providers on PATH (ambient plugins) before its plugin folder, and
# downloads a missing plugin unless told not to: nothing is downloaded at run time.
QUIET_ENV = {
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
}
PROGRAMS = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes", "pulumi-resource-random",
            "pulumi-resource-tls")


def program_path() -> str:
    """PATH for the engine: the user's PATH, then the programs `socle cluster build` made, if any."""
    from .cluster.build import BuildError, bin_path

    try:
        built = bin_path(["pulumi", "providers"])
    except BuildError:  # no Go here: nothing can have been built either
        built = ""
    return os.pathsep.join(p for p in (os.environ.get("PATH", ""), built) if p)


def missing_programs(path: str) -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p, path=path) is None]


@dataclass(frozen=True)
class Target:
    server: str
    context: str
    kubeconfig: str


def existing_namespaces(target: Target, names: list[str], timeout: float = 10.0) -> list[str]:
    """Which of `names` already exist in the target cluster."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=target.kubeconfig, context=target.context or None)
    try:
        present = {n.metadata.name for n in client.CoreV1Api(api_client).list_namespace(_request_timeout=timeout).items}
    finally:
        api_client.close()
    return sorted(n for n in names if n in present)


def check_cluster(kubeconfig: str | None = None, context: str | None = None, timeout: float = 10.0) -> Target:
    """The cluster the Kubernetes provider will use (KUBECONFIG, its current context or `context`) answers and
    accepts the credentials. Raises EngineError."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    files = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    first = files.split(os.pathsep)[0]
    if not Path(first).is_file():
        raise EngineError(f"no kubeconfig at {first}: set KUBECONFIG to your cluster's (or run `socle cluster up`)")
    try:
        contexts, current = config.list_kube_config_contexts(config_file=first)
        name = context or (current or {}).get("name")
        if context and context not in {c["name"] for c in contexts}:
            raise EngineError(f"kubeconfig {first} has no context {context!r} "
                              f"(it has {', '.join(sorted(c['name'] for c in contexts)) or 'none'})")
        api_client = config.new_client_from_config(config_file=first, context=name)
    except ConfigException as exc:
        raise EngineError(f"kubeconfig {first} cannot be used: {exc}") from None
    server = api_client.configuration.host
    try:
        client.VersionApi(api_client).get_code(_request_timeout=timeout)
        # A request that needs credentials: /version answers anyone on some clusters.
        client.AuthorizationV1Api(api_client).create_self_subject_rules_review(
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}},
            _request_timeout=timeout)
    except client.exceptions.ApiException as exc:
        if exc.status in (401, 403):
            raise EngineError(f"the cluster at {server} (context {name}) refuses the credentials of {first}: "
                              f"{exc.status} {exc.reason} — renew them") from None
        raise EngineError(f"the cluster at {server} (context {name}) answered {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 / ssl / socket errors: the cluster cannot be reached
        reason = getattr(exc, "reason", None) or exc
        raise EngineError(f"the cluster at {server} (context {name}, from {first}) cannot be reached: {reason}") from None
    finally:
        api_client.close()
    return Target(server=server, context=name or "", kubeconfig=first)


# --- where the state lives and what protects its secrets: Pulumi's own conventions ----------------------------------

CLOUD_BACKENDS = ("https://api.pulumi.com", "https://app.pulumi.com")
PASSPHRASE_VARIABLES = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")


@dataclass(frozen=True)
class Backend:
    url: str
    origin: str  # where the choice came from, said in socle's first line
    default: bool = False  # socle's default: nobody chose a backend


def _pulumi_home() -> Path:
    return Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")


def backend(root: Path) -> Backend:
    """The state backend as the Pulumi CLI would choose it: PULUMI_BACKEND_URL, else the project's `backend.url`
    (Pulumi.yaml), else the account of `pulumi login`; the project's local file backend (.pulumi-state) only when
    none of them is set. A relative `file://` URL of Pulumi.yaml is made absolute (the CLI reads it from the project
    directory; socle runs from anywhere)."""
    import json

    import yaml

    url = os.environ.get("PULUMI_BACKEND_URL", "").strip()
    if url:
        return Backend(url, "PULUMI_BACKEND_URL")
    try:
        project = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        project = {}
    url = str(((project.get("backend") or {}) if isinstance(project, dict) else {}).get("url") or "").strip()
    if url:
        if url.startswith("file://") and not url.startswith("file:///"):
            rel = url[len("file://"):]
            url = "file://" + str((root / rel).resolve()) if not rel.startswith("~") else url
        return Backend(url, "Pulumi.yaml backend.url")
    try:
        creds = json.loads((_pulumi_home() / "credentials.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        creds = {}
    url = str(creds.get("current") or "").strip() if isinstance(creds, dict) else ""
    if url:
        return Backend(url, "pulumi login")
    return Backend(f"file://{root / '.pulumi-state'}", "socle's default (no backend chosen)", default=True)


def secrets_provider(stack_doc: dict, be: Backend) -> str:
    """The stack's secrets provider as Pulumi reads it: the stack file's `secretsprovider`, else the passphrase
    for a self-managed backend and Pulumi Cloud's own provider for Pulumi Cloud."""
    declared = str(stack_doc.get("secretsprovider") or "").strip()
    if declared:
        return declared
    return "default" if be.url.rstrip("/") in CLOUD_BACKENDS else "passphrase"


def secrets_problem(provider: str, env: dict[str, str] | None = None) -> str | None:
    """One sentence when the secrets provider cannot work as things are; None when it can (or when only the
    engine can tell: a KMS or Vault URL is checked by the engine with the provider's own credentials)."""
    env = os.environ if env is None else env
    if provider == "passphrase" and not any(env.get(v) for v in PASSPHRASE_VARIABLES):
        return ("the stack's secrets are protected by a passphrase (no `secretsprovider` in its stack file): set "
                "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE, or give the stack a KMS provider with "
                "`pulumi stack change-secrets-provider`")
    known = ("passphrase", "default", "awskms://", "azurekeyvault://", "gcpkms://", "hashivault://")
    if not provider.startswith(known):
        return (f"unknown secrets provider {provider!r} in the stack file (Pulumi knows passphrase, default, awskms://, "
                "azurekeyvault://, gcpkms:// and hashivault://)")
    return None


# --- `--config KEY=VALUE` on preview|up|refresh|destroy: what the Pulumi CLI does, checked first ---------------------
# `pulumi up|preview|refresh|destroy --config KEY=VALUE` (pkg/cmd/pulumi/operations: parseAndSaveConfigArray) SAVES
# each value, in plain text, into the stack's configuration file before the run: it is persistent, not a one-off
# override. `socle` does the same, with two differences: the resulting configuration is validated before anything is
# written (a bad value: every problem as `file:key: message`, exit 2, nothing changed), and with `--config-path` a
# value is set inside the existing object, as `pulumi config set --path` does. (Pulumi 3.274's `up --config-path`
# replaces the whole top-level object, `socle:params` here, by the values given on the command line: checked with
# the CLI built here; its issue pulumi/pulumi#21726.) The values are written by the engine itself
# (`pulumi config set-all --plaintext ... --config-file <copy>`), which keeps the stack file's comments; the copy,
# validated again, then replaces the stack file in one rename.

CONFIG_IN_CLEAR = ("takes a secret, and --config writes its value in clear into the stack file: encrypt it with "
                   "`pulumi config set --secret --path {key} VALUE --stack {stack}` instead")
CONFIG_PATH_HINT = "; with --config-path, {key} is a path to a value inside {top}"


@dataclass(frozen=True)
class ConfigSet:
    """One `--config KEY=VALUE`."""

    arg: str  # KEY as given (handed to the engine as given)
    top: str  # the stack file's top-level key it sets (namespace:name)
    path: tuple  # with --config-path: the segments below `top` (str keys, int indexes); else ()
    value: str

    @property
    def shown(self) -> str:
        """Its key path as socle's problems name it: config.socle:params.gateway.replicas, ….hosts[0]."""
        return "config." + self.top + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)


def project_name(root: Path) -> str:
    """The project's name (Pulumi.yaml): the namespace of a key given without one."""
    import yaml

    try:
        doc = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        doc = {}
    return str(doc.get("name") or "socle") if isinstance(doc, dict) else "socle"


def _config_key(key: str, project: str) -> tuple[str, str]:
    """(namespace, name) as Pulumi's config.ParseKey reads a key; a key without namespace is the project's."""
    if ":" not in key:
        return project, key
    parts = key.split(":")
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 3 and parts[1] == "config" and parts[0] and parts[2]:  # the old `<ns>:config:<name>` form
        return parts[0], parts[2]
    raise ValueError(f"could not parse {key} as a configuration key (configuration keys should be of the form "
                     "`<namespace>:<name>`)")


def _property_path(text: str) -> list:
    """Pulumi's resource.ParsePropertyPathStrict: `a.b`, `a[0]`, `a["key.with.dots"]`."""
    out: list = []
    if text.startswith("."):
        raise ValueError("expected property path to start with a name or index")
    i = 0
    while i < len(text):
        c = text[i]
        if c == ".":
            i += 1
            if i == len(text):
                raise ValueError("expected property path to end with a name or index")
            if text[i] == "[":
                raise ValueError("expected property name after '.'")
        elif c == "[":
            if text[i + 1:i + 2] == '"':
                j, key = i + 2, ""
                while True:
                    if j >= len(text):
                        raise ValueError("missing closing quote in property name")
                    if text[j] == '"':
                        j += 1
                        break
                    if text[j] == "\\" and text[j + 1:j + 2] == '"':
                        key, j = key + '"', j + 2
                    else:
                        key, j = key + text[j], j + 1
                if text[j:j + 1] != "]":
                    raise ValueError("missing closing bracket in property access")
                out.append(key)
                i = j + 1
            else:
                end = text.find("]", i)
                if end == -1:
                    raise ValueError("missing closing bracket in array index")
                segment = text[i + 1:end]
                if not re.fullmatch(r"[+-]?[0-9]+", segment):
                    raise ValueError(f"invalid array index {segment!r}")
                out.append(int(segment))
                i = end + 1
        else:
            end = i
            while end < len(text) and text[end] not in ".[":
                end += 1
            out.append(text[i:end])
            i = end
    return out


def parse_config(args: list[str], path: bool, project: str) -> tuple[list[ConfigSet], list[tuple[str, str]]]:
    """The `--config` arguments as Pulumi parses them (newcmd.ParseConfig), and the (key path, message) of each one
    it cannot parse. KEY=VALUE splits at the first `=`; a KEY without `=` sets the empty string, as in Pulumi."""
    sets, problems = [], []
    for arg in args:
        key, _, value = arg.partition("=")
        try:
            cut = re.search(r"[.\[]", key)
            if path and cut and cut.start() > 0:  # the namespace is that of the first segment (config.ParseConfigKey)
                ns, first = _config_key(key[:cut.start()], project)
                segments = _property_path(first + key[cut.start():])
            else:
                ns, name = _config_key(key, project)
                segments = _property_path(name) if path else [name]
            if not segments or not isinstance(segments[0], str) or not segments[0]:
                raise ValueError("the first segment of a configuration key path must be a name")
        except ValueError as exc:
            problems.append((f"config.{key}", f"--config {key}: {exc}"))
            continue
        sets.append(ConfigSet(arg=key, top=f"{ns}:{segments[0]}", path=tuple(segments[1:]), value=value))
    return sets, problems


_INT64 = (-(1 << 63), (1 << 64) - 1)


def _coerce(value: str):
    """Pulumi's coercion of a value set below the top level of a path (config/object.go `coerce`): "true"/"false"
    become booleans, base-10 integers not starting with 0 become numbers; anything else stays a string."""
    if value in ("true", "false"):
        return value == "true"
    if len(value) > 1 and value[0] == "0":
        return value
    if re.fullmatch(r"[+-]?[0-9]+", value) and _INT64[0] <= int(value) <= _INT64[1]:
        return int(value)
    return value


def _is_secure(node) -> bool:
    return isinstance(node, dict) and set(node) == {"secure"} and isinstance(node["secure"], str)


def _where(prefix: list) -> str:
    return str(prefix[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in prefix[1:])


def _set(node, prefix: list, path: tuple, value):
    """config/object.go `object.Set`: the value at `path` below `node`, containers made as needed."""
    if not path:
        return value
    head = path[0]
    if node is None:
        node = [None] * (head + 1) if isinstance(head, int) else {}
    elif not isinstance(node, (list, dict)) or _is_secure(node):
        if len(prefix) == 1:  # Pulumi's COMPAT: a scalar at the top level is replaced by a container
            node = [None] * (head + 1) if isinstance(head, int) else {}
        else:
            raise ValueError(f"{_where(prefix)} is not {'a list' if isinstance(head, int) else 'a mapping'}")
    where = prefix + [head]
    if isinstance(node, list):
        if not isinstance(head, int):
            raise ValueError(f"{_where(prefix)} is a list: its items are numbered ({_where(prefix)}[0])")
        if head < 0 or head > len(node):
            raise ValueError(f"{_where(where)}: index out of range ({_where(prefix)} has {len(node)} item(s): "
                             f"up to [{len(node)}] adds one)")
        if head == len(node):
            node.append(None)
        node[head] = _set(node[head], where, path[1:], value)
    else:
        if not isinstance(head, str):
            raise ValueError(f"{_where(prefix)} is a mapping: its keys are names, not [{head}]")
        if len(path) == 1 and not node and head == "secure" and isinstance(value, str):
            raise ValueError('"secure" key in maps of length 1 are reserved')
        node[head] = _set(node.get(head), where, path[1:], value)
    return node


def apply_config(config: dict, sets: list[ConfigSet]) -> tuple[dict, list[tuple[str, str]]]:
    """The stack file's `config:` with the `--config` values set, in order, as `pulumi config set[-all] [--path]`
    sets them (config.Map.Set): without a path, or at the top level, the value is a string; deeper, it is coerced."""
    import copy

    new = copy.deepcopy(config)
    problems = []
    for s in sets:
        if not s.path:
            new[s.top] = s.value
            continue
        try:
            new[s.top] = _set(copy.deepcopy(new.get(s.top)), [s.top], s.path, _coerce(s.value))
        except ValueError as exc:
            problems.append((s.shown, f"--config: {exc}"))
    return new, problems


def checked_config(doc: dict, name: str, shown: str, sets: list[ConfigSet] = (), resolved: dict | None = None,
                   path: bool = False):
    """The stack `doc` (a stack file's document) with `sets` applied, validated as `socle validate` validates a
    stack file (its problems named by `shown`, the stack file): a socle Stack, or StackError with every problem.
    A clear value at a key that takes a secret is refused with the way to encrypt it."""
    import dataclasses
    import tempfile

    import yaml

    from .secretvalue import NOT_ENCRYPTED
    from .stackfile import Problem, StackError, display, load

    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise StackError([Problem(shown, "config", "must be a mapping")])
    config, problems = apply_config(doc.get("config") or {}, list(sets))
    refused = [Problem(shown, p, m) for p, m in problems]  # reported with the problems of the values that applied
    given = {s.shown: s for s in sets}
    with tempfile.TemporaryDirectory(prefix="socle-config-") as tmp:
        candidate = Path(tmp) / f"Pulumi.{name}.yaml"
        candidate.write_text(yaml.safe_dump({**doc, "config": config}, sort_keys=False, allow_unicode=True),
                             encoding="utf-8")
        try:
            st = load(str(candidate), resolved=resolved)
        except StackError as exc:
            fixed = []
            for p in exc.problems:
                message = p.message
                s = given.get(p.path)
                if s is not None and message == NOT_ENCRYPTED:
                    message = CONFIG_IN_CLEAR.format(key=p.path[len("config."):], stack=name)
                elif s is not None and not path and message.startswith("unknown key") and re.search(r"[.\[]", s.top.split(":", 1)[1]):
                    message += CONFIG_PATH_HINT.format(key=s.top, top=re.split(r"[.\[]", s.top)[0])
                fixed.append(Problem(shown if p.file == display(candidate) else p.file, p.path, message))
            raise StackError(refused + fixed) from None
    if refused:
        raise StackError(refused)
    return dataclasses.replace(st, file=shown)


def save_config(file: Path, name: str, sets: list[ConfigSet], path: bool, env: dict[str, str], root: Path,
                check) -> None:
    """The engine writes the `--config` values into a copy of the stack file (`pulumi config set-all --plaintext
    KEY=VALUE [--path] --config-file <copy>`: its own rules, the file's comments kept); `check(copy)` validates the
    copy (raises to refuse it), which then replaces the stack file in one rename. EngineError when the engine
    refuses; the stack file is untouched unless everything succeeded."""
    import subprocess
    import tempfile

    program = shutil.which("pulumi", path=env.get("PATH"))
    if program is None:
        raise EngineError("pulumi not found on PATH")
    tmp = Path(tempfile.mkdtemp(prefix=".socle-config-", dir=file.parent))  # same folder: an atomic rename
    try:
        copy = tmp / file.name
        shutil.copy2(file, copy)
        args = [program, "config", "set-all", "--stack", name, "--config-file", str(copy), *(["--path"] if path else [])]
        for s in sets:
            args += ["--plaintext", f"{s.arg}={s.value}"]
        run = subprocess.run(args, cwd=root, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            last = (run.stderr.strip() or run.stdout.strip() or f"exit status {run.returncode}").splitlines()[-1]
            raise EngineError(f"the Pulumi engine refused the --config values ({last[:300]}); nothing was written")
        check(copy)
        os.replace(copy, file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
