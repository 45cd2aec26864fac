"""Run the real daemons on the configuration files rendered for a stack, on 127.0.0.1 high ports.

Each daemon gets the files its component renders into the ConfigMaps — the same functions, called with the
paths and listen addresses of this machine instead of the pod's mount points (parameters of the templates, never
an edit of the output). Everything lives in the run directory (Postfix's and PostgreSQL's files in a sibling
temporary directory when the run's parents are closed to their users); every daemon is stopped when the run ends.
Nothing listens beyond 127.0.0.1 and nothing is sent beyond it: the relay's next hop is a local sink."""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from cryptography.hazmat.primitives import serialization

from socle.components.auditlog import AuditLogArgs, aggregator_conf, seal_script
from socle.components.fhir import FhirArgs, pg_hba_conf, postgresql_conf
from socle.components.gateway import CRL_URLS_FILE, GatewayArgs, crl_refresh_script, crl_urls, nginx_files
from socle.components.relay import MAP_TYPE, RelayArgs, indexed_maps, main_cf, master_cf, relay_maps

from .pki import TestPki

LOCAL = "127.0.0.1"


class HarnessError(RuntimeError):
    """A daemon refused its rendered configuration or did not start: the message carries its own words."""


# Programs the harness runs, and the Debian package that provides each (`socle verify` names what is missing).
PROGRAMS = {"nginx": "nginx", "postfix": "postfix", "postconf": "postfix", "rsyslogd": "rsyslog",
            "initdb": "postgresql", "postgres": "postgresql", "psql": "postgresql-client", "openssl": "openssl"}
