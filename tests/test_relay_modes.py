"""MSS-05: the relay modes (a contracted MSSanté operator delivering directly, or an établissement routing every
message through its operator's relay), their model errors and production refusals, and the refresher the pod runs."""
from __future__ import annotations

import copy
import hashlib

import pytest
from pydantic import ValidationError

from socle.blueprints.etablissement.model import Params, production_refusals
from socle.components import relay as relay_module
from socle.components.relay import REFRESHER, RelayArgs, domain_refresh_files, indexed_maps, main_cf, refresher_program, relay_maps
from socle.audit.controls import mss
from tests.conftest import rendered_stack


def _params(stack: str, **relay) -> Params:
    raw = copy.deepcopy(rendered_stack(stack)[0].params.model_dump())
    raw["relay"].update(relay)
    return Params.model_validate(raw, strict=False)


def _errors(stack: str, **relay) -> str:
    with pytest.raises(ValidationError) as exc:
        _params(stack, **relay)
    return str(exc.value)


def test_external_operator_needs_the_operators_relay():
    assert "MSS-05: relay.mode external-operator sends every message to the operator's relay: set relay.next_hop" in \
        _errors("demo", mode="external-operator")


def test_operator_dn_enforcement_needs_direct_delivery():
    message = "MSS-05: relay.enforce_operator_dn checks the servers of each listed domain, which only direct delivery reaches"
    assert message in _errors("demo", enforce_operator_dn=True, next_hop="[relais.operateur.test]:25")
    assert message in _errors("demo", mode="external-operator", enforce_operator_dn=True, next_hop="[relais.operateur.test]:25")


def test_operator_dn_is_enforced_by_default_for_direct_delivery_only():
    assert _params("demo").relay.operator_dn is True
    assert _params("demo", enforce_operator_dn=False).relay.operator_dn is False
    assert _params("demo", next_hop="[relais.operateur.test]:25").relay.operator_dn is False
    assert _params("demo", mode="external-operator", next_hop="[relais.operateur.test]:25").relay.operator_dn is False


def test_production_refuses_direct_delivery_without_the_operator_contract_and_another_list():
    prod = _params("chu-exemple-prod")
    assert not [k for k, _ in production_refusals(prod) if k.startswith("relay.")]
    direct = _params("chu-exemple-prod", mode="operator", next_hop=None)
    refusals = dict(production_refusals(direct))
    assert refusals["relay.operator_contract"].startswith("MSS-05: direct delivery needs the ANS MSSanté operator contract")
    contracted = _params("chu-exemple-prod", mode="operator", next_hop=None, operator_contract="ANS-OP-2026-0042")
    assert "relay.operator_contract" not in dict(production_refusals(contracted))
    mirror = _params("chu-exemple-prod", domain_list_url="https://annuaire.sante.fr/web/site-pro/extractions-mss")
    assert dict(production_refusals(mirror))["relay.domain_list_url"].startswith("MSS-05: production reads the ANS white list")
    # dev may point the refresher elsewhere (a test server); the audit still fails MSS-05 on it.
    assert "relay.domain_list_url" not in dict(production_refusals(_params("demo", domain_list_url="https://list.example.test/l.xml")))


def _args(stack: str, **update) -> RelayArgs:
    st = rendered_stack(stack)[0]
    return st.blueprint.component_args(st.params)["relay"].model_copy(update=update)


def _main(args: RelayArgs) -> dict[str, str]:
    from socle.audit.configs import postfix_main

    return postfix_main(main_cf(args))


def test_direct_delivery_enforces_the_operator_host_per_domain():
    conf = _main(_args("demo"))
    assert conf["relayhost"] == "" and "transport_maps" not in conf
    assert conf["smtp_tls_policy_maps"] == "hash:/var/lib/socle/maps/tls_policy"
    assert conf["relay_domains"] == "hash:/var/lib/socle/maps/relay_domains"
    assert conf["parent_domain_matches_subdomains"] == ""
    assert indexed_maps(_args("demo")) == ["recipient_access", "relay_domains", "tls_policy"]
    assert relay_maps(_args("demo"))["tls_policy"] == ""  # the operators' names come with the list


def test_external_operator_sends_everything_to_the_relay_and_never_routes_per_domain():
    args = _args("chu-exemple-prod")
    conf = _main(args)
    assert args.mode == "external-operator" and conf["relayhost"] == "[relais.operateur-exemple.fr]:25"
    assert "transport_maps" not in conf and "smtp_tls_policy_maps" not in conf
    assert conf["smtp_tls_security_level"] == "secure" and conf["smtp_tls_secure_cert_match"] == "nexthop, dot-nexthop"
    assert set(relay_maps(args)) == {"recipient_access", "relay_domains", "client_certs"}
    with pytest.raises(ValidationError, match="external-operator needs next_hop"):
        RelayArgs.model_validate({**args.model_dump(), "next_hop": None})


def test_the_pod_runs_the_refresher_in_the_relay_image_with_the_trust_bundle():
    from socle.render import run_program  # noqa: F401  (the render is the stack's, through conftest)

    objs = rendered_stack("demo")[1].objects
    sts = next(o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "postfix")
    spec = sts["spec"]["template"]["spec"]
    refresher = next(c for c in spec["containers"] if c["name"] == "domain-refresh")
    seed = next(c for c in spec["initContainers"] if c["name"] == "seed-maps")
    postfix = next(c for c in spec["containers"] if c["name"] == "postfix")
    assert refresher["image"] == seed["image"] == postfix["image"]
    assert refresher["command"] == ["python3", "/etc/socle/refresh/refresh_domains.py", "/etc/socle/refresh/refresh.json"]
    assert seed["command"] == refresher["command"] + ["--seed", "/etc/socle/maps-seed"]
    mounts = {m["mountPath"]: m for m in refresher["volumeMounts"]}
    assert mounts["/etc/socle/tls/trust"]["name"] == "trust-bundle" and mounts["/etc/socle/tls/trust"]["readOnly"]
    assert not mounts["/var/lib/socle/maps"].get("readOnly")
    bundle = next(v for v in spec["volumes"] if v["name"] == "trust-bundle")
    assert bundle["secret"]["secretName"] == "igc-sante-trust-bundle"
    assert refresher["securityContext"]["runAsUser"] == 65534 and refresher["securityContext"]["readOnlyRootFilesystem"]
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("postfix-")
              and "main.cf" in o["data"])
    assert cm["metadata"]["annotations"]["socle.esante.fr/mssante-mode"] == "operator"


def test_the_audit_pins_the_refresher_the_kit_ships():
    program = refresher_program()
    assert hashlib.sha256(program.encode()).hexdigest() == mss.REFRESHER_SHA256, \
        "socle/components/templates/refresh_domains.py changed: re-run tests/test_mssante_list.py, then update mss.REFRESHER_SHA256"
    assert domain_refresh_files(_args("demo"))[REFRESHER] == program
    assert mss.WHITE_LIST_URL == relay_module.WHITE_LIST_URL


def test_a_program_that_does_not_compile_never_reaches_a_pod(monkeypatch, tmp_path):
    from socle.components.grammar import GrammarError

    broken = tmp_path / "templates"
    broken.mkdir()
    (broken / REFRESHER).write_text("def broken(:\n")
    monkeypatch.setattr(relay_module, "__file__", str(tmp_path / "relay.py"))
    with pytest.raises(GrammarError, match="does not compile"):
        refresher_program()
