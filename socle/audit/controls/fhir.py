"""FHIR, INS and national services (FHIR-01..04, INS-01, INS-02, DMP-01)."""
from __future__ import annotations

from typing import Iterator
from urllib.parse import urlparse

from socle import fhir as pinned_hapi
from socle.constants import (
    ANS_TERMINOLOGY_SERVER,
    FHIR_VERSION,
    FR_CORE_PACKAGE,
    INS_NON_PRODUCTION,
    INS_QUALIFIED_RULE,
    INS_QUALIFIED_RULE_ID,
    INS_SYSTEMS,
    LABEL_BLOCK,
)

from ..evidence import Evidence, dig, labels
from ..model import Context, Control, Finding, declared, failed, judge, missing, not_applicable
from . import registrar
from ._common import Parsed, each, hapi_files

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "FHIR")
FHIR = ("doctrine",)
FR_CORE = FR_CORE_PACKAGE
# FR Core's StructureDefinitions must be stored as resources: the starter builds the repository validating rules from
# the StructureDefinitions stored in the server (RepositoryValidationInterceptorFactoryR4.buildUsingStoredStructureDefinitions).
FR_CORE_INSTALL_MODE = "STORE_AND_INSTALL"


def _fhir(doc: dict) -> dict:
    return (doc.get("hapi") or {}).get("fhir") or {}


def _fr_core(doc: dict) -> bool:
    igs = _fhir(doc).get("implementationguides") or {}
    return isinstance(igs, dict) and any(isinstance(ig, dict) and ig.get("name") == FR_CORE for ig in igs.values())


def _fr_core_stored(doc: dict) -> bool:
    igs = _fhir(doc).get("implementationguides") or {}
    return isinstance(igs, dict) and any(isinstance(ig, dict) and ig.get("name") == FR_CORE
                                         and ig.get("installMode") == FR_CORE_INSTALL_MODE for ig in igs.values())


