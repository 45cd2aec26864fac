"""Blueprint `plateforme-regionale`: a regional group's platform — the platform layer once, the region's own cell
(regional gateway with one virtual host per shared tenant, authorization server, partitioned FHIR store, relay,
audit log), and one cell per dedicated tenant."""
from __future__ import annotations

from typing import Any

import pulumi
from pydantic import Field

from socle.blueprints import Blueprint, Inventory
from socle.blueprints.shared.cell import Cell, component_args as cell_component_args, config_files as cell_config_files
from socle.blueprints.shared.groups import BLOCKS, Api, Backup, CellParams, Gateway, Organisation, Relay
from socle.blueprints.shared.platform import build_platform
from socle.blueprints.shared.refusals import advisories as cell_advisories, production_refusals as cell_refusals
from socle.components.access import AUDITOR_ROLE
from socle.components.auditlog import SYSLOG_TLS_PORT
from socle.components.fhir import Partition

from .model import MAX_TENANTS, VERSION, Params, Tenant

NAME = "plateforme-regionale"


class RegionalGatewayParams(Gateway):
    """The region's gateway: one API (virtual host) per shared tenant, up to the model's number of tenants."""

    apis: list[Api] = Field(min_length=1, max_length=MAX_TENANTS)


def tenant_api(p: Params, t: Tenant) -> Api:
    """A shared tenant's FHIR API on the regional gateway: sensitive (client certificate and bound token)."""
    return Api(name=f"t-{t.short_name}", host=p.tenant_host(t), owner_group=p.region.owner_group,
               sensitivity="sensitive", backend="fhir", rate_per_second=p.gateway.rate_per_second)


def shared(p: Params) -> list[Tenant]:
    return [t for _, t in sorted(p.tenants.items()) if t.tier == "shared"]


def dedicated(p: Params) -> list[Tenant]:
    return [t for _, t in sorted(p.tenants.items()) if t.tier == "dedicated"]


def region_cell_params(p: Params) -> CellParams:
    """The region's own cell: its gateway serves every shared tenant's host."""
    g = p.gateway
    return CellParams(
        profile=p.profile,
        organisation=Organisation(name=p.region.name, finess=p.region.finess, short_name=p.region.short_name,
                                  owner_group=p.region.owner_group),
        hosting=p.hosting, storage=p.storage, backup=p.backup, images=p.images, tls=p.tls, pki=p.pki,
        gateway=RegionalGatewayParams(replicas=g.replicas, hsts_max_age=g.hsts_max_age, service_type=g.service_type,
                                      session_lifetime=g.session_lifetime, apis=[tenant_api(p, t) for t in shared(p)]),
        psc=p.psc, authz=p.authz, fhir=p.fhir, relay=p.relay, audit=p.audit, auditors=p.auditors,
    )


def tenant_cell_params(p: Params, t: Tenant) -> CellParams:
    """A dedicated tenant's cell: the region's settings, its own names, hosts, FHIR store and backup schedule."""
    g = p.gateway
    host = p.tenant_host(t)
    backup = Backup(**{**p.backup.model_dump(), "daily_schedule": t.backup.daily_schedule,
                       "monthly_schedule": t.backup.monthly_schedule})
    relay = Relay(**{**p.relay.model_dump(), "hostname": f"mss.{host}"})
    return CellParams(
        profile=p.profile,
        organisation=Organisation(name=t.name, finess=t.finess, short_name=t.short_name, owner_group=p.region.owner_group),
        hosting=p.hosting, storage=p.storage, backup=backup, images=p.images, tls=p.tls, pki=p.pki,
        gateway=Gateway(replicas=g.replicas, hsts_max_age=g.hsts_max_age, service_type=g.service_type,
                        session_lifetime=g.session_lifetime,
                        apis=[Api(name="fhir", host=host, owner_group=p.region.owner_group, sensitivity="sensitive",
                                  backend="fhir", rate_per_second=g.rate_per_second)]),
        psc=p.psc.model_copy(update={"redirect_host": None}),
        authz=p.authz.model_copy(update={"host": None}), fhir=t.fhir or p.fhir, relay=relay, audit=p.audit,
        auditors=p.auditors,
    )


