"""The resources a Pulumi program registers, under the URNs the real engine gives them, with their aliases.

The SDK's mock monitor builds a URN from the immediate parent's type only (`Parent$Type`), and prefixes top-level
resources with `pulumi:pulumi:Stack$`; the engine chains the type of every ancestor component and leaves the stack
out: `urn:pulumi:<stack>::<project>::<Outer>$<Inner>$<Type>::<name>`. `RecordingMonitor` gives the program the
engine's URNs (so a child's parent URN and an alias's parent URN are the engine's too) and records, for every
resource: type, name, parent, custom or component, the alias specifications it sends, protect, retainOnDelete,
deleteBeforeReplace, replaceOnChanges, and the inputs of custom resources.

`StableMocks` stand in for the providers with values derived from each resource's type and inputs (no randomness):
two runs of the program, by two versions of the kit, give equal generated values exactly where the engine would
keep the old ones (same inputs: no replacement of a tls or random resource). No generated or secret value ever
leaves this module: secret-marked values and Secret data are recorded as SHA-256 digests.

This module imports nothing from socle (only the standard library, the Pulumi SDK and cryptography): `socle upgrade`
runs it in a separate interpreter against another version of the kit's code (`python -c BOOTSTRAP ...`).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sys
from typing import Any, Callable

import pulumi
from pulumi.runtime.mocks import MockMonitor

ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
# Kubernetes objects whose values are sensitive wholesale: recorded as digests.
SECRET_TYPES = frozenset({"kubernetes:core/v1:Secret"})
SECRET_FIELDS = ("data", "stringData")


# --- URNs as the engine builds them (pkg/resource/urn.go: NewURN, CreateURN) ---------------------------------------

def split_urn(urn: str) -> tuple[str, str, str, str]:
    """(stack, project, qualified type, name) of `urn:pulumi:<stack>::<project>::<qualified type>::<name>`."""
    if not urn.startswith("urn:pulumi:"):
        raise ValueError(f"not a Pulumi URN: {urn!r}")
    parts = urn[len("urn:pulumi:"):].split("::", 3)
    if len(parts) != 4:
        raise ValueError(f"not a Pulumi URN: {urn!r}")
    return parts[0], parts[1], parts[2], parts[3]


def qualified_type(urn: str) -> str:
    return split_urn(urn)[2]


def urn_type(urn: str) -> str:
    """The resource's own type: the last element of the qualified type."""
    return qualified_type(urn).rsplit("$", 1)[-1]


def urn_name(urn: str) -> str:
    return split_urn(urn)[3]


def make_urn(stack: str, project: str, parent: str, type_: str, name: str) -> str:
    """The engine's URN of a resource: its parent's qualified type (every ancestor's type, `$`-joined), unless the
    parent is the root stack, then its own type and name."""
    qualified = type_
    if parent:
        parent_type = qualified_type(parent)
        if parent_type != ROOT_STACK_TYPE:
            qualified = f"{parent_type}${type_}"
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


# --- values as recorded ---------------------------------------------------------------------------------------------

