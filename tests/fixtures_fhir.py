"""Fixtures of the FHIR and INS controls reworked for issue 11 (FHIR-02, FHIR-04, INS-01): the HAPI image is the pinned
version whose configuration properties include every key the kit relies on, FR Core is stored so the repository
validating interceptor applies it to every resource whatever it declares, and the kit's interceptor refuses an INS on an
identity that is not VALI (INS-01).
Entries replace tests/audit_fixtures.py's for the same control ID (its `_merge_areas`)."""
from __future__ import annotations

import base64
from typing import Callable

from tests.audit_fixtures import Fixture, Objects, _claim, container, edit_file, find

HAPI_CM = ("ConfigMap", "hapi-fhir")
OLD_IMAGE = "docker.io/hapiproject/hapi:v8.0.0"  # the starter image before remote_terminology_service (image/v8.2.0-1)


def _hapi(old: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_file(objs, "hapi-fhir", "application.yaml", old, new)


def _image(image: str) -> Callable[[Objects], None]:
    return lambda objs: container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir").update({"image": image})


_NO_REPOSITORY = _hapi("enable_repository_validating_interceptor: true", "enable_repository_validating_interceptor: false")
_STORE_ONLY = _hapi("installMode: STORE_AND_INSTALL", "installMode: STORE_ONLY")
_US_CORE = _hapi("name: hl7.fhir.fr.core", "name: hl7.fhir.us.core")
_NO_REQUESTS = _hapi("requests_enabled: true", "requests_enabled: false")
_RULE_WEAKENED = _hapi("'VALI'", "'PROV'")
_NO_INTERCEPTOR = _hapi("    custom-interceptor-classes: fr.esante.socle.hapi.InsQualifiedIdentityInterceptor\n", "")


def _no_extra_classes(objs: Objects) -> None:
    hapi = container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir")
    hapi["volumeMounts"] = [m for m in hapi["volumeMounts"] if m["mountPath"] != "/app/extra-classes"]


def _other_jar(objs: Objects) -> None:
    cm = find(objs, "ConfigMap", "hapi-extra-classes")
    cm["binaryData"]["socle-hapi-ins.jar"] = base64.b64encode(b"PK\x03\x04 another jar").decode()

FAILING: dict[str, Fixture] = {
    "FHIR-02": Fixture("demo", "another terminology server", _hapi("url: https://smt.esante.gouv.fr/fhir", "url: https://tx.fhir.org/r4"), HAPI_CM),
    "FHIR-04": Fixture("chu-exemple-prod", "validation off in production", _NO_REQUESTS, HAPI_CM),
    "INS-01": Fixture("demo", "FR Core not loaded", _US_CORE, HAPI_CM),
}

CLAIMS: dict[str, list[tuple[str, Fixture]]] = {
    "FHIR-02": [
        ("national terminologies from the ANS terminology server",
         _claim("demo", "another terminology server", FAILING["FHIR-02"].mutate, HAPI_CM, r"tx\.fhir\.org/r4 is not smt\.esante\.gouv\.fr")),
        ("national terminologies from the ANS terminology server",
         _claim("demo", "no remote terminology service", _hapi("    remote_terminology_service:\n      all:\n        system: '*'\n        url: https://smt.esante.gouv.fr/fhir\n", ""),
                HAPI_CM, r"no remote terminology service")),
        ("in a HAPI version that reads the setting",
         _claim("demo", "HAPI v8.0.0, which has no remote_terminology_service", _image(OLD_IMAGE), HAPI_CM,
                r"runs docker\.io/hapiproject/hapi:v8\.0\.0, not the pinned .*remote_terminology_service", "evidence-missing")),
    ],
    "FHIR-04": [
        ("every incoming resource validated (on in production)",
         _claim("chu-exemple-prod", "request validation off in production", _NO_REQUESTS, HAPI_CM, r"request validation is off")),
        ("whatever profile it declares",
         _claim("chu-exemple-prod", "repository validating interceptor off", _NO_REPOSITORY, HAPI_CM,
                r"repository validating interceptor is off: a resource that declares no FR Core profile")),
        ("whatever profile it declares",
         _claim("chu-exemple-prod", "FR Core not stored (no repository rule)", _STORE_ONLY, HAPI_CM, r"not installed with installMode STORE_AND_INSTALL")),
        ("against FR Core",
         _claim("chu-exemple-prod", "validation on, FR Core not loaded", _US_CORE, HAPI_CM, r"hl7\.fhir\.fr\.core is not loaded")),
        ("against FR Core",
         _claim("demo", "HAPI image whose properties the kit does not know", _image(OLD_IMAGE), HAPI_CM,
                r"not the pinned docker\.io/hapiproject/hapi:v8\.8\.0-1: whether it reads hapi\.fhir\.enable_repository_validating_interceptor",
                "evidence-missing")),
    ],
    "INS-01": [
        ("the INS is carried only by a qualified identity (VALI)",
         _claim("demo", "FR Core not loaded", _US_CORE, HAPI_CM, r"hl7\.fhir\.fr\.core \(Patient and Patient-INS profiles\) is not stored")),
        ("the INS is carried only by a qualified identity (VALI)",
         _claim("demo", "a Patient declaring no FR Core profile stored unchecked", _NO_REPOSITORY, HAPI_CM,
                r"a Patient that declares no FR Core profile is stored unchecked")),
        ("the INS is carried only by a qualified identity (VALI)",
         _claim("demo", "request validation off", _NO_REQUESTS, HAPI_CM, r"request validation is off")),
        ("the INS is carried only by a qualified identity (VALI)",
         _claim("demo", "the INS interceptor not registered", _NO_INTERCEPTOR, HAPI_CM,
                r"INS interceptor fr\.esante\.socle\.hapi\.InsQualifiedIdentityInterceptor is not registered")),
        ("the INS is carried only by a qualified identity (VALI)",
         _claim("demo", "the interceptor's jar not mounted", _no_extra_classes, HAPI_CM,
                r"has no ConfigMap at /app/extra-classes: the INS interceptor class cannot be loaded")),
        ("the INS is carried only by a qualified identity (VALI)",
         _claim("chu-exemple-prod", "another jar in place of the kit's interceptor", _other_jar, HAPI_CM,
                r"socle-hapi-ins\.jar in ConfigMap hapi-extra-classes-[0-9a-f]+ is not the kit's INS interceptor")),
        ("the INS is carried only by a qualified identity (VALI)",
         _claim("demo", "the stated rule accepts a provisional identity", _RULE_WEAKENED, HAPI_CM, r"the INS rule socle-ins-1 \(INS ⇒ VALI\) stated in socle\.ins_rule is not the kit's")),
    ],
}
