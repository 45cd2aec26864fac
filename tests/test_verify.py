"""Proof by real software: every example stack's rendered configs run in the real daemons on 127.0.0.1 and
pass the probes; checkov finds nothing unjustified; and the probes fail on deliberately weakened renderings.

Needs root (Postfix and PostgreSQL run as their own users) and the daemons `.ci/run` installs; in CI a missing
one is a failure, not a skip."""
from __future__ import annotations

import datetime as dt
import os

import pytest
from typer.testing import CliRunner

from socle.cli import app
from socle import verify as sv
from socle.verify import harness, probes
from socle.verify.pki import TestPki
from socle.verify.scanner import checkov_path, scan
from tests.conftest import IN_CI, EXAMPLE_STACKS, TERMINAL_NOTES, rendered_stack, require_tool

CORE = {"TLS-01", "TLS-02", "TLS-03", "API-01", "API-03", "GW-04", "GW-05", "GW-06", "MSS-01", "MSS-02", "MSS-03",
        "MSS-04", "MSS-05", "MSS-06", "MSS-07", "TRACE-01", "TRACE-02", "TRACE-04", "TRACE-05", "PKI-03", "PKI-04", "K8S-08"}
# The token chain in real Keycloak + oauth2-proxy + NGINX (socle/verify/authz_chain.py): exchange, binding, acr;
# a stack with a browser route also proves login, idle expiry and logout reaching the PSC double.
CHAIN = {"API-02", "API-03", "PSC-02"}
EXPECTED = {
    "demo": CORE | CHAIN | {"PSC-01", "PSC-03", "API-04"},  # in-cluster PostgreSQL; a browser route (portail)
    "chu-exemple-prod": CORE | CHAIN | {"PKI-02"},  # CRL distribution points: the refresher revokes end to end
    "region-demo": CORE | CHAIN,  # the region's cell: tenant hosts only (mTLS + bound tokens), no browser route
}


def require_daemons() -> None:
    for program in harness.PROGRAMS:
        if harness.which(program) is None:
            require_tool(program)  # fails in CI, skips elsewhere, with the program's name
    for name, path in (("sslyze", probes.sslyze_path()), ("checkov", checkov_path())):
        if path is None:
            if IN_CI:
                pytest.fail(f"{name} is required in CI (.ci/run installs it in .venv-tools)")
            pytest.skip(f"{name} is not installed")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the real-daemon tests run as root in CI")
        pytest.skip("Postfix and PostgreSQL are started as their own users: needs root")


_reports: dict[str, sv.VerifyReport] = {}


@pytest.fixture(params=EXAMPLE_STACKS)
def report(request, tmp_path_factory) -> sv.VerifyReport:
    require_daemons()
    name = request.param
    if name not in _reports:
        stack = rendered_stack(name)[0]
        _reports[name] = sv.verify(stack, tmp_path_factory.mktemp(f"verify-{name}"))
        r = _reports[name]
        TERMINAL_NOTES.append(f"socle verify {name}: {sum(p.ok for p in r.probes)}/{len(r.probes)} probes passed; {r.scan.summary()}")
    return _reports[name]


def test_rendered_configs_pass_every_probe_in_the_real_daemons(report):
    failed = [f"{p.requirement} {p.name}: {p.detail}" for p in report.probes if not p.ok]
    assert not failed, "\n".join(failed)


def test_probes_cover_the_requirements(report):
    assert EXPECTED[report.stack] <= {p.requirement for p in report.probes}


def test_checkov_finds_no_unjustified_failure(report):
    assert report.scan is not None
    assert report.scan.passed > 400 and report.scan.skipped == 0
    assert report.scan.ok, "\n".join(f"{c} {r}: {t}" for c, t, r, _ in report.scan.unjustified)


