"""MSS-05: the rendered refresher of the ANS white list, run for real.

A local HTTPS server (127.0.0.1) plays espacedeconfiance.mssante.fr under a certificate from a throw-away CA that
plays IGC-Santé (the relay's trust bundle); the refresher the render ships (program + configuration) downloads lists
with noise — XML comments, namespace prefixes, operator host names, DN elements, a CDATA section, elements outside
the namespace — and real Postfix then accepts RCPT for exactly the listed domains. Every way a download can be wrong
(truncated, wrong namespace, an HTML page, too few domains, a large shrink, a DOCTYPE, another CA, HTTP errors)
leaves the previous maps byte for byte, with one line saying why.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from socle.components.relay import (
    REFRESH_CONFIG,
    REFRESHER,
    WHITE_LIST_URL,
    domain_refresh_files,
    indexed_maps,
    refresh_config,
    relay_maps,
)
from socle.verify import harness
from socle.verify.pki import TestPki
from tests.conftest import IN_CI, rendered_stack, require_tool

NS = "https://listeblanche.mssante.fr/schema"
HOST = "localhost"  # the name the list server's certificate carries


def entry(name: str, cn: str = "mx.operateur-a.test", extra: str = "") -> str:
    return (f"<Domaine><Nom>{name}</Nom><Description>Domaine de messagerie MSSanté {name}</Description>"
            f"<DNCertificatOperateur>CN={cn},OU=318310021300028,O=OPERATEUR TEST,ST=Haute-Garonne (31),C=FR"
            f"</DNCertificatOperateur><ResponsableContact>01 02 03 04 05, contact@{cn}</ResponsableContact>"
            f"<DateMAJ>2025-03-13T14:54:10Z</DateMAJ>{extra}</Domaine>")


def white_list(*entries: str, root: str = f'ListeBlancheMSSante xmlns="{NS}"', date: str = "2026-11-20T06:00:00Z") -> bytes:
    tag = root.split()[0]
    return (f'<?xml version="1.0" encoding="UTF-8"?><{root}>\n<DateDeGeneration>{date}</DateDeGeneration>\n'
            f"<ListeDomaines>\n{''.join(entries)}\n</ListeDomaines></{tag}>\n").encode()


LISTED = ["alpha.mssante.test", "beta.mssante.test", "ch-gamma.mssante.test", "delta-sante.test", "uc-cmp.mssante.test"]

# The first list: the five domains above, among noise that must authorize nothing.
NOISY = white_list(
    "<!-- exemple.mssante.test: a domain in a comment is no domain -->",
    entry("alpha.mssante.test", extra="<Note>commentaire.mssante.test</Note>"),
    entry("alpha.mssante.test", cn="mx2.operateur-a.test"),  # one domain, two operator servers
    entry("beta.mssante.test", cn="smtp-1.operateur-b.test"),
    f'<lb:Domaine xmlns:lb="{NS}"><lb:Nom>ch-gamma.mssante.test</lb:Nom>'
    "<lb:DNCertificatOperateur>CN=smtp-2.operateur-b.test,O=B,C=FR</lb:DNCertificatOperateur></lb:Domaine>",
    entry("<![CDATA[delta-sante.test]]>"),
    entry("UC-CMP.mssante.test"),  # upper case in the real list (UC-CMP.mssante.fr): a host name all the same
    '<Domaine xmlns="urn:not-the-white-list"><Nom>etranger.mssante.test</Nom></Domaine>',
    entry("sessad@ase.invalid.mssante.test"),  # an entry of the real list that is no host name: skipped
    '<Domaine><Nom xmlns="urn:other">autre-espace.mssante.test</Nom>'  # a Nom of another namespace: no Nom at all
    '<DNCertificatOperateur>CN=mx.autre.test,C=FR</DNCertificatOperateur></Domaine>',
    "<Extension><Domaine><Nom>hors-liste.mssante.test</Nom></Domaine></Extension>",
    *[entry(f"filler{i:03d}.mssante.test") for i in range(200)],
)
NOT_LISTED = ["exemple.mssante.test", "commentaire.mssante.test", "etranger.mssante.test", "autre-espace.mssante.test",
              "hors-liste.mssante.test", "mx.operateur-a.test", "smtp-1.operateur-b.test", "sub.alpha.mssante.test",
              "mssante.test", "www.w3.org", "mx.autre.test"]
FIRST = sorted({*LISTED, *(f"filler{i:03d}.mssante.test" for i in range(200))})


class _ListHandler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}

    def do_GET(self):  # noqa: N802
        status, body, headers = self.routes.get(self.path, (404, b"not found", {}))
        self.send_response(status)
        for k, v in {"Content-Type": "application/xml", "Content-Length": str(len(body)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


@contextlib.contextmanager
def list_server(cert, routes):
    """An HTTPS server on 127.0.0.1 serving `routes` under `cert` (chain of its CA)."""
    handler = type("Handler", (_ListHandler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer((harness.LOCAL, 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Refresher:
    """The refresher exactly as the render ships it (program and configuration of the stack), paths mapped."""

    def __init__(self, args, pki: TestPki, maps: Path, work: Path):
        self.postmap = require_tool("postmap")
        self.args, self.maps, self.work = args, maps, work
        files = domain_refresh_files(args)
        self.program = work / REFRESHER
        self.program.write_text(files[REFRESHER], encoding="utf-8")
        self.config = work / REFRESH_CONFIG
        self.config.write_text(refresh_config(args, maps_dir=str(maps), ca_file=str(pki.health.cert_path),
                                              postmap=self.postmap), encoding="utf-8")
        self.seed_dir = work / "seed"
        self.seed_dir.mkdir(exist_ok=True)
        for name, text in relay_maps(args).items():
            (self.seed_dir / name).write_text(text, encoding="utf-8")

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SSL_CERT", "REQUESTS_CA", "HTTPS_PROXY", "https_proxy"))}
        return subprocess.run([sys.executable, str(self.program), str(self.config), *extra], capture_output=True,
                              text=True, timeout=120, env=env)

    def seed(self) -> None:
        res = self.run("--seed", str(self.seed_dir))
        assert res.returncode == 0, res.stdout + res.stderr

    def snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.maps.iterdir())}

    def dump(self, name: str) -> dict[str, str]:
        out = subprocess.run([self.postmap, "-s", f"hash:{self.maps / name}"], capture_output=True, text=True, check=True).stdout
        return dict(line.split(None, 1) for line in out.splitlines())


def demo_args(url: str, **update):
    st = rendered_stack("demo")[0]
    args = st.blueprint.component_args(st.params)["relay"]
    return args.model_copy(update={"domain_list_url": url, "list_min_domains": 100, **update})


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def site(pki):
    """The list server: its certificate from the CA playing IGC-Santé."""
    cert = pki.health.issue("list-server", HOST, dns=[HOST], server=True)
    routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
    with list_server(cert, routes) as base:
        yield base, routes


def serve(site, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> str:
    base, routes = site
    routes[path] = (status, body, headers or {})
    return base + path


def fresh(pki, site, tmp_path, path: str, body: bytes, **update) -> Refresher:
    url = serve(site, path, body)
    maps = tmp_path / "maps"
    maps.mkdir()
    r = Refresher(demo_args(url, **update), pki, maps, tmp_path)
    r.seed()
    return r


# --- what is accepted -------------------------------------------------------------------------------------------

def test_the_rendered_refresher_reads_the_white_list_of_the_trust_space():
    st = rendered_stack("demo")[0]
    conf = json.loads(domain_refresh_files(st.blueprint.component_args(st.params)["relay"])[REFRESH_CONFIG])
    assert conf["url"] == WHITE_LIST_URL == "https://espacedeconfiance.mssante.fr/listeblanchemssante.xml"
    assert conf["ca_file"] == "/etc/socle/tls/trust/ca.crt" and conf["map_type"] == "hash"


def test_a_noisy_list_authorizes_exactly_its_domains(pki, site, tmp_path):
    r = fresh(pki, site, tmp_path, "/noisy.xml", NOISY)
    assert sorted(r.dump("recipient_access")) == sorted(relay_maps(r.args)["recipient_access"].split()[::2])  # the seed
    res = r.run("--once")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and "list of 2026-11-20T06:00:00Z accepted: 205 domains (208 entries" in lines[0], lines
    assert "2 not host names skipped" in lines[0] and "sessad@ase" in lines[0]
    for name in ("recipient_access", "relay_domains"):
        assert sorted(r.dump(name)) == FIRST and set(r.dump(name).values()) == {"OK"}
        assert (r.maps / name).read_text() == "".join(f"{d} OK\n" for d in FIRST)  # the source beside its index
    policy = r.dump("tls_policy")
    assert policy["alpha.mssante.test"] == "secure match=mx.operateur-a.test:mx2.operateur-a.test"
    assert policy["beta.mssante.test"] == "secure match=smtp-1.operateur-b.test"
    assert policy["ch-gamma.mssante.test"] == "secure match=smtp-2.operateur-b.test"
    assert sorted(policy) == FIRST
    assert not [p.name for p in r.maps.iterdir() if p.name.startswith(".")], "no temporary file left behind"


def test_without_operator_enforcement_no_policy_is_written(pki, site, tmp_path):
    r = fresh(pki, site, tmp_path, "/noisy-nodn.xml", NOISY, operator_dn=False, next_hop="[relais.operateur.test]:25")
    assert r.run("--once").returncode == 0
    assert sorted(r.dump("relay_domains")) == FIRST and not (r.maps / "tls_policy.db").exists()


def test_with_enforcement_a_domain_without_operator_host_is_left_out(pki, site, tmp_path):
    body = white_list(*[entry(f"d{i:03d}.mssante.test") for i in range(110)],
                      "<Domaine><Nom>sans-dn.mssante.test</Nom><DNCertificatOperateur>O=Sans CN,C=FR</DNCertificatOperateur></Domaine>")
    r = fresh(pki, site, tmp_path, "/nodn.xml", body)
    res = r.run("--once")
    assert res.returncode == 0 and "1 without an operator host name left out" in res.stdout
    assert "sans-dn.mssante.test" not in r.dump("relay_domains") and len(r.dump("relay_domains")) == 110


# --- fail closed ----------------------------------------------------------------------------------------------

def _truncated() -> bytes:
    return NOISY[: NOISY.index(b"filler050")]  # as the copies of the list in ansforge/MSS-liste-blanche are cut


BAD = [
    ("truncated", _truncated(), 200, {}, r"does not parse as XML"),
    ("wrong namespace", NOISY.replace(NS.encode(), b"https://listeblanche.example.test/schema"), 200, {}, r"root element is .*not ListeBlancheMSSante"),
    ("no namespace", NOISY.replace(f' xmlns="{NS}"'.encode(), b"", 1), 200, {}, r"root element is ListeBlancheMSSante, not"),
    ("an HTML page", b"<!DOCTYPE html><html><head><title>Extractions MSS</title></head><body>"
                     b"<a href='https://www.w3.org/'>www.w3.org</a> jquery-3.6.0.min.js</body></html>", 200, {},
     r"DOCTYPE"),
    ("an HTML page without doctype", b"<html><body><p>annuaire.sante.fr www.w3.org</p></body></html>", 200, {},
     r"root element is html"),
    ("entity expansion", b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "alpha.mssante.test">]>'
                         + NOISY.split(b"?>", 1)[1].replace(b"<Nom>beta.mssante.test", b"<Nom>&a;"), 200, {}, r"DOCTYPE"),
    ("too few domains", white_list(*[entry(f"d{i}.mssante.test") for i in range(20)]), 200, {}, r"20 domains, fewer than the minimum of 100"),
    ("a large shrink", white_list(*[entry(f"filler{i:03d}.mssante.test") for i in range(180)]), 200, {},
     r"180 domains against 205 in the current list: a shrink of more than 10%"),
    ("many entries not host names", white_list(*[entry(f"d{i:03d}.mssante.test") for i in range(120)],
                                              *[entry(f"bad name {i}") for i in range(5)]), 200, {}, r"5 of 125 entries are not host names"),
    ("no generation date", NOISY.replace(b"<DateDeGeneration>2026-11-20T06:00:00Z</DateDeGeneration>", b""), 200, {},
     r"no DateDeGeneration"),
    ("HTTP 404", b"gone", 404, {}, r"HTTP 404"),
    ("a redirect", b"", 302, {"Location": "http://espacedeconfiance.mssante.test/listeblanchemssante.xml"}, r"redirect"),
]


@pytest.mark.parametrize("why,body,status,headers,reason", BAD, ids=[b[0] for b in BAD])
def test_a_bad_download_keeps_the_previous_list(pki, site, tmp_path, why, body, status, headers, reason):
    import re

    r = fresh(pki, site, tmp_path, "/good.xml", NOISY)
    assert r.run("--once").returncode == 0
    before = r.snapshot()
    url = serve(site, f"/bad-{abs(hash(why))}.xml", body, status, headers)
    r.config.write_text(r.config.read_text().replace(json.loads(r.config.read_text())["url"], url))
    res = r.run("--once")
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mssante-domains: keeping the previous list (205 domains): "), lines
    assert re.search(reason, lines[0]), lines[0]
    assert r.snapshot() == before, f"{why}: the maps changed"


def test_a_server_certificate_from_another_ca_is_refused(pki, site, tmp_path):
    r = fresh(pki, site, tmp_path, "/good-ca.xml", NOISY)
    assert r.run("--once").returncode == 0
    before = r.snapshot()
    other = pki.unknown.issue("list-impostor", HOST, dns=[HOST], server=True)
    with list_server(other, {"/listeblanchemssante.xml": (200, NOISY.replace(b"alpha", b"zeta"), {})}) as base:
        r.config.write_text(r.config.read_text().replace(json.loads(r.config.read_text())["url"], base + "/listeblanchemssante.xml"))
        res = r.run("--once")
    assert res.returncode == 1
    assert "keeping the previous list (205 domains): TLS verification against the trust bundle failed" in res.stdout
    assert r.snapshot() == before


def test_the_system_store_is_never_used(pki, site, tmp_path):
    """A bundle without the list server's CA refuses it, even with a system store that would trust it."""
    r = fresh(pki, site, tmp_path, "/good-store.xml", NOISY)
    conf = json.loads(r.config.read_text())
    conf["ca_file"] = str(pki.internal.cert_path)
    r.config.write_text(json.dumps(conf))
    env_store = tmp_path / "store.pem"
    env_store.write_bytes(pki.health.cert_path.read_bytes())
    res = subprocess.run([sys.executable, str(r.program), str(r.config), "--once"], capture_output=True, text=True,
                         env={**os.environ, "SSL_CERT_FILE": str(env_store)}, timeout=120)
    assert res.returncode == 1 and "TLS verification against the trust bundle failed" in res.stdout


