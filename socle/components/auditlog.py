"""Audit log: rsyslog aggregator over mutual TLS, JSON lines on an encrypted volume, sealed by a keyed chain.

The seal (TRACE-04) is HMAC-SHA256 chained: each closed daily file, and a heartbeat at every run, is appended to
`chain.sha256` with LINK = HMAC(key, "PREV_LINK FIELDS\n") (format in templates/seal.sh.j2). The key lives in a
Secret (`seal_key_secret`, key `key`, 32 to 64 bytes) mounted into the `seal` container only: the rsyslog container
that writes the files — the part exposed to the network — never sees it, and the pod does not share its process
namespace, so a compromised writer can delete or truncate the chain but cannot write a link that verifies.

HMAC method: the seal runs in the kit's tools image (alpine), whose base has busybox but not the `openssl` command
(only the libraries); rather than assume another image's contents, seal.sh computes HMAC-SHA256 by its definition,
sha256((K^opad) || sha256((K^ipad) || m)), with busybox applets only: `od` reads the key's bytes, shell arithmetic
XORs the pads, `printf` octal escapes write the binary blocks and `sha256sum` hashes them.

Truncation: every run appends a heartbeat even when nothing is new, and the seal remembers its last link in a
persistent volume of its own (`seal-state`, a claim of the StatefulSet mounted by the seal container only, so the
memory survives pod restarts and rescheduling): when the chain's tail is not that link — lines removed, the chain
deleted or replaced — it appends an `alarm` entry. `socle audit-log verify`
reports alarms, a last heartbeat older than the tolerance (lines removed since), files sealed late (a chain
rebuilt by the seal after a deletion) and every link that the key does not reproduce.
"""
from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import BaseModel, ConfigDict, Field

from socle.constants import ANN_REQUIREMENTS, LABEL_DATA, RETENTION_FLOOR_DAYS, TLS12_AEAD_SUITES, TLS13_SUITES

from .grammar import Quoted, rainer_lines, render_checked
from .common import (
    child,
    claim_template,
    config_volume,
    container_security,
    empty_dir,
    hashed_config_map,
    labels,
    pod_identity,
    region_affinity,
    resources_spec,
    secret_volume,
    selector,
    service,
    stateful_set_spec,
)

SYSLOG_TLS_PORT = 6514
DATA_DIR = "/var/lib/socle/audit"
SEAL_KEY_DIR = "/etc/socle/seal-key"
SEAL_KEY_FILE = f"{SEAL_KEY_DIR}/key"
SEAL_STATE_DIR = "/var/lib/socle/seal-state"
SEAL_STATE_SIZE = "1Gi"  # one line of state; 1 GiB is the smallest volume of the common block-storage drivers


class AuditLogArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kit_version: str
    namespace: str
    image: str
    tools_image: str
    retention_days: int = Field(ge=1)
    storage_class: str
    storage_size: str = "50Gi"
    server_secret: str
    region_label: str
    regions: Sequence[str]
    seal_interval_seconds: int = 3600
    seal_key_secret: str = "auditlog-seal-key"
    generate_seal_key: bool = False
    protect: bool = False
    service_account: str = "auditlog"


def aggregator_conf(kit_version: str, *, listen_address: str = "0.0.0.0", port: int = SYSLOG_TLS_PORT,
                    paths: dict[str, str] | None = None) -> str:
    p = {"work": "/var/spool/rsyslog", "ca": "/etc/socle/tls/server", "server_tls": "/etc/socle/tls/server",
         "data": DATA_DIR, **(paths or {})}
    priority: Quoted = rainer_lines("MinProtocol=TLSv1.2", f"CipherString={':'.join(TLS12_AEAD_SUITES)}",
                                    f"Ciphersuites={':'.join(TLS13_SUITES)}")
    return render_checked(
        "rsyslog.conf", "rsyslog-aggregator.conf.j2", "rsyslog",
        kit_version=kit_version,
        paths=p,
        files={"ca": f"{p['ca']}/ca.crt", "cert": f"{p['server_tls']}/tls.crt", "key": f"{p['server_tls']}/tls.key",
               "audit_file": f"{p['data']}/audit-%timegenerated:1:10:date-rfc3339%.jsonl"},
        listen_address=listen_address,
        port=port,
        tls_priority=priority,
    )


def seal_script(kit_version: str, retention_days: int, data_dir: str = DATA_DIR, key_file: str = SEAL_KEY_FILE,
                state_dir: str = SEAL_STATE_DIR) -> str:
    return render_checked("seal.sh", "seal.sh.j2", "sh", kit_version=kit_version, retention_days=retention_days,
                          data_dir=data_dir, key_file=key_file, state_dir=state_dir)


def config_files(args: AuditLogArgs) -> dict[str, str]:
    """Every configuration file of the audit log's ConfigMaps (the render checks each)."""
    return {"rsyslog.conf": aggregator_conf(args.kit_version), "seal.sh": seal_script(args.kit_version, args.retention_days)}


