"""FHIR, INS and national services (FHIR-01..04, INS-01, INS-02, DMP-01)."""
from __future__ import annotations

from typing import Iterator
from urllib.parse import urlparse

from socle.constants import ANS_TERMINOLOGY_SERVER, FHIR_VERSION, INS_NON_PRODUCTION, INS_SYSTEMS, LABEL_BLOCK

from ..evidence import Evidence, dig, labels
from ..model import Context, Control, Finding, declared, failed, judge, not_applicable
from . import registrar
from ._common import Parsed, each, hapi_files

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "FHIR")
FHIR = ("doctrine",)
FR_CORE = "hl7.fhir.fr.core"


def _fhir(doc: dict) -> dict:
    return (doc.get("hapi") or {}).get("fhir") or {}


def _fr_core(doc: dict) -> bool:
    igs = _fhir(doc).get("implementationguides") or {}
    return any(isinstance(ig, dict) and ig.get("name") == FR_CORE for ig in igs.values())


@control("FHIR-01", "FHIR R4 (4.0.1) is the national version", "high", FHIR, ("fr-core", "doctrine"),
         "Run the FHIR server with fhir_version R4.")
def fhir_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def hapi(p: Parsed) -> Finding:
        version = _fhir(p.data).get("fhir_version")
        return judge(p.file.obj, [] if version == FHIR_VERSION else [f"fhir_version is {version!r}, not {FHIR_VERSION}"],
                     "fhir_version R4", "application.yaml")

    yield from each(hapi_files(ev), hapi)


@control("FHIR-02", "National terminologies come from the ANS terminology server", "medium", FHIR, ("doctrine",),
         f"Point fhir.terminology_server at {ANS_TERMINOLOGY_SERVER}.")
def fhir_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    expected = urlparse(ANS_TERMINOLOGY_SERVER).hostname

    def hapi(p: Parsed) -> Finding:
        remote = _fhir(p.data).get("remote_terminology_service") or {}
        urls = [str(v.get("url", "")) for v in remote.values() if isinstance(v, dict)]
        problems = ([] if urls else ["no remote terminology service"]) + \
            [f"terminology server {u} is not {expected}" for u in urls if urlparse(u).hostname != expected]
        return judge(p.file.obj, problems, f"terminologies from {expected}", "application.yaml")

    yield from each(hapi_files(ev), hapi)


@control("FHIR-03", "The Annuaire Santé API key is held in a Secret, never a literal", "high", FHIR + ("pgssi-s",),
         ("doctrine",), "Reference the key through fhir.annuaire_api_key_secret (secretKeyRef).")
def fhir_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def hapi(p: Parsed) -> Finding:
        annuaire = (p.data.get("socle") or {}).get("annuaire_sante") or {}
        if not annuaire:
            return not_applicable(p.file.obj, "the Annuaire Santé API is not configured", "application.yaml")
        var = annuaire.get("api_key_env")
        problems = ["API key written as a literal in the configuration file"] if any(k in annuaire for k in ("api_key", "apiKey", "key")) else []
        if not var:
            problems.append("no api_key_env names where the key comes from")
        for w, c, _ in ev.mounts_of(p.file.obj):
            env = next((e for e in c.get("env") or [] if e.get("name") == var), None)
            if env is None:
                problems.append(f"{w.ref} container {c.get('name')} has no {var}")
            elif "value" in env:
                problems.append(f"{w.ref} container {c.get('name')} sets {var} as a literal")
            elif not (env.get("valueFrom") or {}).get("secretKeyRef"):
                problems.append(f"{w.ref} container {c.get('name')} sets {var} not from a Secret (no secretKeyRef)")
        return judge(p.file.obj, problems, f"key in {var} from a secretKeyRef", "application.yaml")

    yield from each(hapi_files(ev), hapi)


@control("FHIR-04", "Incoming resources validated against FR Core (on in production)", "medium", FHIR, ("fr-core",),
         "Set fhir.validation_fr_core: true.")
def fhir_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def hapi(p: Parsed) -> Finding:
        on = (_fhir(p.data).get("validation") or {}).get("requests_enabled") is True
        if not on and not ctx.production:
            return not_applicable(p.file.obj, f"request validation off ({ctx.profile} profile)", "application.yaml")
        problems = ([] if on else ["request validation is off"]) + ([] if _fr_core(p.data) else [f"{FR_CORE} is not loaded"])
        return judge(p.file.obj, problems, "requests validated, FR Core loaded", "application.yaml")

    yield from each(hapi_files(ev), hapi)


@control("INS-01", "The FR Core Patient-INS profile is loaded and incoming resources are validated", "high", FHIR,
         ("fr-core",), "Load FR Core (which carries Patient-INS) in the FHIR server and keep request validation on.")
def ins_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # That the INS is stored only for qualified identities is a property of the data: the configuration can only show
    # that the profile which says so is loaded and applied to incoming resources (sample Patients need the live server).
    def hapi(p: Parsed) -> Finding:
        on = (_fhir(p.data).get("validation") or {}).get("requests_enabled") is True
        problems = ([] if _fr_core(p.data) else [f"{FR_CORE} (Patient-INS profile) is not loaded"]) + \
            ([] if on else ["request validation is off: the Patient-INS profile is not applied to incoming resources"])
        return judge(p.file.obj, problems, "Patient-INS profile loaded and applied to incoming resources", "application.yaml")

    yield from each(hapi_files(ev), hapi)


@control("INS-02", "INS identifier systems are the national ones; test and demo systems never in production", "high",
         FHIR, ("fr-core",), "List only NIR and NIA systems in fhir.ins_systems for production.")
def ins_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    known = set(INS_SYSTEMS.values())

    def hapi(p: Parsed) -> Finding:
        systems = [str(s) for s in (p.data.get("socle") or {}).get("ins_systems") or []]
        problems = ([] if systems else ["no INS identifier system declared"]) + \
            [f"unknown INS system {s}" for s in systems if s not in known]
        if ctx.production:
            problems += [f"test/demo INS system {s} in production" for s in systems if s in INS_NON_PRODUCTION]
        if problems:
            return failed(p.file.obj, "; ".join(problems), "application.yaml")
        # The list is the kit's statement (socle.ins_systems): HAPI does not read it, so identifiers of any other
        # system would be stored all the same. What is stored is seen in the data, not in the configuration.
        return declared(p.file.obj, f"INS systems {', '.join(systems)} declared in socle.ins_systems, which the FHIR "
                                    "server does not enforce: the auditor checks the identifiers stored", "application.yaml")

    yield from each(hapi_files(ev), hapi)


@control("DMP-01", "The DMP connector holds an authentication certificate and a separate signing certificate (two Secrets)",
         "high", FHIR + ("pgssi-s",), ("doctrine",),
         "Mount two distinct Secrets (authentication, signature) in the DMP connector.")
def dmp_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # How the connector uses them (mTLS, signing) is its own configuration, outside the kit's objects.
    for w in ev.workloads():
        if labels(w.obj).get(LABEL_BLOCK) != "dmp":
            continue
        secrets = sorted({str(dig(v, "secret", "secretName")) for v in w.pod_spec.get("volumes") or [] if "secret" in v})
        problems = ["the DMP connector mounts no certificate Secret (no authentication certificate)"] if not secrets else \
            [f"the DMP connector mounts one certificate Secret ({secrets[0]}): no separate signing certificate"] \
            if len(secrets) == 1 else []
        yield judge(w.obj, problems, f"certificates from distinct Secrets {', '.join(secrets)}")
