"""Auditor access (K8S-10): a read-only ClusterRole for auditors and, separately and optionally, exec into the
kit's pods for the live host checks of the auditors' suite."""
from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict

from socle.constants import (
    ANN_REQUIREMENTS,
    AUDITED_RESOURCES,
    AUDITOR_EXEC_ROLE,
    AUDITOR_ROLE,
    KIT,
    LABEL_BLOCK,
    PART_OF,
)

from .common import child


READ_VERBS = ("get", "list", "watch")


class AuditorAccessArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    group: str  # the identity-provider or client-certificate group (O=) of the auditors
    exec_namespaces: Sequence[str] = ()  # non-empty: also grant exec into the pods of these namespaces


def read_rules() -> list[dict]:
    """get/list/watch on exactly what the audit reads (socle.constants.AUDITED_RESOURCES), one rule per API group."""
    groups: dict[str, list[str]] = {}
    for group, _version, plural, _kind, _namespaced in AUDITED_RESOURCES:
        groups.setdefault(group, []).append(plural)
    return [{"apiGroups": [g], "resources": sorted(r), "verbs": list(READ_VERBS)} for g, r in groups.items()]


class AuditorAccess(pulumi.ComponentResource):
    def __init__(self, name: str, args: AuditorAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:foundation:AuditorAccess", name, None, opts)
        lbl = {PART_OF: KIT, LABEL_BLOCK: "foundation"}
        subjects = [{"kind": "Group", "name": args.group, "apiGroup": "rbac.authorization.k8s.io"}]
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-read",
            metadata={"name": AUDITOR_ROLE, "labels": lbl,
                      "annotations": {ANN_REQUIREMENTS: "K8S-10"}},
            rules=read_rules(),
            opts=child(self),
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-read-binding",
            metadata={"name": AUDITOR_ROLE, "labels": lbl},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AUDITOR_ROLE},
            subjects=subjects,
            opts=child(self, depends_on=[role]),
        )
        # Live host checks run `postconf`, `nginx -T`, `psql` inside the pods: a separate, namespaced role.
        for ns in args.exec_namespaces:
            exec_role = k8s.rbac.v1.Role(
                f"{name}-exec-{ns}",
                metadata={"name": AUDITOR_EXEC_ROLE, "namespace": ns, "labels": lbl,
                          "annotations": {ANN_REQUIREMENTS: "K8S-10"}},
                rules=[
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
                ],
                opts=child(self),
            )
            k8s.rbac.v1.RoleBinding(
                f"{name}-exec-binding-{ns}",
                metadata={"name": AUDITOR_EXEC_ROLE, "namespace": ns, "labels": lbl},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": AUDITOR_EXEC_ROLE},
                subjects=subjects,
                opts=child(self, depends_on=[exec_role]),
            )
        self.register_outputs({"group": args.group})