def test_checkov_fails_what_the_acceptance_file_does_not_justify(tmp_path):
    require_daemons()
    from socle.render import render_files, write

    stack, rendered, _ = rendered_stack("demo")
    write(tmp_path / "m", render_files(stack, rendered))
    result = scan(tmp_path / "m", accepted=[])
    assert not result.ok and {c for c, *_ in result.unjustified} >= {"CKV_K8S_23", "CKV_K8S_25"}


# --- the probes can fail -----------------------------------------------------------------------------------

def _args(stack: str, block: str):
    st = rendered_stack(stack)[0]
    return st.blueprint.component_args(st.params)[block]


def _failed(results, requirement: str) -> list[str]:
    return [p.name for p in results if p.requirement == requirement and not p.ok]


def test_gateway_probes_fail_on_a_weakened_rendering(tmp_path, monkeypatch):
    """TLS 1.0 and a CBC suite put back into the rendered nginx.conf (and OpenSSL's security level lowered, which
    Debian's OpenSSL 3 would otherwise keep TLS 1.0 out with): the TLS-01 and TLS-02 probes must fail."""
    require_daemons()
    weak_render = harness.Gateway.render

    def weakened(self):
        return (weak_render(self).replace("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;")
                .replace("ssl_ciphers ECDHE", "ssl_ciphers ECDHE-RSA-AES128-SHA:@SECLEVEL=0:ECDHE"))
    monkeypatch.setattr(harness.Gateway, "render", weakened)
    pki = TestPki(tmp_path / "pki")
    gw = harness.Gateway(_args("demo", "gateway"), pki, tmp_path)
    with harness.running(gw):
        results = probes.gateway(gw, pki)
    assert "gateway: SSL, TLS 1.0 and 1.1 refused (sslyze)" in _failed(results, "TLS-01")
    assert "gateway: a TLSv1 client is refused" in _failed(results, "TLS-01")
    assert "gateway: only allowed TLS 1.2 suites offered (sslyze)" in _failed(results, "TLS-02")


def test_gateway_tls_1_0_parameter_still_refused_by_the_system_openssl(tmp_path):
    """tls.min_version TLSv1 (a dev-profile parameter, refused in production and reported by the audit) renders
    `ssl_protocols TLSv1 ...`; the OpenSSL 3 these daemons use still refuses TLS 1.0/1.1 at its default security
    level. The audit (TLS-01 on the rendered config) is what catches this setting, not the handshake."""
    require_daemons()
    pki = TestPki(tmp_path / "pki")
    gw = harness.Gateway(_args("demo", "gateway").model_copy(update={"tls_min_version": "TLSv1"}), pki, tmp_path)
    with harness.running(gw):
        assert "ssl_protocols TLSv1 TLSv1.1" in gw.conf.read_text()
        assert probes.handshake_with(gw.https_port, gw.args.routes[0].host, probes.ssl.TLSVersion.TLSv1) is None


def test_relay_probe_fails_when_starttls_is_optional(tmp_path, monkeypatch):
    require_daemons()
    plain_render = harness.Relay.render

    def weakened(self):
        files = plain_render(self)
        files["main.cf"] = files["main.cf"].replace("smtpd_tls_security_level = encrypt", "smtpd_tls_security_level = may")
        return files
    monkeypatch.setattr(harness.Relay, "render", weakened)
    pki = TestPki(tmp_path / "pki")
    relay = harness.Relay(_args("demo", "relay"), pki, tmp_path)
    with harness.running(relay):
        results = probes.relay(relay, pki)
    assert _failed(results, "MSS-01") == ["relay: MAIL FROM before STARTTLS is refused with 530"]


def test_audit_log_probe_fails_when_senders_are_not_authenticated(tmp_path, monkeypatch):
    require_daemons()
    plain_render = harness.AuditLog.render
    monkeypatch.setattr(harness.AuditLog, "render",
                        lambda self: plain_render(self).replace('streamDriver.authMode="x509/certvalid"', 'streamDriver.authMode="anon"'))
    pki = TestPki(tmp_path / "pki")
    audit = harness.AuditLog(_args("demo", "auditlog"), pki, tmp_path)
    with harness.running(audit):
        results = probes.auditlog(audit, pki)
    assert "audit log: a sender without a client certificate is refused" in _failed(results, "TRACE-05")


