"""The live source against Kubernetes API list responses served on 127.0.0.1: the real `kubernetes` client over
HTTP, one LIST per kind, never a Secret, the same verdicts as the render the objects came from.

The responses are built at test time from the demo render in the API server's list format (`<Kind>List`, items
without kind/apiVersion, server-set metadata and status), with objects of other namespaces that the audit must
leave out of its scope."""
from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from socle.audit import runner, sources
from socle.cli import app
from socle.constants import AUDITED_RESOURCES
from tests.conftest import rendered_stack

TOKEN = "test-token-not-a-secret"

FOREIGN = [  # objects of the cluster outside the kit: listed, then left out of the audit's scope
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system", "labels": {"kubernetes.io/metadata.name": "kube-system"}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", "namespace": "kube-system"},
     "spec": {"replicas": 2, "selector": {"matchLabels": {"k8s-app": "kube-dns"}}, "template": {
         "metadata": {"labels": {"k8s-app": "kube-dns"}},
         "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.3"}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "node-exporter", "namespace": "kube-system"},
     "spec": {"type": "NodePort", "ports": [{"port": 9100, "nodePort": 30910}]}},
]


def _served(obj: dict, i: int) -> dict:
    """An object as the API server returns it in a list: no kind/apiVersion, server fields set."""
    item = copy.deepcopy(obj)
    item.pop("kind")
    item.pop("apiVersion")
    meta = item["metadata"]
    meta.update({"uid": f"00000000-0000-4000-8000-{i:012d}", "resourceVersion": str(1000 + i),
                 "creationTimestamp": "2026-11-20T09:00:00Z", "generation": 1,
                 "managedFields": [{"manager": "pulumi-kubernetes", "operation": "Apply", "apiVersion": obj["apiVersion"]}]})
    if obj["kind"] in ("Deployment", "StatefulSet"):
        item["status"] = {"replicas": item["spec"].get("replicas", 1), "readyReplicas": item["spec"].get("replicas", 1)}
    return item


def responses(objects: list[dict], missing_groups: tuple[str, ...] = ()) -> dict[str, dict]:
    out = {}
    for group, version, plural, kind, _ in AUDITED_RESOURCES:
        if group in missing_groups:
            continue
        api_version = f"{group}/{version}" if group else version
        items = [_served(o, i) for i, o in enumerate(objects) if o["kind"] == kind and o["apiVersion"] == api_version]
        path = f"/api/{version}/{plural}" if not group else f"/apis/{group}/{version}/{plural}"
        out[path] = {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": "99999"}, "items": items}
    return out


class FakeApi:
    def __init__(self, routes: dict[str, dict], forbidden: tuple[str, ...] = ()):
        self.routes, self.forbidden, self.requests = routes, forbidden, []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                api.requests.append(("GET", url.path, parse_qs(url.query), self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                if url.path in api.forbidden:
                    return self._send(403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
                if url.path not in api.routes:
                    return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                return self._send(200, api.routes[url.path])

            def do_POST(self):  # noqa: N802 - anything but GET is a failure of the read-only promise
                api.requests.append(("POST", self.path, {}, None))
                self._send(405, {})

            do_PUT = do_PATCH = do_DELETE = do_POST  # noqa: N815

            def _send(self, code: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, tmp: Path) -> Path:
        path = tmp / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "recorded",
            "clusters": [{"name": "recorded", "cluster": {"server": f"http://127.0.0.1:{self.server.server_port}"}}],
            "users": [{"name": "auditor", "user": {"token": TOKEN}}],
            "contexts": [{"name": "recorded", "context": {"cluster": "recorded", "user": "auditor"}}],
        }))
        return path


def _verdicts(audit) -> list:
    return [(r.control.id, r.status, sorted((f.status, str(f.obj), f.reason) for f in r.findings)) for r in audit.results]


def test_live_source_lists_each_kind_once_and_judges_like_the_render(tmp_path):
    stack, rendered, _ = rendered_stack("demo")
    with FakeApi(responses(rendered.objects + FOREIGN)) as api:
        seen = []
        ev = sources.from_live(str(api.kubeconfig(tmp_path)), progress=lambda kind, n: seen.append((kind, n)))
    paths = [p for _, p, _, _ in api.requests]
    assert len(api.requests) == len(AUDITED_RESOURCES) == len(set(paths))
    assert {m for m, _, _, _ in api.requests} == {"GET"}
    assert not [p for p in paths if "secrets" in p]
    assert all(q.get("limit") == ["500"] for _, _, q, _ in api.requests)
    assert [k for k, _ in seen] == [k for *_, k, _ in AUDITED_RESOURCES]
    assert ev.source == "live:recorded" and "127.0.0.1" in ev.target

    today = runner.dt.date(2026, 11, 27)
    live = runner.run(ev, runner.make_context(ev, today, stack_profile="dev"), stack.audit)
    render_ev = sources.Evidence(source="render:demo", objects=rendered.objects, target="demo")
    render = runner.run(render_ev, runner.make_context(render_ev, today, stack_profile="dev"), stack.audit)
    assert _verdicts(live) == _verdicts(render)  # kube-system's NodePort and coredns are out of scope


def test_live_audit_command_with_a_kubeconfig(tmp_path, chdir_root):
    _, rendered, _ = rendered_stack("demo")
    with FakeApi(responses(rendered.objects)) as api:
        res = CliRunner().invoke(app, ["audit", "--live", "--kubeconfig", str(api.kubeconfig(tmp_path)), "--stack", "demo",
                                       "--as-of", "2026-11-27", "--report-dir", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "evidence live:recorded" in res.output
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["report"]["evidence_source"] == "live:recorded"


def test_cluster_without_velero_fails_the_backup_requirement(tmp_path):
    _, rendered, _ = rendered_stack("demo")
    with FakeApi(responses(rendered.objects, missing_groups=("velero.io",))) as api:
        ev = sources.from_live(str(api.kubeconfig(tmp_path)))
    audit = runner.run(ev, runner.make_context(ev, runner.dt.date(2026, 11, 27), stack_profile="dev"))
    bck = next(r for r in audit.results if r.control.id == "BCK-01")
    assert bck.status == "fail" and {f.obj.name for f in bck.failures} == {"chdemo-audit", "chdemo-fhir", "chdemo-mss"}


@pytest.mark.parametrize("forbidden,message", [
    (("/api/v1/configmaps",), "not allowed to list configmaps"),
])
def test_missing_read_rights_stop_the_audit_with_a_clear_message(tmp_path, chdir_root, forbidden, message):
    _, rendered, _ = rendered_stack("demo")
    with FakeApi(responses(rendered.objects), forbidden=forbidden) as api:
        res = CliRunner().invoke(app, ["audit", "--live", "--kubeconfig", str(api.kubeconfig(tmp_path))])
    assert res.exit_code == 2 and message in res.output and "socle-auditor" in res.output


def test_unreachable_cluster_and_bad_kubeconfig_exit_2(tmp_path, chdir_root):
    res = CliRunner().invoke(app, ["audit", "--live", "--kubeconfig", str(tmp_path / "none")])
    assert res.exit_code == 2 and "kubeconfig" in res.output
    with FakeApi({}) as api:
        path = api.kubeconfig(tmp_path)
    res = CliRunner().invoke(app, ["audit", "--live", "--kubeconfig", str(path)])  # server stopped: connection refused
    assert res.exit_code == 2 and "cannot reach the API server" in res.output
