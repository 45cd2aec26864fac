"""Configuration languages: a value reaches a file only through that file's grammar, and every rendered file is
parsed back and compared with what the kit meant to write.

Two ways in, chosen per file (see docs/config-grammar.md):
- structured formats are written by their serialisers: TOML by tomlkit, YAML by PyYAML's safe dumper
  (`toml_document`, `yaml_document`), and parsed back by an independent reader (tomllib, the YAML safe loader);
- line-based languages (NGINX, Postfix main.cf/master.cf/maps, rsyslog, PostgreSQL, pg_hba, POSIX sh, XML) keep a
  jinja2 template whose every `{{ value }}` must go through the filter of its language (`nginx`, `comment`,
  `postfix`, `rainer`, `pg`, `hba`, `sh`, `xml`): an unfiltered string stops the render (`finalize`).

The safety net behind both (`render_checked`): the file is rendered once with the real values and once with
each string replaced by a neutral token, both are parsed with a real parser of the language (crossplane,
postconf/postmap where Postfix is installed, `sh -n` plus the shell's tokens, ...), and the two parses must be
the same tree, each token standing where its value stands. A directive, key, line or command that the kit did
not put there — whatever a loosened model let through — raises GrammarError naming the value.
"""
from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import crossplane
import jinja2
import tomlkit
import yaml


class GrammarError(ValueError):
    """A value cannot be written in a file's language, or the file does not parse back as intended.
    `values` are the offending inputs, so the caller can name the parameter they came from."""

    def __init__(self, file: str, message: str, values: Sequence[str] = ()):
        self.file = file
        self.detail = message
        self.values = tuple(v for v in values if v)
        super().__init__(f"{file}: {message}")


class Quoted(str):
    """A value already written in its target language."""


# --- quoting, one function per language -----------------------------------------------------------------------

_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def _one_line(value: Any, what: str) -> str:
    text = str(value)
    if _LINE_BREAKS.search(text):
        raise GrammarError("(template)", f"{what}: a control character or line break cannot be written here", [text])
    return text


_NGINX_BARE = re.compile(r"[A-Za-z0-9_./:=,@*~^+%\[\]-]+")


def nginx_quote(value: Any) -> Quoted:
    """An NGINX argument: bare when it is one plain word, else in double quotes. Backslashes and `$` are refused
    (NGINX expands variables and escape sequences inside arguments; no stack value needs either)."""
    text = _one_line(value, "nginx.conf argument")
    if "$" in text or "\\" in text:
        raise GrammarError("(template)", "nginx.conf argument: '$' and '\\' cannot be written here", [text])
    if _NGINX_BARE.fullmatch(text):
        return Quoted(text)
    return Quoted('"' + text.replace('"', '\\"') + '"')


def comment(value: Any) -> Quoted:
    """Text inside a `#` comment (NGINX, Postfix, shell, rsyslog, PostgreSQL): one line, nothing else."""
    return Quoted(_one_line(value, "comment"))


_POSTFIX_VALUE = re.compile(r"[^\s$]([^$]*[^\s$])?")


def postfix_value(value: Any) -> Quoted:
    """The right-hand side of a main.cf `name = value` or a map entry: one line, no leading or trailing blank,
    no `$` (Postfix would expand it as a parameter). main.cf has no quoting, so what cannot be written is refused."""
    text = _one_line(value, "Postfix value")
    if not _POSTFIX_VALUE.fullmatch(text):
        raise GrammarError("(template)", "Postfix value: '$', an empty value or blanks at either end cannot be written", [text])
    return Quoted(text)


def postfix_word(value: Any) -> Quoted:
    """One field of a Postfix lookup table or master.cf line: no blank inside."""
    text = postfix_value(value)
    if re.search(r"\s", text):
        raise GrammarError("(template)", "Postfix table field: blanks cannot be written in one field", [text])
    return Quoted(text)


