"""No stack value can weaken what the kit renders: each configuration file is written for its own grammar, and the
safety net behind the models (components.grammar) aborts a render whose files do not parse back as intended.

Shapes are read back with the audit's parsers (socle.audit.configs), not with the net's own, so a test compares the
render with an independent reading of the language."""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from socle.blueprints import registry
from socle.components import grammar
from socle.components.grammar import GrammarError, Quoted
from socle.audit import configs
from socle.stackfile import value_paths, validate_config
from tests.conftest import ROOT, require_tool

BP = registry()["etablissement"]
DEMO = yaml.safe_load((ROOT / "stacks" / "Pulumi.demo.yaml").read_text())["config"]
PROD = yaml.safe_load((ROOT / "stacks" / "Pulumi.chu-exemple-prod.yaml").read_text())["config"]


def params_of(config: dict):
    bp, params, problems = validate_config(config, "test.yaml")
    assert not problems, problems
    return params


def loosened(params, path: str, value):
    """The parameters with `value` at `path`, past every validator: what a model loosened by mistake would pass."""
    head, _, rest = path.partition(".")
    if "[" in head:
        name, index = head[:-1].split("[")
        items = list(getattr(params, name))
        items[int(index)] = loosened(items[int(index)], rest, value) if rest else value
        return params.model_copy(update={name: items})
    if rest:
        return params.model_copy(update={head: loosened(getattr(params, head), rest, value)})
    return params.model_copy(update={head: value})


# --- the shape of each file, read by an independent parser ------------------------------------------------------

def _nginx_shape(text: str):
    def walk(d):
        return [(c.name, walk(c)) for c in d.children]
    return walk(configs.nginx(text))


def _keys(tree, prefix=""):
    """Every key path of a document; list items by index (their number is part of the shape)."""
    if isinstance(tree, dict):
        return sorted(k2 for k, v in tree.items() for k2 in [f"{prefix}.{k}"] + _keys(v, f"{prefix}.{k}"))
    if isinstance(tree, list):
        return sorted(k2 for i, v in enumerate(tree) for k2 in [f"{prefix}[{i}]"] + _keys(v, f"{prefix}[{i}]"))
    return []


def shape(name: str, text: str):
    base = name.rsplit("/", 1)[-1]
    if base == "nginx.conf":
        return _nginx_shape(text)
    if base == "oauth2-proxy.cfg":
        return _keys(tomllib.loads(text))
    if base == "application.yaml":
        return _keys(yaml.safe_load(text))
    if base == "main.cf":
        return sorted(configs.postfix_main(text))
    if base == "master.cf":
        return [(s.service, s.type, s.command, sorted(s.overrides)) for s in configs.postfix_master(text)]
    if base == "rsyslog.conf":
        return [(s.type, sorted(s.params)) for s in configs.rsyslog(text)]
    if base == "postgresql.conf":
        return sorted(configs.postgresql_conf(text))
    if base == "pg_hba.conf":
        return [len(row) for row in configs.pg_hba(text)]
    if name.startswith("relay/maps/"):
        return [len(line.split()) for line in text.splitlines()]
    if base == "realm.json":  # Keycloak's realm: its structure (keys, list lengths), whatever the values
        return _keys(json.loads(text))
    if base == "refresh.json":
        return sorted(json.loads(text))
    if base == "crl-urls":
        return len(text.splitlines())
    return text  # scripts and logback.xml carry no stack value: byte for byte the kit's


def shapes(files: dict[str, str]) -> dict[str, object]:
    return {name: shape(name, text) for name, text in files.items()}


DUMPS = {"demo": params_of(DEMO).model_dump(), "prod": params_of(PROD).model_dump()}  # every default filled in
BASELINE = {"demo": shapes(BP.config_files(params_of(DEMO))), "prod": shapes(BP.config_files(params_of(PROD)))}


# --- each language's quoting -----------------------------------------------------------------------------------

def test_a_value_without_its_language_quoting_never_reaches_a_file():
    with pytest.raises(GrammarError, match="without its language's quoting"):
        grammar._env.from_string("server_name {{ host }};").render(host="a.example")
    assert grammar._env.from_string("port {{ n }};").render(n=8443) == "port 8443;"  # integers are safe by type


@pytest.mark.parametrize("value", ["fhir", "a b", 'say "hi"', "x;y", "{z}", "#no comment", "ünïcödé", "l'hôpital"])
def test_nginx_arguments_parse_back_to_the_value(value, tmp_path):
    text = f"http {{ set $v {grammar.nginx_quote(value)}; }}\n"
    root = configs.nginx(text)
    assert root.first("http").first("set").args == ["$v", value]


