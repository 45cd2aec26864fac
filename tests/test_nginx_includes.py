"""The regional gateway's tenant hosts include tenant-server.conf, a file of the same ConfigMap: the audit reads it
as NGINX does, and an include whose content is not in the evidence is never judged a pass."""
from __future__ import annotations

import pytest

from socle.audit import configs, runner
from socle.audit.evidence import Evidence
from tests.audit_fixtures import objects_of
from tests.conftest import rendered_stack
from tests.test_audit import TODAY

STACK = "region-demo"


def _gateway_config_map(objs: list[dict]) -> dict:
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["namespace"] == "grdemo-gateway"
             and "nginx.conf" in (o.get("data") or {})]
    return cm


def _results(objs: list[dict]) -> dict:
    ev = Evidence(source=f"test:{STACK}", objects=objs, target=f"test {STACK}")
    ctx = runner.make_context(ev, TODAY, stack_profile="dev")
    return {r.control.id: r for r in runner.run(ev, ctx, rendered_stack(STACK)[0].audit).results}


def test_an_include_of_the_same_config_map_is_read_as_nginx_reads_it():
    data = _gateway_config_map(objects_of(STACK))["data"]
    root = configs.nginx(data["nginx.conf"], data)
    tenants = [s for s in configs.nginx_servers(root) if any(d.args[:1] == ["$socle_tenant"] for d in s.all("set"))]
    assert len(tenants) == 3
    for server in tenants:  # the included directives are the server's own
        assert server.value("ssl_verify_client") == "on"
        assert not server.all("include")
        assert [loc.args for loc in server.all("location")][-1] == ["/fhir/"]


@pytest.mark.parametrize("change", ["missing", "outside"])
def test_an_include_whose_content_is_not_in_the_evidence_is_never_a_pass(change):
    objs = objects_of(STACK)
    cm = _gateway_config_map(objs)
    if change == "missing":
        del cm["data"]["tenant-server.conf"]
    else:
        cm["data"]["nginx.conf"] = cm["data"]["nginx.conf"].replace("/etc/socle/nginx/tenant-server.conf",
                                                                    "/etc/nginx/conf.d/*.conf")
    with pytest.raises(configs.ConfigError, match="not a file of this ConfigMap"):
        configs.nginx(cm["data"]["nginx.conf"], cm["data"])
    results = _results(objs)
    for cid in ("API-01", "TLS-01"):
        assert results[cid].status == "evidence-missing", (cid, results[cid].status)
        assert any("not a file of this ConfigMap" in f.reason for f in results[cid].findings)


def test_the_region_demo_passes_every_gateway_control_with_its_includes():
    results = _results(objects_of(STACK))
    for cid in ("API-01", "API-03", "TLS-01", "TLS-02", "TLS-03", "GW-02", "GW-04", "GW-05", "GW-06"):
        assert results[cid].status == "pass", (cid, results[cid].status, results[cid].findings[:2])