# --- the seal chain from the command line ------------------------------------------------------------------

def test_audit_log_verify_command_names_the_first_broken_file(tmp_path, chdir_root):
    require_tool("sh")
    audit = harness.AuditLog(_args("demo", "auditlog"), TestPki(tmp_path / "pki"), tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    days = ["2026-11-24", "2026-11-25", "2026-11-26"]
    for day in days:
        (data / f"audit-{day}.jsonl").write_text(f'{{"day":"{day}","msg":"access"}}\n')
    # The seal runs as in the pod, with the harness's key file, once a day: its clock set to each following morning.
    for day in ("2026-11-25", "2026-11-26", "2026-11-27"):
        probes.run_seal(audit, data, dt.datetime.fromisoformat(f"{day}T01:00:00"))
    key = ["--key-file", str(audit.seal_key)]
    cli = CliRunner()
    ok = cli.invoke(app, ["audit-log", "verify", str(data), "--as-of", "2026-11-27", *key])
    assert ok.exit_code == 0 and "intact, every link verified with the key (3 sealed files" in ok.output, ok.output
    unkeyed = cli.invoke(app, ["audit-log", "verify", str(data), "--as-of", "2026-11-27"])
    assert unkeyed.exit_code == 1 and "links NOT verified (no key)" in unkeyed.output
    target = data / "audit-2026-11-25.jsonl"
    target.chmod(0o640)
    target.write_text('{"day":"2026-11-25","msg":"nothing happened"}\n')
    broken = cli.invoke(app, ["audit-log", "verify", str(data), "--as-of", "2026-11-27", *key])
    assert broken.exit_code == 1 and broken.output.startswith("BROKEN audit-2026-11-25.jsonl: content changed")
    # Retention: a file older than the retention period may be gone; a recent one may not.
    (data / "audit-2026-11-24.jsonl").unlink()
    res = cli.invoke(app, ["audit-log", "verify", str(data), "--as-of", "2026-11-27", "--retention-days", "2", *key])
    assert "audit-2026-11-24.jsonl" not in res.output and "audit-2026-11-25.jsonl" in res.output


def test_verify_command_names_each_missing_program(monkeypatch, chdir_root):
    monkeypatch.setattr(harness, "which", lambda program: None if program in ("nginx", "rsyslogd") else f"/usr/bin/{program}")
    res = CliRunner().invoke(app, ["verify", "demo", "--no-scan"])
    assert res.exit_code == 2
    assert "nginx runs the gateway: apt-get install nginx" in res.output
    assert "rsyslog runs the audit log: apt-get install rsyslog rsyslog-openssl" in res.output
    assert "Traceback" not in res.output


def test_harness_files_are_the_configmaps_with_paths_mapped(tmp_path):
    """The harness renders with the same functions as the components: with the pod's paths, the bytes of the
    ConfigMaps come back."""
    from socle.components.gateway import nginx_conf
    from socle.components.relay import main_cf

    stack, rendered, _ = rendered_stack("demo")
    data = {k: v for o in rendered.objects if o["kind"] == "ConfigMap" for k, v in (o.get("data") or {}).items()}
    args = stack.blueprint.component_args(stack.params)
    assert nginx_conf(args["gateway"]) == data["nginx.conf"]
    assert main_cf(args["relay"]) == data["main.cf"]
    pki = TestPki(tmp_path / "pki")
    local = harness.Gateway(args["gateway"], pki, tmp_path)
    local.auth = local.backend = type("D", (), {"port": 1})()
    text = local.render()
    assert str(tmp_path) in text and "/etc/socle/tls" not in text and "listen 127.0.0.1:" in text
