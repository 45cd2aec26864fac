"""Parsers for the configuration files the kit renders into ConfigMaps, as the daemons read them.

NGINX through nginxinc's `crossplane` parser; oauth2-proxy's TOML through `tomllib`; Postfix, PostgreSQL and
rsyslog through small readers of their documented line formats (no maintained Python parser exists for them).
"""
from __future__ import annotations

import functools

import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Any, Iterator

import crossplane


class ConfigError(ValueError):
    """The file does not parse: the check reports it as a failure naming the file."""


# --- NGINX -------------------------------------------------------------------------------------------------

@dataclass
class Directive:
    name: str
    args: list[str]
    children: list["Directive"] = field(default_factory=list)
    line: int = 0

    def all(self, name: str) -> list["Directive"]:
        return [d for d in self.children if d.name == name]

    def first(self, name: str) -> "Directive | None":
        found = self.all(name)
        return found[0] if found else None

    def value(self, name: str, default: str | None = None) -> str | None:
        d = self.first(name)
        return " ".join(d.args) if d is not None else default

    def walk(self) -> Iterator["Directive"]:
        for d in self.children:
            yield d
            yield from d.walk()


def _nginx_parse(text: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="socle-audit-") as tmp:
        path = Path(tmp) / "nginx.conf"
        path.write_text(text, encoding="utf-8")
        payload = crossplane.parse(str(path), single=True, check_ctx=False, check_args=False, comments=False)
    if payload["errors"]:
        err = payload["errors"][0]
        raise ConfigError(f"line {err.get('line')}: {err.get('error')}")
    return payload["config"][0]["parsed"]


def nginx(text: str, siblings: Mapping[str, str] | None = None) -> Directive:
    """The whole file as one root block; `root.first('http').all('server')` are the virtual servers. An `include`
    is replaced by the directives of the file it names when that file is a key of the same ConfigMap (`siblings`,
    mounted beside nginx.conf); any other include cannot be judged: its content is not in the evidence."""
    parsed: dict[str, list[Directive]] = {}

    def build(items: list[dict[str, Any]], depth: int = 0) -> list[Directive]:
        out: list[Directive] = []
        for i in items:
            if i["directive"] == "include":
                out += included(i, depth)
                continue
            out.append(Directive(i["directive"], list(i.get("args", [])), build(i.get("block", []) or [], depth),
                                 i.get("line", 0)))
        return out

    def included(item: dict[str, Any], depth: int) -> list[Directive]:
        target = " ".join(item.get("args", []))
        name = target.rsplit("/", 1)[-1]
        if not target.startswith("/") or any(c in target for c in "*?[") or name not in (siblings or {}):
            raise ConfigError(f"line {item.get('line')}: includes {target}, which is not a file of this ConfigMap: "
                              "what it holds is not in the evidence")
        if depth >= 3:
            raise ConfigError(f"line {item.get('line')}: includes nested deeper than 3 files")
        if name not in parsed:
            parsed[name] = build(_nginx_parse((siblings or {})[name]), depth + 1)
        return parsed[name]

    return Directive("main", [], build(_nginx_parse(text)))


def nginx_servers(root: Directive) -> list[Directive]:
    http = root.first("http")
    return http.all("server") if http else []


def listens_tls(server: Directive) -> bool:
    return any("ssl" in d.args[1:] for d in server.all("listen"))


def server_names(server: Directive) -> list[str]:
    return [n for d in server.all("server_name") for n in d.args]


# --- Postfix -----------------------------------------------------------------------------------------------

def postfix_main(text: str) -> dict[str, str]:
    """main.cf: `name = value`, continuation lines start with white space, the last setting wins."""
    out: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and key is not None:
            out[key] = (out[key] + " " + raw.strip()).strip()
            continue
        if "=" not in raw:
            raise ConfigError(f"not a `name = value` line: {raw.strip()!r}")
        name, value = raw.split("=", 1)
        key = name.strip()
        out[key] = value.strip()
    return out


@dataclass(frozen=True)
class MasterService:
    service: str
    type: str
    command: str
    overrides: dict[str, str]


