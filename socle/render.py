"""Offline render: the real Pulumi program under the SDK's mocks, one Kubernetes object per file.

No secret value is ever written: Secret objects are left out (listed by name and keys in
secrets-required.yaml), and any secret-marked value found in another object stops the render.
"""
from __future__ import annotations

import datetime as _dt
import gc
import secrets as _secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pulumi
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from .constants import ANN_SECRET_SOURCE
from .stackfile import Stack, pulumi_config

SECRET_SIG = "4dabf18193072939515e22adb298388d"
MARKER = ".socle-render"
CLUSTER_DIR = "_cluster"


class RenderError(Exception):
    pass


def _name(attrs: dict[str, Any]) -> x509.Name:
    parts = []
    if attrs.get("country"):
        parts.append(x509.NameAttribute(NameOID.COUNTRY_NAME, attrs["country"]))
    if attrs.get("organization"):
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, attrs["organization"]))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, attrs.get("commonName") or attrs.get("common_name") or "socle"))
    return x509.Name(parts)


@dataclass
class RenderMocks(pulumi.runtime.Mocks):
    """Stand-ins for the providers. Generated secrets are fresh random values (never written anywhere) so
    that a leak into a rendered file is detectable; demo CA keys and certificates are real, because the
    program signs a CRL with them."""

    objects: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    secret_values: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)

    def _secret(self, prefix: str) -> str:
        value = f"{prefix}{_secrets.token_hex(16)}"
        self.secret_values.append(value)
        return value

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        typ, inputs = args.typ, dict(args.inputs)
        self.resources.append(typ)
        out = dict(inputs)
        if typ.startswith("kubernetes:") and typ != "kubernetes:yaml:ConfigFile":
            self.objects.append((typ, inputs))
        elif typ == "random:index/randomPassword:RandomPassword":
            out["result"] = self._secret("rnd")
            out["bcryptHash"] = self._secret("bcrypt")
        elif typ == "tls:index/privateKey:PrivateKey":
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
            self.secret_values.append(pem.splitlines()[1])
            out["privateKeyPem"] = pem
            out["privateKeyPemPkcs8"] = pem
            out["publicKeyPem"] = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        elif typ == "tls:index/selfSignedCert:SelfSignedCert":
            key = serialization.load_pem_private_key(_unwrap(inputs["privateKeyPem"]).encode(), password=None)
            subject = _name(_unwrap(inputs.get("subject") or {}))
            now = _dt.datetime.now(_dt.timezone.utc)
            cert = (
                x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + _dt.timedelta(hours=float(inputs.get("validityPeriodHours", 24))))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256())
            )
            out["certPem"] = cert.public_bytes(serialization.Encoding.PEM).decode()
        elif typ == "tls:index/certRequest:CertRequest":
            out["certRequestPem"] = self._secret("csr")
        elif typ == "tls:index/locallySignedCert:LocallySignedCert":
            out["certPem"] = self._secret("cert")
        return (f"{args.name}-id", out)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and SECRET_SIG in value:
        return value.get("value")
    return value


def _contains_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return SECRET_SIG in value or any(_contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secret(v) for v in value)
    return False


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class Rendered:
    objects: list[dict[str, Any]]  # every object but Secrets, cleaned
    secrets: list[dict[str, Any]]  # Secret metadata only: namespace, name, type, keys
    secret_values: list[str]  # values generated under mocks (for leak tests; never written)


def run_program(stack: Stack) -> Rendered:
    """Run the real Pulumi program for `stack` under mocks and return the objects it registers."""
    from .program import run

    try:
        return run_under_mocks(run, stack.name, pulumi_config(stack.config))
    except pulumi.RunError as exc:  # the program refused its configuration: every problem, one per line
        raise RenderError(str(exc)) from None