def _runs_pinned_hapi(ev: Evidence, p: Parsed, keys: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(problems, unknowns) about the HAPI images that read this file: each must be the pinned image, whose
    configuration properties (socle/fhir/hapi_properties.json) include `keys`; another image's are not known."""
    pin = pinned_hapi.pinned()
    problems = [f"{k} is not a configuration property of HAPI {pin['tag']}" for k in keys
                if not pinned_hapi.known(tuple(k.split(".")))]
    unknowns = []
    for w, c, _ in ev.mounts_of(p.file.obj):
        image = str(c.get("image", "")).split("@", 1)[0]
        if image != pin["image"]:
            unknowns.append(f"{w.ref} container {c.get('name')} runs {image or 'no image'}, not the pinned "
                            f"{pin['image']}: whether it reads {', '.join(keys)} is not known to the kit")
    return problems, unknowns


@control("FHIR-01", "FHIR R4 (4.0.1) is the national version", "high", FHIR, ("fr-core", "doctrine"),
         "Run the FHIR server with fhir_version R4.")
def fhir_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def hapi(p: Parsed) -> Finding:
        version = _fhir(p.data).get("fhir_version")
        return judge(p.file.obj, [] if version == FHIR_VERSION else [f"fhir_version is {version!r}, not {FHIR_VERSION}"],
                     "fhir_version R4", "application.yaml")

    yield from each(hapi_files(ev), hapi)


@control("FHIR-02", "National terminologies come from the ANS terminology server, in a HAPI version that reads the setting",
         "medium", FHIR, ("doctrine",),
         f"Point fhir.terminology_server at {ANS_TERMINOLOGY_SERVER} and keep images.fhir at the pinned HAPI image.")
def fhir_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    expected = urlparse(ANS_TERMINOLOGY_SERVER).hostname

    def hapi(p: Parsed) -> Finding:
        remote = _fhir(p.data).get("remote_terminology_service") or {}
        urls = [str(v.get("url", "")) for v in remote.values() if isinstance(v, dict)]
        problems = ([] if urls else ["no remote terminology service"]) + \
            [f"terminology server {u} is not {expected}" for u in urls if urlparse(u).hostname != expected]
        # The key does nothing in a HAPI that has no such property (the starter has it since image/v8.2.0-1).
        key_problems, unknowns = _runs_pinned_hapi(ev, p, ("hapi.fhir.remote_terminology_service.*.url",))
        if problems or key_problems or not unknowns:
            return judge(p.file.obj, problems + key_problems,
                         f"terminologies from {expected}, read by HAPI {pinned_hapi.pinned()['tag']}", "application.yaml")
        return missing(p.file.obj, "; ".join(unknowns), "application.yaml")

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


@control("FHIR-04", "Every incoming resource validated against FR Core, whatever profile it declares (on in production)",
         "medium", FHIR, ("fr-core",),
         "Set fhir.validation_fr_core: true (FR Core stored, repository validating interceptor and request validation on).")
def fhir_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def hapi(p: Parsed) -> Finding:
        fhir = _fhir(p.data)
        requests = (fhir.get("validation") or {}).get("requests_enabled") is True
        repository = fhir.get("enable_repository_validating_interceptor") is True
        if not requests and not repository and not ctx.production:
            return not_applicable(p.file.obj, f"request validation off ({ctx.profile} profile)", "application.yaml")
        problems = ([] if requests else ["request validation is off"])
        problems += [] if repository else [
            "the repository validating interceptor is off: a resource that declares no FR Core profile is stored unchecked"]
        if not _fr_core(p.data):
            problems.append(f"{FR_CORE} is not loaded")
        elif not _fr_core_stored(p.data):
            problems.append(f"{FR_CORE} is not installed with installMode {FR_CORE_INSTALL_MODE}: its profiles are not "
                            "stored, so the repository validating interceptor has no FR Core rule")
        key_problems, unknowns = _runs_pinned_hapi(ev, p, ("hapi.fhir.enable_repository_validating_interceptor",
                                                           "hapi.fhir.implementationguides.*.installMode",
                                                           "hapi.fhir.validation.requests_enabled"))
        if problems or key_problems or not unknowns:
            return judge(p.file.obj, problems + key_problems,
                         "FR Core stored; every resource of a type FR Core profiles must declare one of its profiles and "
                         "is validated against it (repository rules), requests validated", "application.yaml")
        return missing(p.file.obj, "; ".join(unknowns), "application.yaml")

    yield from each(hapi_files(ev), hapi)


def _custom_interceptors(fhir: dict) -> list[str]:
    """hapi.fhir.custom-interceptor-classes under any of Spring's spellings: a comma-separated string or a list."""
    out: list[str] = []
    for k, v in fhir.items():
        if str(k).replace("-", "").replace("_", "").lower() == "custominterceptorclasses":
            items = v if isinstance(v, list) else str(v).split(",")
            out += [str(i).strip() for i in items if str(i).strip()]
    return out


def _interceptor_jar_problems(ev: Evidence, p: Parsed) -> list[str]:
    """Each container reading this file must have the kit's interceptor jar, byte for byte, in its extra-classes
    directory (a ConfigMap volume: the image's class loader path)."""
    import base64
    import hashlib

    want = pinned_hapi.ins_interceptor_sha256()
    problems = []
    mounts = ev.mounts_of(p.file.obj)
    if not mounts:
        problems.append("no container reads this configuration, so none loads the INS interceptor")
    for w, c, _ in mounts:
        vol, _rest = w.volume_at(c, pinned_hapi.EXTRA_CLASSES_DIR)
        cm_name = dig(vol or {}, "configMap", "name")
        cm = ev.get("ConfigMap", w.namespace, cm_name) if cm_name else None
        if cm is None:
            problems.append(f"{w.ref} container {c.get('name')} has no ConfigMap at {pinned_hapi.EXTRA_CLASSES_DIR}: "
                            "the INS interceptor class cannot be loaded")
            continue
        try:
            jar = base64.b64decode((cm.get("binaryData") or {}).get(pinned_hapi.INS_INTERCEPTOR_JAR_KEY, ""), validate=True)
        except ValueError:
            jar = b""
        if hashlib.sha256(jar).hexdigest() != want:
            problems.append(f"{w.ref} container {c.get('name')}: {pinned_hapi.INS_INTERCEPTOR_JAR_KEY} in ConfigMap "
                            f"{cm_name} is not the kit's INS interceptor (sha256 {want})")
    return problems


@control("INS-01", "The INS is carried only by a qualified identity (VALI)", "high", FHIR, ("fr-core",),
         "Keep fhir.validation_fr_core on and the kit's INS interceptor (custom-interceptor-classes, hapi-extra-classes).")
def ins_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # « Le matricule INS ne peut être véhiculé que dans le cas d'une identité qualifiée » (FR Core Patient-INS): INS ⇒ VALI.
    # FR Core's fr-core-1 is the converse (VALI ⇒ INS) and the starter's repository rules only require a declared FR Core
    # profile: the refusal comes from the kit's interceptor (rule socle-ins-1), which the server must load and register.
    def hapi(p: Parsed) -> Finding:
        fhir = _fhir(p.data)
        rule = (p.data.get("socle") or {}).get("ins_rule") or {}
        problems = [] if _fr_core_stored(p.data) else [
            f"{FR_CORE} (Patient and Patient-INS profiles) is not stored with installMode {FR_CORE_INSTALL_MODE}"]
        if fhir.get("enable_repository_validating_interceptor") is not True:
            problems.append("the repository validating interceptor is off: a Patient that declares no FR Core profile "
                            "is stored unchecked")
        if (fhir.get("validation") or {}).get("requests_enabled") is not True:
            problems.append("request validation is off")
        if pinned_hapi.INS_INTERCEPTOR_CLASS not in _custom_interceptors(fhir):
            problems.append(f"the INS interceptor {pinned_hapi.INS_INTERCEPTOR_CLASS} is not registered "
                            "(custom-interceptor-classes): an INS on an identity that is not VALI is stored")
        else:
            problems += _interceptor_jar_problems(ev, p)
        if not isinstance(rule, dict) or rule.get("expression") != INS_QUALIFIED_RULE:
            problems.append(f"the INS rule {INS_QUALIFIED_RULE_ID} (INS ⇒ VALI) stated in socle.ins_rule is not the "
                            f"kit's: {rule.get('expression') if isinstance(rule, dict) else rule!r}")
        key_problems, unknowns = _runs_pinned_hapi(ev, p, ("hapi.fhir.custom-interceptor-classes",
                                                           "hapi.fhir.enable_repository_validating_interceptor"))
        if problems or key_problems or not unknowns:
            return judge(p.file.obj, problems + key_problems,
                         f"every Patient conforms to a declared FR Core Patient profile and the kit's interceptor refuses "
                         f"an INS on an identity that is not VALI ({INS_QUALIFIED_RULE_ID})", "application.yaml")
        return missing(p.file.obj, "; ".join(unknowns), "application.yaml")

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
