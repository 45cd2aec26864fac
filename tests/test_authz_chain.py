"""The CI-SIS token chain with the real programs, on the configurations rendered for the demo stack: Keycloak (the
établissement's authorization server; the Pro Santé Connect double is a second realm of the same server),
oauth2-proxy built from its Go module, NGINX. Keycloak starts once for the module (about a minute on 2 cores).

Missing programs: skipped with the command that gets them; a failure in CI (`CI=true`)."""
from __future__ import annotations

import json

import pytest

from socle.components.authz import realm_json
from socle.verify import authz_chain
from socle.verify.authz_chain import AuthzChain, probes
from tests.conftest import IN_CI, rendered_stack


@pytest.fixture(scope="module")
def chain_results(tmp_path_factory):
    gaps = authz_chain.missing()
    if gaps:
        message = "the token chain needs " + "; ".join(gaps)
        if IN_CI:
            pytest.fail(message + " (.ci/run gets them)")
        pytest.skip(message)
    stack, _, _ = rendered_stack("demo")
    args = stack.blueprint.component_args(stack.params)
    chain = AuthzChain(args["gateway"], args["authz"], tmp_path_factory.mktemp("authz-chain"))
    chain.start()
    try:
        found = {p.name: p for p in probes(chain)}
        o2_conf = chain.o2_conf.read_text()
        yield chain, found, o2_conf
    finally:
        chain.stop()


def _check(results, name: str) -> None:
    _, found, _ = results
    p = found[name]
    assert p.ok, f"{p.requirement} {p.name}: {p.detail}"


def test_psc_token_presented_directly_is_refused(chain_results):
    _check(chain_results, "a PSC token presented directly to the API is refused")


def test_exchange_gives_a_bound_token_that_works_only_with_its_certificate(chain_results):
    _check(chain_results, "the PSC token is exchanged (RFC 8693) for a certificate-bound token (RFC 8705)")
    _check(chain_results, "the bound token works with its certificate")
    _check(chain_results, "the bound token is refused with another certificate of the same PKI")
    _check(chain_results, "a certificate whose subject DN is not the client's cannot obtain a token")


def test_acr_below_eidas1_is_refused(chain_results):
    _check(chain_results, "a PSC token with an acr below eidas1 is not exchanged")
    _check(chain_results, "a browser login whose PSC acr is below eidas1 is denied")


def test_browser_session_login_idle_expiry_and_logout_reaching_psc(chain_results):
    _check(chain_results, "a browser logs in through the authorization server and Pro Santé Connect")
    _check(chain_results, "an idle browser session ends with the authorization server's idle timeout")
    _check(chain_results, "logout ends the session at the gateway, the authorization server and PSC")


def test_harness_runs_the_rendered_files(chain_results):
    """The harness's realm file and oauth2-proxy.cfg are the ConfigMaps' with only addresses, paths and the
    harness's shortened idle timeout changed (oauth2-proxy itself accepted the file: --config-test)."""
    chain, _, o2_conf = chain_results
    stack, rendered, _ = rendered_stack("demo")
    data = {k: v for o in rendered.objects if o["kind"] == "ConfigMap" for k, v in (o.get("data") or {}).items()}
    args = stack.blueprint.component_args(stack.params)
    assert realm_json(args["authz"]) == data["realm.json"]
    shipped, local = json.loads(data["realm.json"]), json.loads(realm_json(chain.authz_args, psc=chain.psc))
    for key in ("accessTokenLifespan", "ssoSessionMaxLifespan", "clientPolicies", "clientProfiles", "authenticationFlows",
                "browserFlow", "identityProviderMappers"):
        assert shipped[key] == local[key], key
    skip = ("http_address", "client_secret_file", "logging_filename", "skip_oidc_discovery", "login_url", "redeem_url",
            "oidc_jwks_url", "backend_logout_url", "cookie_refresh")
    def keys(text):
        return {line.split(" = ", 1)[0]: line for line in text.splitlines() if " = " in line and not line.startswith("#")}
    rendered_o2, local_o2 = keys(data["oauth2-proxy.cfg"]), keys(o2_conf)
    assert {k: v for k, v in rendered_o2.items() if k not in skip} == {k: v for k, v in local_o2.items() if k not in skip}


