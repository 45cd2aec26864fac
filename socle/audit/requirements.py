"""What each requirement rests on: its source, the confidence in that source and whether it binds.

One entry per requirement ID of the catalogue. `basis` says what kind of text sets the rule:
- `regulatory`: a text that binds the établissement (law, decree, arrêté, a référentiel made binding by one);
- `guidance`: a specification or recommendation of ANS, CI-SIS, FR Core, ANSSI or the CNIL, or ANS's own
  practice: followed, not imposed by a legal text the kit could cite;
- `design`: the kit's own choice where no source sets the rule.
`confidence` is REQUIREMENTS.md's: P (read in a primary text), S (known from secondary summaries), D (design),
combined as "P/D" when the rule is sourced and its number is the kit's. `design_values` lists the numbers and
choices no source sets: the report labels them as the kit's choice, never as a requirement of the source.

The table of docs/REQUIREMENTS.md "Basis of each requirement" is generated from here:
`python -m socle.audit.requirements --write` (a test keeps it current).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Basis = Literal["regulatory", "guidance", "design"]


@dataclass(frozen=True)
class Requirement:
    confidence: str
    basis: Basis
    source: str
    design_values: tuple[str, ...] = ()


_K8S = "ANSSI and CIS Kubernetes practice; Kubernetes Pod Security Standards"

REQUIREMENTS: dict[str, Requirement] = {
    "TLS-01": Requirement("P/S", "guidance", "CI-SIS « Sécurisation de la couche transport API REST » 1.2.0 (TLS 1.3 recommended, "
                          "1.2 supported, SSL/1.0/1.1 forbidden); ANSSI TLS guide v1.2 (summaries)"),
    "TLS-02": Requirement("S", "guidance", "ANSSI TLS guide v1.2 (summaries): ECDHE with AEAD suites"),
    "TLS-03": Requirement("P", "guidance", "CI-SIS transport security (no cleartext HTTP); ANSSI asks for HSTS",
                          ("HSTS max-age 31536000 s (no source sets a value)",)),
    "PKI-01": Requirement("P", "guidance", "MSSanté Référentiel #2 v1.0 ECO.1.1.10 (« IGC santé doit être la seule AC "
                          "autorisée »); CI-SIS transport security"),
    "PKI-02": Requirement("P", "guidance", "CI-SIS transport security (revocation checked)",
                          ("CRL downloaded every 60 min",)),
    "PKI-03": Requirement("P", "guidance", "ANS industriels FAQ (IGC-Santé): certificates valid 3 years, ANS warns 60 days "
                          "before expiry, renewal only while still valid"),
    "PKI-04": Requirement("S", "guidance", "ANSSI (summaries); ANS industriels FAQ: IGC-Santé keys RSA-2048"),
    "API-01": Requirement("P", "guidance", "CI-SIS principes de sécurisation: public = API key, restricted = OAuth2, "
                          "sensitive data = mTLS at minimum"),
    "API-02": Requirement("P", "guidance", "CI-SIS API Pro Santé Connectée, steps 7–12 (the AS maps the IGC-Santé ORG "
                          "certificate DN to the client id); RFC 8705"),
    "API-03": Requirement("P", "guidance", "CI-SIS API Pro Santé Connectée, steps 7–12: the PSC access token is the "
                          "subject_token of an RFC 8693 exchange; API token bound to the client certificate, 1 h "
                          "(1–4 h recommended)"),
    "API-04": Requirement("P", "guidance", "CI-SIS PSC pages: PSC session ends after 4 h or 30 min idle; tokens server-side"),
    "GW-01": Requirement("D", "design", "ANS's internal API-manager rules (ansforge/gravitee-controles-api), not a "
                         "requirement on établissements"),
    "GW-02": Requirement("D", "design", "ANS's internal API-manager rules (ansforge/gravitee-controles-api)"),
    "GW-03": Requirement("D", "design", "ANS's internal API-manager rules (ansforge/gravitee-controles-api)"),
    "GW-04": Requirement("D", "design", "ANS's internal API-manager rules (ansforge/gravitee-controles-api)"),
    "GW-05": Requirement("D", "design", "ANS's internal API-manager rules (ansforge/gravitee-controles-api)"),
    "GW-06": Requirement("D", "design", "ANS's internal API-manager rules (ansforge/gravitee-controles-api)",
                         ("100 requests/s, burst 200", "request bodies 10 MiB")),
    "PSC-01": Requirement("P", "regulatory", "arrêté du 28 mars 2022: Pro Santé Connect mandatory for PGSSI-S sensitive "
                          "services since 2023-01-01 (gnius.esante.gouv.fr)"),
    "PSC-02": Requirement("P", "guidance", "CI-SIS API Pro Santé Connectée (web page); ansforge/keycloak-prosanteconnect "
                          "EidasLevel: acr eidas1, ID token with a missing or lower acr rejected"),
    "PSC-03": Requirement("P", "guidance", "CI-SIS API Pro Santé Connectée: the service authenticates to PSC with its "
                          "client id and TLS certificate; ansforge/keycloak-prosanteconnect"),
    "PSC-04": Requirement("P", "guidance", "ansforge/keycloak-prosanteconnect psc.properties (production issuer)"),
    "PSC-05": Requirement("P", "guidance", "ansforge/keycloak-prosanteconnect psc.properties (sandbox hosts)"),
    "ADM-01": Requirement("S", "guidance", "ANSSI recommendations and HDS référentiel (summaries)"),
    "FHIR-01": Requirement("P", "guidance", "FR Core hl7.fhir.fr.core 2.1.0 on FHIR 4.0.1; ansforge/IG-doctrine-ci-sis"),
    "FHIR-02": Requirement("P", "guidance", "ANS SMT (smt.esante.gouv.fr/fhir), ANS Postman collection"),
    "FHIR-03": Requirement("P", "guidance", "ansforge annuaire-sante-fhir-documentation (header ESANTE-API-KEY)"),
    "FHIR-04": Requirement("D", "design", "FR Core IG (the French profiles); validating every incoming resource is the "
                           "kit's choice", ("validation on in production",)),
    "INS-01": Requirement("P", "regulatory", "CSP L.1111-8-1 (INS referencing mandatory since 2021-01-01); FR Core "
                          "Patient-INS profile: « Le matricule INS ne peut être véhiculé que dans le cas d'une identité "
                          "qualifiée » (INS ⇒ VALI)"),
    "INS-02": Requirement("P", "guidance", "FR Core FRCorePatientINSProfile.fsh (NIR, NIA, TEST, DEMO systems)"),
    "DMP-01": Requirement("P", "guidance", "Doctrine technique du numérique en santé; DMP integration rules"),
    "MSS-01": Requirement("P", "guidance", "MSSanté Référentiel #2 v1.0 (ECO.1.1.x)"),
    "MSS-02": Requirement("P", "guidance", "MSSanté Référentiel #2 v1.0 (ECO.1.1.x)"),
    "MSS-03": Requirement("P/D", "guidance", "MSSanté Référentiel #2 v1.0 (ECO.1.1.x)",
                          ("the two suites ECDHE-RSA-AES256-GCM-SHA384 and ECDHE-RSA-AES128-GCM-SHA256 (consistent with "
                           "IGC-Santé RSA keys; no text found)",)),
    "MSS-04": Requirement("S", "guidance", "MSSanté Référentiel #2 v1.0 ECO.1.1.10"),
    "MSS-05": Requirement("P", "guidance", "MSSanté trust space white list (espacedeconfiance.mssante.fr/"
                          "listeblanchemssante.xml); cms.mssante.fr « rejoindre » (direct delivery needs the operator "
                          "contract)", ("list refreshed every 24 h",)),
    "MSS-06": Requirement("S", "guidance", "MSSanté Référentiel #2 v1.0"),
    "MSS-07": Requirement("P/D", "guidance", "ANS industriels FAQ 10217; MSSanté Référentiel #2 v1.0: traces without "
                          "content, 6 months recommended", ("kept 365 days by default",)),
    "MSS-08": Requirement("P", "guidance", "MSSanté Référentiel #2 v1.0"),
    "TRACE-01": Requirement("P", "regulatory", "CSP R.6113-9-2: traces of access to patient data kept six months "
                            "(183 days); CNIL logging recommendation (2021): 6 months to 1 year, longer only with a "
                            "documented justification", ("kept 365 days by default",)),
    "TRACE-02": Requirement("S", "guidance", "ANSSI logging guide (summaries)"),
    "TRACE-03": Requirement("D", "design", "FHIR AuditEvent / IHE BALP where the source is FHIR"),
    "TRACE-04": Requirement("S/D", "guidance", "ANSSI logging guide (summaries)", ("a keyed hash chain as the seal",)),
    "TRACE-05": Requirement("D", "design", "mutual TLS between log sources and the aggregator"),
    "HDS-01": Requirement("S", "regulatory", "HDS référentiel 2024 (arrêté du 26 avril 2024, JO 2024-05-16): storage "
                          "only in the EEA (summaries)"),
    "HDS-02": Requirement("S", "regulatory", "HDS référentiel 2024 (summaries)"),
    "HDS-03": Requirement("S", "regulatory", "CSP L.1111-8 and R.1111-9: certification of a host acting for a third "
                          "party; an établissement hosting its own data needs none (summaries)"),
    "HDS-04": Requirement("D", "design", "encryption at rest and Retain: the kit's choice for health data volumes"),
    "BCK-01": Requirement("P/D", "guidance", "ANS's own Kubernetes platform (ansforge/pfc-ovh-documentations "
                          "fonctionnement-velero.md): daily 720 h and monthly 4320 h backups in another region, data "
                          "moved off the volumes — practice, not regulation", ("daily kept 30 days, monthly kept 180 days",)),
    "BCK-02": Requirement("S/D", "design", "restores tested regularly", ("a restore test at least every 90 days",)),
    "K8S-01": Requirement("D", "design", _K8S),
    "K8S-02": Requirement("D", "design", _K8S),
    "K8S-03": Requirement("D", "design", _K8S),
    "K8S-04": Requirement("D", "design", _K8S),
    "K8S-05": Requirement("D", "design", _K8S),
    "K8S-06": Requirement("D", "design", _K8S),
    "K8S-07": Requirement("D", "design", _K8S),
    "K8S-08": Requirement("D", "design", _K8S),
    "K8S-09": Requirement("D", "design", "ANS's Kubernetes platform (3 availability zones)", ("at least 2 replicas",)),
    "K8S-10": Requirement("D", "design", _K8S),
    "K8S-11": Requirement("D", "design", "Kubernetes ValidatingAdmissionPolicy (GA in 1.30): the catalogue's "
                          "single-object rules enforced by the API server"),
    "TEN-01": Requirement("D", "design", "the kit's design for a regional platform hosting établissements as tenants "
                          "(plateforme-regionale): no tenant's namespace exchanges traffic with another tenant's"),
    "TEN-02": Requirement("D", "design", "the kit's design for a regional platform hosting établissements as tenants "
                          "(plateforme-regionale): each tenant's organisation certificates open only its host, and its "
                          "host only its partition of the shared FHIR store"),
}

DOC = Path(__file__).resolve().parents[2] / "docs" / "REQUIREMENTS.md"
BEGIN = "<!-- generated from socle/audit/requirements.py: python -m socle.audit.requirements --write -->"
END = "<!-- end of generated table -->"


def table() -> str:
    lines = [BEGIN, "", "| ID | Conf. | Basis | Source | The kit's own choices |", "|---|---|---|---|---|"]
    for rid, r in REQUIREMENTS.items():
        choices = "; ".join(r.design_values) or "—"
        lines.append(f"| {rid} | {r.confidence} | {r.basis} | {r.source.replace('|', '/')} | {choices.replace('|', '/')} |")
    return "\n".join(lines + ["", END])


def document(text: str) -> str:
    """docs/REQUIREMENTS.md with its generated table replaced by the current one."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + table() + text[end:]


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    new = document(text)
    if "--write" in argv:
        if new != text:  # atomic: a temporary file beside it, then renamed over it
            tmp = DOC.with_name(f".{DOC.name}.tmp")
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, DOC)
        return 0
    if new != text:
        print(f"{DOC}: the basis table is out of date; run python -m socle.audit.requirements --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
