"""Facts shared by the parameter models, the components and the audit controls (one place each)."""
from __future__ import annotations

# Kubernetes minors the kit supports: rendered objects are validated strictly against the oldest and the
# newest of them (and every one in between in CI).
SUPPORTED_KUBERNETES = ("1.31", "1.32", "1.33", "1.34", "1.35")

# TLS-02 / MSS-03: OpenSSL names. TLS 1.2: forward-secret ECDHE with AEAD only.
TLS12_AEAD_SUITES = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
)
# MSS-03: the MSSanté list intersected with TLS-02.
MSS_TLS12_SUITES = ("ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256")
TLS13_SUITES = ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256")

# Pro Santé Connect (PSC-04 / PSC-05).
PSC_PRODUCTION_ISSUER = "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"
PSC_SANDBOX_HOST = "auth.bas.psc.esante.gouv.fr"
PSC_SANDBOX_ISSUER = f"https://{PSC_SANDBOX_HOST}/auth/realms/esante-wallet"
# Every host of the PSC sandbox (BAS): its issuer, its wallet (authorization endpoint) and the legacy issuer host
# still found in third-party documentation (DOMAIN-SOURCES.md). None may appear in a production stack (PSC-05).
PSC_SANDBOX_HOSTS = (PSC_SANDBOX_HOST, "wallet.bas.psc.esante.gouv.fr", "auth.bas.esw.esante.gouv.fr")
PSC_SCOPE = "openid scope_all"
PSC_ACR = "eidas1"

# FHIR-01..03
FHIR_VERSION = "R4"
ANS_TERMINOLOGY_SERVER = "https://smt.esante.gouv.fr/fhir"
ANNUAIRE_SANTE_FHIR = "https://gateway.api.esante.gouv.fr/fhir/v2"

# INS-02
INS_SYSTEMS = {
    "NIR": "urn:oid:1.2.250.1.213.1.4.8",
    "NIA": "urn:oid:1.2.250.1.213.1.4.9",
    "TEST": "urn:oid:1.2.250.1.213.1.4.10",
    "DEMO": "urn:oid:1.2.250.1.213.1.4.11",
}
INS_NON_PRODUCTION = frozenset({INS_SYSTEMS["TEST"], INS_SYSTEMS["DEMO"]})

# FHIR-04 / INS-01: FR Core (hl7.fhir.fr.core, FHIR 4.0.1) and the INS rule. « Le matricule INS ne peut être véhiculé
# que dans le cas d'une identité qualifiée » (FR Core Patient-INS profile): INS ⇒ identity status VALI. FR Core's
# invariant fr-core-1 is the converse (VALI ⇒ INS), so the kit states this one as its own FHIRPath rule. An identifier
# of an INS system typed NH is FR Core Patient's NSS slice (the billing NIR, same OID), not an INS.
FR_CORE_PACKAGE = "hl7.fhir.fr.core"
FR_CORE_CANONICAL = "https://hl7.fr/ig/fhir/core"
FR_CORE_IDENTITY_RELIABILITY = f"{FR_CORE_CANONICAL}/StructureDefinition/fr-core-identity-reliability"
INS_QUALIFIED_RULE_ID = "socle-ins-1"
INS_QUALIFIED_RULE = (
    "identifier.where(("
    + " or ".join(f"system = '{s}'" for s in INS_SYSTEMS.values())
    + ") and type.coding.where(system = 'http://terminology.hl7.org/CodeSystem/v2-0203' and code = 'NH').empty())"
    f".exists() implies extension('{FR_CORE_IDENTITY_RELIABILITY}').extension('identityStatus')"
    ".value.exists(code = 'VALI')"
)

# HDS-01: European Economic Area (EU 27 + Iceland, Liechtenstein, Norway), ISO 3166-1 alpha-2.
EEA_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO".split()
)

# PKI-03: ANS warns 60 days before an IGC-Santé certificate expires, and renews only a certificate still valid
# (industriels FAQ, IGC-Santé): alert, and renew the demo PKI's certificates, that many days before.
CERT_EXPIRY_ALERT_DAYS = 60

# TRACE-01 / MSS-07: CSP R.6113-9-2 keeps traces of access to patient data six months (the floor); the CNIL's
# logging recommendation (2021) is six months to one year, longer only with a documented justification.
RETENTION_FLOOR_DAYS = 183
RETENTION_DEFAULT_DAYS = 365
RETENTION_CNIL_CEILING_DAYS = 365
HSTS_MIN_MAX_AGE = 31536000  # TLS-03

