"""The control catalogue: one module per family, one control per requirement of REQUIREMENTS.md.

Controls never import socle.components: they judge objects and files as a cluster or a render shows them.
"""
from __future__ import annotations

from importlib import import_module
from typing import Callable

from ..model import Check, Control, Severity

# Source documents, cited by short key (full titles as in REQUIREMENTS.md "Sources").
SOURCES: dict[str, str] = {
    "ci-sis-transport": "ANS, CI-SIS « Sécurisation de la couche transport API REST Pro Santé Connectée » (interop.esante.gouv.fr/ig/securisation-transport)",
    "psc": "ANS, Pro Santé Connect technical documentation and FAQ (industriels.esante.gouv.fr); ansforge/keycloak-prosanteconnect",
    "gravitee": "ANS API gateway rules (ansforge/gravitee-controles-api)",
    "mssante": "MSSanté référentiels #1 (operators) and #2 (clients), requirements ECO.1.1.x; CNIL deliberation on MSSanté",
    "fr-core": "Interop'Santé / ANS FR Core IG (Patient-INS profile); ansforge/IG-doctrine-ci-sis (FHIR R4 trajectory)",
    "hds": "HDS référentiel, arrêté of 2024-04-26 (JO 2024-05-16), through public summaries",
    "anssi-tls": "ANSSI, TLS recommendations v1.2 (2020), through public summaries",
    "anssi-logs": "ANSSI, logging guide (recommandations de sécurité pour la journalisation)",
    "ans-k8s": "ANS Kubernetes platform documentation (ansforge/pfc-ovh-documentations)",
    "doctrine": "Doctrine technique du numérique en santé (2019 edition and later)",
    "kubernetes": "Kubernetes documentation: Pod Security Standards, NetworkPolicy, RBAC; CIS Kubernetes Benchmark",
    "socle": "socle design decision (REQUIREMENTS.md, confidence D)",
}

FAMILY_MODULES = ("tls", "api", "psc", "fhir", "mss", "trace", "hds", "k8s", "tenancy")


def registrar(catalogue: list[Control], family: str):
    """`@control(...)` decorator of a family module; `manual(...)` for controls without a check."""

    def control(id: str, title: str, severity: Severity, frameworks: tuple[str, ...], sources: tuple[str, ...],
                remediation: str) -> Callable[[Check], Check]:
        def deco(fn: Check) -> Check:
            catalogue.append(Control(id, family, title, severity, frameworks, sources, remediation, check=fn))
            return fn

        return deco

    def manual(id: str, title: str, severity: Severity, frameworks: tuple[str, ...], sources: tuple[str, ...],
               remediation: str, evidence: str, max_age_days: int | None = None, needs_validity: bool = False,
               scope: Callable | None = None) -> None:
        catalogue.append(Control(id, family, title, severity, frameworks, sources, remediation, None, evidence,
                                 max_age_days=max_age_days, needs_validity=needs_validity, scope=scope))

    return control, manual


def catalogue() -> list[Control]:
    """Every control, family by family, in the order of REQUIREMENTS.md."""
    out: list[Control] = []
    for mod in FAMILY_MODULES:
        out += import_module(f"{__name__}.{mod}").CONTROLS
    ids = [c.id for c in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise RuntimeError(f"duplicate control IDs: {dup}")
    for c in out:
        unknown = [s for s in c.sources if s not in SOURCES]
        if unknown:
            raise RuntimeError(f"{c.id}: unknown source keys {unknown}")
    return out


def by_id() -> dict[str, Control]:
    return {c.id: c for c in catalogue()}