def rainer_string(value: Any) -> Quoted:
    """A RainerScript (rsyslog) string constant in double quotes."""
    text = _one_line(value, "rsyslog string")
    return Quoted('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')


def rainer_lines(*lines: str) -> Quoted:
    """A RainerScript string made of several lines (OpenSSL configuration commands): `\\n` between them."""
    return Quoted('"' + "\\n".join(rainer_string(line)[1:-1] for line in lines) + '"')


def pg_string(value: Any) -> Quoted:
    """A postgresql.conf string value in single quotes, quotes doubled."""
    text = _one_line(value, "postgresql.conf value")
    return Quoted("'" + text.replace("'", "''") + "'")


_HBA_BARE = re.compile(r"[A-Za-z0-9_./:-]+")


def hba_field(value: Any) -> Quoted:
    """One pg_hba.conf field: bare when plain, else in double quotes (which pg_hba cannot escape: refused)."""
    text = _one_line(value, "pg_hba.conf field")
    if _HBA_BARE.fullmatch(text) and text not in ("all", "sameuser", "samerole", "samegroup", "replication"):
        return Quoted(text)
    if '"' in text:
        raise GrammarError("(template)", "pg_hba.conf field: a double quote cannot be written", [text])
    return Quoted(f'"{text}"')


def sh_quote(value: Any) -> Quoted:
    """A POSIX shell word (single quotes): data, never code."""
    return Quoted(shlex.quote(_one_line(value, "shell word")))


def line(value: Any) -> Quoted:
    """One line of a line-per-value data file: no line break, no blank at either end."""
    text = _one_line(value, "data line")
    if text != text.strip() or not text:
        raise GrammarError("(template)", "data line: blanks at either end or an empty value cannot be written", [text])
    return Quoted(text)