def digest(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    """Inputs as the engine would store them: no None, integral floats as ints, secrets as `{"secret": digest}`."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return {"secret": digest(_plain(value.get("value")))}
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pulumi.Resource):  # a resource reference (acceptResources)
        return {"resource": getattr(value, "_name", "?")}
    return value


def record_inputs(type_: str, inputs: dict[str, Any]) -> dict[str, Any]:
    out = _plain(dict(inputs))
    if type_ in SECRET_TYPES:
        for key in SECRET_FIELDS:
            if isinstance(out.get(key), dict):
                out[key] = {k: (v if isinstance(v, dict) and set(v) == {"secret"} else {"secret": digest(v)})
                            for k, v in out[key].items()}
    return out


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


# --- the monitor and the mocks --------------------------------------------------------------------------------------

class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, giving out the engine's URNs and recording every registration."""

    def __init__(self, mocks: pulumi.runtime.Mocks, stack: str, project: str):
        super().__init__(mocks)
        self.stack, self.project = stack, project
        self.records: list[dict[str, Any]] = []
        self._protect: dict[str, bool] = {}
        self._retain: dict[str, bool] = {}

    def make_urn(self, parent: str, type_: str, name: str) -> str:  # noqa: D401 - the SDK's hook
        return make_urn(self.stack, self.project, parent, type_, name)

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        if request.type == ROOT_STACK_TYPE:
            return response
        urn = response.urn
        parent = request.parent or ""
        # Unset protect / retainOnDelete are inherited from the parent (the SDK does it for protect, the engine for
        # retainOnDelete): recorded as they take effect.
        protect = request.protect if request.HasField("protect") else self._protect.get(parent, False)
        retain = request.retainOnDelete if request.HasField("retainOnDelete") else self._retain.get(parent, False)
        self._protect[urn], self._retain[urn] = bool(protect), bool(retain)
        aliases: list[dict[str, Any]] = []
        for alias in request.aliases:
            if alias.WhichOneof("alias") == "urn":
                aliases.append({"urn": alias.urn})
            else:
                spec = alias.spec
                entry: dict[str, Any] = {}
                for key in ("name", "type", "stack", "project"):
                    if getattr(spec, key):
                        entry[key] = getattr(spec, key)
                if spec.noParent:
                    entry["noParent"] = True
                elif spec.parentUrn:
                    entry["parent"] = spec.parentUrn
                aliases.append(entry)
        aliases += [{"urn": u} for u in request.aliasURNs if {"urn": u} not in aliases]
        record: dict[str, Any] = {
            "urn": urn, "type": request.type, "name": request.name, "parent": parent if parent and
            qualified_type(parent) != ROOT_STACK_TYPE else "", "custom": bool(request.custom),
            "protect": bool(protect), "retainOnDelete": bool(retain),
            "deleteBeforeReplace": bool(request.deleteBeforeReplace),
            "replaceOnChanges": sorted(request.replaceOnChanges), "aliases": aliases,
        }
        if request.custom:
            from pulumi.runtime import rpc

            inputs = rpc.deserialize_properties(request.object)
            record["inputs"] = record_inputs(request.type, inputs)
            # Top-level inputs computed from the outputs of a resource the mocks invent (tls, random), with those
            # resources: compared with a deployed state, such an input changes when one of them is replaced.
            derived = {key: sorted(u for u in deps.urns if not urn_type(u).startswith("kubernetes:"))
                       for key, deps in request.propertyDependencies.items()}
            derived = {key: deps for key, deps in sorted(derived.items()) if deps}
            if derived:
                record["derived"] = derived
        self.records.append(record)
        return response

    def ReadResource(self, request):  # noqa: N802
        # `get` reads an existing object: the stack neither owns nor deletes it; not recorded.
        return super().ReadResource(request)


def _seed(type_: str, inputs: dict[str, Any]) -> bytes:
    return hashlib.sha256((type_ + json.dumps(_unwrap(inputs), sort_keys=True, default=str)).encode()).digest()


class StableMocks(pulumi.runtime.Mocks):
    """Provider stand-ins whose outputs depend on the resource's type and inputs only. Keys and CA certificates
    are real (the program signs a CRL with them), derived from that seed, and signed deterministically."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        typ, inputs = args.typ, dict(args.inputs)
        out = dict(inputs)
        seed = _seed(typ, inputs)
        tag = seed.hex()[:32]
        if typ == "random:index/randomPassword:RandomPassword" or typ == "random:index/randomString:RandomString":
            out["result"] = f"rnd{tag}"
            out["bcryptHash"] = f"bcrypt{tag}"
        elif typ == "tls:index/privateKey:PrivateKey":
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256
            key = ec.derive_private_key(int.from_bytes(seed, "big") % (order - 1) + 1, ec.SECP256R1())
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
            out["privateKeyPem"] = out["privateKeyPemPkcs8"] = pem
            out["publicKeyPem"] = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        elif typ == "tls:index/selfSignedCert:SelfSignedCert":
            out["certPem"] = _self_signed(inputs, seed)
        elif typ == "tls:index/certRequest:CertRequest":
            out["certRequestPem"] = f"csr{tag}"
        elif typ == "tls:index/locallySignedCert:LocallySignedCert":
            out["certPem"] = f"cert{tag}"
        return (f"{args.name}-id", out)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def _self_signed(inputs: dict[str, Any], seed: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(str(_unwrap(inputs["privateKeyPem"])).encode(), password=None)
    attrs = _unwrap(inputs.get("subject") or {})
    parts = []
    if attrs.get("country"):
        parts.append(x509.NameAttribute(NameOID.COUNTRY_NAME, attrs["country"]))
    if attrs.get("organization"):
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, attrs["organization"]))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, attrs.get("commonName") or attrs.get("common_name") or "socle"))
    subject = x509.Name(parts)
    start = _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(int.from_bytes(seed[:16], "big") >> 1 or 1).not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(hours=float(inputs.get("validityPeriodHours", 24))))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class ProgramError(Exception):
    """The program refused its configuration or failed: its message."""


def record_program(program: Callable[[], Any], stack: str, project: str, config: dict[str, str]) -> list[dict[str, Any]]:
    """Run `program` under StableMocks and the recording monitor; its resources in registration order."""
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    mocks = StableMocks()
    monitor = RecordingMonitor(mocks, stack, project)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config)
    try:
        _sync_await(run_pulumi_func(program))
    except pulumi.RunError as exc:
        raise ProgramError(str(exc)) from None
    finally:
        pulumi.runtime.set_all_config({})
    return monitor.records


# --- the entry point of the separate interpreter --------------------------------------------------------------------

# `python -c BOOTSTRAP CODE_DIR THIS_FILE`: the kit's code at CODE_DIR comes first on the path (before an installed
# or editable socle), this file is loaded under a name of its own, and main() reads its request on stdin.
BOOTSTRAP = (
    "import sys, importlib.util as u\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "s = u.spec_from_file_location('_socle_urns', sys.argv[2]); m = u.module_from_spec(s); s.loader.exec_module(m)\n"
    "sys.exit(m.main(sys.argv[1]))\n"
)


def main(code_dir: str) -> int:
    """Request on stdin: {"program": "module:function", "stack", "project", "config"}. Answer on stdout:
    {"resources": [...]} or {"error": "..."} (exit 3)."""
    import importlib
    import os

    request = json.load(sys.stdin)
    module_name, _, function = request.get("program", "socle.program:run").partition(":")
    answer = sys.stdout
    sys.stdout = sys.stderr  # whatever the program prints stays out of the answer
    try:
        module = importlib.import_module(module_name)
        where = os.path.realpath(getattr(module, "__file__", "") or "")
        if not where.startswith(os.path.realpath(code_dir) + os.sep):
            raise ProgramError(f"{module_name} was imported from {where}, not from {code_dir}")
        records = record_program(getattr(module, function or "run"), request["stack"], request["project"],
                                 request.get("config") or {})
    except ProgramError as exc:
        json.dump({"error": str(exc)}, answer)
        return 3
    except Exception as exc:  # noqa: BLE001 - the other code's failure, reported as one message
        json.dump({"error": f"{type(exc).__name__}: {exc}"}, answer)
        return 3
    finally:
        sys.stdout = answer
    json.dump({"resources": records}, answer, sort_keys=True)
    return 0