# --- real Postfix ---------------------------------------------------------------------------------------------

def require_postfix() -> None:
    require_tool("postfix")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the real-daemon tests run as root in CI")
        pytest.skip("Postfix is started as its own users: needs root")


def _session(relay: harness.Relay, pki: TestPki) -> smtplib.SMTP:
    """An SMTP session with the relay, under STARTTLS with the organisation's client certificate."""
    s = smtplib.SMTP(harness.LOCAL, relay.port, local_hostname="probe.verify.test", timeout=20)
    s.ehlo()
    ctx = ssl.create_default_context(cafile=str(pki.health.cert_path))
    ctx.check_hostname = False
    ctx.load_cert_chain(pki.org_client.cert, pki.org_client.key)
    s.starttls(context=ctx)
    s.ehlo()
    return s


def _rcpt(relay: harness.Relay, pki: TestPki, domains: list[str]) -> dict[str, int]:
    s = _session(relay, pki)
    out = {}
    for d in domains:
        s.mail("app@verify.test")
        out[d] = s.rcpt(f"doctor@{d}")[0]
        s.rset()
    s.quit()
    return out


@contextlib.contextmanager
def postfix_with_list(pki, site, tmp_path, path, body, **update):
    require_postfix()
    args = demo_args(serve(site, path, body), **update)
    relay = harness.Relay(args, pki, tmp_path / "relay")
    maps = Path(relay.paths["maps"])
    maps.mkdir(parents=True, exist_ok=True)
    r = Refresher(relay.args, pki, maps, tmp_path)
    r.seed()  # the pod's seed-maps init container: the stack's domains, indexed before Postfix starts
    with harness.running(relay):
        # Postfix runs on the seed maps; the refresher then replaces them with the downloaded list.
        res = r.run("--once")
        assert res.returncode == 0, res.stdout
        assert set(indexed_maps(relay.args)) <= {p.name[:-3] for p in maps.glob("*.db")}
        yield relay, r