def tenancy(p: Params) -> dict[str, tuple[str, list[str]]]:
    """The regional gateway's tenant routes: API name -> (FHIR partition, the tenant's certificate subjects)."""
    return {f"t-{t.short_name}": (t.key, list(t.org_certificates)) for t in shared(p)}


def partitions(p: Params) -> list[Partition]:
    """The shared tenants' partitions of the regional FHIR store, named by the tenant's key (its FINESS or SIRET,
    which never changes), numbered by the tenant file."""
    return [Partition(id=t.partition_id, name=t.key, description=t.name) for t in shared(p) if t.partition_id]


def cells(p: Params) -> list[Cell]:
    bp = f"{NAME} {VERSION}"
    out = [Cell(region_cell_params(p), blueprint=bp, tenant=p.region.short_name, tenant_key=p.region.finess,
                tenancy=tenancy(p), partitions=partitions(p))]
    for t in dedicated(p):
        q = {"quota_cpu": t.quota.cpu, "quota_memory": t.quota.memory, "quota_storage": t.quota.storage}
        out.append(Cell(tenant_cell_params(p, t), blueprint=bp, tenant=t.short_name, tenant_key=t.key, quota=q))
    return out


def build(p: Params) -> dict[str, Any]:
    """Register every resource: the cells' zones, the platform layer, then each cell's blocks."""
    all_cells = cells(p)
    for cell in all_cells:
        cell.zones()
    platform = build_platform(
        profile=p.profile, hosting=p.hosting, storage=p.storage, backup=p.backup, backup_prefix=p.region.short_name,
        allowed_registries=p.images.allowed_registries, auditors=p.auditors,
        exec_namespaces=[ns for cell in all_cells for ns in cell.namespaces.values()],
        namespaces=[ns for cell in all_cells for ns in cell.zone_namespaces])
    built = {cell.tenant: cell.blocks(platform) for cell in all_cells}
    pulumi.export("blueprint", {"name": NAME, "version": VERSION, "profile": p.profile})
    return {"cells": built, "storage": platform.storage}


def namespaces(p: Params) -> dict[str, str]:
    """The cells' namespaces (`<short_name>-<block>`), derived from the names alone: no cell is built for it."""
    shorts = [p.region.short_name] + [t.short_name for t in dedicated(p)]
    return {f"{short}-{b}": b for short in shorts for b in BLOCKS}


def inventory(p: Params) -> Inventory:
    tenants = {t.key: t.short_name for t in p.tenants.values()}
    return Inventory(profile=p.profile, namespaces=namespaces(p), auditors_group=p.auditors.group,
                     allowed_registries=tuple(p.images.allowed_registries), tenants=dict(sorted(tenants.items())))


def tenant_problems(p: Params) -> list[tuple[str, str]]:
    """What makes two tenants collide, or a tenant file misnamed: each named at the tenant's own key path (its
    file, `stacks/<stack>/tenants/<key>.yaml`)."""
    out: list[tuple[str, str]] = []
    for key, t in sorted(p.tenants.items()):
        if key != t.key:
            which = "finess" if t.finess else "siret"
            out.append((f"tenants.{key}.{which}", f"a tenant file is named by its {which.upper()}: rename this file "
                        f"{t.key}.yaml"))
    for attr, what in (("short_name", "short name"), ("partition_id", "partition"), ("host", "host")):
        seen: dict[object, str] = {}
        for key, t in sorted(p.tenants.items()):
            value = p.tenant_host(t) if attr == "host" else getattr(t, attr)
            if value is None:
                continue
            if value in seen:
                field = "api_host" if attr == "host" else attr
                out.append((f"tenants.{key}.{field}", f"{what} {value} is already tenant {seen[value]}'s"))
            else:
                seen[value] = key
    for key, t in sorted(p.tenants.items()):
        if t.short_name == p.region.short_name:
            out.append((f"tenants.{key}.short_name", f"{t.short_name} is the region's own short name"))
    return out


