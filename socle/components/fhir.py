"""FHIR store: HAPI FHIR JPA server (FHIR R4) with PostgreSQL, in-cluster (dev) or external (production)."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, Literal, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import BaseModel, ConfigDict, Field

from socle.constants import (
    ANN_REQUIREMENTS,
    ANNUAIRE_SANTE_FHIR,
    FHIR_VERSION,
    FR_CORE_PACKAGE,
    INS_QUALIFIED_RULE,
    INS_QUALIFIED_RULE_ID,
    LABEL_DATA,
    TLS12_AEAD_SUITES,
)
from socle.fhir import (
    EXTRA_CLASSES_DIR,
    INS_INTERCEPTOR_CLASS,
    INS_INTERCEPTOR_JAR_KEY,
    ins_interceptor_jar,
)

from .grammar import GrammarError, render_checked, yaml_document
from .common import (
    FORWARDER_UDP_PORT,
    AuditTarget,
    child,
    claim_template,
    config_secret,
    config_volume,
    container_security,
    empty_dir,
    forwarder_config,
    hashed_config_map,
    hashed_name,
    labels,
    log_forwarder,
    pdb,
    pod_identity,
    region_affinity,
    resources_spec,
    secret_env,
    secret_volume,
    selector,
    service,
    stateful_set_spec,
    zone_spread,
)

HAPI_PORT = 8080
PG_PORT = 5432
PG_UID = 70
PG_LOG_DIR = "/var/log/postgresql"
FR_CORE_VERSION = "2.1.0"


class DatabaseArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["in-cluster", "external"]
    host: str | None = None
    port: int = PG_PORT
    name: str = "hapi"
    user: str = "hapi"
    credentials_secret: str | None = None  # external: existing Secret (username, password)
    ca_secret: str | None = None  # Secret with ca.crt of the database server
    server_secret: str | None = None  # in-cluster: tls.crt/tls.key of the PostgreSQL server
    storage_class: str | None = None
    storage_size: str = "20Gi"
    image: str | None = None


class Partition(BaseModel):
    """A tenant's partition of the FHIR store: its number (never 0: DEFAULT), its name (the tenant's key, as the
    gateway writes it in `/fhir/<name>/`), a description."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=1)
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,200}$")
    description: str


PARTITIONS_SCRIPT = "create_partitions.sh"
PARTITIONS_LOG = "/var/log/socle/partitions.log"  # what the partitions Job did, forwarded to the audit log
TEMPLATES = Path(__file__).resolve().parent / "templates"


def partition_files(partitions: Sequence[Partition]) -> dict[str, str]:
    """The partitions Job's ConfigMap: one `$partition-management-create-partition` request body per partition,
    written by the JSON serialiser, and the fixed script that sends them (socle/components/templates)."""
    files = {f"partition-{p.id}.json": json.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "id", "valueInteger": p.id}, {"name": "name", "valueCode": p.name},
        {"name": "description", "valueString": p.description}]}, ensure_ascii=False, sort_keys=True) + "\n"
        for p in sorted(partitions, key=lambda p: p.id)}
    files[PARTITIONS_SCRIPT] = (TEMPLATES / PARTITIONS_SCRIPT).read_text()
    return files


class FhirArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    kit_version: str
    namespace: str
    image: str
    syslog_image: str
    replicas: int = Field(ge=1)
    public_host: str
    validation: bool
    terminology_server: str
    annuaire_api_key_secret: str
    annuaire_api_key: Any = None  # the key from the stack's encrypted configuration, or None: a Secret you create
    database_password: Any = None  # external database: its password from the stack's encrypted configuration
    ins_systems: Sequence[str]
    database: DatabaseArgs
    memory: str = "2Gi"
    region_label: str
    regions: Sequence[str]
    audit: AuditTarget
    client_network: str = "0.0.0.0/0"
    protect: bool = False
    # Regional platform: the store holds one partition per shared tenant (HAPI request-tenant partitioning, tenant
    # named by the URL base `/fhir/<tenant>/`, which only the gateway writes); ids are assigned by the server (UUID),
    # never chosen by a client; FR Core and the terminologies live in the DEFAULT partition.
    partitioning: bool = False
    partitions: Sequence[Partition] = ()  # created by the `hapi-partitions-*` Job (partitioning only)
    tools_image: str | None = None  # the partitions Job's image (a shell and wget)
    partitions_service_account: str = "fhir-partitions"
    service_account: str = "fhir"
    database_service_account: str = "postgres"


