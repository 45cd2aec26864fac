"""Shared building pieces for the components: labels, hardened pod specs, hashed ConfigMaps, templates.

Every helper returns plain dicts (camelCase, as the Kubernetes API writes them) so that components stay
small and the same shape reaches Pulumi, the offline render and the audit controls.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from socle.constants import ANN_SECRET_SOURCE, KIT, LABEL_BLOCK, PART_OF

from .grammar import GrammarError, render_checked

CONFIGMAP_LIMIT = 1024 * 1024  # bytes of data the API server accepts in one ConfigMap

COMPONENT = "app.kubernetes.io/component"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"

def content_hash(data: Mapping[str, str], length: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(dict(sorted(data.items())), sort_keys=True).encode()).hexdigest()
    return digest[:length]


def hashed_name(base: str, data: Mapping[str, str]) -> str:
    """kustomize-style name suffix: deterministic, and a content change rolls the pods that mount it."""
    return f"{base}-{content_hash(data)}"


def labels(block: str, name: str, instance: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    out = {
        NAME: name,
        INSTANCE: instance,
        COMPONENT: block,
        PART_OF: KIT,
        MANAGED_BY: "pulumi",
        LABEL_BLOCK: block,
    }
    if extra:
        out.update(extra)
    return out


def selector(name: str, instance: str) -> dict[str, str]:
    return {NAME: name, INSTANCE: instance}


def child(parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)


# --- hardened containers -------------------------------------------------------------------------

# Every container has imagePullPolicy Always: each start asks the registry for the pinned tag, so every node
# runs the same image and a node's cache cannot stand in for it.
def container_security(
    run_as_user: int | None = None,
    add_caps: Sequence[str] = (),
    read_only: bool = True,
    non_root: bool = True,
) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if add_caps:
        ctx["capabilities"]["add"] = list(add_caps)
    if non_root:
        ctx["runAsNonRoot"] = True
        if run_as_user is not None:
            ctx["runAsUser"] = run_as_user
            ctx["runAsGroup"] = run_as_user
    return ctx


def pod_security(fs_group: int | None = None, non_root: bool = True) -> dict[str, Any]:
    ctx: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if non_root:
        ctx["runAsNonRoot"] = True
    if fs_group is not None:
        ctx["fsGroup"] = fs_group
        ctx["fsGroupChangePolicy"] = "OnRootMismatch"
    return ctx


def pod_identity(service_account: str, fs_group: int | None = None, non_root: bool = True) -> dict[str, Any]:
    """Who a pod runs as: its own ServiceAccount, no API token mounted (K8S-06), the pod security context."""
    return {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(fs_group=fs_group, non_root=non_root),
    }


def resources_spec(requests_cpu: str, requests_mem: str, limits_cpu: str, limits_mem: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": requests_cpu, "memory": requests_mem},
        "limits": {"cpu": limits_cpu, "memory": limits_mem},
    }


def empty_dir(name: str, size: str = "64Mi", memory: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"sizeLimit": size}
    if memory:
        spec["medium"] = "Memory"
    return {"name": name, "emptyDir": spec}


def config_volume(name: str, config_map: str, items: Iterable[tuple[str, str]] | None = None) -> dict[str, Any]:
    vol: dict[str, Any] = {"name": name, "configMap": {"name": config_map, "defaultMode": 0o444}}
    if items is not None:
        vol["configMap"]["items"] = [{"key": k, "path": p} for k, p in items]
    return vol


def secret_volume(name: str, secret: str, mode: int = 0o440, items: Iterable[tuple[str, str]] | None = None) -> dict[str, Any]:
    vol: dict[str, Any] = {"name": name, "secret": {"secretName": secret, "defaultMode": mode}}
    if items is not None:
        vol["secret"]["items"] = [{"key": k, "path": p} for k, p in items]
    return vol


def config_secret(parent: pulumi.Resource, namespace: str, name: str, data: Mapping[str, Any], source: str,
                  lbl: Mapping[str, str], secret_type: str = "Opaque") -> Any:
    """A Secret written from the stack's encrypted configuration (socle.secretvalue): values kept secret in the
    state, the parameter it comes from on ANN_SECRET_SOURCE (the render lists it, never writes it)."""
    return k8s.core.v1.Secret(
        f"{namespace}-{name}-from-config",
        metadata={"name": name, "namespace": namespace, "labels": dict(lbl), "annotations": {ANN_SECRET_SOURCE: source}},
        type=secret_type,
        string_data={k: v if k == "username" else pulumi.Output.secret(v) for k, v in data.items()},
        opts=child(parent),
    )


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def region_affinity(region_label: str, regions: Sequence[str]) -> dict[str, Any]:
    """HDS-01: stateful workloads only on nodes of the allowed regions."""
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": region_label, "operator": "In", "values": sorted(regions)}]}
                ]
            }
        }
    }


def zone_spread(sel: Mapping[str, str], zone_label: str = "topology.kubernetes.io/zone") -> list[dict[str, Any]]:
    """K8S-09: spread replicas across zones (ScheduleAnyway keeps single-zone dev clusters schedulable)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": zone_label,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(sel)},
        }
    ]


