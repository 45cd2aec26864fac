"""socle MSS-05: refresh the authorized MSSanté domains from the ANS white list of the trust space, fail-closed.

The list (https://espacedeconfiance.mssante.fr/listeblanchemssante.xml) is XML in the namespace
https://listeblanche.mssante.fr/schema: ListeBlancheMSSante / DateDeGeneration, ListeDomaines / Domaine, each Domaine
holding one Nom (the domain) and one DNCertificatOperateur (the operator's certificate subject); a domain served by
several operator servers appears in several Domaine entries.

Each cycle: download over TLS verified against the trust bundle only (the IGC-Santé CAs, never the system store),
parse with expat (no DOCTYPE, no entity, nothing outside the namespace counted), keep exactly the Domaine/Nom values
that are host names, check that the result is plausible (enough domains, few invalid entries, no large shrink), then
write each Postfix map beside the live one, index it with postmap, read it back, and rename it into place. Postfix
daemons notice the replaced indexed file and restart on their own. On any error the previous maps stay in place and
one line says why. The configuration (a JSON file) is the only input; this program is the same for every stack.

Usage: refresh_domains.py CONFIG.json [--once | --seed SEED_DIR]
"""
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xml.parsers.expat
from datetime import datetime

NS = "https://listeblanche.mssante.fr/schema"
ROOT, DATE, LIST, ENTRY, NAME, DN = (NS + " " + n for n in (
    "ListeBlancheMSSante", "DateDeGeneration", "ListeDomaines", "Domaine", "Nom", "DNCertificatOperateur"))
HOST = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
DOMAIN_MAPS = ("recipient_access", "relay_domains")
POLICY_MAP = "tls_policy"


class Refused(Exception):
    """The downloaded list is not used; the message says why."""


def log(message):
    """One line per cycle: anything taken from the download is printed, never a line break or control character."""
    print("mssante-domains: " + "".join(ch if ch.isprintable() else "?" for ch in message), flush=True)


# --- download -----------------------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise Refused("the list URL answered with a redirect (%d to %s); redirects are not followed" % (code, newurl[:120]))


def download(conf):
    url = conf["url"]
    if not url.startswith("https://"):
        raise Refused("the list URL is not https")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=conf["ca_file"])  # the trust bundle only: no load_default_certs()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), _NoRedirect())
    limit = int(conf["max_bytes"])
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "socle-mss-refresh"}),
                         timeout=int(conf["timeout_seconds"])) as resp:
            body = resp.read(limit + 1)
    except Refused:
        raise
    except urllib.error.HTTPError as exc:
        raise Refused("download failed: HTTP %s" % exc.code) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise Refused("TLS verification against the trust bundle failed: %s" % reason.verify_message) from None
        raise Refused("download failed: %s" % reason) from None
    except (OSError, ValueError) as exc:
        raise Refused("download failed: %s" % exc) from None
    if len(body) > limit:
        raise Refused("the list is larger than %d bytes" % limit)
    return body


# --- parse --------------------------------------------------------------------------------------------------