@functools.lru_cache(maxsize=256)
def postfix_master(text: str) -> tuple[MasterService, ...]:
    """master.cf: one service per line (continuations start with white space); `-o name=value` overrides.
    Cached on the text: a regional cluster carries the same file in every namespace (callers only read)."""
    lines: list[str] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and lines:
            lines[-1] += " " + raw.strip()
        else:
            lines.append(raw.strip())
    out = []
    for line in lines:
        words = line.split()
        if len(words) < 8:
            raise ConfigError(f"master.cf line has fewer than 8 fields: {line!r}")
        overrides: dict[str, str] = {}
        rest = words[8:]
        for i, w in enumerate(rest):
            if w == "-o" and i + 1 < len(rest) and "=" in rest[i + 1]:
                k, v = rest[i + 1].split("=", 1)
                overrides[k] = v
        out.append(MasterService(words[0], words[1], words[7], overrides))
    return tuple(out)


def postfix_list(value: str) -> list[str]:
    return [v for v in re.split(r"[\s,]+", value.strip()) if v]


_TLS_ORDER = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]


def postfix_protocols(value: str) -> set[str]:
    """The protocols a Postfix `*_tls_protocols` value leaves enabled (Postfix ≥ 3.6 syntax, `>=`/`<=` and `!`)."""
    enabled = set(_TLS_ORDER)
    for item in postfix_list(value):
        if item.startswith(">="):
            floor = item[2:]
            if floor in _TLS_ORDER:
                enabled -= set(_TLS_ORDER[: _TLS_ORDER.index(floor)])
        elif item.startswith("<="):
            ceil = item[2:]
            if ceil in _TLS_ORDER:
                enabled -= set(_TLS_ORDER[_TLS_ORDER.index(ceil) + 1:])
        elif item.startswith("!"):
            enabled.discard(item[1:])
        elif item in _TLS_ORDER:
            # A positive list names the only protocols allowed.
            pass
    positives = {i for i in postfix_list(value) if i in _TLS_ORDER}
    return enabled & positives if positives else enabled


def tls_versions_from_min(minimum: str) -> set[str]:
    names = {"TLSv1.0": "TLSv1", "TLSv1": "TLSv1"}
    m = names.get(minimum, minimum)
    return set(_TLS_ORDER[_TLS_ORDER.index(m):]) if m in _TLS_ORDER else set(_TLS_ORDER)


# --- PostgreSQL --------------------------------------------------------------------------------------------

_PG_LINE = re.compile(r"^\s*([A-Za-z_.]+)\s*(?:=\s*)?('(?:[^']|'')*'|[^\s#']+)\s*(#.*)?$")


def postgresql_conf(text: str) -> dict[str, str]:
    """postgresql.conf: `name = value`, values quoted with single quotes, `#` starts a comment."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = _PG_LINE.match(raw)
        if not m:
            raise ConfigError(f"not a `name = value` line: {raw.strip()!r}")
        value = m.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("''", "'")
        out[m.group(1).lower()] = value
    return out


def pg_hba(text: str) -> list[list[str]]:
    return [line.split() for line in (r.split("#", 1)[0].strip() for r in text.splitlines()) if line]


# --- oauth2-proxy (TOML) -----------------------------------------------------------------------------------

def toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(exc)) from None


# --- rsyslog (RainerScript) --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RsyslogStatement:
    type: str  # global, module, input, action, template
    params: dict[str, str]


_STATEMENT = re.compile(r"\b(global|module|input|action|template)\s*\(", re.S)
_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"', re.S)


@functools.lru_cache(maxsize=256)
def rsyslog(text: str) -> tuple[RsyslogStatement, ...]:
    """The object statements of a RainerScript file with their quoted parameters (names lower-cased)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    out = []
    for m in _STATEMENT.finditer(body):
        depth, i = 1, m.end()
        while i < len(body) and depth:
            if body[i] == '"':
                i = body.index('"', i + 1) if '"' in body[i + 1:] else len(body)
            elif body[i] == "(":
                depth += 1
            elif body[i] == ")":
                depth -= 1
            i += 1
        if depth:
            raise ConfigError(f"unbalanced parentheses in {m.group(1)}(...)")
        params = {k.lower(): v for k, v in _PARAM.findall(body[m.end(): i - 1])}
        out.append(RsyslogStatement(m.group(1), params))
    return tuple(out)


def gnutls_priority(value: str) -> dict[str, str]:
    """rsyslog's ossl `gnutlsPriorityString`: OpenSSL configuration commands, one `Name=Value` per line."""
    out = {}
    for line in value.replace("\\n", "\n").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out
