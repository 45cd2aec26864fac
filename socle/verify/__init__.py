"""Proof by real software: the configuration files rendered for a stack run in the real daemons, probes check
what a client sees, the shared host checks read what the daemons loaded, and checkov scans the manifests."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from socle import hostchecks

from . import authz_chain, harness, probes
from .probes import Probe
from .scanner import ScanResult, checkov_path

# What each program is for, and what to install when it is missing (one sentence each).
NEEDS = {
    "nginx": "nginx runs the gateway: apt-get install nginx",
    "postfix": "Postfix runs the relay: apt-get install postfix",
    "rsyslogd": "rsyslog runs the audit log: apt-get install rsyslog rsyslog-openssl",
    "postgres": "PostgreSQL runs the in-cluster database: apt-get install postgresql",
    "psql": "psql probes the database: apt-get install postgresql-client",
    "openssl": "openssl is used by the certificate checks: apt-get install openssl",
}


def missing_programs() -> list[str]:
    out = [why for prog, why in NEEDS.items() if harness.which(prog) is None]
    if probes.sslyze_path() is None:
        out.append("sslyze enumerates protocol versions and suites: python3 -m venv .venv-tools && "
                   ".venv-tools/bin/pip install sslyze==6.3.1 checkov==3.3.30")
    if checkov_path() is None:
        out.append("checkov scans the manifests: .venv-tools/bin/pip install checkov==3.3.30")
    out += [f"the token chain (API-02/03, PSC-*) needs {gap}" for gap in authz_chain.missing()]
    if os.geteuid() != 0:
        out.append("Postfix and PostgreSQL are started as their own users, which needs root: run socle verify as root "
                   "(a throw-away container or VM)")
    return out


@dataclass
class VerifyReport:
    stack: str
    probes: list[Probe] = field(default_factory=list)
    scan: ScanResult | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.probes) and (self.scan is None or self.scan.ok)

    def to_json(self) -> str:
        return json.dumps({
            "stack": self.stack, "result": "pass" if self.ok else "fail", "versions": self.versions,
            "probes": [asdict(p) for p in self.probes],
            "checkov": None if self.scan is None else {
                "summary": self.scan.summary(), "passed": self.scan.passed, "failed": self.scan.failed,
                "skipped": self.scan.skipped, "accepted": [list(a) for a in self.scan.accepted],
                "unjustified": [list(u) for u in self.scan.unjustified]},
        }, indent=2, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        lines = [f"# socle verify — stack {self.stack}", "", f"Result: **{'PASS' if self.ok else 'FAIL'}**", "",
                 "Daemons: " + "; ".join(f"{k} {v}" for k, v in sorted(self.versions.items())), "",
                 "| Requirement | Probe | Result | Detail |", "|---|---|---|---|"]
        for p in self.probes:
            lines.append(f"| {p.requirement} | {p.name} | {'ok' if p.ok else 'FAIL'} | {p.detail.replace('|', '/')[:200]} |")
        if self.scan:
            lines += ["", f"Scanner: {self.scan.summary()}"]
            lines += [f"- unjustified: {c} {r} ({t})" for c, t, r, _ in self.scan.unjustified]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _env(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def host_checks(gw: harness.Gateway, relay: harness.Relay, pg: harness.Postgres | None) -> list[Probe]:
    """The live suite's in-pod checks, run on the local daemons through testinfra's local backend."""
    import testinfra

    local = testinfra.get_host("local://")
    results = [("gateway", r) for r in hostchecks.nginx(local, str(gw.conf))]
    results += [("relay", r) for r in hostchecks.postfix(local, str(relay.config_dir))]
    if pg is not None:
        with _env(pg.env(superuser=True)):  # as in the pod, POSTGRES_USER is the server's superuser
            results += [("postgres", r) for r in hostchecks.postgres(local, pg.paths["socket"], pg.port)]
    certs = [str(gw.server.cert), str(relay.server.cert), str(relay.client.cert)]
    results += [("mounted certificates", r) for r in hostchecks.certificates(local, certs)]
    results += [("key files", r) for r in hostchecks.key_files(local, [str(gw.server.key), str(relay.server.key)])]
    return [Probe(r.requirement, f"host check ({what})", r.ok, r.detail) for what, r in results]


Step = Callable[[str], None]


def verify(stack, workdir: Path, *, args_override: dict | None = None, scan: bool = True, progress: Step | None = None,
           today: dt.date | None = None) -> VerifyReport:
    """Render the stack's files, run every daemon on them, probe, scan. `args_override` replaces a component's
    args (tests use it to run a deliberately weakened rendering)."""
    from socle.render import render_files, run_program, write

    from .pki import TestPki
    from .scanner import scan as checkov_scan

    step = progress or (lambda _msg: None)
    report = VerifyReport(stack.name, versions=probes.tool_versions())
    args = {**stack.blueprint.component_args(stack.params), **(args_override or {})}
    workdir.mkdir(parents=True, exist_ok=True)
    if scan:
        step("rendering the manifests and scanning them with checkov")
        manifests = workdir / "manifests"
        write(manifests, render_files(stack, run_program(stack)))
        report.scan = checkov_scan(manifests)
    step("generating the test PKI")
    pki = TestPki(workdir / "pki")
    tenant_route = next((r for r in args["gateway"].routes if r.mtls), None)
    if tenant_route is not None and tenant_route.client_subjects:
        # A tenant host admits only its tenant's organisation certificates: the probes present one with its subject.
        dn = dict(part.split("=", 1) for part in tenant_route.client_subjects[0].split(","))
        pki.org_client = pki.health.issue("org-client-tenant", dn.get("CN", "tenant"), client=True, org=dn.get("O", "org"))
    gw = harness.Gateway(args["gateway"], pki, workdir)
    relay = harness.Relay(args["relay"], pki, workdir)
    audit = harness.AuditLog(args["auditlog"], pki, workdir)
    pg = harness.Postgres(args["fhir"], pki, workdir) if args["fhir"].database.mode == "in-cluster" else None
    forwarder = harness.Forwarder(audit, "gateway", workdir)
    gw.syslog_port = forwarder.udp_port  # the gateway logs to its sidecar, which forwards to the aggregator
    # The relay's sidecar tails the maillog, as in the pod (imfile).
    relay_forwarder = harness.Forwarder(audit, "relay", workdir, files=[{"path": str(relay.maillog), "tag": "postfix:"}])
    daemons = [d for d in (audit, forwarder, relay_forwarder, gw, relay, pg) if d is not None]
    step(f"starting {', '.join(type(d).__name__ for d in daemons)} on 127.0.0.1")
    with harness.running(*daemons):
        step("probing the gateway")
        report.probes += probes.gateway(gw, pki)
        report.probes += probes.crl_refresh(gw, pki)  # last: it revokes the organisation certificate
        step("probing the relay")
        report.probes += probes.relay(relay, pki)
        report.probes += probes.relay_trace(relay, audit)
        step("probing the audit log and its seal")
        report.probes += probes.auditlog(audit, pki) + probes.trace_chain(gw, audit, pki)
        report.probes += probes.seal(audit, workdir / "seal", today)
        if pg is not None:
            step("probing PostgreSQL")
            report.probes += probes.postgres(pg, pki)
        step("running the host checks on the local daemons")
        report.probes += host_checks(gw, relay, pg)
    if args.get("authz") is not None:
        step("starting Keycloak (with the Pro Santé Connect double), oauth2-proxy and NGINX for the token chain")
        chain = authz_chain.AuthzChain(args["gateway"], args["authz"], workdir / "authz")
        chain.start()
        try:
            step("probing the token chain (RFC 8693 exchange, RFC 8705 binding, acr, sessions, logout)")
            report.probes += authz_chain.probes(chain)
        finally:
            chain.stop()
        report.versions.update(authz_chain.versions())
    return report