@pytest.mark.parametrize("value", ["a\nb", "$request_body", "a\\n", "x\u2028y", "x\ry"])
def test_nginx_refuses_what_it_cannot_hold(value):
    with pytest.raises(GrammarError):
        grammar.nginx_quote(value)


@pytest.mark.parametrize("value", ["a\nrelayhost = evil", "$myhostname", " lead", "trail ", "", "x\x85y"])
def test_postfix_refuses_what_main_cf_cannot_hold(value):
    with pytest.raises(GrammarError):
        grammar.postfix_value(value)


def test_postfix_map_fields_are_single_words():
    with pytest.raises(GrammarError):
        grammar.postfix_word("a.example discard:")


@pytest.mark.parametrize("value", ['pa"th', "back\\slash", "plain"])
def test_rsyslog_strings_are_escaped(value):
    tokens = grammar._rainer_tree(f"input(file={grammar.rainer_string(value)})")
    assert ("str", value) in tokens


def test_postgresql_quotes_are_doubled_and_pg_hba_refuses_a_quote():
    assert configs.postgresql_conf(f"log_directory = {grammar.pg_string(chr(39) + 'x')}") == {"log_directory": "'x"}
    with pytest.raises(GrammarError):
        grammar.hba_field('a"b')
    assert grammar.hba_field("all") == '"all"'  # a keyword written as a name is quoted, so it stays a name


@pytest.mark.parametrize("value", ["$(touch /tmp/socle-pwned)", "`id`", "a'b", "x; rm -rf /", "${HOME}"])
def test_shell_words_are_data_for_a_real_shell(value, tmp_path):
    sh = require_tool("sh")
    res = subprocess.run([sh, "-c", f"printf %s {grammar.sh_quote(value)}"], capture_output=True, text=True, cwd=tmp_path)
    assert res.stdout == value and not Path("/tmp/socle-pwned").exists()


# --- the safety net catches what a quoting mistake would let through ------------------------------------------

def _bypass(monkeypatch, *names):
    for name in names:
        monkeypatch.setitem(grammar._env.filters, name, lambda v: Quoted(str(v)))


def test_net_catches_a_directive_injected_through_a_comment(monkeypatch):
    _bypass(monkeypatch, "comment")
    params = loosened(params_of(DEMO), "gateway.apis[0].owner_group", "dsi\n    include /etc/passwd;")
    with pytest.raises(GrammarError) as exc:
        BP.config_files(params)
    assert exc.value.file == "nginx.conf" and "include" in exc.value.detail
    assert value_paths(params.model_dump(), exc.value.values) == ["gateway.apis[0].owner_group"]


def test_net_catches_a_postfix_parameter_injected_in_a_value(monkeypatch):
    _bypass(monkeypatch, "postfix", "postfix_word")
    params = loosened(params_of(DEMO), "relay.hostname", "relay.chdemo.test\nsmtpd_tls_security_level = may")
    with pytest.raises(GrammarError) as exc:
        BP.config_files(params)
    assert "relay.hostname" in value_paths(params.model_dump(), exc.value.values)


def test_net_catches_a_transport_entry_injected_in_a_map(monkeypatch):
    _bypass(monkeypatch, "postfix_word")
    params = loosened(params_of(DEMO), "relay.next_hop", "[mx.example.test]:25\nchdemo.mssante.fr discard:")
    with pytest.raises(GrammarError) as exc:
        BP.config_files(params)
    assert exc.value.file == "main.cf"  # next_hop is the relayhost
    assert value_paths(params.model_dump(), exc.value.values) == ["relay.next_hop"]


def test_net_catches_a_command_injected_in_a_script(monkeypatch):
    _bypass(monkeypatch, "sh")
    from socle.components.auditlog import seal_script

    with pytest.raises(GrammarError) as exc:
        seal_script("0.1.0", 365, data_dir="/var/lib/audit; rm -rf /")
    assert exc.value.file == "seal.sh" and exc.value.values == ("/var/lib/audit; rm -rf /",)


def test_net_catches_an_rsyslog_action_injected_in_a_string(monkeypatch):
    from socle.components.common import AuditTarget, forwarder_config

    monkeypatch.setitem(grammar._env.filters, "rainer", lambda v: Quoted(f'"{v}"'))
    target = AuditTarget(host='a.test" action(type="omfile" file="/tmp/leak', port=6514, client_secret="s")
    with pytest.raises(GrammarError) as exc:
        forwarder_config("0.1.0", "gateway", target)
    assert target.host in exc.value.values