class AuditLog(pulumi.ComponentResource):
    def __init__(self, name: str, args: AuditLogArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:trace:AuditLog", name, None, opts)
        ns = args.namespace
        if args.retention_days < 1:
            raise ValueError("retention_days must be positive")
        conf = {"rsyslog.conf": aggregator_conf(args.kit_version)}
        seal = {"seal.sh": seal_script(args.kit_version, args.retention_days)}
        lbl = labels("auditlog", "rsyslog", ns, {LABEL_DATA: "true"})
        if args.generate_seal_key:
            key = random.RandomPassword(f"{ns}-audit-seal-key", length=64, special=False, opts=child(self))
            k8s.core.v1.Secret(
                f"{ns}-audit-seal-key",
                metadata={"name": args.seal_key_secret, "namespace": ns, "labels": labels("auditlog", "seal", ns)},
                type="Opaque",
                string_data={"key": key.result},
                opts=child(self, protect=args.protect, retain_on_delete=args.protect),
            )
        sel = selector("rsyslog", ns)
        conf_name = hashed_config_map(self, ns, "rsyslog-aggregator", lbl, conf, {
            ANN_REQUIREMENTS: "TRACE-02 TRACE-04 TRACE-05",
            "socle.esante.fr/retention-days": str(args.retention_days),
            "socle.esante.fr/retention-floor-days": str(RETENTION_FLOOR_DAYS)})
        seal_name = hashed_config_map(self, ns, "audit-seal", lbl, seal, {
            ANN_REQUIREMENTS: "TRACE-01 TRACE-04", "socle.esante.fr/retention-days": str(args.retention_days)})
        rsyslog = {
            "name": "rsyslog",
            "image": args.image,
            "imagePullPolicy": "Always",
            "args": ["rsyslogd", "-n", "-f", "/etc/socle/rsyslog/rsyslog.conf", "-i", "/var/spool/rsyslog/rsyslogd.pid"],
            "ports": [{"name": "syslog-tls", "containerPort": SYSLOG_TLS_PORT, "protocol": "TCP"}],
            "securityContext": container_security(run_as_user=10514),
            "resources": resources_spec("100m", "128Mi", "1", "512Mi"),
            "readinessProbe": {"tcpSocket": {"port": SYSLOG_TLS_PORT}, "periodSeconds": 10},
            "livenessProbe": {"tcpSocket": {"port": SYSLOG_TLS_PORT}, "periodSeconds": 30},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/socle/rsyslog", "readOnly": True},
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "spool", "mountPath": "/var/spool/rsyslog"},
                {"name": "server-tls", "mountPath": "/etc/socle/tls/server", "readOnly": True},
            ],
        }
        sealer = {
            "name": "seal",
            "image": args.tools_image,
            "imagePullPolicy": "Always",
            "command": ["sh", "-c", f"while true; do sh /etc/socle/seal/seal.sh {DATA_DIR}; sleep {args.seal_interval_seconds}; done"],
            "securityContext": container_security(run_as_user=10514),
            "resources": resources_spec("10m", "16Mi", "200m", "64Mi"),
            "volumeMounts": [
                {"name": "seal", "mountPath": "/etc/socle/seal", "readOnly": True},
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "seal-key", "mountPath": SEAL_KEY_DIR, "readOnly": True},
                {"name": "seal-state", "mountPath": SEAL_STATE_DIR},
            ],
        }
        pod_spec = {
            **pod_identity(args.service_account, fs_group=10514),
            "shareProcessNamespace": False,  # TRACE-04: the writer cannot reach the seal's key through /proc
            "containers": [rsyslog, sealer],
            "volumes": [
                config_volume("config", conf_name),
                config_volume("seal", seal_name),
                empty_dir("spool", "512Mi"),
                secret_volume("seal-key", args.seal_key_secret, mode=0o440, items=[("key", "key")]),
                secret_volume("server-tls", args.server_secret, items=[("tls.crt", "tls.crt"), ("tls.key", "tls.key"), ("ca.crt", "ca.crt")]),
            ],
            "affinity": region_affinity(args.region_label, args.regions),
        }
        k8s.apps.v1.StatefulSet(
            f"{ns}-rsyslog",
            metadata={"name": "rsyslog", "namespace": ns, "labels": lbl},
            spec=stateful_set_spec("rsyslog", 1, sel, lbl, pod_spec,
                                   [claim_template("data", args.storage_class, args.storage_size, {LABEL_DATA: "true"}),
                                    # the seal's memory of its last link: outlives the pod, never mounted by rsyslog
                                    claim_template("seal-state", args.storage_class, SEAL_STATE_SIZE)]),
            opts=child(self, protect=args.protect, retain_on_delete=args.protect),
        )
        service(self, ns, "rsyslog", lbl, sel, [("syslog-tls", SYSLOG_TLS_PORT, "syslog-tls")])
        self.register_outputs({"endpoint": f"rsyslog.{ns}.svc.cluster.local:{SYSLOG_TLS_PORT}"})
