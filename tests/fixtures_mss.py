"""Fixtures of MSS-05 reworked for issue 11: the ANS white list of the trust space, read by the kit's fail-closed
refresher (a Python program, SHA-256 pinned by the control) over TLS verified against the trust bundle Secret only,
indexed maps Postfix notices when they are replaced, exactly the listed domains, and in mode external-operator every
message through the operator's relay. Each claim is violated alone in the real render of an example stack.
Entries replace tests/audit_fixtures.py's for the same control ID (its `_merge_areas`)."""
from __future__ import annotations

import json
from typing import Callable

from tests.audit_fixtures import Fixture, Objects, _claim, _drop_container, container, edit_regex, find, pod_spec

POSTFIX_CM = ("ConfigMap", "postfix")
GREP_SCRIPT = """#!/bin/sh
# The kit's former refresher: any dotted word of the download became an authorized domain (fails open).
wget -q -O /tmp/list "$(cat /etc/socle/refresh/domain-list-url)"
grep -Eo '[a-z0-9.-]+\\.[a-z]+' /tmp/list | sed 's/$/ OK/' > /var/lib/socle/maps/recipient_access
"""


def _main_cf(pattern: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_regex(objs, "postfix", "main.cf", pattern, new)


def _refresh_conf(**changes) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        cm = find(objs, "ConfigMap", "mss-domain-refresh")
        conf = json.loads(cm["data"]["refresh.json"])
        assert set(changes) <= set(conf), changes
        conf.update(changes)
        cm["data"]["refresh.json"] = json.dumps(conf, indent=2, sort_keys=True) + "\n"
    return mutate


def _program(text: str) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        find(objs, "ConfigMap", "mss-domain-refresh")["data"]["refresh_domains.py"] = text
    return mutate


def _refresher_without_trust_bundle(objs: Objects) -> None:
    c = container(find(objs, "StatefulSet", "postfix"), "domain-refresh")
    before = len(c["volumeMounts"])
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "trust-bundle"]
    assert len(c["volumeMounts"]) == before - 1


def _refresher_trusts_another_secret(objs: Objects) -> None:
    spec = pod_spec(find(objs, "StatefulSet", "postfix"))
    spec["volumes"].append({"name": "public-cas", "secret": {"secretName": "public-web-cas"}})
    c = container(find(objs, "StatefulSet", "postfix"), "domain-refresh")
    for m in c["volumeMounts"]:
        if m["name"] == "trust-bundle":
            m["name"] = "public-cas"


def _maps_read_only_for_refresher(objs: Objects) -> None:
    c = container(find(objs, "StatefulSet", "postfix"), "domain-refresh")
    for m in c["volumeMounts"]:
        if m["name"] == "maps":
            m["readOnly"] = True


def _mode(mode: str) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        find(objs, "ConfigMap", "postfix")["metadata"]["annotations"]["socle.esante.fr/mssante-mode"] = mode
    return mutate


FAILING: dict[str, Fixture] = {
    "MSS-05": Fixture("demo", "any recipient domain accepted", _main_cf(r"^smtpd_recipient_restrictions = .*$", "smtpd_recipient_restrictions = permit"), POSTFIX_CM),
}

# The demo render is in mode operator (direct delivery); chu-exemple-prod in mode external-operator.
PASSING: dict[str, Fixture] = {}

