"""Validated parameter types shared by every blueprint: each string bounded and matched whole, so a value reaches
a configuration file only in a form its grammar can hold (docs/config-grammar.md)."""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from socle.constants import INS_SYSTEMS

# Every pattern is matched whole (re.fullmatch here; `^...$` in pydantic's Field patterns, whose Rust engine reads
# `$` as the end of the text): a trailing newline never passes. Every string is bounded:
# a value reaches a configuration file only in a form its grammar can hold (see docs/config-grammar.md).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOST_NAME = rf"({_LABEL}\.)+[a-z]{{2,63}}"
_HOST = re.compile(rf"(?=.{{1,253}}\Z){_HOST_NAME}")
_IMAGE = re.compile(
    r"(?P<repo>[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+)(:(?P<tag>[A-Za-z0-9._-]{1,128}))?(@sha256:(?P<digest>[0-9a-f]{64}))?"
)
_SIZE = re.compile(r"[1-9][0-9]{0,5}(Ki|Mi|Gi|Ti)")
_BODY = re.compile(r"[1-9][0-9]{0,5}[km]?")  # never 0: `client_max_body_size 0` (or 00) means no limit
_CRON = r"[0-9A-Za-z*/,?-]{1,20}( [0-9A-Za-z*/,?-]{1,20}){4}"
# URL path and query: RFC 3986 unreserved characters, '/', '%', and the sub-delimiters a URL of a list or a CRL
# needs; never a quote, a blank, '$', '`', ';', '(' or ')'.
_URL_TAIL = r"(/[A-Za-z0-9._~%/+=&?:@-]*)?"
_HTTPS_URL = re.compile(rf"https://{_HOST_NAME}(:[0-9]{{1,5}})?{_URL_TAIL}")
_CRL_URL = re.compile(rf"https?://{_HOST_NAME}(:[0-9]{{1,5}})?/[A-Za-z0-9._~%/+=&?:@-]+")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_KEY = re.compile(rf"(({_LABEL}\.)*{_LABEL}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?")
_CSI_DRIVER = re.compile(r"(?=.{1,63}\Z)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_NEXT_HOP = re.compile(rf"(?P<host>\[{_HOST_NAME}\]|\[[0-9.]{{7,15}}\]|{_HOST_NAME})(:(?P<port>[0-9]{{1,5}}))?")
_GROUP = re.compile(r"[A-Za-z0-9]([A-Za-z0-9:._@-]{0,126}[A-Za-z0-9])?")


def _full(pattern: re.Pattern[str], message: str, max_length: int = 253) -> AfterValidator:
    def check(v: str) -> str:
        if len(v) > max_length:
            raise ValueError(f"at most {max_length} characters (got {len(v)})")
        if not pattern.fullmatch(v):
            raise ValueError(message)
        return v
    return AfterValidator(check)


def _text(v: str) -> str:
    """Free text (names, owners): printable characters on one line, no blank at either end."""
    if not v.isprintable():
        raise ValueError("must be printable text on one line (no line break, tab or control character)")
    if v != v.strip():
        raise ValueError("must not begin or end with a blank")
    return v


def _next_hop(v: str) -> str:
    m = _NEXT_HOP.fullmatch(v) if len(v) <= 260 else None
    if not m:
        raise ValueError("must be host, [host], host:port or [host]:port")
    host = m.group("host").strip("[]")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host} is not an IPv4 address") from None
    if m.group("port") is not None and not 1 <= int(m.group("port")) <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    return v


def _label_key(v: str) -> str:
    """A Kubernetes label key (also the form of StorageClass parameter names): [prefix/]name, prefix a DNS
    subdomain of at most 253 characters, name at most 63."""
    prefix, _, name = v.rpartition("/")
    if not _LABEL_KEY.fullmatch(v) or len(prefix) > 253 or len(name) > 63:
        raise ValueError("must be a Kubernetes label key: [DNS-subdomain prefix (at most 253)/]name (at most 63)")
    return v