def test_postfix_accepts_exactly_the_listed_domains_and_follows_a_refresh(pki, site, tmp_path):
    with postfix_with_list(pki, site, tmp_path, "/postfix.xml", NOISY) as (relay, r):
        got = _rcpt(relay, pki, LISTED + NOT_LISTED)
        assert {d: got[d] for d in LISTED} == {d: 250 for d in LISTED}, got
        assert all(got[d] >= 500 for d in NOT_LISTED), {d: got[d] for d in NOT_LISTED}
        # The next list drops alpha and adds omega: the running daemons see the replaced maps on their own.
        nxt = NOISY.replace(b"<Nom>alpha.mssante.test</Nom>", b"<Nom>omega.mssante.test</Nom>")
        serve(site, "/postfix.xml", nxt)
        assert r.run("--once").returncode == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = _rcpt(relay, pki, ["omega.mssante.test", "alpha.mssante.test", "beta.mssante.test"])
            if got["omega.mssante.test"] == 250 and got["alpha.mssante.test"] >= 500:
                break
            time.sleep(1)
        assert got["omega.mssante.test"] == 250 and got["alpha.mssante.test"] >= 500 and got["beta.mssante.test"] == 250, got
        assert "table has changed -- restarting" in relay.log() or "has changed" in relay.log()
        # A bad download changes nothing for Postfix either.
        serve(site, "/postfix.xml", _truncated())
        assert r.run("--once").returncode == 1
        got = _rcpt(relay, pki, ["omega.mssante.test", "alpha.mssante.test"])
        assert got["omega.mssante.test"] == 250 and got["alpha.mssante.test"] >= 500, got


