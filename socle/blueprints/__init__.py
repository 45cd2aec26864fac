"""Certified blueprints: versioned compositions of components with a pydantic parameter model."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable

from pydantic import BaseModel


@dataclass(frozen=True)
class Inventory:
    """What the tooling (CLI, render, audit, `socle verify`) needs to know of a stack, whatever its blueprint's
    parameters: the profile, the kit's namespaces and their blocks, the auditors' group, the allowed registries and
    the tenants (FINESS -> short name)."""

    profile: str
    namespaces: dict[str, str]  # namespace -> block
    auditors_group: str
    allowed_registries: tuple[str, ...]
    tenants: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Blueprint:
    name: str
    version: str  # semantic version of the parameter model and composition
    description: str
    model: type[BaseModel]
    build: Callable[[Any], Any]
    refusals: Callable[[Any], list[tuple[str, str]]]
    stack_template: str  # jinja2 template used by `socle new`, a resource of the socle package (blueprints/...)
    component_args: Callable[[Any], dict[str, BaseModel]]  # validated args of the configured components, by block
    config_files: Callable[[Any], dict[str, str]]  # every configuration file the pods read, checked for its grammar
    inventory: Callable[[Any], Inventory]  # profile, namespaces, auditors, registries, tenants of a stack's parameters
    # (key path, message) for valid values a recommendation advises against: printed by `socle validate`, never refused
    advisories: Callable[[Any], list[tuple[str, str]]] = lambda params: []
    # stack outputs (`pulumi stack output`, StackReference): endpoints, namespaces, roles; never a secret
    outputs: Callable[[Any], dict[str, Any]] = lambda params: {}
    # the stack (stacks/Pulumi.<name>.yaml) whose render, audit and verification certify the blueprint
    reference_stack: str = "demo"
    # the files (globs relative to the project root) whose SHA-256 digests make the certified blueprint
    sources: tuple[str, ...] = ()
    # stack-file migrations between blueprint versions: (from_version, to_version) -> function(params dict) -> dict
    migrations: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)

    @property
    def major(self) -> str:
        return self.version.split(".", 1)[0]


BLUEPRINT_MODULES = ("etablissement", "plateforme_regionale")


def registry() -> dict[str, Blueprint]:
    out: dict[str, Blueprint] = {}
    for mod in BLUEPRINT_MODULES:
        bp: Blueprint = import_module(f"socle.blueprints.{mod}").BLUEPRINT
        out[bp.name] = bp
    return out
