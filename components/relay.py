"""MSSanté messaging relay: Postfix with rendered main.cf/master.cf (MSS-01..07)."""
from __future__ import annotations

from typing import Literal, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field

from socle.constants import ANN_MAILBOX_PURGE_DAYS, ANN_PSS_EXCEPTION, ANN_REQUIREMENTS, MSS_TLS12_SUITES

from .grammar import render_checked
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
    tools_image: str
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


def postfix_protocols(min_version: str) -> str:
    excluded = {"TLSv1": ["SSLv2", "SSLv3"], "TLSv1.1": ["SSLv2", "SSLv3", "TLSv1"],
                "TLSv1.2": ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"], "TLSv1.3": ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2"]}
    return ", ".join(f"!{p}" for p in excluded[min_version])


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
        maps={m: f"texthash:{p['maps']}/{m}" for m in ("relay_domains", "transport", "recipient_access", "client_certs")},
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
    """The Postfix lookup tables: one `key value` line each, every field checked for the table grammar."""
    domains = sorted(set(args.authorized_domains))
    tables = {
        "relay_domains": [(d, "OK") for d in domains],
        "recipient_access": [(d, "OK") for d in domains],
        "transport": [(d, f"smtp:{args.next_hop}") for d in domains] if args.next_hop else [],
        # Only these certificates may relay: removing one is how a revoked certificate stops working (PKI-02).
        "client_certs": [(fp, "OK") for fp in sorted(set(args.client_fingerprints))],
    }
    return {name: render_checked(name, "postfix-map.j2", "postfix-map", rows=rows) for name, rows in tables.items()}


DOMAIN_LIST_URL_FILE = "domain-list-url"


def domain_refresh_files(args: RelayArgs, maps_dir: str = "/var/lib/socle/maps") -> dict[str, str]:
    """The MSS-05 refresher: a fixed script, and the list's URL as a data file beside it."""
    return {
        "refresh-domains.sh": render_checked("refresh-domains.sh", "refresh-domains.sh.j2", "sh", kit_version=args.kit_version,
                                             maps_dir=maps_dir, url_file=DOMAIN_LIST_URL_FILE,
                                             interval_seconds=args.refresh_interval_seconds),
        DOMAIN_LIST_URL_FILE: render_checked(DOMAIN_LIST_URL_FILE, "lines.j2", "lines", lines=[args.domain_list_url]),
    }


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
        conf_name = hashed_config_map(self, ns, "postfix", lbl, conf, {ANN_REQUIREMENTS: "MSS-01 MSS-02 MSS-03 MSS-04 MSS-06 MSS-07"})
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
        seed_maps = {
            "name": "seed-maps",
            "image": args.tools_image,
            "imagePullPolicy": "Always",
            "command": ["sh", "-c", "cp /etc/socle/maps-seed/* /var/lib/socle/maps/"],
            "securityContext": container_security(run_as_user=65534),
            "resources": resources_spec("10m", "16Mi", "100m", "32Mi"),
            "volumeMounts": [
                {"name": "maps-seed", "mountPath": "/etc/socle/maps-seed", "readOnly": True},
                {"name": "maps", "mountPath": "/var/lib/socle/maps"},
            ],
        }
        refresher = {
            "name": "domain-refresh",
            "image": args.tools_image,
            "imagePullPolicy": "Always",
            "command": ["sh", "/etc/socle/refresh/refresh-domains.sh"],
            "securityContext": container_security(run_as_user=65534),
            "resources": resources_spec("10m", "16Mi", "100m", "64Mi"),
            "volumeMounts": [
                {"name": "refresh", "mountPath": "/etc/socle/refresh", "readOnly": True},
                {"name": "maps", "mountPath": "/var/lib/socle/maps"},
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
                empty_dir("maps", "16Mi"),
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
