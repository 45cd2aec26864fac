"""The policy pack is the control catalogue, not a copy: one policy per checked control, enforcement from the
stack's profile and severity, the audit's own verdicts on the stack's resources, unknown preview values kept apart.
The pack run by the real engine is in tests/cluster/test_policy_pack.py."""
from __future__ import annotations

import datetime as dt

import pytest
from pulumi_policy import EnforcementLevel
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from socle import policy
from socle.audit.controls import catalogue
from tests.audit_fixtures import FAILING, build, objects_of
from tests.conftest import ROOT

TODAY = dt.date(2026, 11, 27)


def _levels(monkeypatch, stack: str | None) -> dict[str, str]:
    if stack:
        monkeypatch.setenv(policy.STACK_FILE_ENV, str(ROOT / "stacks" / f"Pulumi.{stack}.yaml"))
    else:
        monkeypatch.delenv(policy.STACK_FILE_ENV, raising=False)
    return {p.name: p.enforcement_level for p in policy.policies()}


def test_one_policy_per_checked_control_mandatory_for_critical_and_high_in_production(monkeypatch):
    checked = {c.id.lower(): c for c in catalogue() if not c.manual}
    prod = _levels(monkeypatch, "chu-exemple-prod")
    assert set(prod) == set(checked)
    for name, level in prod.items():
        want = EnforcementLevel.MANDATORY if checked[name].severity in ("critical", "high") else EnforcementLevel.ADVISORY
        assert level == want, name
    assert set(_levels(monkeypatch, "demo").values()) == {EnforcementLevel.ADVISORY}
    # Run by hand without the stack's file: judged as production (the strictest), never as dev.
    assert _levels(monkeypatch, None) == prod


def _as_resources(objs: list[dict]):
    class Resource:
        def __init__(self, obj):
            kind = obj["kind"]
            group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "core"
            self.resource_type = f"kubernetes:{group}/{obj['apiVersion'].split('/')[-1]}:{kind}"
            self.props = unknown_checking_proxy(obj)
            self.urn = f"urn:pulumi:demo::socle::{self.resource_type}::{obj['metadata'].get('namespace', '')}-{obj['metadata']['name']}"
    return [Resource(o) for o in objs]


def test_the_clean_render_has_no_violation_and_a_privileged_pod_is_one_on_its_resource(monkeypatch):
    monkeypatch.setenv(policy.STACK_FILE_ENV, str(ROOT / "stacks" / "Pulumi.demo.yaml"))
    profile, cfg, registries, origin = policy.stack_settings()  # the demo's waivers, with their expiry
    assert (profile, registries) == ("dev", ("docker.io", "quay.io")) and origin.endswith("Pulumi.demo.yaml")
    clean = policy.kubernetes_objects(_as_resources(objects_of("demo")))
    assert len(clean) == len(objects_of("demo"))
    assert policy.evaluate(clean, profile, cfg, registries, TODAY) == {}
    assert "K8S-01" in policy.evaluate(clean, profile, None, registries, TODAY)  # the same without its waivers
    bad = policy.kubernetes_objects(_as_resources(build(FAILING["K8S-03"])))
    found = policy.evaluate(bad, profile, cfg, registries, TODAY)
    assert list(found) == ["K8S-03"]
    [(finding, urn)] = found["K8S-03"]
    assert finding.obj.name == "hapi-fhir" and urn.endswith("::chdemo-fhir-hapi-fhir")


def test_a_value_unknown_during_preview_is_marked_never_read_as_a_value():
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"},
           "data": {"tls.crt": UNKNOWN_STRING_VALUE}, "type": "kubernetes.io/tls"}
    [(plain, _)] = policy.kubernetes_objects(_as_resources([obj]))
    assert plain["data"] == {"tls.crt": policy.UNKNOWN}


@pytest.mark.parametrize("kind_token", ["pulumi:providers:kubernetes", "tls:index/privateKey:PrivateKey"])
def test_resources_that_are_not_kubernetes_objects_are_left_to_their_own_rules(kind_token):
    class Other:
        resource_type, urn = kind_token, "urn:x"
        props = unknown_checking_proxy({"kind": "X", "metadata": {"name": "x"}})
    assert policy.kubernetes_objects([Other()]) == []


def test_the_pack_is_an_executable_the_engine_can_start():
    import os
    assert policy.PACK.is_file() and os.access(policy.PACK, os.X_OK)
    assert (policy.PACK_DIR / "PulumiPolicy.yaml").read_text().count("runtime: python") == 1