def jdbc_url(host: str, port: int, database: str, ca_file: str) -> str:
    """The PostgreSQL JDBC URL: host, port and database confined to their parts, TLS options fixed by the kit.
    Parsed back: any other host, path or query option than the kit's aborts the render."""
    from urllib.parse import parse_qsl, quote, urlsplit

    if not re.fullmatch(r"[A-Za-z0-9.-]+|[0-9a-fA-F:.]+", host):  # a host name or an IP address, nothing else
        raise GrammarError("application.yaml", "the database host must be a host name or an IP address", [host])
    query = {"ssl": "true", "sslmode": "verify-full", "sslrootcert": ca_file}
    netloc = f"[{host}]" if ":" in host else host
    url = f"jdbc:postgresql://{netloc}:{port}/{quote(database, safe='')}?" + "&".join(
        f"{k}={quote(v, safe='/')}" for k, v in query.items())
    try:
        parts = urlsplit(url[len("jdbc:"):])
        same = (parts.hostname == host.lower() and parts.port == port and parts.path == f"/{database}"
                and dict(parse_qsl(parts.query, keep_blank_values=True)) == query and not parts.fragment and not parts.username)
    except ValueError:
        same = False
    if not same:
        raise GrammarError("application.yaml", "the database URL does not parse back to the kit's host, port, "
                           "database and TLS options",
                           [v for v in (host, database) if not re.fullmatch(r"[A-Za-z0-9._-]+|[0-9a-fA-F:.]+", v)] or [host, database])
    return url


# hapi.fhir keys of a partitioned store (starter v8.8.0-1 AppProperties.Partitioning; socle/fhir/hapi_properties.json)
PARTITIONING = {
    "partitioning": {
        "request_tenant_partitioning_mode": True,  # RequestTenantPartitionInterceptor, tenant from the URL base
        "allow_references_across_partitions": False,  # a tenant's resource never points into another's partition
        "partitioning_include_in_search_hashes": False,
        # the conditional-create URL index keyed by partition: otherwise one tenant's `Patient?identifier=X`
        # blocks the same conditional create in every other tenant (HAPI changelog #6033)
        "conditional_create_duplicate_identifiers_enabled": True,
    },
    "server_id_strategy": "UUID",  # ids assigned by the server: not guessable across tenants
    "client_id_strategy": "NOT_ALLOWED",  # a client never chooses a resource id (no collision between partitions)
}