@pytest.mark.parametrize("host", ["fe80::1%x;sslmode=disable", 'fe80::1%"x', "fe80::1%a:5432,${db_password}.evil.example:5432,x"])
def test_database_host_refuses_an_ipv6_zone(host):
    config = copy.deepcopy(PROD)
    config["socle:params"]["fhir"]["database"]["host"] = host
    _, _, problems = validate_config(config, "x.yaml")
    assert [p.path for p in problems] == ["config.socle:params.fhir.database.host"]


@pytest.mark.parametrize("path,value", [
    ("fhir.database.host", "db.example.fr,${db_password}.evil.example"),
    ("fhir.terminology_server", "https://smt.example.fr/${esante_api_key}"),
])
def test_a_loosened_model_cannot_smuggle_a_spring_placeholder(path, value):
    """HAPI is a Spring Boot application: `${DB_PASSWORD}` in a value would be replaced by the password."""
    params = loosened(params_of(PROD), path, value)
    with pytest.raises(GrammarError) as exc:
        BP.config_files(params)
    assert exc.value.file == "application.yaml"
    assert value_paths(params.model_dump(), exc.value.values) == [path]


@pytest.mark.parametrize("path,value", [
    ("auditors.group", "kubeadm:cluster-admins"), ("gateway.apis[0].max_body", "00"), ("fhir.memory", "0Gi"),
    ("relay.next_hop", "[999.999.999.999]:25"), ("relay.next_hop", "[mx.example.fr]:0"), ("relay.next_hop", "[.......]"),
    ("hosting.region_label", "a" * 254 + "/region"), ("fhir.database.network", "fe80::%a/64"),
])
def test_values_that_mean_something_else_to_the_program_are_refused(path, value):
    config = copy.deepcopy(PROD if path.startswith("fhir.database") else DEMO)
    _set(config["socle:params"], path, value)
    _, _, problems = validate_config(config, "x.yaml")
    assert "config.socle:params." + path in {p.path for p in problems}


def test_production_refuses_sessions_over_a_day_and_external_apis_named_like_built_in_flows():
    config = copy.deepcopy(PROD)
    config["socle:params"]["gateway"]["session_lifetime"] = "9999h"
    _set(config["socle:params"], "gateway.apis[1]", {"name": "oauth2-proxy", "host": "app.chu-exemple.fr", "owner_group": "dsi",
                                                     "sensitivity": "sensitive", "backend": None, "service": "app",
                                                     "namespace": "apps", "port": 8080})
    _, _, problems = validate_config(config, "x.yaml")
    paths = {p.path for p in problems}
    assert {"config.socle:params.gateway.session_lifetime", "config.socle:params.gateway.apis[1].name"} <= paths, paths


def test_a_loosened_model_still_cannot_rewrite_the_database_url():
    params = loosened(params_of(PROD), "fhir.database.host", "db.example.fr:5432/hapi?sslmode=disable&x=")
    with pytest.raises(GrammarError, match="database (URL|host)") as exc:
        BP.config_files(params)
    assert value_paths(params.model_dump(), exc.value.values) == ["fhir.database.host"]


def _psc_client_id(text: str) -> str:
    return next(i["config"]["clientId"] for i in json.loads(text)["identityProviders"] if i["alias"] == "psc")


@pytest.mark.parametrize("path,value,file,read", [
    ("psc.client_id", 'x","clientSecret":"leaked","syncMode":"FORCE","z":"', "authz/realm.json", _psc_client_id),
    ("organisation.name", "CH\ninclude /etc/passwd;", "gateway/nginx.conf", None),
])
def test_a_loosened_model_leaves_structured_values_confined_or_stops(path, value, file, read):
    params = loosened(params_of(DEMO), path, value)
    try:
        files = BP.config_files(params)
    except GrammarError as exc:
        assert value_paths(params.model_dump(), exc.values) == [path]
        return
    assert shapes(files) == BASELINE["demo"]
    if read:
        assert read(files[file]) == value


