"""MSSanté messaging relay: Postfix with rendered main.cf/master.cf (MSS-01..07), and the refresher of the ANS
white list of the MSSanté trust space (MSS-05)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field, model_validator

from socle.constants import ANN_MAILBOX_PURGE_DAYS, ANN_PSS_EXCEPTION, ANN_REQUIREMENTS, MSS_TLS12_SUITES

from .grammar import GrammarError, render_checked
from .common import (
    AuditTarget,
    child,
    claim_template,
    config_volume,
    container_security,
    empty_dir,
    forwarder_config,
    hashed_config_map,
    labels,
    log_forwarder,
    pdb,
    pod_identity,
    region_affinity,
    resources_spec,
    secret_volume,
    selector,
    service,
    stateful_set_spec,
)

SMTP_PORT = 2525
# Postfix's master process refuses to start unless it runs as root (checked: "the postfix command is reserved
# for the superuser"). The relay therefore runs as root inside a user namespace (hostUsers: false: root in the
# pod is an unprivileged user on the node), with every capability dropped but those Postfix needs to change to
# its own users. Its namespace enforces Pod Security `baseline` and audits/warns at `restricted`.
PSS_EXCEPTION = (
    "Postfix master must start as root to switch to its unprivileged users; runs in a user namespace "
    "(hostUsers: false), capabilities limited to CHOWN DAC_OVERRIDE FOWNER SETGID SETUID, read-only root filesystem"
)
POSTFIX_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")


# The ports of the relay's Service: a LoadBalancer allocates one node port each.
RELAY_SERVICE_PORTS = (("smtp", 25, "smtp"),)

class RelayArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    kit_version: str
    namespace: str
    image: str
    syslog_image: str
    replicas: int = Field(ge=1)
    hostname: str
    authorized_domains: Sequence[str]
    domain_list_url: str
    refresh_interval_seconds: int = 86400
    mailbox_purge_days: int = Field(default=365, ge=1, le=365)
    require_client_certificate: bool
    # MSS-06 / PKI-02: SHA-256 fingerprints of the organisation certificates allowed to relay (application mailboxes).
    client_fingerprints: Sequence[str] = ()
    next_hop: str | None = None
    # MSS-05: operator = a contracted MSSanté operator delivering directly; external-operator = everything to next_hop.
    mode: Literal["operator", "external-operator"] = "operator"
    # MSS-05: per listed domain, the peer's certificate must name the host of its operator's DN (direct delivery).
    operator_dn: bool = True
    list_min_domains: int = Field(default=1000, ge=1)
    list_max_shrink_percent: int = Field(default=10, ge=0, le=100)
    list_max_invalid_percent: int = Field(default=1, ge=0, le=100)
    tls_min_version: Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    server_secret: str
    client_secret: str
    trust_bundle_secret: str
    service_type: Literal["LoadBalancer", "ClusterIP"] = "LoadBalancer"
    storage_class: str
    queue_size: str = "5Gi"
    region_label: str
    regions: Sequence[str]
    audit: AuditTarget
    protect: bool = False
    service_account: str = "relay"

    @model_validator(mode="after")
    def _mode(self) -> "RelayArgs":
        if self.mode == "external-operator" and not self.next_hop:
            raise ValueError("MSS-05: mode external-operator needs next_hop, the operator's relay")
        return self


def postfix_protocols(min_version: str) -> str:
    excluded = {"TLSv1": ["SSLv2", "SSLv3"], "TLSv1.1": ["SSLv2", "SSLv3", "TLSv1"],
                "TLSv1.2": ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"], "TLSv1.3": ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2"]}
    return ", ".join(f"!{p}" for p in excluded[min_version])


# Maps Postfix reads from the maps volume. The domain maps (and the TLS policy) are indexed: a Postfix daemon
# notices a replaced indexed file and restarts on its own, while a texthash map is read once per process and a
# refreshed list would go unseen. `hash` (Berkeley DB) is in Debian's Postfix, the relay image's.
MAP_TYPE = "hash"
DOMAIN_MAPS = ("recipient_access", "relay_domains")
TLS_POLICY_MAP = "tls_policy"
STATIC_MAPS = ("client_certs",)
# MSS-05: the ANS white list of the MSSanté trust space.
WHITE_LIST_URL = "https://espacedeconfiance.mssante.fr/listeblanchemssante.xml"
ANN_MSSANTE_MODE = "socle.esante.fr/mssante-mode"


def indexed_maps(args: RelayArgs) -> list[str]:
    """The maps of the maps volume that `postmap` must index before Postfix starts (the seed does it in the pod)."""
    return [*DOMAIN_MAPS, *([TLS_POLICY_MAP] if args.operator_dn else [])]


def main_cf(args: RelayArgs, *, paths: dict[str, str] | None = None, inet_interfaces: str = "all",
            maillog_file: str = "/var/log/postfix/maillog", mail_owner: str | None = None, setgid_group: str | None = None) -> str:
    p = {
        "queue": "/var/spool/postfix",
        "data": "/var/lib/postfix",
        "maps": "/var/lib/socle/maps",
        "server_tls": "/etc/socle/tls/server",
        "client_tls": "/etc/socle/tls/client",
        "trust_bundle": "/etc/socle/tls/trust",
    }
    p.update(paths or {})
    maps = {m: f"{MAP_TYPE}:{p['maps']}/{m}" for m in indexed_maps(args)}
    maps.update({m: f"texthash:{p['maps']}/{m}" for m in STATIC_MAPS})
    return render_checked(
        "main.cf", "main.cf.j2", "postfix-main",
        kit_version=args.kit_version,
        hostname=args.hostname,
        mynetworks="127.0.0.0/8",
        inet_interfaces=inet_interfaces,
        paths=p,
        mail_owner=mail_owner,
        setgid_group=setgid_group,
        maillog_file=maillog_file,
        maillog_dir=maillog_file.rsplit("/", 1)[0],
        maps=maps,
        external_operator=args.mode == "external-operator",
        relayhost=args.next_hop,
        operator_dn=args.operator_dn,
        files={"server_key": f"{p['server_tls']}/tls.key", "server_cert": f"{p['server_tls']}/tls.crt",
               "client_key": f"{p['client_tls']}/tls.key", "client_cert": f"{p['client_tls']}/tls.crt",
               "trust_bundle": f"{p['trust_bundle']}/ca.crt"},
        message_size_limit=52428800,
        require_client_cert=args.require_client_certificate,
        postfix_protocols=postfix_protocols(args.tls_min_version),
        tls12_ciphers=":".join(MSS_TLS12_SUITES),
    )


def master_cf(args: RelayArgs, *, smtpd_listen: str = str(SMTP_PORT)) -> str:
    return render_checked("master.cf", "master.cf.j2", "postfix-master", kit_version=args.kit_version, smtpd_listen=smtpd_listen)


def relay_maps(args: RelayArgs) -> dict[str, str]:
    """The seed lookup tables (the stack's domains until the first accepted list): one `key value` line each, every
    field checked for the table grammar. The TLS policy starts empty: the operators' names come with the list."""
    domains = sorted(set(args.authorized_domains))
    tables: dict[str, list[tuple[str, str]]] = {name: [(d, "OK") for d in domains] for name in DOMAIN_MAPS}
    if args.operator_dn:
        tables[TLS_POLICY_MAP] = []
    # Only these certificates may relay: removing one is how a revoked certificate stops working (PKI-02).
    tables["client_certs"] = [(fp, "OK") for fp in sorted(set(args.client_fingerprints))]
    return {name: render_checked(name, "postfix-map.j2", "postfix-map", rows=rows) for name, rows in tables.items()}


REFRESHER = "refresh_domains.py"
REFRESH_CONFIG = "refresh.json"
REFRESH_DIR = "/etc/socle/refresh"
MAPS_DIR = "/var/lib/socle/maps"
TRUST_DIR = "/etc/socle/tls/trust"
SEED_DIR = "/etc/socle/maps-seed"
# Bounds of one download (design choices): the white list is a few MiB; a minute is plenty.
LIST_MAX_BYTES = 64 * 1024 * 1024
LIST_TIMEOUT_SECONDS = 60


def refresher_program() -> str:
    """The MSS-05 refresher: one fixed Python program (standard library only) for every stack; its input is the
    JSON configuration beside it. Checked to compile, so a broken program never reaches a pod."""
    text = (Path(__file__).parent / "templates" / REFRESHER).read_text(encoding="utf-8")
    try:
        compile(text, REFRESHER, "exec")
    except SyntaxError as exc:
        raise GrammarError(REFRESHER, f"does not compile: {exc}") from None
    return text


def refresh_config(args: RelayArgs, *, maps_dir: str = MAPS_DIR, ca_file: str = f"{TRUST_DIR}/ca.crt",
                   postmap: str = "postmap") -> str:
    """The refresher's configuration, written by the JSON serialiser and read back."""
    data = {
        "url": args.domain_list_url,
        "ca_file": ca_file,
        "maps_dir": maps_dir,
        "map_type": MAP_TYPE,
        "postmap": postmap,
        "operator_dn": args.operator_dn,
        "interval_seconds": args.refresh_interval_seconds,
        "timeout_seconds": LIST_TIMEOUT_SECONDS,
        "max_bytes": LIST_MAX_BYTES,
        "min_domains": args.list_min_domains,
        "max_shrink_percent": args.list_max_shrink_percent,
        "max_invalid_percent": args.list_max_invalid_percent,
    }
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    if json.loads(text) != data:
        raise GrammarError(REFRESH_CONFIG, "parsed back, the file is not what the kit writes")
    return text


def domain_refresh_files(args: RelayArgs) -> dict[str, str]:
    """The MSS-05 refresher: the fixed program and its configuration as a data file beside it."""
    return {REFRESHER: refresher_program(), REFRESH_CONFIG: refresh_config(args)}


MAILLOG_FILES = ({"path": "/var/log/postfix/maillog", "tag": "postfix:"},)


def config_files(args: RelayArgs) -> dict[str, str]:
    """Every configuration file of the relay's ConfigMaps, as the pod reads them (the render checks each)."""
    return {"main.cf": main_cf(args), "master.cf": master_cf(args),
            **{f"maps/{k}": v for k, v in relay_maps(args).items()}, **domain_refresh_files(args),
            "rsyslog.conf": forwarder_config(args.kit_version, "relay", args.audit, MAILLOG_FILES)}


class Relay(pulumi.ComponentResource):
    def __init__(self, name: str, args: RelayArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:mss:Relay", name, None, opts)
        ns = args.namespace
        conf = {"main.cf": main_cf(args), "master.cf": master_cf(args)}
        maps = relay_maps(args)
        refresh = domain_refresh_files(args)
        lbl = labels("relay", "postfix", ns)
        sel = selector("postfix", ns)
        conf_name = hashed_config_map(self, ns, "postfix", lbl, conf, {ANN_REQUIREMENTS: "MSS-01 MSS-02 MSS-03 MSS-04 MSS-05 MSS-06 MSS-07",
                                                                      ANN_MSSANTE_MODE: args.mode})
        maps_name = hashed_config_map(self, ns, "postfix-maps", lbl, maps, {ANN_REQUIREMENTS: "MSS-05"})
        refresh_name = hashed_config_map(self, ns, "mss-domain-refresh", lbl, refresh, {ANN_REQUIREMENTS: "MSS-05"})
        sidecar, sidecar_volumes = log_forwarder(
            self, ns, "relay", lbl, args.kit_version, args.syslog_image, args.audit,
            files=MAILLOG_FILES,
            extra_mounts=[{"name": "maillog", "mountPath": "/var/log/postfix", "readOnly": True}],
        )
        postfix = {
            "name": "postfix",
            "image": args.image,
            "imagePullPolicy": "Always",
            "command": ["postfix", "-c", "/etc/socle/postfix", "start-fg"],
            "ports": [{"name": "smtp", "containerPort": SMTP_PORT, "protocol": "TCP"}],
            "securityContext": {
                **container_security(add_caps=POSTFIX_CAPS, non_root=False),
                "runAsUser": 0,
            },
            "resources": resources_spec("100m", "128Mi", "1", "512Mi"),
            "readinessProbe": {"tcpSocket": {"port": SMTP_PORT}, "periodSeconds": 10},
            "livenessProbe": {"tcpSocket": {"port": SMTP_PORT}, "periodSeconds": 30},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/socle/postfix", "readOnly": True},
                {"name": "queue", "mountPath": "/var/spool/postfix"},
                {"name": "data", "mountPath": "/var/lib/postfix"},
                {"name": "maps", "mountPath": "/var/lib/socle/maps", "readOnly": True},
                {"name": "maillog", "mountPath": "/var/log/postfix"},
                {"name": "server-tls", "mountPath": "/etc/socle/tls/server", "readOnly": True},
                {"name": "client-tls", "mountPath": "/etc/socle/tls/client", "readOnly": True},
                {"name": "trust-bundle", "mountPath": "/etc/socle/tls/trust", "readOnly": True},
            ],
        }
        # The refresher runs in the relay image: it holds the `postmap` of the Postfix that reads the maps, and the
        # Python 3 of Debian's supervisor package (boky/postfix v4.4.0 is Debian bookworm: Python 3.11).
        program = ["python3", f"{REFRESH_DIR}/{REFRESHER}", f"{REFRESH_DIR}/{REFRESH_CONFIG}"]
        seed_maps = {
            "name": "seed-maps",
            "image": args.image,
            "imagePullPolicy": "Always",
            "command": [*program, "--seed", SEED_DIR],
            "securityContext": container_security(run_as_user=65534),
            "resources": resources_spec("10m", "32Mi", "200m", "128Mi"),
            "volumeMounts": [
                {"name": "refresh", "mountPath": REFRESH_DIR, "readOnly": True},
                {"name": "maps-seed", "mountPath": SEED_DIR, "readOnly": True},
                {"name": "maps", "mountPath": MAPS_DIR},
            ],
        }
        refresher = {
            "name": "domain-refresh",
            "image": args.image,
            "imagePullPolicy": "Always",
            "command": program,
            "securityContext": container_security(run_as_user=65534),
            "resources": resources_spec("10m", "64Mi", "500m", "256Mi"),
            "volumeMounts": [
                {"name": "refresh", "mountPath": REFRESH_DIR, "readOnly": True},
                {"name": "maps", "mountPath": MAPS_DIR},
                # MSS-05 / PKI-01: the list's server is verified against the IGC-Santé bundle only.
                {"name": "trust-bundle", "mountPath": TRUST_DIR, "readOnly": True},
            ],
        }
        pod_spec = {
            **pod_identity(args.service_account, fs_group=65534, non_root=False),
            "hostUsers": False,

            "initContainers": [seed_maps],
            "containers": [postfix, refresher, sidecar],
            "volumes": [
                config_volume("config", conf_name),
                config_volume("maps-seed", maps_name),
                config_volume("refresh", refresh_name),
                empty_dir("maps", "64Mi"),
                empty_dir("data", "64Mi"),
                empty_dir("maillog", "256Mi"),
                secret_volume("server-tls", args.server_secret, items=[("tls.crt", "tls.crt"), ("tls.key", "tls.key")]),
                secret_volume("client-tls", args.client_secret, items=[("tls.crt", "tls.crt"), ("tls.key", "tls.key")]),
                secret_volume("trust-bundle", args.trust_bundle_secret, mode=0o444, items=[("ca.crt", "ca.crt")]),
                *sidecar_volumes,
            ],
            "affinity": region_affinity(args.region_label, args.regions),
        }
        k8s.apps.v1.StatefulSet(
            f"{ns}-postfix",
            metadata={"name": "postfix", "namespace": ns, "labels": lbl,
                      "annotations": {ANN_PSS_EXCEPTION: PSS_EXCEPTION,
                                      ANN_MAILBOX_PURGE_DAYS: str(args.mailbox_purge_days)}},
            spec=stateful_set_spec("postfix", args.replicas, sel, lbl, pod_spec,
                                   [claim_template("queue", args.storage_class, args.queue_size)],
                                   pod_annotations={ANN_PSS_EXCEPTION: PSS_EXCEPTION}, parallel=True),
            opts=child(self, protect=args.protect, retain_on_delete=args.protect),
        )
        service(self, ns, "postfix", lbl, sel, list(RELAY_SERVICE_PORTS), args.service_type, {ANN_REQUIREMENTS: "K8S-07 MSS-01"})
        if args.replicas >= 2:
            pdb("postfix", ns, sel, lbl, self)
        self.register_outputs({})