def _image(v: str) -> str:
    m = _IMAGE.fullmatch(v)
    if not m or len(v) > 255:
        raise ValueError("must be a full image reference REGISTRY/REPOSITORY:TAG or ...@sha256:DIGEST")
    tag, digest = m.group("tag"), m.group("digest")
    if not digest and (not tag or tag == "latest"):
        raise ValueError("K8S-05: image must be pinned to an exact version or digest, never 'latest'")
    registry = v.split("/", 1)[0]
    if "." not in registry and ":" not in registry and registry != "localhost":
        raise ValueError("must name its registry explicitly (e.g. docker.io/...)")
    return v


def _cidr(v: str) -> str:
    if "%" in v:
        raise ValueError("a network with an IPv6 zone (%...) is not accepted")
    try:
        ipaddress.ip_network(v, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a network in CIDR form: {exc}") from None
    return v


def _db_host(v: str) -> str:
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        ip = None
    if ip is not None:
        if "%" in v:  # an IPv6 zone ("scope id") is free text: it would carry anything into the JDBC URL
            raise ValueError("an IPv6 address with a zone (%...) is not accepted; give a routable address or a host name")
        if str(ip) != v:
            raise ValueError(f"write the IP address in its canonical form ({ip})")
        return v
    if len(v) > 253 or not _HOST.fullmatch(v):
        raise ValueError("must be a fully qualified lower-case host name or an IP address")
    return v


def _ins_system(v: str) -> str:
    if v not in INS_SYSTEMS.values():
        raise ValueError(f"INS-02: unknown INS identifier system (one of: {', '.join(sorted(INS_SYSTEMS.values()))})")
    return v


# Groups that Kubernetes or its installers bind to powerful roles (kubeadm >= 1.29 binds kubeadm:cluster-admins
# to cluster-admin): an auditor's certificate must never carry one.
RESERVED_GROUP_PREFIXES = ("system:", "kubeadm:")


def _auditors_group(v: str) -> str:
    if v.lower().startswith(RESERVED_GROUP_PREFIXES):
        raise ValueError(f"K8S-10: groups starting with {' or '.join(RESERVED_GROUP_PREFIXES)} belong to Kubernetes and "
                         "its installers (some are bound to cluster-admin); name a group of your own")
    if not _GROUP.fullmatch(v):
        raise ValueError("must be a plain group name: letters, digits and ':._@-', at most 128 characters")
    return v


DnsLabel = Annotated[str, _full(_DNS_LABEL, "must be a DNS label: lower-case letters, digits and '-', at most 63 characters", 63)]
Host = Annotated[str, _full(_HOST, "must be a fully qualified lower-case host name")]
Image = Annotated[str, AfterValidator(_image)]
Cidr = Annotated[str, Field(max_length=43), AfterValidator(_cidr)]
HttpsUrl = Annotated[str, _full(_HTTPS_URL, "must be an https:// URL (host name, optional port and path; no blank, quote, "
                                "'$', '`', ';' or parenthesis)", 2048)]
Size = Annotated[str, _full(_SIZE, "must be a Kubernetes quantity such as 10Gi", 10)]
CrlUrl = Annotated[str, _full(_CRL_URL, "must be an http:// or https:// URL of a CRL (no blank, quote, '$', '`', ';' or "
                              "parenthesis)", 2048)]
Fingerprint = Annotated[str, Field(pattern=r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")]
SecretName = DnsLabel
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_text)]
LabelValue = Annotated[str, _full(_LABEL_VALUE, "must be a Kubernetes label value: letters, digits, '-', '_', '.', at most 63", 63)]
Cron = Annotated[str, _full(re.compile(_CRON), "must be a cron expression of five fields separated by single spaces", 120)]
Identifier = Annotated[str, Field(max_length=128), _full(re.compile(r"[A-Za-z0-9._-]*"),
                                                         "letters, digits, '.', '_' and '-' only", 128)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


