"""Blueprint `etablissement`: one hospital — the platform layer and a single cell (socle/blueprints/shared), on a
cluster of its own."""
from __future__ import annotations

import pulumi

from socle.blueprints import Blueprint, Inventory
from socle.blueprints.shared.cell import Cell, component_args, config_files
from socle.blueprints.shared.platform import build_platform

from .model import BLOCKS, VERSION, Params, advisories, production_refusals
from .outputs import outputs


def build(p: Params) -> dict[str, object]:
    """Register every resource of the blueprint; returns the components by block."""
    cell = Cell(p, blueprint=f"etablissement {VERSION}")
    cell.zones()
    platform = build_platform(
        profile=p.profile, hosting=p.hosting, storage=p.storage, backup=p.backup,
        backup_prefix=p.organisation.short_name, allowed_registries=p.images.allowed_registries, auditors=p.auditors,
        exec_namespaces=list(cell.namespaces.values()), namespaces=cell.zone_namespaces)
    components = cell.blocks(platform)
    pulumi.export("namespaces", cell.namespaces)
    pulumi.export("blueprint", {"name": "etablissement", "version": VERSION, "profile": p.profile})
    return {**components, "storage": platform.storage}


def inventory(p: Params) -> Inventory:
    return Inventory(
        profile=p.profile,
        namespaces={p.namespace(b): b for b in BLOCKS},
        auditors_group=p.auditors.group,
        allowed_registries=tuple(p.images.allowed_registries),
        tenants={p.organisation.finess: p.organisation.short_name},
    )


BLUEPRINT = Blueprint(
    name="etablissement",
    version=VERSION,
    description="Hospital (établissement de santé): gateway, FHIR store, MSSanté relay, audit log, HDS storage",
    model=Params,
    build=build,
    refusals=production_refusals,
    advisories=advisories,
    outputs=outputs,
    inventory=inventory,
    stack_template="blueprints/etablissement/stack.yaml.j2",
    component_args=component_args,
    config_files=config_files,
)