@dataclass(frozen=True)
class Flow:
    """A network flow the blueprint declares; the zone turns flows into NetworkPolicies (K8S-02)."""

    name: str
    pod_selector: Mapping[str, str]
    direction: str  # "ingress" | "egress"
    ports: Sequence[tuple[str, int]]  # (protocol, port)
    peer_namespace: str | None = None  # None with peer_cidrs -> external
    peer_pods: Mapping[str, str] | None = None
    peer_cidrs: Sequence[str] = field(default_factory=tuple)
    peer_cidrs_except: Sequence[str] = field(default_factory=tuple)


def ns_selector(namespace: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": namespace}}


def pdb(name: str, namespace: str, sel: Mapping[str, str], lbl: Mapping[str, str], parent: pulumi.Resource, min_available: int = 1):
    return k8s.policy.v1.PodDisruptionBudget(
        f"{namespace}-{name}-pdb",
        metadata={"name": name, "namespace": namespace, "labels": dict(lbl)},
        spec={"minAvailable": min_available, "selector": {"matchLabels": dict(sel)}},
        opts=child(parent),
    )


# --- log forwarding sidecar (TRACE-01, TRACE-05) ---------------------------------------------------

FORWARDER_UDP_PORT = 5140
FORWARDER_ALIVE = ["sh", "-c", 'kill -0 "$(cat /var/spool/rsyslog/rsyslogd.pid)"']


@dataclass(frozen=True)
class AuditTarget:
    host: str  # service DNS name, also the name in the aggregator's certificate
    port: int
    client_secret: str  # Secret with tls.crt/tls.key/ca.crt of the internal CA


def forwarder_config(kit_version: str, source: str, target: AuditTarget, files: Sequence[Mapping[str, str]] = (), *,
                     paths: Mapping[str, str] | None = None, udp_port: int = FORWARDER_UDP_PORT,
                     connect_address: str | None = None) -> str:
    """The sidecar's rsyslog.conf. The aggregator's certificate name is checked (x509/name) against `target.host`;
    `connect_address` (default: that name) and the paths are parameters so the local harness runs the same file."""
    p = {"work": "/var/spool/rsyslog", "ca": "/etc/socle/tls/audit-client", "client_tls": "/etc/socle/tls/audit-client",
         **(paths or {})}
    return render_checked(
        "rsyslog.conf", "rsyslog-forwarder.conf.j2", "rsyslog",
        kit_version=kit_version,
        source=source,
        paths=p,
        files={"ca": f"{p['ca']}/ca.crt", "cert": f"{p['client_tls']}/tls.crt", "key": f"{p['client_tls']}/tls.key"},
        udp_port=udp_port,
        inputs=[dict(f) for f in files],
        target_host=target.host,
        connect_address=connect_address or target.host,
        target_port=target.port,
    )


def forwarder_sidecar(image: str, config_map: str, target: AuditTarget, extra_mounts: Sequence[Mapping[str, Any]] = (),
                      run_as_user: int = 10514) -> tuple[dict, list[dict]]:
    """The rsyslog sidecar; `run_as_user` is the uid of the process whose log files it reads (0600 files)."""
    container = {
        "name": "log-forwarder",
        "image": image,
        "imagePullPolicy": "Always",
        "args": ["rsyslogd", "-n", "-f", "/etc/socle/rsyslog/rsyslog.conf", "-i", "/var/spool/rsyslog/rsyslogd.pid"],
        "securityContext": container_security(run_as_user=run_as_user),
        "resources": resources_spec("20m", "32Mi", "200m", "128Mi"),
        # TRACE-01: a pod whose access log cannot be shipped is restarted, and is not ready meanwhile.
        "livenessProbe": {"exec": {"command": FORWARDER_ALIVE}, "periodSeconds": 30},
        "readinessProbe": {"exec": {"command": FORWARDER_ALIVE}, "periodSeconds": 15},
        "volumeMounts": [
            {"name": "forwarder-config", "mountPath": "/etc/socle/rsyslog", "readOnly": True},
            {"name": "forwarder-spool", "mountPath": "/var/spool/rsyslog"},
            {"name": "audit-client-tls", "mountPath": "/etc/socle/tls/audit-client", "readOnly": True},
            *[dict(m) for m in extra_mounts],
        ],
    }
    volumes = [
        config_volume("forwarder-config", config_map),
        empty_dir("forwarder-spool", "300Mi"),
        secret_volume("audit-client-tls", target.client_secret, items=[("tls.crt", "tls.crt"), ("tls.key", "tls.key"), ("ca.crt", "ca.crt")]),
    ]
    return container, volumes


class KubernetesObject(pulumi.CustomResource):
    """A custom-resource object whose fields sit at the top level (e.g. VolumeSnapshotClass: driver,
    deletionPolicy), which `apiextensions.CustomResource` (spec only) cannot express. Registered with the
    Kubernetes provider under the same type token the provider uses for any CRD object."""

    def __init__(self, resource_name: str, api_version: str, kind: str, metadata: Mapping[str, Any],
                 fields: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None):
        props = {"apiVersion": api_version, "kind": kind, "metadata": dict(metadata), **dict(fields)}
        super().__init__(f"kubernetes:{api_version}:{kind}", resource_name, props, opts)


# --- object helpers shared by the components ---------------------------------------------------

def hashed_config_map(parent: pulumi.Resource, namespace: str, base: str, lbl: Mapping[str, str],
                      data: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> str:
    """A ConfigMap named `<base>-<content hash>`; returns the name for the pods that mount it."""
    name = hashed_name(base, data)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_LIMIT:
        raise GrammarError(f"ConfigMap {namespace}/{base}", f"{size} bytes: the API server accepts at most {CONFIGMAP_LIMIT}")
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(lbl)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    k8s.core.v1.ConfigMap(f"{namespace}-{base}", metadata=metadata, data=dict(data), opts=child(parent))
    return name


def log_forwarder(parent: pulumi.Resource, namespace: str, source: str, lbl: Mapping[str, str], kit_version: str,
                  image: str, target: AuditTarget, files: Sequence[Mapping[str, str]] = (),
                  extra_mounts: Sequence[Mapping[str, Any]] = (), run_as_user: int = 10514) -> tuple[dict, list[dict]]:
    """The forwarder ConfigMap of one workload, and the sidecar container and volumes that use it."""
    data = {"rsyslog.conf": forwarder_config(kit_version, source, target, files)}
    name = hashed_config_map(parent, namespace, f"{source}-log-forwarder", lbl, data)
    return forwarder_sidecar(image, name, target, extra_mounts, run_as_user)


def claim_template(name: str, storage_class: str, size: str, lbl: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if lbl:
        meta["labels"] = dict(lbl)
    return {"metadata": meta, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                                       "resources": {"requests": {"storage": size}}}}


def stateful_set_spec(service_name: str, replicas: int, sel: Mapping[str, str], lbl: Mapping[str, str],
                      pod_spec: Mapping[str, Any], claims: Sequence[Mapping[str, Any]],
                      pod_annotations: Mapping[str, str] | None = None, parallel: bool = False) -> dict[str, Any]:
    """StatefulSet spec with stable claims that survive deletion and scale-down (HDS-04)."""
    template_meta: dict[str, Any] = {"labels": dict(lbl)}
    if pod_annotations:
        template_meta["annotations"] = dict(pod_annotations)
    return {
        "serviceName": service_name,
        "replicas": replicas,
        "selector": {"matchLabels": dict(sel)},
        "podManagementPolicy": "Parallel" if parallel else "OrderedReady",
        "template": {"metadata": template_meta, "spec": dict(pod_spec)},
        "volumeClaimTemplates": [dict(c) for c in claims],
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
    }


def service(parent: pulumi.Resource, namespace: str, name: str, lbl: Mapping[str, str], sel: Mapping[str, str],
            ports: Sequence[tuple[str, int, str]], type_: str = "ClusterIP",
            annotations: Mapping[str, str] | None = None) -> None:
    """A Service; ports are (name, port, target port name). External ones keep the client address."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(lbl)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: dict[str, Any] = {
        "type": type_,
        "selector": dict(sel),
        "ports": [{"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, p, t in ports],
    }
    if type_ == "LoadBalancer":
        spec["externalTrafficPolicy"] = "Local"
    k8s.core.v1.Service(f"{namespace}-{name}-svc", metadata=metadata, spec=spec, opts=child(parent))