SBIN = ("/usr/sbin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def which(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for d in SBIN:
        if os.access(f"{d}/{program}", os.X_OK):
            return f"{d}/{program}"
    return None


def require(program: str) -> str:
    path = which(program)
    if path is None:
        raise HarnessError(f"{program} is not installed (Debian package {PROGRAMS.get(program, program)})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, proc: subprocess.Popen | None = None, log: Path | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOCAL, port), timeout=0.5):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise HarnessError(f"{what} did not listen on {LOCAL}:{port}: {detail.strip()}")


def terminate(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """Stop a daemon started in the foreground, if it still runs."""
    if proc and proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def start_rsyslogd(conf: Path, directory: Path, what: str) -> tuple[subprocess.Popen, Path]:
    """Check a rendered rsyslog.conf with rsyslogd itself, then run it in the foreground; returns (process, log)."""
    rsyslogd = require("rsyslogd")
    run([rsyslogd, "-N1", "-f", str(conf)], f"rsyslogd refused the rendered {what}")
    log = directory / "rsyslogd.log"
    with log.open("w") as out:
        proc = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
                                stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise HarnessError(f"{what}: {(result.stderr or result.stdout).strip()}")
    return result


def service_dir(root: Path, name: str) -> Path:
    """A directory a daemon's own user (postfix, postgres) can reach: under `root` when every parent lets others
    through, else a fresh one in the system's temporary directory (removed by `stop`)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    if all(p.stat().st_mode & 0o001 for p in root.resolve().parents):
        return root / name
    d = Path(tempfile.mkdtemp(prefix=f"socle-verify-{name}-"))
    d.chmod(0o755)
    return d


def chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


# --- test doubles for what the gateway talks to --------------------------------------------------------------

GOOD_TOKEN = "verify-token-accepted"  # a test double's token, valid only against the local auth double


class _Double:
    """A small HTTP server on 127.0.0.1 (oauth2-proxy's auth endpoint, or the FHIR backend)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer((LOCAL, 0), handler)
        self.port = self.server.server_port
        self.requests: list[dict] = []
        self.server.double = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _AuthHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.double.requests.append({"path": self.path, "authorization": self.headers.get("Authorization")})  # type: ignore[attr-defined]
        ok = self.headers.get("Authorization") == f"Bearer {GOOD_TOKEN}"
        self.send_response(202 if ok else 401)
        if ok:
            self.send_header("X-Auth-Request-User", "rpps-810000000001")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


class _CrlHandler(BaseHTTPRequestHandler):
    """A CRL distribution point: serves `double.crl` (DER) or 404 when it is None."""

    def do_GET(self):  # noqa: N802
        data = self.server.double.crl  # type: ignore[attr-defined]
        self.server.double.requests.append({"path": self.path})  # type: ignore[attr-defined]
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *a):
        pass


class _BackendHandler(BaseHTTPRequestHandler):
    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.double.requests.append({"method": self.command, "path": self.path, "bytes": len(body),  # type: ignore[attr-defined]
                                            "client_dn": self.headers.get("X-SSL-Client-S-DN"),
                                            "request_id": self.headers.get("X-Request-ID")})
        data = json.dumps({"resourceType": "OperationOutcome", "received_bytes": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _handle  # noqa: N815

    def log_message(self, *a):
        pass


# --- daemons -----------------------------------------------------------------------------------------------

@dataclass
class Gateway:
    args: GatewayArgs
    pki: TestPki
    root: Path
    http_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    syslog_port: int | None = None  # a log forwarder's UDP input, as the pod's sidecar listens on 127.0.0.1:5140

    def __post_init__(self) -> None:
        self.dir = self.root / "gateway"
        self.crl_server: _Double | None = None
        if self.args.crl_urls:
            # The distribution points become a local double: nothing is fetched beyond 127.0.0.1.
            self.crl_server = _Double(_CrlHandler)
            self.crl_server.crl = self.pki.health.crl_bytes(encoding=serialization.Encoding.DER)  # type: ignore[attr-defined]
            self.args = self.args.model_copy(update={
                "crl_urls": [f"http://{LOCAL}:{self.crl_server.port}/crl/{i}.crl" for i in range(len(self.args.crl_urls))],
                "crl_refresh_seconds": 1})
        hosts = sorted(r.host for r in self.args.routes)
        self.server = self.pki.health.issue("gateway-server", f"gateway.{hosts[0]}", dns=hosts, server=True)
        self.paths = {k: str(self.dir / k) for k in ("run", "cache", "crl")}
        self.paths.update(server_tls=str(self.server.directory), trust_bundle=str(self.pki.health.dir), conf=str(self.dir))
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "error.log"
        self.conf = self.dir / "nginx.conf"
        self.proc: subprocess.Popen | None = None

    def render(self) -> str:
        return self.render_files()["nginx.conf"]

    def render_files(self) -> dict[str, str]:
        """nginx.conf and what it includes, with this run's paths and ports."""
        return nginx_files(self.args, paths=self.paths, listen_address=f"{LOCAL}:", http_port=self.http_port,
                          https_port=self.https_port, auth_upstream=f"http://{LOCAL}:{self.auth.port}",
                          # the authorization server is the auth double here (its userinfo answers like oauth2-proxy's
                          # check); the real Keycloak runs in socle/verify/authz_chain.py
                          authz_upstream=f"http://{LOCAL}:{self.auth.port}",
                          access_logs=[str(self.access_log)] + (
                              [f"syslog:server={LOCAL}:{self.syslog_port},facility=local6,tag=gateway,severity=info"]
                              if self.syslog_port else []),
                          error_log=str(self.error_log),
                          upstreams={r.name: f"http://{LOCAL}:{self.backend.port}" for r in self.args.routes})

    def refresh_files(self) -> dict[str, str]:
        """The CRL refresher the pod runs beside NGINX (with this run's paths) and its list of distribution points,
        the two files of its ConfigMap."""
        return {"crl-refresh.sh": crl_refresh_script(self.args, crl_file=f"{self.paths['crl']}/crl.pem",
                                                     pid_file=f"{self.paths['run']}/nginx.pid"),
                CRL_URLS_FILE: crl_urls(self.args)}

    def start(self) -> "Gateway":
        nginx = require("nginx")
        self.auth, self.backend = _Double(_AuthHandler), _Double(_BackendHandler)
        for d in ("run", "cache", "crl"):
            Path(self.paths[d]).mkdir(parents=True, exist_ok=True)
        shutil.copy(self.pki.crl, Path(self.paths["crl"]) / "crl.pem")
        # nginx.conf through render() (a test weakens it there), beside the files it includes
        for name, text in {**self.render_files(), "nginx.conf": self.render()}.items():
            (self.dir / name).write_text(text, encoding="utf-8")
        run([nginx, "-t", "-c", str(self.conf)], "nginx refused the rendered nginx.conf")
        self.proc = subprocess.Popen([nginx, "-c", str(self.conf), "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.https_port, "nginx", self.proc, self.error_log)
        return self

    def stop(self) -> None:
        terminate(self.proc)
        for d in ("auth", "backend"):
            if hasattr(self, d):
                getattr(self, d).stop()
        if self.crl_server is not None:
            self.crl_server.stop()


@dataclass
class Relay:
    args: RelayArgs
    pki: TestPki
    root: Path
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.dir = service_dir(self.root, "relay")  # Postfix's master opens its lock file as the postfix user
        self.sink = SmtpSink()
        # Parameters of the stack, not edits: the next hop is the local sink, the organisation certificate of
        # this run is the one allowed to relay.
        self.args = self.args.model_copy(update={
            "next_hop": f"[{LOCAL}]:{self.sink.port}",
            "client_fingerprints": [*self.args.client_fingerprints, self.pki.org_client.fingerprint]})
        self.server = self.pki.health.issue("relay-server", self.args.hostname, dns=[self.args.hostname], server=True)
        self.client = self.pki.health.issue("relay-client", f"{self.args.hostname} (client)", client=True)
        self.paths = {"queue": str(self.dir / "queue"), "data": str(self.dir / "data"), "maps": str(self.dir / "maps"),
                      "server_tls": str(self.server.directory), "client_tls": str(self.client.directory),
                      "trust_bundle": str(self.pki.health.dir)}
        self.config_dir = self.dir / "etc"
        self.maillog = self.dir / "log" / "maillog"

    def render(self) -> dict[str, str]:
        return {"main.cf": main_cf(self.args, paths=self.paths, inet_interfaces=LOCAL, maillog_file=str(self.maillog),
                                   mail_owner="postfix", setgid_group="postdrop"),
                "master.cf": master_cf(self.args, smtpd_listen=f"{LOCAL}:{self.port}")}

    def start(self) -> "Relay":
        postfix = require("postfix")
        self.sink.start()
        for d in ("queue", "data", "maps"):
            Path(self.paths[d]).mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.maillog.parent.mkdir(parents=True, exist_ok=True)
        for name, text in self.render().items():
            (self.config_dir / name).write_text(text, encoding="utf-8")
        for name, text in relay_maps(self.args).items():
            (Path(self.paths["maps"]) / name).write_text(text, encoding="utf-8")
        for name in indexed_maps(self.args):  # as the relay's seed does: Postfix reads the indexed maps
            run([require("postmap"), f"{MAP_TYPE}:{self.paths['maps']}/{name}"], f"postmap refused the {name} map")
        chown_tree(Path(self.paths["data"]), "postfix")
        env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin"}
        run(["script", "-qec", f"{postfix} -c {self.config_dir} check", "/dev/null"], "postfix check refused the rendered main.cf",
            env=env)
        run([postfix, "-c", str(self.config_dir), "start"], "postfix did not start", env=env)
        wait_port(self.port, "postfix smtpd", log=self.maillog)
        return self

    def stop(self) -> None:
        postfix = which("postfix")
        if postfix and (self.dir / "queue" / "pid" / "master.pid").exists():
            subprocess.run([postfix, "-c", str(self.config_dir), "stop"], capture_output=True)
        self.sink.stop()
        if not self.dir.is_relative_to(self.root):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def queue(self) -> str:
        postqueue = which("postqueue") or "postqueue"
        return subprocess.run([postqueue, "-c", str(self.config_dir), "-p"], capture_output=True, text=True).stdout


class SmtpSink:
    """The relay's next hop in tests: records what reaches it, offers no TLS (so a relay that must verify its
    peer defers instead of delivering), never forwards anything."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sessions: list[list[str]] = []
        self._server: socket.socket | None = None

    def start(self) -> None:
        self._server = socket.create_server((LOCAL, self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        assert self._server is not None
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        lines: list[str] = []
        self.sessions.append(lines)
        with conn, conn.makefile("rwb") as f:
            f.write(b"220 sink.verify.test ESMTP test sink\r\n")
            f.flush()
            for raw in f:
                line = raw.decode(errors="replace").strip()
                lines.append(line)
                verb = line.split(" ", 1)[0].upper()
                reply = {"EHLO": b"250-sink.verify.test\r\n250 8BITMIME\r\n", "HELO": b"250 sink\r\n", "QUIT": b"221 bye\r\n"}
                f.write(reply.get(verb, b"502 5.5.2 test sink accepts nothing\r\n"))
                f.flush()
                if verb == "QUIT":
                    break

    def stop(self) -> None:
        if self._server is not None:
            self._stop.set()
            self._server.close()


@dataclass
class Postgres:
    args: FhirArgs
    pki: TestPki
    root: Path
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.dir = service_dir(self.root, "postgres")  # the server runs as the postgres user
        db = self.args.database
        host = f"postgres.{self.args.namespace}.svc.cluster.local"
        self.server = self.pki.internal.issue("postgres-server", host, dns=[host, "localhost"], server=True)
        self.paths = {"socket": str(self.dir / "run"), "server_tls": str(self.dir / "tls"), "log": str(self.dir / "log")}
        self.user, self.database = db.user, db.name
        # Passwords of this run only: kept in memory, handed to programs through their environment.
        self.superuser_password = secrets.token_urlsafe(24)
        self.password = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None

    def render(self) -> dict[str, str]:
        return {"postgresql.conf": postgresql_conf(self.args.kit_version, listen_addresses=LOCAL, port=self.port, paths=self.paths),
                "pg_hba.conf": pg_hba_conf(self.args.kit_version, self.database, self.user, self.args.client_network)}

    def _as_postgres(self, cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
        return run(["runuser", "-u", "postgres", "--", *cmd], what, **kw)

    def start(self) -> "Postgres":
        initdb, postgres, psql = require("initdb"), require("postgres"), require("psql")
        for d in ("run", "tls", "log", "etc"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        shutil.copy(self.server.cert, self.dir / "tls" / "tls.crt")
        shutil.copy(self.server.key, self.dir / "tls" / "tls.key")
        for name, text in self.render().items():
            (self.dir / "etc" / name).write_text(text, encoding="utf-8")
        chown_tree(self.dir, "postgres")
        os.chmod(self.dir / "tls" / "tls.key", 0o600)
        data = str(self.dir / "data")
        self._as_postgres([initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-instructions"], "initdb failed")
        # The superuser's password is set in single-user mode, from standard input: it never touches the disk.
        self._as_postgres([postgres, "--single", "-D", data, "postgres"], "setting the superuser password",
                          input=f"ALTER ROLE postgres PASSWORD '{self.superuser_password}';\n")
        log = self.dir / "server.log"
        self.proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", postgres, "-D", str(self.dir / "data"),
             "-c", f"config_file={self.dir / 'etc' / 'postgresql.conf'}", "-c", f"hba_file={self.dir / 'etc' / 'pg_hba.conf'}"],
            stdout=log.open("w"), stderr=subprocess.STDOUT)
        wait_port(self.port, "postgres", self.proc, log)
        for sql in (f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'", f"CREATE DATABASE {self.database} OWNER {self.user}"):
            run([psql, "-h", self.paths["socket"], "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                 "-qc", sql], "creating the FHIR role and database", env={**os.environ, "PGPASSWORD": self.superuser_password})
        return self

    def env(self, superuser: bool = False) -> dict[str, str]:
        """The POSTGRES_* environment the container has (what the host checks read), for this run's server."""
        return {"POSTGRES_USER": "postgres" if superuser else self.user,
                "POSTGRES_PASSWORD": self.superuser_password if superuser else self.password,
                "POSTGRES_DB": "postgres" if superuser else self.database}

    def stop(self) -> None:
        terminate(self.proc, 15)
        if not self.dir.is_relative_to(self.root):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted((self.dir / "log").glob("*.log")))


@dataclass
class AuditLog:
    args: AuditLogArgs
    pki: TestPki
    root: Path
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.dir = self.root / "auditlog"
        self.host = f"rsyslog.{self.args.namespace}.svc.cluster.local"
        self.server = self.pki.internal.issue("auditlog-server", self.host, dns=[self.host], server=True)
        self.sender = self.pki.internal.issue("log-forwarder", f"log-forwarder.{self.args.namespace}", client=True)
        self.data = self.dir / "data"
        self.paths = {"work": str(self.dir / "spool"), "ca": str(self.server.directory),
                      "server_tls": str(self.server.directory), "data": str(self.data)}
        self.conf = self.dir / "rsyslog.conf"
        # The seal key, as the pod gets it: a file of the seal key Secret (64 random alphanumerics, like the
        # demo's RandomPassword), readable by the seal only; the seal's own state directory beside it.
        self.seal_key = self.dir / "seal-key" / "key"
        self.seal_state = self.dir / "seal-state"
        self.proc: subprocess.Popen | None = None

    def render(self) -> str:
        return aggregator_conf(self.args.kit_version, listen_address=LOCAL, port=self.port, paths=self.paths)

    def seal(self, key_file: Path | None = None, state_dir: Path | None = None) -> str:
        """The rendered seal.sh, its key file and state directory mapped to this run's (default: the harness's)."""
        self.write_seal_key()
        return seal_script(self.args.kit_version, self.args.retention_days, str(self.data),
                           key_file=str(key_file or self.seal_key), state_dir=str(state_dir or self.seal_state))

    def write_seal_key(self) -> bytes:
        """The seal key file (created once per run), mode 0400 as the Secret volume gives it to the seal."""
        if not self.seal_key.exists():
            self.seal_key.parent.mkdir(parents=True, exist_ok=True)
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
            self.seal_key.write_text("".join(secrets.choice(alphabet) for _ in range(64)), encoding="ascii")
            self.seal_key.chmod(0o400)
        return self.seal_key.read_bytes()

    def start(self) -> "AuditLog":
        for d in (self.dir / "spool", self.data):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.render(), encoding="utf-8")
        (self.dir / "seal.sh").write_text(self.seal(), encoding="utf-8")
        self.proc, log = start_rsyslogd(self.conf, self.dir, "rsyslog.conf")
        wait_port(self.port, "rsyslogd", self.proc, log)
        return self

    def stop(self) -> None:
        terminate(self.proc)


@dataclass
class Forwarder:
    """A workload's log-forwarder sidecar: UDP (and files) in, mutual TLS out to the audit log aggregator."""

    audit: AuditLog
    source: str
    root: Path
    files: list[dict] = field(default_factory=list)
    udp_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.dir = self.root / f"forwarder-{self.source}"
        self.conf = self.dir / "rsyslog.conf"
        self.proc: subprocess.Popen | None = None

    def render(self) -> str:
        from socle.components.common import AuditTarget, forwarder_config

        cert_dir = str(self.audit.sender.directory)
        target = AuditTarget(host=self.audit.host, port=self.audit.port, client_secret="(local files)")
        return forwarder_config(self.audit.args.kit_version, self.source, target, self.files,
                                paths={"work": str(self.dir / "spool"), "ca": cert_dir, "client_tls": cert_dir},
                                udp_port=self.udp_port, connect_address=LOCAL)

    def start(self) -> "Forwarder":
        (self.dir / "spool").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.render(), encoding="utf-8")
        self.proc, log = start_rsyslogd(self.conf, self.dir, "forwarder rsyslog.conf")
        pid = self.dir / "rsyslogd.pid"
        deadline = time.monotonic() + 10
        while not pid.exists() and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pid.exists():
            raise HarnessError(f"the log forwarder did not start: {log.read_text(errors='replace')[-1000:]}")
        return self

    def stop(self) -> None:
        terminate(self.proc)


@contextlib.contextmanager
def running(*daemons) -> Iterator[tuple]:
    """Start the daemons in order; stop every one that started, whatever happens."""
    started = []
    try:
        for d in daemons:
            started.append(d)
            d.start()
        yield daemons
    finally:
        for d in reversed(started):
            with contextlib.suppress(Exception):
                d.stop()
