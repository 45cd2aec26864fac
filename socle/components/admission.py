"""Admission policies (platform layer): the controls of the catalogue that one object shows, enforced by the API
server itself with ValidatingAdmissionPolicies (CEL) and their bindings, scoped to the kit's namespaces and
objects; each message starts with the requirement ID. What needs a configuration file parsed (TLS suites, token
checks, relay maps) stays with the audit and the policy pack.

One table (POLICIES) says which requirement each policy enforces: the component renders it and the enforcement
table of docs and reports reads it (`socle.enforcement`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict

from socle.constants import (
    ADMISSION_POLICIES,
    ANN_PSS_EXCEPTION,
    ANN_REQUIREMENTS,
    EEA_COUNTRIES,
    KIT,
    LABEL_BLOCK,
    LABEL_ENCRYPTED,
    LABEL_REGION_COUNTRY,
    PART_OF,
)

from .common import child

_WORKLOADS = [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]},
              {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
               "resources": ["deployments", "statefulsets", "daemonsets"]},
              {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
               "resources": ["jobs", "cronjobs"]}]
# The pod spec of any workload kind, and its containers (init containers included).
_POD_VARIABLES = [
    {"name": "spec", "expression": "object.kind == 'Pod' ? object.spec : (object.kind == 'CronJob' ? "
                                   "object.spec.jobTemplate.spec.template.spec : object.spec.template.spec)"},
    {"name": "containers", "expression": "variables.spec.containers + (has(variables.spec.initContainers) ? "
                                         "variables.spec.initContainers : [])"},
]
_SC = "has(c.securityContext) && has(c.securityContext.{0})"
_POD_SC = "has(variables.spec.securityContext) && has(variables.spec.securityContext.{0})"
# Env variable names that hold a secret: the audit's K8S-08 rule (socle/audit/controls/k8s.py _SECRET_NAME).
SECRET_ENV_NAME = "(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def cel_string(value: str) -> str:
    """A CEL string literal: JSON's quoting (ASCII, every quote and control character escaped) is CEL's."""
    return json.dumps(value, ensure_ascii=True)


@dataclass(frozen=True)
class Policy:
    name: str
    requirement: str
    rules: tuple[dict, ...]  # matchConstraints.resourceRules
    validations: tuple[tuple[str, str], ...]  # (CEL expression, message)
    variables: tuple[dict, ...] = ()
    namespace_labels: tuple[tuple[str, str], ...] = ()  # more labels the namespaces must carry (AND with part-of)
    cluster_scoped: bool = False  # matched by the object's own part-of label


def policies(allowed_registries: Sequence[str]) -> list[Policy]:
    """The admission policies, in the order of the catalogue."""
    registries = "[" + ", ".join(cel_string(r + "/") for r in allowed_registries) + "]"
    pinned = (r"c.image.contains('@sha256:') || (c.image.matches(':[A-Za-z0-9._-]+$') && "
              r"!c.image.endsWith(':latest'))")
    enforce = cel_string("pod-security.kubernetes.io/enforce")
    eea = "[" + ", ".join(cel_string(c) for c in sorted(EEA_COUNTRIES)) + "]"
    return [
        Policy("socle-k8s-01", "K8S-01", ({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                                           "resources": ["namespaces"]},), (
            (f"has(object.metadata.labels) && {enforce} in object.metadata.labels && "
             f"(object.metadata.labels[{enforce}] == 'restricted' || (object.metadata.labels[{enforce}] == 'baseline' && "
             f"has(object.metadata.annotations) && {cel_string(ANN_PSS_EXCEPTION)} in object.metadata.annotations))",
             "K8S-01: a namespace of the kit enforces Pod Security restricted (baseline only with its stated exception, "
             f"annotation {ANN_PSS_EXCEPTION})"),
        ), cluster_scoped=True),
        Policy("socle-k8s-03", "K8S-03", tuple(_WORKLOADS), (
            (f"variables.containers.all(c, !({_SC.format('privileged')}) || c.securityContext.privileged == false)",
             "K8S-03: a container is privileged"),
            (f"variables.containers.all(c, {_SC.format('allowPrivilegeEscalation')} && "
             "c.securityContext.allowPrivilegeEscalation == false)",
             "K8S-03: every container sets allowPrivilegeEscalation: false"),
            (f"variables.containers.all(c, {_SC.format('readOnlyRootFilesystem')} && "
             "c.securityContext.readOnlyRootFilesystem == true)",
             "K8S-03: every container has a read-only root filesystem"),
            (f"variables.containers.all(c, {_SC.format('capabilities')} && has(c.securityContext.capabilities.drop) && "
             "'ALL' in c.securityContext.capabilities.drop)",
             "K8S-03: every container drops all capabilities"),
            (f"variables.containers.all(c, ({_SC.format('runAsNonRoot')} && c.securityContext.runAsNonRoot == true) || "
             f"({_POD_SC.format('runAsNonRoot')} && variables.spec.securityContext.runAsNonRoot == true))",
             "K8S-03: every container runs as non-root"),
            (f"variables.containers.all(c, ({_SC.format('seccompProfile')} && "
             "c.securityContext.seccompProfile.type == 'RuntimeDefault') || "
             f"({_POD_SC.format('seccompProfile')} && variables.spec.securityContext.seccompProfile.type == "
             "'RuntimeDefault'))",
             "K8S-03: every container runs with the RuntimeDefault seccomp profile"),
        ), tuple(_POD_VARIABLES), tuple(RESTRICTED.items())),
        Policy("socle-k8s-04", "K8S-04", tuple(_WORKLOADS), (
            ("variables.containers.all(c, has(c.resources) && has(c.resources.limits) && has(c.resources.requests) && "
             "['cpu', 'memory'].all(r, r in c.resources.limits && r in c.resources.requests))",
             "K8S-04: every container sets CPU and memory requests and limits"),
        ), tuple(_POD_VARIABLES)),
        Policy("socle-k8s-05", "K8S-05", tuple(_WORKLOADS), (
            (f"variables.containers.all(c, {pinned})",
             "K8S-05: every image is pinned to an exact version or a digest, never latest"),
            (f"variables.containers.all(c, {registries}.exists(r, c.image.startsWith(r)))",
             "K8S-05: every image comes from an allowed registry (" + ", ".join(allowed_registries) + ")"),
        ), tuple(_POD_VARIABLES)),
        Policy("socle-k8s-06", "K8S-06", tuple(_WORKLOADS), (
            ("(has(variables.spec.automountServiceAccountToken) && variables.spec.automountServiceAccountToken == false)"
             " || (has(object.metadata.annotations) && 'socle.esante.fr/api-access' in object.metadata.annotations)",
             "K8S-06: the service account token is not mounted (automountServiceAccountToken: false), unless the "
             "workload is annotated with the API access it needs"),
        ), tuple(_POD_VARIABLES)),
        Policy("socle-k8s-07", "K8S-07", ({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                                           "resources": ["services"]},), (
            ("!has(object.spec.type) || object.spec.type != 'NodePort'", "K8S-07: no NodePort Service"),
            ("!has(object.spec.type) || object.spec.type != 'LoadBalancer' || "
             f"(has(namespaceObject.metadata.labels) && {cel_string(LABEL_BLOCK)} in namespaceObject.metadata.labels && "
             f"namespaceObject.metadata.labels[{cel_string(LABEL_BLOCK)}] in ['gateway', 'relay'])",
             "K8S-07: only the gateway and the relay are reachable from outside the cluster"),
        )),
        Policy("socle-k8s-08", "K8S-08", tuple(_WORKLOADS), (
            (f"variables.containers.all(c, !has(c.env) || c.env.all(e, !e.name.matches({cel_string(SECRET_ENV_NAME)}) || "
             "(has(e.valueFrom) && has(e.valueFrom.secretKeyRef))))",
             "K8S-08: a secret reaches a container only through a Secret reference, never a literal value"),
        ), tuple(_POD_VARIABLES)),
        Policy("socle-hds-01", "HDS-01", ({"apiGroups": ["velero.io"], "apiVersions": ["v1"],
                                           "operations": ["CREATE", "UPDATE"], "resources": ["backupstoragelocations"]},), (
            (f"has(object.metadata.labels) && {cel_string(LABEL_REGION_COUNTRY)} in object.metadata.labels && "
             f"object.metadata.labels[{cel_string(LABEL_REGION_COUNTRY)}] in {eea}",
             f"HDS-01: backups are stored in the European Economic Area (label {LABEL_REGION_COUNTRY})"),
        ), cluster_scoped=True),
        Policy("socle-hds-04", "HDS-04", ({"apiGroups": ["storage.k8s.io"], "apiVersions": ["v1"],
                                           "operations": ["CREATE", "UPDATE"], "resources": ["storageclasses"]},), (
            ("has(object.reclaimPolicy) && object.reclaimPolicy == 'Retain'",
             "HDS-04: the kit's storage classes keep volumes when their claims are deleted (reclaimPolicy: Retain)"),
            (f"has(object.metadata.labels) && {cel_string(LABEL_ENCRYPTED)} in object.metadata.labels && "
             f"object.metadata.labels[{cel_string(LABEL_ENCRYPTED)}] == 'true'",
             f"HDS-04: the kit's storage classes encrypt volumes at rest ({LABEL_ENCRYPTED}: \"true\", with the "
             "driver's encryption parameters)"),
        ), cluster_scoped=True),
        Policy("socle-bck-01", "BCK-01", ({"apiGroups": ["velero.io"], "apiVersions": ["v1"],
                                           "operations": ["CREATE", "UPDATE"], "resources": ["schedules"]},), (
            ("(has(object.spec.template.snapshotMoveData) && object.spec.template.snapshotMoveData == true) || "
             "(has(object.spec.template.defaultVolumesToFsBackup) && object.spec.template.defaultVolumesToFsBackup == true)",
             "BCK-01: the volume data leaves the primary region (snapshotMoveData or file-system backup)"),
            ("has(object.spec.template.storageLocation) && object.spec.template.storageLocation != 'default'",
             "BCK-01: backups go to the second-region location, not the cluster's default"),
        ), cluster_scoped=True),
    ]


def _checked(table: list[Policy]) -> list[Policy]:
    """The policies, checked against the names the audit expects (socle.constants.ADMISSION_POLICIES)."""
    rendered = {p.name: p.requirement for p in table}
    if rendered != ADMISSION_POLICIES:
        raise RuntimeError(f"admission policies {rendered} differ from socle.constants.ADMISSION_POLICIES")
    return table


class AdmissionArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    allowed_registries: Sequence[str]


def policy_object(p: Policy) -> tuple[dict, dict]:
    """(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) of one policy, as plain objects."""
    lbl = {PART_OF: KIT, LABEL_BLOCK: "foundation"}
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": p.name, "labels": lbl, "annotations": {ANN_REQUIREMENTS: p.requirement}},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": list(p.rules)},
                 **({"variables": list(p.variables)} if p.variables else {}),
                 "validations": [{"expression": e, "message": m} for e, m in p.validations]},
    }
    match: dict = {"objectSelector": {"matchLabels": {PART_OF: KIT}}} if p.cluster_scoped else \
        {"namespaceSelector": {"matchLabels": {PART_OF: KIT, **dict(p.namespace_labels)}}}
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": p.name, "labels": lbl, "annotations": {ANN_REQUIREMENTS: p.requirement}},
        "spec": {"policyName": p.name, "validationActions": ["Deny"], "matchResources": match},
    }
    return policy, binding


class AdmissionPolicies(pulumi.ComponentResource):
    """The admission policies of the platform layer, once per cluster."""

    def __init__(self, name: str, args: AdmissionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:foundation:AdmissionPolicies", name, None, opts)
        for p in _checked(policies(args.allowed_registries)):
            policy, binding = policy_object(p)
            vap = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
                f"{name}-{p.name}", metadata=policy["metadata"], spec=policy["spec"], opts=child(self))
            k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
                f"{name}-{p.name}-binding", metadata=binding["metadata"], spec=binding["spec"],
                opts=child(self, depends_on=[vap]))
        self.register_outputs({})
