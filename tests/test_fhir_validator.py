"""The FHIR rules the kit renders, run by HAPI FHIR's own classes (validator/, the HAPI version of the pinned server
image, from Maven Central) on sample resources.

What runs: RepositoryValidatingInterceptor with the rules the starter builds once FR Core's StructureDefinitions are
stored (rendered: implementationguides hl7.fhir.fr.core installMode STORE_AND_INSTALL and
enable_repository_validating_interceptor), called through HAPI's interceptor service at STORAGE_PRESTORAGE_RESOURCE_CREATED;
the kit's INS rule socle-ins-1 (read from the rendered socle.ins_rule) and FR Core's invariant fr-core-1, evaluated by
HAPI's FHIRPath engine.

What cannot run here: the FR Core package itself. packages.fhir.org and hl7.fr are unreachable from this machine,
`npm view hl7.fhir.fr.core` answers 404 (not on the npm registry), Maven Central has no FR Core artefact, and the
Interop-Sante/hl7.fhir.fr.core repository (FSH sources) is over the mirror's size limit, and its FSH would need SUSHI
plus hl7.fhir.r4.core from the same unreachable registry. So a Patient declaring an FR Core profile is refused here
because the profile cannot be found (the rule fails closed); acceptance of a conforming Patient is shown by the kit's
interceptor and the invariants, not by FR Core's profiles.

The kit's own interceptor (validator/src/main/java/fr/esante/socle/hapi, shipped as socle/fhir/ins_interceptor.jar and
mounted in the server's extra-classes directory) is run at the same pointcut: it refuses an INS on an identity that is
not VALI; the shipped jar is the one the sources build, byte for byte.

Build: `mvn -q -Dmaven.repo.local=$HOME/.cache/socle/m2 -f validator/pom.xml package dependency:build-classpath
-Dmdep.outputFile=$HOME/.cache/socle/validator/classpath.txt` (needs Java 17 and Maven; in CI a missing one fails)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from socle import fhir as pinned_hapi
from socle.constants import FR_CORE_CANONICAL, FR_CORE_IDENTITY_RELIABILITY, INS_QUALIFIED_RULE, INS_SYSTEMS
from tests.conftest import IN_CI, ROOT, rendered_stack, require_tool

CACHE = Path.home() / ".cache" / "socle"  # validator/pom.xml builds into CACHE/validator/target
BUILD = CACHE / "validator"
CLASSPATH = BUILD / "classpath.txt"
POM = ROOT / "validator" / "pom.xml"
BUILD_COMMAND = (f"mvn -q -Dmaven.repo.local={CACHE}/m2 -f {POM} package dependency:build-classpath "
                 f"-Dmdep.outputFile={CLASSPATH}")
BUILT_JAR = BUILD / "target" / "socle-hapi-ins.jar"

# FR Core's Patient profiles (FRCorePatientProfile.fsh `Id: fr-core-patient`, FRCorePatientINSProfile.fsh
# `Id: fr-core-patient-ins`): the StructureDefinitions of type Patient that STORE_AND_INSTALL stores, so the ones the
# starter's rule accepts.
FR_CORE_PATIENT_PROFILES = [f"{FR_CORE_CANONICAL}/StructureDefinition/fr-core-patient",
                            f"{FR_CORE_CANONICAL}/StructureDefinition/fr-core-patient-ins"]
# FR Core invariant fr-core-1 (FRCorePatientINSProfile.fsh, Interop-Sante/hl7.fhir.fr.core): VALI ⇒ INS.
FR_CORE_1 = (
    f"(extension('{FR_CORE_IDENTITY_RELIABILITY}').extension('identityStatus').value.exists(code = 'VALI')) implies "
    "(identifier.where(system = 'urn:oid:1.2.250.1.213.1.4.8' and use = 'official').exists() or "
    "identifier.where(system = 'urn:oid:1.2.250.1.213.1.4.9' and use = 'temp').exists() or "
    "identifier.where(system = 'urn:oid:1.2.250.1.213.1.4.10' and use = 'official').exists() or "
    "identifier.where(system = 'urn:oid:1.2.250.1.213.1.4.11' and use = 'official').exists())"
)
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _patient(profile: str | None, status: str | None, identifiers: list[dict]) -> dict:
    p: dict = {"resourceType": "Patient", "id": "sample"}
    if profile:
        p["meta"] = {"profile": [f"{FR_CORE_CANONICAL}/StructureDefinition/{profile}"]}
    if status:
        p["extension"] = [{"url": FR_CORE_IDENTITY_RELIABILITY, "extension": [
            {"url": "identityStatus", "valueCoding": {"system": f"{FR_CORE_CANONICAL}/CodeSystem/fr-core-cs-v2-0445", "code": status}}]}]
    p["identifier"] = identifiers
    p["name"] = [{"use": "official", "family": "DURAND", "given": ["MARIE"]}]
    p["gender"] = "female"
    p["birthDate"] = "1980-01-01"
    return p


INS_NIR = {"use": "official", "type": {"coding": [{"system": f"{FR_CORE_CANONICAL}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}]},
           "system": INS_SYSTEMS["NIR"], "value": "280012A123456"}
INS_NIA = {"use": "temp", "type": {"coding": [{"system": f"{FR_CORE_CANONICAL}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIA"}]},
           "system": INS_SYSTEMS["NIA"], "value": "280012A123457"}
NSS = {"use": "official", "type": {"coding": [{"system": V2_0203, "code": "NH"}]}, "system": INS_SYSTEMS["NIR"], "value": "280012A123456"}
IPP = {"use": "usual", "type": {"coding": [{"system": V2_0203, "code": "PI"}]}, "system": "urn:oid:1.2.250.1.71.4.2.7", "value": "IPP-42"}

SAMPLES = {
    "ins-provisional.json": _patient("fr-core-patient-ins", "PROV", [INS_NIR, IPP]),
    "ins-qualified.json": _patient("fr-core-patient-ins", "VALI", [INS_NIR, IPP]),
    "nia-provisional.json": _patient("fr-core-patient-ins", "PROV", [INS_NIA]),
    "ins-no-profile.json": _patient(None, "PROV", [INS_NIR]),
    "no-ins-no-profile.json": _patient(None, None, [IPP]),
    "nss-provisional.json": _patient("fr-core-patient", "PROV", [NSS, IPP]),
    "qualified-without-ins.json": _patient("fr-core-patient-ins", "VALI", [IPP]),
}


@pytest.fixture(scope="module")
def classpath() -> str:
    require_tool("java")
    require_tool("mvn")
    BUILD.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(BUILD_COMMAND.split(), capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        msg = f"the validator did not build ({BUILD_COMMAND}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    # The shipped jar first: the proof runs the bytes the render mounts in the FHIR server.
    return f"{pinned_hapi.INS_INTERCEPTOR_JAR}:{BUILD / 'target' / 'classes'}:{CLASSPATH.read_text().strip()}"


def _rendered_hapi(stack: str) -> dict:
    objs = rendered_stack(stack)[1].objects
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("hapi-fhir-"))
    return yaml.safe_load(cm["data"]["application.yaml"])


@pytest.fixture(scope="module")
def verdicts(classpath, tmp_path_factory) -> dict[str, dict]:
    doc = _rendered_hapi("chu-exemple-prod")
    fhir = doc["hapi"]["fhir"]
    # The rules below are the ones the render asks for: FR Core stored, repository validating interceptor on.
    assert fhir["enable_repository_validating_interceptor"] is True
    assert [ig for ig in fhir["implementationguides"].values()
            if ig["name"] == "hl7.fhir.fr.core" and ig["installMode"] == "STORE_AND_INSTALL"]
    rule = doc["socle"]["ins_rule"]["expression"]
    assert rule == INS_QUALIFIED_RULE
    d = tmp_path_factory.mktemp("fhir")
    (d / "rule.fhirpath").write_text(rule, encoding="utf-8")
    (d / "fr-core-1.fhirpath").write_text(FR_CORE_1, encoding="utf-8")
    for name, resource in SAMPLES.items():
        (d / name).write_text(json.dumps(resource), encoding="utf-8")
    res = subprocess.run(["java", "-cp", classpath, "fr.esante.socle.validator.Prove", str(d / "rule.fhirpath"),
                          str(d / "fr-core-1.fhirpath"), "Patient", ",".join(FR_CORE_PATIENT_PROFILES),
                          *[str(d / n) for n in SAMPLES]], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-5000:]
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert "RuleRequireProfileDeclaration[resourceType=Patient" in res.stdout
    assert "RequireValidationRule[resourceType=Patient,rejectOnSeverity=ERROR" in res.stdout
    shipped_rule = next(json.loads(line.split(": ", 1)[1]) for line in res.stdout.splitlines()
                        if line.startswith("interceptor rule: "))
    assert shipped_rule == INS_QUALIFIED_RULE  # the interceptor enforces the rule the render states
    return {v["file"]: v for v in lines}


def test_an_ins_patient_without_vali_breaks_the_kit_rule(verdicts):
    assert verdicts["ins-provisional.json"]["rule"] is False
    assert verdicts["nia-provisional.json"]["rule"] is False
    assert verdicts["ins-no-profile.json"]["rule"] is False


def test_a_qualified_patient_with_ins_meets_the_kit_rule_and_fr_core_1(verdicts):
    assert verdicts["ins-qualified.json"]["rule"] is True
    assert verdicts["ins-qualified.json"]["converse"] is True


def test_identities_without_an_ins_are_not_concerned(verdicts):
    assert verdicts["no-ins-no-profile.json"]["rule"] is True
    # FR Core Patient's NSS slice (billing NIR: the NIR OID typed NH) is not an INS
    assert verdicts["nss-provisional.json"]["rule"] is True


def test_fr_core_1_is_the_converse_and_lets_an_unqualified_ins_through(verdicts):
    """Why the kit states its own rule: FR Core's fr-core-1 holds on an INS carried by a provisional identity, and
    fails on a qualified identity without INS."""
    assert verdicts["ins-provisional.json"]["converse"] is True
    assert verdicts["qualified-without-ins.json"]["converse"] is False
    assert verdicts["qualified-without-ins.json"]["rule"] is True


def test_a_resource_declaring_no_fr_core_profile_is_refused(verdicts):
    for name in ("ins-no-profile.json", "no-ins-no-profile.json"):
        got = verdicts[name]["repository"]
        assert got.startswith("refused: ") and "does not declare conformance to profile from" in got, (name, got)
        assert all(url in got for url in FR_CORE_PATIENT_PROFILES), got


def test_a_declared_fr_core_profile_is_validated_and_refusal_is_the_default_without_it(verdicts):
    """The declared FR Core profile is validated (HAPI's validator looks it up); without FR Core's StructureDefinitions,
    which cannot be obtained here, the lookup fails and the resource is refused, never stored unchecked."""
    for name in ("ins-provisional.json", "ins-qualified.json", "nss-provisional.json"):
        got = verdicts[name]["repository"]
        assert got.startswith("refused: ") and "could not be found" in got and "fr-core-patient" in got, (name, got)


def test_the_shipped_interceptor_jar_is_what_the_sources_build(classpath):
    import hashlib
    assert BUILT_JAR.is_file(), BUILT_JAR
    assert hashlib.sha256(BUILT_JAR.read_bytes()).hexdigest() == pinned_hapi.ins_interceptor_sha256(), \
        f"socle/fhir/ins_interceptor.jar is not the build of validator/ ({BUILD_COMMAND}); copy {BUILT_JAR} if the change is intended"


def test_the_interceptor_refuses_an_ins_without_vali(verdicts):
    for name in ("ins-provisional.json", "nia-provisional.json", "ins-no-profile.json"):
        got = verdicts[name]["interceptor"]
        assert got.startswith("refused: 422 INS-01 (socle-ins-1)"), (name, got)


def test_the_interceptor_accepts_a_qualified_identity_and_identities_without_ins(verdicts):
    for name in ("ins-qualified.json", "no-ins-no-profile.json", "nss-provisional.json", "qualified-without-ins.json"):
        assert verdicts[name]["interceptor"] == "accepted", (name, verdicts[name])