def parse(body):
    """(generation date, [(name, [operator DNs])...], entries) from the list; Refused when it is not the list."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack, text, entries = [], [], []
    state = {"date": None, "entry": None}

    def refuse_doctype(*_):
        raise Refused("the document declares a DOCTYPE; the white list has none")

    def refuse_entity(*_):
        raise Refused("the document declares or references an entity; the white list has none")

    def start(tag, _attrs):
        parent = stack[-1] if stack else None
        if parent is None and tag != ROOT:
            raise Refused("the root element is %s, not ListeBlancheMSSante in %s" % (tag.replace(" ", ":"), NS))
        stack.append(tag)
        text.append([])
        if tag == ENTRY and parent == LIST and len(stack) == 3:
            state["entry"] = {"names": [], "dns": []}

    def end(tag):
        value = "".join(text.pop()).strip()
        stack.pop()
        parent = stack[-1] if stack else None
        entry = state["entry"]
        if tag == DATE and parent == ROOT:
            if state["date"] is not None:
                raise Refused("two DateDeGeneration elements")
            state["date"] = value
        elif entry is not None and parent == ENTRY and len(stack) == 3 and tag == NAME:
            entry["names"].append(value)
        elif entry is not None and parent == ENTRY and len(stack) == 3 and tag == DN:
            entry["dns"].append(value)
        elif tag == ENTRY and entry is not None and len(stack) == 2:
            entries.append(entry)
            state["entry"] = None

    def chars(data):
        if text:
            text[-1].append(data)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_entity
    parser.SkippedEntityHandler = refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(body, True)
    except xml.parsers.expat.ExpatError as exc:
        raise Refused("the list does not parse as XML: %s" % exc) from None
    if state["date"] is None:
        raise Refused("no DateDeGeneration: not the white list")
    try:
        datetime.strptime(state["date"], "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise Refused("DateDeGeneration %r is not a UTC timestamp" % state["date"][:40]) from None
    return state["date"], entries


def operator_host(dn):
    """The CN of an operator certificate's DN (RFC 4514 string), when it is a host name; else None."""
    parts, current, escaped = [], "", False
    for ch in dn:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch in ",+":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    cns = [p.split("=", 1)[1].strip().lower() for p in parts if p.strip().upper().startswith("CN=")]
    return cns[0] if len(cns) == 1 and HOST.fullmatch(cns[0]) else None


def select(entries, conf):
    """{domain: sorted operator hosts} of the valid entries, and what was left out."""
    domains, invalid, no_operator = {}, [], set()
    for e in entries:
        name = e["names"][0].lower().rstrip(".") if len(e["names"]) == 1 else ""
        if not HOST.fullmatch(name):
            invalid.append(e["names"][0] if len(e["names"]) == 1 else "<%d Nom elements>" % len(e["names"]))
            continue
        hosts = domains.setdefault(name, set())
        for dn in e["dns"]:
            host = operator_host(dn)
            if host:
                hosts.add(host)
    if conf["operator_dn"]:
        no_operator = {d for d, hosts in domains.items() if not hosts}
        domains = {d: hosts for d, hosts in domains.items() if hosts}
    return {d: sorted(h) for d, h in sorted(domains.items())}, invalid, sorted(no_operator)


def plausible(domains, entries, invalid, previous, conf):
    if not entries:
        raise Refused("the list holds no Domaine entry")
    if len(invalid) * 100 > len(entries) * int(conf["max_invalid_percent"]):
        raise Refused("%d of %d entries are not host names (more than %s%%), e.g. %r" % (
            len(invalid), len(entries), conf["max_invalid_percent"], invalid[0][:80]))
    if len(domains) < int(conf["min_domains"]):
        raise Refused("%d domains, fewer than the minimum of %s" % (len(domains), conf["min_domains"]))
    if previous and len(domains) * 100 < previous * (100 - int(conf["max_shrink_percent"])):
        raise Refused("%d domains against %d in the current list: a shrink of more than %s%%" % (
            len(domains), previous, conf["max_shrink_percent"]))


# --- Postfix maps ---------------------------------------------------------------------------------------------

def current_count(conf):
    """The number of domains Postfix serves now: the live index, read back (0 when there is none)."""
    try:
        return len(postmap(conf, ["-s", "%s:%s" % (conf["map_type"], os.path.join(conf["maps_dir"], DOMAIN_MAPS[0]))]).splitlines())
    except (Refused, OSError, subprocess.SubprocessError):
        return 0