def application_yaml(args: FhirArgs, *, db_host: str | None = None, paths: dict[str, str] | None = None) -> str:
    """HAPI FHIR's Spring configuration, written by the YAML serialiser."""
    db = args.database
    p = {"db_ca": "/etc/socle/tls/db-ca", **(paths or {})}
    access_format = ("request_id[${requestHeader.x-request-id}] client_dn[${requestHeader.x-ssl-client-s-dn}] "
                     "operation[${operationType} ${operationName} ${idOrResourceName}] path[${servletPath}] "
                     "source[${requestHeader.x-forwarded-for}]")
    data = {
        "server": {"port": HAPI_PORT},
        "management": {"endpoints": {"web": {"exposure": {"include": "health"}}}},
        "spring": {
            "main": {"allow-circular-references": True},
            "flyway": {"enabled": False},
            "datasource": {
                "url": jdbc_url(db_host or database_host(args), db.port, db.name, f"{p['db_ca']}/ca.crt"),
                # Credentials come from the environment (secretKeyRef), never from this file.
                "username": "${DB_USERNAME}",
                "password": "${DB_PASSWORD}",
                "driverClassName": "org.postgresql.Driver",
                "hikari": {"maximum-pool-size": 10},
            },
            # Hibernate Search stays off: the starter sets hibernate.search.enabled=false when absent (StarterJpaConfig).
            "jpa": {"properties": {"hibernate.dialect": "ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect"}},
        },
        "hapi": {"fhir": {
            "fhir_version": FHIR_VERSION,
            "server_address": f"https://{args.public_host}/fhir",
            "openapi_enabled": False,
            "mdm_enabled": False,
            "bulk_export_enabled": False,
            "bulk_import_enabled": False,
            "cors": {"allow_Credentials": False, "allowed_origin": [f"https://{args.public_host}"]},
            "allow_external_references": False,
            # FHIR-02: national terminologies from the ANS terminology server (a key of the starter since v8.2.0-1).
            "remote_terminology_service": {"all": {"system": "*", "url": args.terminology_server}},
            # FHIR-04 / INS-01: FR Core stored in the repository (STORE_AND_INSTALL: its StructureDefinitions become
            # resources), so the repository validating interceptor below builds one rule per resource type FR Core
            # profiles: the resource must declare one of FR Core's profiles of its type and is validated against it
            # (starter RepositoryValidationInterceptorFactoryR4.buildUsingStoredStructureDefinitions). Dependencies are
            # not stored: their profiles would become accepted alternatives to FR Core's.
            "implementationguides": {"frcore": {"name": FR_CORE_PACKAGE, "version": FR_CORE_VERSION,
                                                "installMode": "STORE_AND_INSTALL", "fetchDependencies": False,
                                                "reloadExisting": False}},
            "enable_repository_validating_interceptor": args.validation,
            # INS-01: the kit's interceptor refuses an INS on an identity that is not VALI (rule socle-ins-1); its jar
            # is mounted in the image's extra-classes directory (hapi-extra-classes ConfigMap).
            "custom-interceptor-classes": INS_INTERCEPTOR_CLASS,
            "validation": {"requests_enabled": args.validation, "responses_enabled": False},
            # TRACE-01 / TRACE-02: one access line per request, with the caller's identity, never a body.
            "logger": {
                "name": "fhir.access",
                "format": access_format,
                "error_format": "ERROR request_id[${requestHeader.x-request-id}] ${requestVerb} ${requestUrl}",
                "log_exceptions": True,
            },
            "tester": {},
            **(PARTITIONING if args.partitioning else {}),
        }},
        "socle": {
            "ins_systems": list(args.ins_systems),
            # INS-01: the kit's rule (INS ⇒ VALI). HAPI does not read this namespace: see the INS-01 control.
            "ins_rule": {"id": INS_QUALIFIED_RULE_ID, "expression": INS_QUALIFIED_RULE},
            "annuaire_sante": {"base_url": ANNUAIRE_SANTE_FHIR, "api_key_env": "ESANTE_API_KEY"},
        },
    }
    kit_placeholders = [access_format, data["hapi"]["fhir"]["logger"]["error_format"], "${DB_USERNAME}", "${DB_PASSWORD}"]
    return yaml_document("application.yaml", [
        f"Rendered by socle ({args.kit_version}) — HAPI FHIR JPA server (FHIR-01..04, TRACE-01/03, K8S-08).",
        "Credentials come from the environment (secretKeyRef), never from this file.",
        "FHIR-02 terminology server, FHIR-04/INS-01 FR Core validation, TRACE-01/02 access log: see hapi.fhir.",
    ], data, placeholders=kit_placeholders)


def logback_xml(kit_version: str, udp_port: int = FORWARDER_UDP_PORT) -> str:
    return render_checked("logback.xml", "logback.xml.j2", "xml", kit_version=kit_version, udp_port=udp_port)


def extra_classes_config_map(parent: pulumi.Resource, namespace: str, lbl: dict[str, str]) -> str:
    """INS-01: the ConfigMap holding the kit's interceptor jar (binary, named by its content)."""
    data = {INS_INTERCEPTOR_JAR_KEY: base64.b64encode(ins_interceptor_jar()).decode("ascii")}
    name = hashed_name("hapi-extra-classes", data)
    k8s.core.v1.ConfigMap(
        f"{namespace}-hapi-extra-classes",
        metadata={"name": name, "namespace": namespace, "labels": dict(lbl),
                  "annotations": {ANN_REQUIREMENTS: "INS-01"}},
        binary_data=data,
        opts=child(parent),
    )
    return name


def database_host(args: FhirArgs) -> str:
    if args.database.mode == "external":
        assert args.database.host
        return args.database.host
    return f"postgres.{args.namespace}.svc.cluster.local"


def postgresql_conf(kit_version: str, *, listen_addresses: str = "*", port: int = PG_PORT, paths: dict[str, str] | None = None) -> str:
    p = {"socket": "/var/run/postgresql", "server_tls": "/etc/socle/tls/server", "log": PG_LOG_DIR, **(paths or {})}
    return render_checked(
        "postgresql.conf", "postgresql.conf.j2", "postgresql",
        kit_version=kit_version,
        listen_addresses=listen_addresses,
        port=port,
        paths=p,
        files={"cert": f"{p['server_tls']}/tls.crt", "key": f"{p['server_tls']}/tls.key"},
        tls12_ciphers=":".join(TLS12_AEAD_SUITES),
    )


