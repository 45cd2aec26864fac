"""The stack outputs of the `etablissement` blueprint: what users and other stacks need (`pulumi stack output`,
a `StackReference`), all derived from the parameters, none secret."""
from __future__ import annotations

from typing import Any

from socle.components.access import AUDITOR_ROLE
from socle.components.auditlog import SYSLOG_TLS_PORT

from .model import BLOCKS, Params


def outputs(p: Params) -> dict[str, Any]:
    ns = {block: p.namespace(block) for block in BLOCKS}
    return {
        "gatewayHosts": {api.name: api.host for api in p.gateway.apis},
        "relayHost": p.relay.hostname,
        "namespaces": ns,
        "auditLogEndpoint": f"rsyslog.{ns['audit']}.svc.cluster.local:{SYSLOG_TLS_PORT}",
        "auditorRole": AUDITOR_ROLE,
        "profile": p.profile,
    }
