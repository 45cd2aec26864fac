"""Foundation zone: one namespace of the kit with its guard rails (K8S-01..06)."""
from __future__ import annotations

from typing import Literal, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field

from socle.constants import (
    ANN_ALLOWED_REGISTRIES,
    ANN_BLUEPRINT,
    ANN_KIT_VERSION,
    ANN_PSS_EXCEPTION,
    KIT,
    LABEL_BLOCK,
    LABEL_PROFILE,
    LABEL_TENANT,
    PART_OF,
)

from .common import Flow, child, ns_selector


class ZoneArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    namespace: str
    block: str
    profile: Literal["dev", "production"]
    blueprint: str  # "NAME VERSION" of the blueprint that made the zone
    kit_version: str
    allowed_registries: Sequence[str]
    service_accounts: Sequence[str] = ()
    flows: Sequence[Flow] = ()
    quota_cpu: str = "8"
    quota_memory: str = "16Gi"
    quota_pods: int = 30
    quota_storage: str = "200Gi"
    default_cpu: str = "500m"
    default_memory: str = "512Mi"
    # Pod Security level enforced. Only `restricted` is allowed unless an exception names its reason.
    pod_security: Literal["restricted", "baseline"] = "restricted"
    load_balancer_node_ports: int = Field(
        default=0, ge=0, le=8, description="Node ports the zone's LoadBalancer Services allocate (one per port; most "
        "cloud load balancers reach the pods through them). Every other node port is refused by the zone's quota (K8S-07)")
    pod_security_exception: str = Field(default="", description="Why a workload cannot meet `restricted`")
    protect: bool = False
    tenant: str | None = Field(default=None, description="Key (FINESS or SIRET) of the hosted établissement the zone "
                                                         "belongs to, labelled on its namespace (regional platform)")


def _peer(flow: Flow) -> list[dict]:
    if flow.peer_cidrs:
        block: dict = {"cidr": flow.peer_cidrs[0]}
        if flow.peer_cidrs_except:
            block["except"] = list(flow.peer_cidrs_except)
        peers = [{"ipBlock": block}]
        for cidr in flow.peer_cidrs[1:]:
            peers.append({"ipBlock": {"cidr": cidr}})
        return peers
    peer: dict = {}
    if flow.peer_namespace is not None:
        peer["namespaceSelector"] = ns_selector(flow.peer_namespace)
    if flow.peer_pods is not None:
        peer["podSelector"] = {"matchLabels": dict(flow.peer_pods)}
    return [peer] if peer else []


class Zone(pulumi.ComponentResource):
    """Namespace (Pod Security), default-deny and declared flows, quota, limits, service accounts."""

    def __init__(self, name: str, args: ZoneArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:foundation:Zone", name, None, opts)
        ns = args.namespace
        if args.pod_security != "restricted" and not args.pod_security_exception:
            raise ValueError(f"K8S-01: namespace {ns} below `restricted` needs a stated exception")
        labels = {
            "kubernetes.io/metadata.name": ns,
            PART_OF: KIT,
            LABEL_BLOCK: args.block,
            LABEL_PROFILE: args.profile,
            "pod-security.kubernetes.io/enforce": args.pod_security,
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/audit-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "latest",
        }
        annotations = {
            ANN_BLUEPRINT: args.blueprint,
            ANN_KIT_VERSION: args.kit_version,
            ANN_ALLOWED_REGISTRIES: " ".join(args.allowed_registries),
        }
        if args.tenant:
            labels[LABEL_TENANT] = args.tenant
        if args.pod_security_exception:
            annotations[ANN_PSS_EXCEPTION] = args.pod_security_exception
        self.namespace = k8s.core.v1.Namespace(
            f"{ns}-namespace",
            metadata={"name": ns, "labels": labels, "annotations": annotations},
            opts=child(self, protect=args.protect, retain_on_delete=args.protect),
        )
        dep = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])

        k8s.networking.v1.NetworkPolicy(
            f"{ns}-default-deny",
            metadata={"name": "default-deny-all", "namespace": ns},
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            opts=dep,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{ns}-allow-dns",
            metadata={"name": "allow-dns", "namespace": ns},
            spec={
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": ns_selector("kube-system"),
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
            opts=dep,
        )
        for flow in args.flows:
            rule: dict = {"ports": [{"protocol": proto, "port": port} for proto, port in flow.ports]}
            peers = _peer(flow)
            if flow.direction == "ingress":
                if peers:
                    rule["from"] = peers
                spec = {"podSelector": {"matchLabels": dict(flow.pod_selector)}, "policyTypes": ["Ingress"], "ingress": [rule]}
            else:
                if peers:
                    rule["to"] = peers
                spec = {"podSelector": {"matchLabels": dict(flow.pod_selector)}, "policyTypes": ["Egress"], "egress": [rule]}
            k8s.networking.v1.NetworkPolicy(
                f"{ns}-{flow.name}",
                metadata={"name": flow.name, "namespace": ns},
                spec=spec,
                opts=dep,
            )

        k8s.core.v1.ResourceQuota(
            f"{ns}-quota",
            metadata={"name": "socle-quota", "namespace": ns},
            spec={
                "hard": {
                    "requests.cpu": args.quota_cpu,
                    "limits.cpu": args.quota_cpu,
                    "requests.memory": args.quota_memory,
                    "limits.memory": args.quota_memory,
                    "pods": str(args.quota_pods),
                    "requests.storage": args.quota_storage,
                    "services.nodeports": str(args.load_balancer_node_ports),
                }
            },
            opts=dep,
        )
        k8s.core.v1.LimitRange(
            f"{ns}-limits",
            metadata={"name": "socle-limits", "namespace": ns},
            spec={
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": args.default_cpu, "memory": args.default_memory},
                        "defaultRequest": {"cpu": "50m", "memory": "64Mi"},
                        "max": {"cpu": "4", "memory": "8Gi"},
                    }
                ]
            },
            opts=dep,
        )
        self.service_accounts: dict[str, k8s.core.v1.ServiceAccount] = {}
        for sa in args.service_accounts:
            self.service_accounts[sa] = k8s.core.v1.ServiceAccount(
                f"{ns}-sa-{sa}",
                metadata={"name": sa, "namespace": ns},
                automount_service_account_token=False,
                opts=dep,
            )
        self.namespace_name = pulumi.Output.from_input(ns)
        self.register_outputs({"namespace": self.namespace_name})