def test_external_operator_sends_every_listed_domain_to_the_operator_relay(pki, site, tmp_path):
    """mode external-operator: a domain that came with the list (not in the stack) goes to next_hop, never to its MX."""
    with postfix_with_list(pki, site, tmp_path, "/external.xml", NOISY, mode="external-operator", operator_dn=False) as (relay, r):
        assert "relayhost = [127.0.0.1]:" in (relay.config_dir / "main.cf").read_text()
        s = _session(relay, pki)
        s.mail("app@verify.test")
        assert s.rcpt("doctor@filler042.mssante.test")[0] == 250
        assert s.data(b"Subject: external operator\r\n\r\nbody\r\n")[0] == 250
        s.quit()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "status=deferred" not in relay.log():
            time.sleep(0.3)
        log = relay.log()
        # The operator's relay (the sink) was the one contacted; it offers no TLS, so nothing was sent to it.
        assert "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]" in log, log[-2000:]
        assert f"to=<doctor@filler042.mssante.test>, relay=127.0.0.1[127.0.0.1]:{relay.sink.port}" in log, log[-2000:]
        assert relay.sink.sessions, "the operator's relay was never contacted"
        assert "Host or domain name not found" not in log and "filler042.mssante.test[" not in log
        assert not any(line.upper().startswith(("MAIL", "DATA")) for sess in relay.sink.sessions for line in sess)