def xml_text(value: Any) -> Quoted:
    text = _one_line(value, "XML text")
    return Quoted(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


FILTERS: dict[str, Callable[[Any], Quoted]] = {
    "nginx": nginx_quote, "comment": comment, "postfix": postfix_value, "postfix_word": postfix_word,
    "rainer": rainer_string, "pg": pg_string, "hba": hba_field, "sh": sh_quote, "xml": xml_text, "line": line,
}


def _finalize(value: Any) -> Any:
    if isinstance(value, Quoted) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise GrammarError("(template)", f"a value reached the file without its language's quoting: {str(value)[:80]!r}",
                       [str(value)])


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("socle.components", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    finalize=_finalize,
)
_env.filters.update(FILTERS)


# --- parsers: the canonical tree of each language ------------------------------------------------------------

def _nginx_tree(text: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="socle-grammar-") as tmp:
        path = Path(tmp) / "nginx.conf"
        path.write_text(text, encoding="utf-8")
        payload = crossplane.parse(str(path), single=True, comments=True, check_ctx=False, check_args=False)
    if payload["errors"]:
        err = payload["errors"][0]
        raise GrammarError("nginx.conf", f"does not parse (line {err.get('line')}): {err.get('error')}")

    def tree(items: list[dict[str, Any]]) -> list[Any]:
        return [(i["directive"], tuple(i.get("args", [])), i.get("comment"), tree(i.get("block") or [])) for i in items]

    return tree(payload["config"][0]["parsed"])


def _logical_lines(text: str) -> list[str]:
    """Postfix's reading of main.cf/master.cf: `#` lines and blank lines skipped, a line starting with white
    space continues the previous one."""
    lines: list[str] = []
    for raw in text.split("\n"):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace():
            if not lines:
                raise GrammarError("main.cf", f"continuation line without a setting: {raw.strip()!r}")
            lines[-1] += " " + raw.strip()
        else:
            lines.append(raw.strip())
    return lines


def _postfix_main_tree(text: str) -> Any:
    out = []
    for line in _logical_lines(text):
        if "=" not in line:
            raise GrammarError("main.cf", f"not a `name = value` line: {line!r}")
        name, value = line.split("=", 1)
        out.append((name.strip(), value.strip()))
    real = _postconf(text, "main.cf", ["-n"])
    return (out, real)


def _postfix_master_tree(text: str) -> Any:
    return ([tuple(line.split()) for line in _logical_lines(text)], _postconf(text, "master.cf", ["-M"]))


def _postfix_map_tree(text: str) -> Any:
    rows = []
    for raw in text.split("\n"):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace():
            raise GrammarError("postfix map", f"continuation line in a lookup table: {raw!r}")
        key, _, value = raw.strip().partition(" ")
        rows.append((key, value.strip()))
    postmap = _postfix_program("postmap")
    if postmap:
        # Postfix's own reading (keys folded to lower case, as texthash does) must agree with the line reading.
        with tempfile.TemporaryDirectory(prefix="socle-grammar-") as tmp:
            path = Path(tmp) / "map"
            path.write_text(text, encoding="utf-8")
            _settled(path)
            res = subprocess.run([postmap, "-s", f"texthash:{path}"], capture_output=True, text=True, timeout=30)
        if res.returncode != 0 or res.stderr.strip():
            raise GrammarError("postfix map", f"postmap refuses it: {res.stderr.strip().replace(tmp, 'DIR')[:300]}")
        real = sorted(tuple(line.split("\t", 1)) for line in res.stdout.splitlines())
        if real != sorted((k.lower(), v) for k, v in rows):
            raise GrammarError("postfix map", f"postmap reads other entries: {_first_difference(sorted(rows), real)}")
    return rows


def _settled(*paths: Path) -> None:
    """Postfix waits (about 2 s) before reading a file modified within the last second, in case it is still being
    written: date the temporary copies in the past."""
    for path in paths:
        os.utime(path, (946684800, 946684800))


def _postfix_program(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}",) if Path(p).is_file()), None)


def _postconf(text: str, file: str, flags: list[str]) -> Any:
    """The real Postfix parser, where Postfix is installed: `postconf -c DIR -n` (main.cf) or `-M` (master.cf);
    its warnings (an unknown parameter is 'unused') are part of the result."""
    postconf = _postfix_program("postconf")
    if postconf is None:
        return None
    with tempfile.TemporaryDirectory(prefix="socle-grammar-") as tmp:
        Path(tmp, "main.cf").write_text(text if file == "main.cf" else "", encoding="utf-8")
        Path(tmp, "master.cf").write_text(text if file == "master.cf" else "", encoding="utf-8")
        _settled(Path(tmp, "main.cf"), Path(tmp, "master.cf"))
        res = subprocess.run([postconf, "-c", tmp, *flags], capture_output=True, text=True, timeout=30)
        # -M aligns its columns on the longest name: compare fields, not spacing.
        lines = [tuple(line.split()) if "-M" in flags else line
                 for line in res.stdout.splitlines() if not line.startswith("config_directory =")]
        warnings = sorted(line.split(": warning: ", 1)[-1].replace(tmp, "DIR") for line in res.stderr.splitlines())
    return (lines, warnings)


_RAINER_TOKEN = re.compile(r'\s+|#[^\n]*|"((?:[^"\\\n]|\\.)*)"|([A-Za-z_][A-Za-z0-9_.]*)|(-?[0-9]+)|([(){}=,\[\]&])', re.S)


def _rainer_tree(text: str) -> Any:
    tokens, pos = [], 0
    while pos < len(text):
        m = _RAINER_TOKEN.match(text, pos)
        if not m:
            raise GrammarError("rsyslog.conf", f"unexpected text at offset {pos}: {text[pos:pos + 40]!r}")
        pos = m.end()
        if m.group(1) is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", m.group(1))))
        elif m.group(2) or m.group(3) or m.group(4):
            tokens.append(("tok", m.group(0)))
    return tokens


def _pg_tree(text: str) -> Any:
    out = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z_.]+)\s*=?\s*('(?:[^']|'')*'|[^\s#']+)\s*(#.*)?", line)
        if not m:
            raise GrammarError("postgresql.conf", f"not a `name = value` line: {line!r}")
        value = m.group(2)
        out.append((m.group(1), value[1:-1].replace("''", "'") if value.startswith("'") else value))
    return out


def _hba_tree(text: str) -> Any:
    rows = []
    for raw in text.split("\n"):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            rows.append(tuple(re.findall(r'"[^"]*"|\S+', line)))
    return rows


_SH = shutil.which("sh") or "/bin/sh"


def _sh_tree(text: str) -> Any:
    res = subprocess.run([_SH, "-n"], input=text, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise GrammarError("shell script", f"`sh -n` refuses it: {res.stderr.strip()[:300]}")
    lexer = shlex.shlex(io.StringIO(text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError as exc:
        raise GrammarError("shell script", f"does not tokenise: {exc}") from None


def _xml_tree(text: str) -> Any:
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    try:
        root = ET.fromstring(text, parser=parser)
    except ET.ParseError as exc:
        raise GrammarError("XML", f"does not parse: {exc}") from None

    def tree(e: ET.Element) -> Any:
        return (str(e.tag), sorted(e.attrib.items()), (e.text or "").strip(), (e.tail or "").strip(), [tree(c) for c in e])

    return tree(root)


def _lines_tree(text: str) -> Any:
    return text.split("\n")


PARSERS: dict[str, Callable[[str], Any]] = {
    "lines": _lines_tree,
    "nginx": _nginx_tree, "postfix-main": _postfix_main_tree, "postfix-master": _postfix_master_tree,
    "postfix-map": _postfix_map_tree, "rsyslog": _rainer_tree, "postgresql": _pg_tree, "pg_hba": _hba_tree,
    "sh": _sh_tree, "xml": _xml_tree,
}


# --- the safety net ------------------------------------------------------------------------------------------

_TOKEN = "zqslot{:05d}q"
_TOKEN_RE = re.compile(r"zqslot(\d{5})q")


@dataclass
class _Slots:
    values: list[str]

    def neutral(self, value: Any) -> Any:
        """The same context with every non-empty string replaced by a token that every language writes bare."""
        if isinstance(value, Quoted):  # written by the kit itself (rainer_lines), nothing from a stack
            return value
        if isinstance(value, str) and value:
            self.values.append(value)
            return _TOKEN.format(len(self.values) - 1)
        if isinstance(value, Mapping):
            return {k: self.neutral(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.neutral(v) for v in value]
        return value

    def fill(self, tree: Any) -> Any:
        if isinstance(tree, str):
            return _TOKEN_RE.sub(lambda m: self.values[int(m.group(1))], tree)
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.fill(t) for t in tree)
        return tree


def _first_difference(expected: Any, got: Any, path: str = "") -> str:
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        for i, (a, b) in enumerate(zip(expected, got)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
        if len(expected) != len(got):
            extra = got[len(expected):] if len(got) > len(expected) else expected[len(got):]
            word = "unexpected" if len(got) > len(expected) else "missing"
            return f"{word} {str(extra[0])[:160]}"
    return f"expected {str(expected)[:160]}, found {str(got)[:160]}"


def _suspects(values: Sequence[str], text: str) -> list[str]:
    """The values that appear, whole or by one of their lines, in a piece of the parsed file; those holding a
    character of some configuration language's syntax first (they are what can break out of a slot)."""
    appearing = []
    for v in values:
        parts = [p for p in re.split(r"[\n\r\x85\u2028\u2029]", v) if len(p.strip()) >= 2] or [v]
        if v in text or any(p.strip() in text for p in parts):
            appearing.append(v)
    risky = [v for v in (appearing or values) if _LINE_BREAKS.search(v) or any(c in v for c in "\"';{}$`\\")]
    return risky or appearing


def check_parse_back(file: str, language: str, real_text: str, neutral_text: str, slots: _Slots) -> None:
    parse = PARSERS[language]
    try:
        got = parse(real_text)
    except GrammarError as exc:
        raise GrammarError(file, exc.detail, _suspects(slots.values, exc.detail) or slots.values) from None
    expected = slots.fill(parse(neutral_text))
    if got != expected:
        where = _first_difference(expected, got)
        raise GrammarError(file, f"parsed back, the file is not what the kit writes: {where}", _suspects(slots.values, where))


_CHECKED: dict[str, str] = {}  # files already rendered and checked, by their exact inputs (validate, then build)
_CHECKED_MAX = 1024


def _cache_key(value: Any) -> Any:
    if isinstance(value, Quoted):
        return {"quoted": str(value)}  # never confused with the same text from a stack
    if isinstance(value, Mapping):
        return {"map": [[str(k), _cache_key(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_cache_key(v) for v in value]
    return value


def render_checked(file: str, template: str, language: str, **context: Any) -> str:
    """Render a template of `language` with every value quoted by its filter, then parse it back (the net).
    The same inputs give the same file: `socle validate` and the components' build share one check."""
    key = json.dumps([file, template, language, _cache_key(context)], default=repr)
    if key in _CHECKED:
        return _CHECKED[key]
    text = _render_checked(file, template, language, context)
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()
    _CHECKED[key] = text
    return text


def _render_checked(file: str, template: str, language: str, context: Mapping[str, Any]) -> str:
    def render(ctx: Mapping[str, Any]) -> str:
        try:
            return _env.get_template(template).render(**ctx)
        except GrammarError as exc:
            raise GrammarError(file, exc.detail, exc.values) from None

    text = render(context)
    slots = _Slots([])
    neutral = render(slots.neutral(context))
    check_parse_back(file, language, text, neutral, slots)
    return text


# --- serialisers for the structured formats -------------------------------------------------------------------

def toml_document(file: str, header: Sequence[str], items: Sequence[tuple[str, Any] | str]) -> str:
    """A TOML file written by tomlkit: `items` are (key, value) pairs and comment lines; parsed back by tomllib."""
    doc = tomlkit.document()
    for line in header:
        doc.add(tomlkit.comment(comment(line)))
    data: dict[str, Any] = {}
    for item in items:
        if isinstance(item, str):
            doc.add(tomlkit.comment(comment(item)))
        else:
            key, value = item
            doc.add(key, value)
            data[key] = value
    text = tomlkit.dumps(doc)
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GrammarError(file, f"does not parse back as TOML: {exc}") from None
    if parsed != data:
        where = _first_difference(sorted(data.items()), sorted(parsed.items()))
        raise GrammarError(file, f"parsed back, the file is not what the kit writes: {where}",
                           [v for v in data.values() if isinstance(v, str)])
    return text


def _leaves(tree: Any) -> list[str]:
    if isinstance(tree, Mapping):
        return [s for k, v in tree.items() for s in [str(k), *_leaves(v)]]
    if isinstance(tree, (list, tuple)):
        return [s for v in tree for s in _leaves(v)]
    return [tree] if isinstance(tree, str) else []


def yaml_document(file: str, header: Sequence[str], data: Mapping[str, Any], *, placeholders: Sequence[str] = ()) -> str:
    """A YAML file written by PyYAML's safe dumper (keys in the given order), parsed back by the safe loader.

    Spring Boot reads a second language inside YAML strings: `${name}` is replaced by a property or an environment
    variable (a password, for one). Only the strings in `placeholders`, written by the kit, may hold `${`."""
    smuggled = [s for s in _leaves(data) if "${" in s and s not in placeholders]
    if smuggled:
        raise GrammarError(file, "a Spring `${...}` placeholder would be expanded in a value the kit did not write "
                           f"({smuggled[0][:120]!r})", smuggled)
    head = "".join(f"# {comment(line)}\n" for line in header)
    text = head + yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
    if yaml.safe_load(text) != data:
        raise GrammarError(file, "parsed back, the file is not what the kit writes")
    return text