def pg_hba_conf(kit_version: str, database: str, user: str, client_network: str) -> str:
    return render_checked("pg_hba.conf", "pg_hba.conf.j2", "pg_hba", kit_version=kit_version, database=database, user=user,
                          client_network=client_network)


PG_LOG_FILES = ({"path": f"{PG_LOG_DIR}/postgresql-*.log", "tag": "postgres"},)


def config_files(args: FhirArgs) -> dict[str, str]:
    """Every configuration file of the FHIR store's ConfigMaps, as the pods read them (the render checks each)."""
    files = {"application.yaml": application_yaml(args), "logback.xml": logback_xml(args.kit_version),
             "fhir/rsyslog.conf": forwarder_config(args.kit_version, "fhir", args.audit)}
    if args.database.mode == "in-cluster":
        files.update({"postgresql.conf": postgresql_conf(args.kit_version),
                      "pg_hba.conf": pg_hba_conf(args.kit_version, args.database.name, args.database.user, args.client_network),
                      "postgres/rsyslog.conf": forwarder_config(args.kit_version, "postgres", args.audit, PG_LOG_FILES)})
    if args.partitioning and args.partitions:
        files.update({f"partitions/{k}": v for k, v in partition_files(args.partitions).items()})
    return files


class FhirStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: FhirArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:fhir:FhirStore", name, None, opts)
        ns = args.namespace
        db = args.database

        # --- database ------------------------------------------------------------------------------
        if db.mode == "in-cluster":
            password = random.RandomPassword(f"{ns}-db-password", length=32, special=False, opts=child(self))
            creds_secret = "postgres-credentials"
            k8s.core.v1.Secret(
                f"{ns}-db-credentials",
                metadata={"name": creds_secret, "namespace": ns, "labels": labels("fhir", "postgres", ns)},
                type="kubernetes.io/basic-auth",
                string_data={"username": db.user, "password": password.result},
                opts=child(self),
            )
            self._postgres(args, creds_secret)
        else:
            assert db.credentials_secret
            creds_secret = db.credentials_secret
            if args.database_password is not None:  # from the stack's encrypted configuration, else yours
                config_secret(self, ns, creds_secret, {"username": db.user, "password": args.database_password},
                              "fhir.database.password", labels("fhir", "hapi-fhir", ns), "kubernetes.io/basic-auth")

        # FHIR-03: the Annuaire Santé key from the stack's encrypted configuration, kept secret in the state.
        if args.annuaire_api_key is not None:
            config_secret(self, ns, args.annuaire_api_key_secret, {"api-key": args.annuaire_api_key},
                          "fhir.annuaire_api_key", labels("fhir", "hapi-fhir", ns))

        # --- HAPI FHIR -----------------------------------------------------------------------------
        app = {
            "application.yaml": application_yaml(args),
            "logback.xml": logback_xml(args.kit_version),
        }
        lbl = labels("fhir", "hapi-fhir", ns, {LABEL_DATA: "true"})
        sel = selector("hapi-fhir", ns)
        app_name = hashed_config_map(self, ns, "hapi-fhir", lbl, app, {
            ANN_REQUIREMENTS: "FHIR-01 FHIR-02 FHIR-04 INS-01 INS-02 TRACE-01 TRACE-03"})
        extra_name = extra_classes_config_map(self, ns, lbl)
        sidecar, sidecar_volumes = log_forwarder(self, ns, "fhir", lbl, args.kit_version, args.syslog_image, args.audit)
        db_ca_secret = db.ca_secret or "postgres-server-tls"
        hapi = {
            "name": "hapi-fhir",
            "image": args.image,
            "imagePullPolicy": "Always",
            "env": [
                {"name": "SPRING_CONFIG_LOCATION", "value": "file:///etc/socle/hapi/application.yaml"},
                {"name": "LOGGING_CONFIG", "value": "/etc/socle/hapi/logback.xml"},
                {"name": "JAVA_TOOL_OPTIONS", "value": "-Djava.io.tmpdir=/tmp -XX:MaxRAMPercentage=75"},
                secret_env("DB_USERNAME", creds_secret, "username"),
                secret_env("DB_PASSWORD", creds_secret, "password"),
                # FHIR-03: the Annuaire Santé key only from a Secret.
                secret_env("ESANTE_API_KEY", args.annuaire_api_key_secret, "api-key"),
            ],
            "ports": [{"name": "http", "containerPort": HAPI_PORT, "protocol": "TCP"}],
            "securityContext": container_security(run_as_user=65532),
            "resources": resources_spec("500m", args.memory, "2", args.memory),
            "startupProbe": {"httpGet": {"path": "/fhir/metadata", "port": HAPI_PORT}, "periodSeconds": 10, "failureThreshold": 60},
            "readinessProbe": {"httpGet": {"path": "/fhir/metadata", "port": HAPI_PORT}, "periodSeconds": 15, "timeoutSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/actuator/health", "port": HAPI_PORT}, "periodSeconds": 30, "timeoutSeconds": 5},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/socle/hapi", "readOnly": True},
                {"name": "extra-classes", "mountPath": EXTRA_CLASSES_DIR, "readOnly": True},
                {"name": "db-ca", "mountPath": "/etc/socle/tls/db-ca", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "cache", "mountPath": "/app/target"},
            ],
        }
        self.deployment = k8s.apps.v1.Deployment(
            f"{ns}-hapi-fhir",
            metadata={"name": "hapi-fhir", "namespace": ns, "labels": lbl},
            spec={
                "replicas": args.replicas,
                "selector": {"matchLabels": sel},
                "template": {
                    "metadata": {"labels": lbl},
                    "spec": {
                        **pod_identity(args.service_account, fs_group=65532),
                        "containers": [hapi, sidecar],
                        "volumes": [
                            config_volume("config", app_name),
                            config_volume("extra-classes", extra_name),
                            secret_volume("db-ca", db_ca_secret, mode=0o444, items=[("ca.crt", "ca.crt")]),
                            empty_dir("tmp", "1Gi"),
                            empty_dir("cache", "1Gi"),
                            *sidecar_volumes,
                        ],
                        "affinity": region_affinity(args.region_label, args.regions),
                        "topologySpreadConstraints": zone_spread(sel),
                    },
                },
            },
            opts=child(self),
        )
        service(self, ns, "hapi-fhir", lbl, sel, [("http", HAPI_PORT, "http")])
        if args.partitioning and args.partitions:
            self._partitions(args)
        if args.replicas >= 2:
            pdb("hapi-fhir", ns, sel, lbl, self)
        self.register_outputs({"service": f"hapi-fhir.{ns}.svc.cluster.local"})

    def _partitions(self, args: FhirArgs) -> None:
        """A Job that creates the tenants' partitions (HAPI has no setting for it); its name follows its content, so a
        new tenant runs a new Job, and a partition that exists is left alone."""
        ns = args.namespace
        assert args.tools_image, "the partitions Job needs tools_image"
        lbl = labels("fhir", "fhir-partitions", ns)
        files = partition_files(args.partitions)
        conf_name = hashed_config_map(self, ns, "hapi-partitions", lbl, files, {ANN_REQUIREMENTS: "FHIR-01"})
        # TRACE-01: what the Job did reaches the audit log: its log file, tailed by a forwarder that starts first and
        # stops when the Job ends (a native sidecar: an init container that keeps running).
        sidecar, sidecar_volumes = log_forwarder(
            self, ns, "fhir-partitions", lbl, args.kit_version, args.syslog_image, args.audit,
            files=({"path": PARTITIONS_LOG, "tag": "fhir-partitions:"},),
            extra_mounts=[{"name": "partitions-log", "mountPath": PARTITIONS_LOG.rsplit("/", 1)[0], "readOnly": True}],
            run_as_user=65534)
        container = {
            "name": "create-partitions",
            "image": args.tools_image,
            "imagePullPolicy": "Always",
            "command": ["/bin/sh", f"/etc/socle/partitions/{PARTITIONS_SCRIPT}"],
            "env": [{"name": "FHIR_BASE", "value": f"http://hapi-fhir.{ns}.svc.cluster.local:{HAPI_PORT}/fhir"},
                    {"name": "SOCLE_LOG", "value": PARTITIONS_LOG}],
            "securityContext": container_security(run_as_user=65534),
            "resources": resources_spec("50m", "32Mi", "200m", "64Mi"),
            "volumeMounts": [{"name": "partitions", "mountPath": "/etc/socle/partitions", "readOnly": True},
                             {"name": "partitions-log", "mountPath": PARTITIONS_LOG.rsplit("/", 1)[0]}],
        }
        k8s.batch.v1.Job(
            f"{ns}-hapi-partitions",
            metadata={"name": hashed_name("hapi-partitions", files), "namespace": ns, "labels": lbl},
            spec={
                "backoffLimit": 30,  # HAPI takes minutes to start: the Job retries until it answers
                "template": {
                    "metadata": {"labels": lbl},
                    "spec": {
                        **pod_identity(args.partitions_service_account),
                        "restartPolicy": "OnFailure",
                        "initContainers": [{**sidecar, "restartPolicy": "Always"}],
                        "containers": [container],
                        "volumes": [config_volume("partitions", conf_name), empty_dir("partitions-log", "16Mi"),
                                    *sidecar_volumes],
                        "affinity": region_affinity(args.region_label, args.regions),
                    },
                },
            },
            opts=child(self),
        )

    def _postgres(self, args: FhirArgs, creds_secret: str) -> None:
        ns = args.namespace
        db = args.database
        assert db.image and db.server_secret and db.storage_class
        conf = {
            "postgresql.conf": postgresql_conf(args.kit_version),
            "pg_hba.conf": pg_hba_conf(args.kit_version, db.name, db.user, args.client_network),
        }
        lbl = labels("fhir", "postgres", ns, {LABEL_DATA: "true"})
        sel = selector("postgres", ns)
        conf_name = hashed_config_map(self, ns, "postgres", lbl, conf, {ANN_REQUIREMENTS: "TLS-01 TLS-02 K8S-08 TRACE-01"})
        # TRACE-01: the forwarder runs as postgres's uid to read its 0600 log files.
        sidecar, sidecar_volumes = log_forwarder(
            self, ns, "postgres", lbl, args.kit_version, args.syslog_image, args.audit,
            files=PG_LOG_FILES,
            extra_mounts=[{"name": "logs", "mountPath": PG_LOG_DIR, "readOnly": True}], run_as_user=PG_UID)
        container = {
            "name": "postgres",
            "image": db.image,
            "imagePullPolicy": "Always",
            "args": ["postgres", "-c", "config_file=/etc/socle/postgres/postgresql.conf", "-c", "hba_file=/etc/socle/postgres/pg_hba.conf"],
            "env": [
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                {"name": "POSTGRES_DB", "value": db.name},
                secret_env("POSTGRES_USER", creds_secret, "username"),
                secret_env("POSTGRES_PASSWORD", creds_secret, "password"),
                {"name": "POSTGRES_INITDB_ARGS", "value": "--auth-local=scram-sha-256 --auth-host=scram-sha-256"},
            ],
            "ports": [{"name": "postgres", "containerPort": PG_PORT, "protocol": "TCP"}],
            "securityContext": container_security(run_as_user=PG_UID),
            "resources": resources_spec("250m", "512Mi", "1", "1Gi"),
            "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "/var/run/postgresql", "-p", str(PG_PORT)]}, "periodSeconds": 10},
            "livenessProbe": {"exec": {"command": ["pg_isready", "-h", "/var/run/postgresql", "-p", str(PG_PORT)]}, "periodSeconds": 30},
            "volumeMounts": [
                {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                {"name": "config", "mountPath": "/etc/socle/postgres", "readOnly": True},
                {"name": "server-tls", "mountPath": "/etc/socle/tls/server", "readOnly": True},
                {"name": "run", "mountPath": "/var/run/postgresql"},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "logs", "mountPath": PG_LOG_DIR},
            ],
        }
        pod_spec = {
            **pod_identity(args.database_service_account, fs_group=PG_UID),
            "containers": [container, sidecar],
            "volumes": [
                config_volume("config", conf_name),
                secret_volume("server-tls", db.server_secret, mode=0o440, items=[("tls.crt", "tls.crt"), ("tls.key", "tls.key")]),
                empty_dir("run", "1Mi"),
                empty_dir("tmp", "256Mi"),
                empty_dir("logs", "512Mi"),
                *sidecar_volumes,
            ],
            "affinity": region_affinity(args.region_label, args.regions),
        }
        k8s.apps.v1.StatefulSet(
            f"{ns}-postgres",
            metadata={"name": "postgres", "namespace": ns, "labels": lbl},
            spec=stateful_set_spec("postgres", 1, sel, lbl, pod_spec,
                                   [claim_template("data", db.storage_class, db.storage_size, {LABEL_DATA: "true"})]),
            opts=child(self, protect=args.protect, retain_on_delete=args.protect),
        )
        service(self, ns, "postgres", lbl, sel, [("postgres", PG_PORT, "postgres")])