CLAIMS: dict[str, list[tuple[str, Fixture]]] = {
    "MSS-05": [
        ("mail exchanged only with the domains of the white list",
         _claim("demo", "any recipient domain accepted", FAILING["MSS-05"].mutate, POSTFIX_CM, r"do not end with `reject`")),
        ("mail exchanged only with the domains of the white list",
         _claim("demo", "any network may relay", _main_cf(r"^mynetworks = .*$", "mynetworks = 0.0.0.0/0"), POSTFIX_CM, r"lets networks relay")),
        ("mail exchanged only with the domains of the white list (not their subdomains)",
         _claim("demo", "Postfix's default parent-domain matching", _main_cf(r"^parent_domain_matches_subdomains =\n", ""), POSTFIX_CM,
                r"parent_domain_matches_subdomains includes relay_domains, smtpd_access_maps: a listed domain also authorizes every subdomain")),
        ("mail exchanged only with the domains of the white list",
         _claim("demo", "a fixed domain beside the refreshed map", _main_cf(r"^relay_domains = (.*)$", r"relay_domains = \1, autre.example.test"), POSTFIX_CM,
                r"relay_domains names fixed domains \(autre\.example\.test\)")),
        ("the ANS white list",
         _claim("demo", "the public mailbox extraction instead of the white list", _refresh_conf(url="https://annuaire.sante.fr/web/site-pro/extractions-mss"),
                POSTFIX_CM, r"the domain list https://annuaire\.sante\.fr/web/site-pro/extractions-mss is not the ANS white list")),
        ("refreshed automatically",
         _claim("demo", "no refresher beside Postfix", _drop_container("StatefulSet", "postfix", "domain-refresh"), POSTFIX_CM,
                r"no container beside Postfix refreshes the domain list")),
        ("refreshed automatically",
         _claim("demo", "a texthash map Postfix reads once per process", _main_cf(r"^relay_domains = hash:", "relay_domains = texthash:"), POSTFIX_CM,
                r"texthash:/var/lib/socle/maps/relay_domains is read once per Postfix process")),
        ("refreshed automatically",
         _claim("demo", "the refresher writes another directory", _refresh_conf(maps_dir="/tmp/maps"), POSTFIX_CM,
                r"the authorized-domain map /var/lib/socle/maps/recipient_access is not one this refresher rewrites")),
        ("refreshed automatically",
         _claim("demo", "the refresher cannot write the maps", _maps_read_only_for_refresher, POSTFIX_CM,
                r"the authorized-domain map /var/lib/socle/maps/relay_domains is not one this refresher rewrites")),
        ("refreshed automatically",
         _claim("demo", "the refresher indexes another map type", _refresh_conf(map_type="btree"), POSTFIX_CM,
                r"it writes btree maps, Postfix reads hash")),
        ("fail-closed",
         _claim("demo", "the former grep script as refresher", _program(GREP_SCRIPT), POSTFIX_CM,
                r"the refresher program is not the kit's fail-closed white-list parser")),
        ("the list's server verified against the IGC-Santé trust bundle",
         _claim("demo", "the refresher verifies against a file of the image", _refresher_without_trust_bundle, POSTFIX_CM,
                r"verified against /etc/socle/tls/trust/ca\.crt, which is not on a Secret volume")),
        ("the list's server verified against the IGC-Santé trust bundle",
         _claim("demo", "the refresher trusts another Secret", _refresher_trusts_another_secret, POSTFIX_CM,
                r"verified against Secret public-web-cas, not the trust bundle Postfix verifies its peers with \(igc-sante-trust-bundle\)")),
        ("in external-operator mode only through the operator's relay",
         _claim("chu-exemple-prod", "no relayhost: direct delivery", _main_cf(r"^relayhost = .*$", "relayhost ="), POSTFIX_CM,
                r"external-operator: relayhost not set: the relay delivers directly")),
        ("in external-operator mode only through the operator's relay",
         _claim("chu-exemple-prod", "a transport table beside the relayhost", _main_cf(r"^relayhost = (.*)$", r"relayhost = \1\ntransport_maps = texthash:/var/lib/socle/maps/transport"),
                POSTFIX_CM, r"external-operator: transport_maps set")),
        ("in external-operator mode only through the operator's relay",
         _claim("demo", "the demo declared external-operator, still delivering directly", _mode("external-operator"), POSTFIX_CM,
                r"external-operator: relayhost not set")),
    ],
}