def run_under_mocks(program: Callable[[], Any], stack_name: str = "test", config: dict[str, str] | None = None) -> Rendered:
    """Run any Pulumi program (the whole blueprint, or one component in a test) under the render mocks."""
    mocks = RenderMocks()
    pulumi.runtime.set_mocks(mocks, project="socle", stack=stack_name, preview=False)
    pulumi.runtime.set_all_config(config or {})
    # A regional program registers thousands of resources, each a web of Outputs and futures: Python's cyclic
    # collector, rescanning that growing heap, took over half of the run (benchmarks/regional_scale.py). The
    # modules and the stack's model are frozen out of its sight and it runs less often; the run's garbage is
    # still collected, and the previous settings come back after it.
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        _sync_await(run_pulumi_func(program))
    finally:
        pulumi.runtime.set_all_config({})
        gc.set_threshold(*threshold)
        gc.unfreeze()
    objects: list[dict[str, Any]] = []
    secrets: list[dict[str, Any]] = []
    for typ, inputs in mocks.objects:
        obj = _clean(inputs)
        kind = obj.get("kind")
        if kind == "Secret":
            meta = obj.get("metadata", {})
            keys = sorted(set(_unwrap(obj.get("stringData") or {}) or {}) | set(_unwrap(obj.get("data") or {}) or {}))
            origin = (meta.get("annotations") or {}).get(ANN_SECRET_SOURCE)
            source = (f"the stack's encrypted parameter {origin}, written by `socle up` (`pulumi up`)" if origin
                      else "generated by the Pulumi program (pulumi_random / pulumi_tls)")
            secrets.append({"namespace": meta.get("namespace"), "name": meta.get("name"), "type": obj.get("type", "Opaque"),
                            "keys": keys, "source": source})
            continue
        if _contains_secret(obj):
            meta = obj.get("metadata", {})
            raise RenderError(f"secret value would be written in {kind} {meta.get('namespace')}/{meta.get('name')}")
        if not obj.get("metadata", {}).get("name"):
            raise RenderError(f"{kind} registered without metadata.name: every object needs an explicit, stable name")
        objects.append(obj)
    return Rendered(objects=objects, secrets=secrets, secret_values=list(mocks.secret_values))


def object_path(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    folder = meta.get("namespace") or CLUSTER_DIR
    return f"{folder}/{obj['kind'].lower()}-{meta['name'].lower()}.yaml"


def referenced_secrets(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(namespace, name) -> keys, for every Secret a pod or a StorageClass refers to."""
    refs: dict[tuple[str, str], set[str]] = {}

    def visit(ns: str | None, node: Any) -> None:
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                ref = node["secretKeyRef"]
                refs.setdefault((ns or "", ref["name"]), set()).add(ref["key"])
            if "secret" in node and isinstance(node["secret"], dict) and "secretName" in node["secret"]:
                items = node["secret"].get("items") or []
                refs.setdefault((ns or "", node["secret"]["secretName"]), set()).update(i["key"] for i in items)
            for v in node.values():
                visit(ns, v)
        elif isinstance(node, list):
            for v in node:
                visit(ns, v)

    for obj in objects:
        visit(obj.get("metadata", {}).get("namespace"), obj.get("spec"))
        if obj.get("kind") == "StorageClass":
            params = obj.get("parameters", {})
            for k, v in params.items():
                if k.endswith("-secret-name"):
                    ns_key = k.replace("-secret-name", "-secret-namespace")
                    refs.setdefault((params.get(ns_key, ""), v), set())
        if obj.get("kind") == "BackupStorageLocation":
            cred = obj.get("spec", {}).get("credential")
            if cred:
                refs.setdefault((obj["metadata"].get("namespace", ""), cred["name"]), set()).add(cred["key"])
    return refs


def dump(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True, width=120)


def render_files(stack: Stack, rendered: Rendered) -> dict[str, str]:
    """relative path -> file content, deterministic."""
    files: dict[str, str] = {}
    for obj in rendered.objects:
        path = object_path(obj)
        if path in files:
            raise RenderError(f"two objects render to {path}")
        files[path] = dump(obj)
    files["kustomization.yaml"] = dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(p for p in files),
    })
    generated = {(s["namespace"], s["name"]): s for s in rendered.secrets}
    required = []
    for (ns, name), keys in sorted(referenced_secrets(rendered.objects).items()):
        entry = generated.get((ns, name))
        if entry:
            required.append({**entry, "keys": sorted(set(entry["keys"]) | keys)})
        else:
            required.append({"namespace": ns, "name": name, "keys": sorted(keys),
                             "source": "provided by you (create it before deploying, see README: secrets in GitOps mode)"})
    for (ns, name), entry in sorted(generated.items()):
        if not any(r["namespace"] == ns and r["name"] == name for r in required):
            required.append(entry)
    files["secrets-required.yaml"] = (
        "# Secrets the rendered objects need. No value is ever rendered: create them with your secret tooling\n"
        "# (Sealed Secrets, External Secrets Operator, or `pulumi up`, which generates the `generated` ones).\n"
        + dump({"stack": stack.name, "blueprint": f"{stack.blueprint.name} {stack.blueprint.version}", "secrets": required})
    )
    files[MARKER] = f"socle render of stack {stack.name} ({stack.blueprint.name} {stack.blueprint.version})\n"
    return files


def write(out: Path, files: dict[str, str], force: bool = False):
    """Replace `out` atomically by the render `files` (see socle/output.py): refuse a non-empty directory that is
    not an earlier render, and files an earlier render did not write unless `force`. Returns the WriteResult."""
    from .output import OutputError, legacy_render_files, write_tree

    body = {rel: text for rel, text in files.items() if rel != MARKER}
    try:
        return write_tree(out, body, marker=MARKER, marker_text=files.get(MARKER, "socle render\n"), force=force,
                          legacy=legacy_render_files)
    except OutputError as exc:
        raise RenderError(str(exc)) from None