# K8S-11: the admission policies the platform layer renders (socle/components/admission.py), by name, with the requirement
# each one enforces at admission; the audit checks that each is present and bound to deny in the kit's namespaces.
ADMISSION_POLICIES = {
    "socle-k8s-01": "K8S-01", "socle-k8s-03": "K8S-03", "socle-k8s-04": "K8S-04", "socle-k8s-05": "K8S-05", "socle-k8s-06": "K8S-06",
    "socle-k8s-07": "K8S-07", "socle-k8s-08": "K8S-08", "socle-hds-04": "HDS-04", "socle-hds-01": "HDS-01",
    "socle-bck-01": "BCK-01",
}

# What an audit reads from a live cluster, one LIST per kind: (API group, version, plural, kind, namespaced).
# The auditor ClusterRole (K8S-10) grants get/list/watch on exactly these; Secrets are never read.
AUDITED_RESOURCES = (
    ("", "v1", "namespaces", "Namespace", False),
    ("", "v1", "pods", "Pod", True),
    ("", "v1", "services", "Service", True),
    ("", "v1", "configmaps", "ConfigMap", True),
    ("", "v1", "serviceaccounts", "ServiceAccount", True),
    ("", "v1", "resourcequotas", "ResourceQuota", True),
    ("", "v1", "limitranges", "LimitRange", True),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ("apps", "v1", "deployments", "Deployment", True),
    ("apps", "v1", "statefulsets", "StatefulSet", True),
    ("apps", "v1", "daemonsets", "DaemonSet", True),
    ("apps", "v1", "replicasets", "ReplicaSet", True),
    ("batch", "v1", "jobs", "Job", True),
    ("batch", "v1", "cronjobs", "CronJob", True),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", True),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False),
    ("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", "VolumeSnapshotClass", False),
    ("velero.io", "v1", "backupstoragelocations", "BackupStorageLocation", True),
    ("velero.io", "v1", "schedules", "Schedule", True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", False),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", False),
)
AUDITOR_ROLE = "socle-auditor"  # K8S-10: read-only ClusterRole of the auditors
AUDITOR_EXEC_ROLE = "socle-auditor-exec"  # optional Role: exec into the kit's pods for live host checks

# Labels and annotations the components write and the audit reads: the contract between them, in one place.
KIT = "socle"
PART_OF = "app.kubernetes.io/part-of"
LABEL_PREFIX = "socle.esante.fr"
LABEL_BLOCK = f"{LABEL_PREFIX}/block"
LABEL_DATA = f"{LABEL_PREFIX}/health-data"
LABEL_TENANT = f"{LABEL_PREFIX}/tenant"  # a hosted établissement's key (FINESS or SIRET) on its namespaces
LABEL_PROFILE = f"{LABEL_PREFIX}/profile"  # stamped on every namespace: what an audit of a snapshot judges
LABEL_ENCRYPTED = f"{LABEL_PREFIX}/encrypted"
LABEL_REGION_COUNTRY = f"{LABEL_PREFIX}/region-country"
ANN_REQUIREMENTS = f"{LABEL_PREFIX}/requirements"
ANN_PSS_EXCEPTION = f"{LABEL_PREFIX}/pod-security-exception"
ANN_BLUEPRINT = f"{LABEL_PREFIX}/blueprint"
ANN_KIT_VERSION = f"{LABEL_PREFIX}/kit-version"
ANN_ALLOWED_REGISTRIES = f"{LABEL_PREFIX}/allowed-registries"
ANN_REGION_COUNTRIES = f"{LABEL_PREFIX}/region-countries"
ANN_ROUTES = f"{LABEL_PREFIX}/routes"
# On a Secret the program makes from the stack's encrypted configuration: the parameter it comes from.
ANN_SECRET_SOURCE = f"{LABEL_PREFIX}/secret-source"
ANN_HOSTED_BY = f"{LABEL_PREFIX}/hosted-by"  # HDS-03: third-party | etablissement (on the health-data StorageClass)
LABEL_DECLARATION = f"{LABEL_PREFIX}/declaration"  # a ConfigMap that carries a statement of the stack, not a file
DATABASE_BACKUP = "database-backup"  # BCK-01/HDS-01: the external database's provider backups, as the stack declares them
# Velero's CSI support takes the VolumeSnapshotClass of a driver that carries this label (velero.io "CSI Support").
VELERO_SNAPSHOT_CLASS_LABEL = "velero.io/csi-volumesnapshot-class"
ANN_MAILBOX_PURGE_DAYS = f"{LABEL_PREFIX}/mailbox-purge-days"