def postmap(conf, args):
    res = subprocess.run([conf["postmap"]] + args, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise Refused("postmap %s failed: %s" % (args[-1], (res.stderr or res.stdout).strip()[:200]))
    return res.stdout


def build_map(conf, name, rows):
    """Write NAME's source and index beside the live ones, read the index back, return (tmp source, tmp index)."""
    maps_dir, kind = conf["maps_dir"], conf["map_type"]
    fd, tmp = tempfile.mkstemp(prefix="." + name + ".", dir=maps_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines("%s %s\n" % row for row in rows)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    try:
        postmap(conf, ["%s:%s" % (kind, tmp)])
        dumped = sorted(tuple(line.split(None, 1)) for line in postmap(conf, ["-s", "%s:%s" % (kind, tmp)]).splitlines())
        if dumped != sorted(rows):
            raise Refused("the indexed %s map does not read back as written" % name)
    except BaseException:
        for path in (tmp, tmp + "." + INDEX_SUFFIX.get(kind, kind)):
            if os.path.exists(path):
                os.unlink(path)
        raise
    return tmp, tmp + "." + INDEX_SUFFIX.get(kind, kind)


INDEX_SUFFIX = {"hash": "db", "btree": "db", "lmdb": "lmdb", "cdb": "cdb"}


def install(conf, tables):
    """Every map built and checked first, then each renamed into place (index first, then its source)."""
    built = []
    try:
        for name, rows in tables.items():
            built.append((name,) + build_map(conf, name, rows))
    except BaseException:
        for _, src, idx in built:
            for path in (src, idx):
                if os.path.exists(path):
                    os.unlink(path)
        raise
    for name, src, idx in built:
        live = os.path.join(conf["maps_dir"], name)
        os.replace(idx, live + "." + INDEX_SUFFIX.get(conf["map_type"], conf["map_type"]))
        os.replace(src, live)


def tables_for(domains, conf):
    tables = {name: [(d, "OK") for d in domains] for name in DOMAIN_MAPS}
    if conf["operator_dn"]:
        # Postfix checks the peer's chain against the IGC-Santé CAs and its DNS names (or CN) against these
        # host names; it cannot compare the other attributes of the DN (O, OU, ST, C).
        tables[POLICY_MAP] = [(d, "secure match=" + ":".join(hosts)) for d, hosts in domains.items()]
    return tables


def refresh(conf):
    previous = current_count(conf)
    try:
        body = download(conf)
        date, entries = parse(body)
        domains, invalid, no_operator = select(entries, conf)
        plausible(domains, entries, invalid, previous, conf)
        install(conf, tables_for(domains, conf))
    except Refused as exc:
        log("keeping the previous list (%d domains): %s" % (previous, exc))
        return False
    except Exception as exc:  # noqa: BLE001 - whatever happens, the previous maps stay and the reason is logged
        log("keeping the previous list (%d domains): %s: %s" % (previous, exc.__class__.__name__, str(exc)[:200]))
        return False
    notes = ["%d entries" % len(entries)]
    if invalid:
        notes.append("%d not host names skipped (e.g. %r)" % (len(invalid), invalid[0][:80]))
    if no_operator:
        notes.append("%d without an operator host name left out" % len(no_operator))
    log("list of %s accepted: %d domains (%s)" % (date, len(domains), ", ".join(notes)))
    return True


def seed(conf, seed_dir):
    """Before Postfix starts: the seed maps of the stack copied beside it and indexed."""
    for name in sorted(os.listdir(seed_dir)):
        if name.startswith("."):
            continue
        shutil.copyfile(os.path.join(seed_dir, name), os.path.join(conf["maps_dir"], name))
    for name in DOMAIN_MAPS + ((POLICY_MAP,) if conf["operator_dn"] else ()):
        path = os.path.join(conf["maps_dir"], name)
        if not os.path.exists(path):
            open(path, "w").close()
        postmap(conf, ["%s:%s" % (conf["map_type"], path)])
    log("seed maps indexed: %d domains" % current_count(conf))


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        conf = json.load(f)
    if argv[2:3] == ["--seed"]:
        try:
            seed(conf, argv[3])
        except (Refused, OSError) as exc:
            log("seed failed: %s" % exc)
            return 1
        return 0
    if argv[2:3] == ["--once"]:
        return 0 if refresh(conf) else 1
    while True:
        refresh(conf)
        time.sleep(int(conf["interval_seconds"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