def refusals(p: Params) -> list[tuple[str, str]]:
    """The refusals of every cell, by the key path of the stack's parameters (a dedicated tenant's own values are
    named in its file: `tenants.<key>.…`)."""
    out: list[tuple[str, str]] = tenant_problems(p)
    if out:
        return out
    if not shared(p):
        out.append(("tenants", "the regional gateway serves the shared tenants: host at least one shared tenant"))
        return out
    apis = [f"tenants.{t.key}" for t in shared(p)]  # the region's gateway API i is shared tenant i's host
    out += [(_region_path(path, apis), message) for path, message in cell_refusals(region_cell_params(p))]
    for t in dedicated(p):
        if t.finess is None:
            out.append((f"tenants.{t.key}.finess", "a dedicated tenant's cell carries its FINESS juridique (its "
                        "organisation certificate names it): a tenant without FINESS is hosted in the shared tier"))
            continue
        out += [(_tenant_path(path, t), message) for path, message in cell_refusals(tenant_cell_params(p, t))]
    return sorted(set(out), key=out.index)


def _region_path(path: str, apis: list[str]) -> str:
    """A refusal of the region's cell, at the key the user wrote: its organisation is `region`, its API i is the
    i-th shared tenant's host."""
    if path.startswith("organisation."):
        return "region." + path.split(".", 1)[1]
    if path.startswith("gateway.apis["):
        index = int(path[len("gateway.apis["):].split("]", 1)[0])
        return f"{apis[index]}.api_host" if index < len(apis) else "gateway"
    return path


def _tenant_path(path: str, t: Tenant) -> str:
    """A refusal of a dedicated tenant's cell: in its file when the value is the tenant's own (its names, its host,
    its FHIR store, its backup hours), else at the region's key it comes from."""
    own = f"tenants.{t.key}"
    if path.startswith("organisation."):
        field = path.split(".", 1)[1]
        return f"{own}.{field if field in ('name', 'finess') else 'short_name'}"
    if path.startswith("gateway.apis"):
        return f"{own}.api_host"
    if path.startswith("fhir.") and t.fhir is not None:
        return f"{own}.{path}"
    if path in ("backup.daily_schedule", "backup.monthly_schedule"):
        return f"{own}.{path}"
    if path.startswith("relay.hostname"):
        return f"{own}.api_host"
    return path


def advisories(p: Params) -> list[tuple[str, str]]:
    return cell_advisories(region_cell_params(p)) if shared(p) else []


def component_args(p: Params):
    """The region's own cell's component arguments (what `socle verify` runs)."""
    return cell_component_args(region_cell_params(p), tenancy(p), partitions(p))


def config_files(p: Params) -> dict[str, str]:
    files = {f"{p.region.short_name}/{k}": v for k, v in cell_config_files(region_cell_params(p), tenancy(p), partitions(p)).items()}
    for t in dedicated(p):
        if t.finess is not None:
            files.update({f"{t.short_name}/{k}": v for k, v in cell_config_files(tenant_cell_params(p, t)).items()})
    return files


def outputs(p: Params) -> dict[str, Any]:
    audit_ns = p.namespace("audit")
    return {
        "tenantHosts": {t.key: p.tenant_host(t) for t in sorted(p.tenants.values(), key=lambda t: t.key)},
        "tenantTiers": {t.key: t.tier for t in sorted(p.tenants.values(), key=lambda t: t.key)},
        "relayHost": p.relay.hostname,
        "namespaces": namespaces(p),
        "auditLogEndpoint": f"rsyslog.{audit_ns}.svc.cluster.local:{SYSLOG_TLS_PORT}",
        "auditorRole": AUDITOR_ROLE,
        "profile": p.profile,
    }


BLUEPRINT = Blueprint(
    name=NAME,
    version=VERSION,
    description="Regional platform (GRADeS): établissements hosted as tenants, shared or dedicated",
    model=Params,
    build=build,
    refusals=refusals,
    advisories=advisories,
    outputs=outputs,
    inventory=inventory,
    stack_template="blueprints/plateforme_regionale/stack.yaml.j2",
    component_args=component_args,
    config_files=config_files,
    reference_stack="region-demo",
)