def test_postfix_matches_the_operator_host_of_the_policy_and_nothing_else_of_the_dn(pki, site, tmp_path):
    """What `secure match=<operator host>` (the policy the refresher writes) makes Postfix's TLS client check, run
    with posttls-finger (Postfix's own client code) against the relay's smtpd, whose certificate from the CA playing
    IGC-Santé names mss.chdemo.test with O=socle verify: the name must match; the O (and OU, ST, C) of the list's DN
    are not compared — the documented limit of the operator DN enforcement."""
    finger = require_tool("posttls-finger")
    with postfix_with_list(pki, site, tmp_path, "/finger.xml", NOISY) as (relay, _r):
        chain = tmp_path / "client-chain.pem"
        chain.write_bytes(pki.org_client.key.read_bytes() + pki.org_client.cert.read_bytes())

        def probe(*match: str) -> str:
            res = subprocess.run([finger, "-c", "-l", "secure", "-F", str(pki.health.cert_path), "-H", str(chain),
                                  f"[{harness.LOCAL}]:{relay.port}", *match], capture_output=True, text=True, timeout=60)
            return res.stdout + res.stderr

        assert "Verified TLS connection established" in probe(relay.args.hostname)  # the operator host: accepted
        other = probe("mx.operateur-a.test")  # another operator's host: refused
        assert "hostname mismatch" in other and "Untrusted TLS connection established" in other, other