# --- without the programs ----------------------------------------------------------------------------------------

def test_images_pin_the_versions_that_are_proved():
    from socle.blueprints.etablissement.model import Images
    from socle.cluster.build import OAUTH2_PROXY
    from socle.verify.keycloak import KEYCLOAK_VERSION

    assert Images().oauth2_proxy.endswith(f":{OAUTH2_PROXY}")
    assert Images().keycloak.endswith(f":{KEYCLOAK_VERSION}")


def test_realm_file_is_deterministic_and_holds_no_secret_value():
    stack, _, _ = rendered_stack("demo")
    args = stack.blueprint.component_args(stack.params)["authz"]
    text = realm_json(args)
    assert text == realm_json(args)
    realm = json.loads(text)
    assert _idp_secret(realm) == "${SOCLE_PSC_CLIENT_SECRET}"
    assert [c["secret"] for c in realm["clients"] if "secret" in c] == ["${SOCLE_OAUTH2_PROXY_CLIENT_SECRET}"]
    assert realm["accessTokenLifespan"] == 3600 and realm["ssoSessionIdleTimeout"] == 1800
    assert realm["ssoSessionMaxLifespan"] == 4 * 3600


def _idp_secret(realm: dict) -> str:
    return next(i for i in realm["identityProviders"] if i["alias"] == "psc")["config"]["clientSecret"]


def test_production_refuses_the_fhir_store_on_a_restricted_route_and_long_sessions():
    import copy

    from socle.blueprints.etablissement.model import Params, production_refusals

    stack, _, _ = rendered_stack("chu-exemple-prod")
    data = copy.deepcopy(stack.params.model_dump())
    data["gateway"]["apis"][1]["sensitivity"] = "restricted"
    data["gateway"]["session_lifetime"] = "8h"
    data["authz"]["database"] = None
    messages = [m for _, m in production_refusals(Params.model_validate(data))]
    assert any(m.startswith("API-01: route 'fhir-patients' serves the FHIR store") for m in messages), messages
    assert any(m.startswith("API-04: a browser session longer than 4 h") for m in messages), messages
    assert any(m.startswith("K8S-09: production runs the authorization server on 2 replicas") for m in messages), messages
    assert not production_refusals(stack.params)


def test_oauth2_proxy_checks_the_rendered_keys_itself(tmp_path):
    """The rendered oauth2-proxy.cfg passes the binary's own --config-test; a key it does not know, or a refresh
    longer than the session, is refused by it (so the check is real)."""
    import os
    import subprocess

    binary = authz_chain.oauth2_proxy_binary()
    if binary is None:
        if IN_CI:
            pytest.fail("oauth2-proxy is required in CI (python -m socle.cluster.build --group oauth2-proxy)")
        pytest.skip("oauth2-proxy is not built: python -m socle.cluster.build --group oauth2-proxy")
    from socle.components.gateway import oauth2_proxy_cfg

    stack, _, _ = rendered_stack("demo")
    args = stack.blueprint.component_args(stack.params)["gateway"]
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "client-secret").write_text("not-a-real-secret")
    text = oauth2_proxy_cfg(args, listen="127.0.0.1:1", paths={"client_secret": str(tmp_path / "secret"), "log": str(tmp_path)},
                            endpoints={"login_url": "https://auth.chdemo.test/l", "redeem_url": "http://127.0.0.1:1/t",
                                       "oidc_jwks_url": "http://127.0.0.1:1/k"})
    env = {**os.environ, "OAUTH2_PROXY_COOKIE_SECRET": "0123456789abcdef0123456789abcdef"}

    def check(cfg: str) -> subprocess.CompletedProcess:
        path = tmp_path / "oauth2-proxy.cfg"
        path.write_text(cfg)
        return subprocess.run([binary, f"--config={path}", "--config-test"], capture_output=True, text=True, env=env)

    ok = check(text)
    assert ok.returncode == 0, ok.stderr
    unknown = check(text.replace("cookie_refresh =", "cookie_refersh ="))
    assert unknown.returncode != 0 and "cookie_refersh" in unknown.stderr
    longer = check(text.replace('cookie_refresh = "5m"', 'cookie_refresh = "5h"'))
    assert longer.returncode != 0 and "cookie_refresh" in longer.stderr
