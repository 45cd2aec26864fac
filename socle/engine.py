"""What `socle preview|up|destroy` need before the Pulumi engine runs: the programs, an environment that downloads
nothing, and a cluster that answers. Each problem is one sentence (exit 2), found before anything is deployed."""
from __future__ import annotations

import os
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