def test_the_cli_names_the_parameter_when_the_net_stops_a_render(monkeypatch, tmp_path, capsys):
    """A model loosened by mistake: the render stops with exit 2 naming the key, and writes nothing."""
    from typer.testing import CliRunner

    from socle.cli import app

    real = BP.model.model_validate_json

    def loose(data, *a, **kw):
        return loosened(real(data, *a, **kw), "relay.next_hop", "[mx.example.test]:25\nchdemo.test discard:")

    monkeypatch.setattr(BP.model, "model_validate_json", loose)
    _bypass(monkeypatch, "postfix_word")
    monkeypatch.chdir(ROOT)
    res = CliRunner().invoke(app, ["render", "demo", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "config.socle:params.relay.next_hop: cannot be written in main.cf" in res.output
    assert not (tmp_path / "out").exists() and "Traceback" not in res.output


# --- every free-text parameter against hostile strings (property-based) -----------------------------------------

HOSTILE = st.one_of(
    st.sampled_from(["\n", "\r\n", '"', "'", ";", "{", "}", "#", "$", "(", ")", "`", "\\", "\u2028", "\u2029", "\x85",
                     "\t", " ", "=", ",", "[", "]", "&", "|", "<", ">", "%", "\x00", "${x}", "$(id)", "*/"]),
    st.text(min_size=1, max_size=3),
).map(str)


@st.composite
def hostile_value(draw, base: str):
    parts = draw(st.lists(HOSTILE, min_size=1, max_size=4))
    where = draw(st.sampled_from(["suffix", "prefix", "middle", "replace", "long"]))
    if where == "long":
        return base + "a" * draw(st.sampled_from([300, 5000, 2_000_000]))
    tail = "".join(parts)
    return {"suffix": base + tail, "prefix": tail + base, "middle": base[:2] + tail + base[2:], "replace": tail}[where]


def _string_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Key paths of every string field of the model (list items at [0]), followed into nested models."""
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        text = repr(ann)
        sub = next((a for a in getattr(ann, "__args__", ()) + (ann,) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None:
            out += _string_fields(sub, f"{path}[0]." if "list" in text else f"{path}.")
        elif "Literal" in text or name == "parameters":
            continue
        elif "str" in text:
            out.append(f"{path}[0]" if "list" in text else path)
    return out


FIELDS = _string_fields(BP.model)
# Fields the demo stack does not set, and the value that makes each reach its file.
ENABLE = {"relay.next_hop": "[mx.example.fr]:25", "fhir.database.host": "db.example.fr", "pki.crl_urls[0]": "http://crl.example.fr/a.crl",
          "gateway.apis[0].service": "app", "gateway.apis[0].namespace": "apps"}


def _set(raw: dict, path: str, value) -> None:
    node, parts = raw, path.replace("[", ".[").split(".")
    for i, part in enumerate(parts):
        key = int(part[1:-1]) if part.startswith("[") else part
        if isinstance(node, list):
            while len(node) <= key:
                node.append(None)
        if i == len(parts) - 1:
            node[key] = value
            return
        if (node[key] if isinstance(node, list) else node.get(key)) is None:
            node[key] = [] if parts[i + 1].startswith("[") else {}
        node = node[key]


def _get(raw: dict, path: str):
    node = raw
    for part in path.replace("[", ".[").split("."):
        if part.startswith("["):
            node = node[int(part[1:-1])] if isinstance(node, list) and len(node) > int(part[1:-1]) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def test_every_string_parameter_is_exercised():
    assert len(FIELDS) >= 40 and "psc.client_id" in FIELDS and "gateway.apis[0].owner_group" in FIELDS


@pytest.mark.parametrize("path", FIELDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_strings_are_refused_by_key_or_confined_to_their_slot(path, data):
    for name, base in (("demo", DEMO), ("prod", PROD)):
        config = copy.deepcopy(base)
        raw = config["socle:params"]
        current = _get(DUMPS[name], path) or ENABLE.get(path) or "abc.example.fr"
        if path.startswith("fhir.database.provider_backup.") and _get(raw, "fhir.database.provider_backup") is None:
            _set(raw, "fhir.database.provider_backup", {"region": {"name": "fr-srr", "country": "FR"}, "retention_days": 35,
                                                        "monthly_retention_days": 180, "point_in_time_recovery": True})
        if path == "gateway.apis[0].service" or path == "gateway.apis[0].namespace":
            for k, v in (("backend", None), ("service", "app"), ("namespace", "apps"), ("port", 8080)):
                _set(raw, f"gateway.apis[0].{k}", v)
        value = data.draw(hostile_value(str(current)), label=f"{name}:{path}")
        _set(raw, path, value)
        bp, params, problems = validate_config(config, "hostile.yaml")
        if problems:
            keys = {p.path for p in problems}
            wanted = "config.socle:params." + path
            named = any(k == wanted or k.startswith(wanted.rsplit("[", 1)[0]) for k in keys)
            # A plain value may be refused elsewhere for what it means (a registry the images no longer match);
            # anything holding a character of some configuration syntax is refused at its own key.
            assert named or re.fullmatch(r"[A-Za-z0-9._:/-]*", value), (value, keys)
            assert all(len(str(p)) < 600 for p in problems)  # a 2 MB value is never echoed whole
            continue
        files = BP.config_files(params)
        assert shapes(files) == BASELINE[name] or _legitimately_reshaped(path, name, files), (path, value)


def _legitimately_reshaped(path: str, name: str, files: dict[str, str]) -> bool:
    """Setting a field the example leaves empty adds the kit's own lines (a CRL refresher, a transport map):
    compare with the example given the same field set to a plain value instead."""
    if path not in ENABLE:
        return False
    config = copy.deepcopy(DEMO if name == "demo" else PROD)
    _set(config["socle:params"], path, ENABLE[path])
    if path.startswith("gateway.apis[0].") :
        for k, v in (("backend", None), ("service", "app"), ("namespace", "apps"), ("port", 8080)):
            _set(config["socle:params"], f"gateway.apis[0].{k}", v)
    _, params, problems = validate_config(config, "plain.yaml")
    return not problems and shapes(BP.config_files(params)) == shapes(files)


def test_rendered_files_parse_with_the_real_programs_where_installed(tmp_path):
    """nginx -t on the rendered nginx.conf is covered by tests/test_verify.py; here Postfix's own parser."""
    postconf = shutil.which("postconf") or ("/usr/sbin/postconf" if Path("/usr/sbin/postconf").exists() else None)
    if postconf is None:
        require_tool("postconf")
    files = BP.config_files(params_of(PROD))
    (tmp_path / "main.cf").write_text(files["relay/main.cf"])
    (tmp_path / "master.cf").write_text(files["relay/master.cf"])
    res = subprocess.run([postconf, "-c", str(tmp_path), "-n"], capture_output=True, text=True)
    assert "unused parameter" not in res.stderr and "smtpd_tls_security_level = encrypt" in res.stdout


@pytest.mark.parametrize("suffix", ["\n", "a" * 100_000], ids=["trailing-newline", "100k-characters"])
def test_every_string_parameter_refuses_a_trailing_newline_and_a_huge_value(suffix):
    """Each string parameter, set to a value that is valid in an example stack, then with a trailing newline or
    100 000 more characters: refused at its own key (patterns match whole, every field is bounded)."""
    accepted = []
    for path in FIELDS:
        config = copy.deepcopy(PROD if path.startswith("fhir.database.") else DEMO)
        raw = config["socle:params"]
        if path.startswith("gateway.apis[0].") and path.rsplit(".", 1)[1] in ("service", "namespace"):
            for k, v in (("backend", None), ("service", "app"), ("namespace", "apps"), ("port", 8080)):
                _set(raw, f"gateway.apis[0].{k}", v)
        # The example's value, or the default; "abc" where the default is empty (an identifier left unset).
        valid = _get(DUMPS["prod" if path.startswith("fhir.database.") else "demo"], path) or ENABLE.get(path) or "abc"
        _set(raw, path, str(valid) + suffix)
        _, _, problems = validate_config(config, "x.yaml")
        if "config.socle:params." + path not in {p.path for p in problems}:
            accepted.append(path)
    assert accepted == []


def test_lists_too_long_for_a_configmap_are_refused_before_anything_is_rendered():
    """5 000 long domains and a long next hop: validate refuses, naming the file that fills the ConfigMap (the
    render and the Pulumi program would otherwise send an object the API server refuses)."""
    config = copy.deepcopy(DEMO)
    label = "d" * 60
    config["socle:params"]["relay"]["authorized_domains"] = [f"{label}.{label}.{label}.m{i:04d}.fr" for i in range(5000)]
    config["socle:params"]["relay"]["next_hop"] = f"[{label}.{label}.{label}.{label[:50]}.fr]:25"
    _, _, problems = validate_config(config, "x.yaml")
    assert any("relay configuration would not fit" in p.message and "relay/maps/" in p.message for p in problems), problems


def test_no_configmap_over_the_api_limit_is_ever_registered():
    """Behind the validation, the component helper itself refuses a ConfigMap the API server would refuse."""
    import pulumi

    from socle.components.common import hashed_config_map
    from socle.render import run_under_mocks

    class Parent(pulumi.ComponentResource):
        def __init__(self):
            super().__init__("socle:test:Parent", "p")
            hashed_config_map(self, "ns", "big", {}, {"a": "x" * (1024 * 1024)})

    with pytest.raises(GrammarError, match="at most 1048576"):
        run_under_mocks(Parent)
