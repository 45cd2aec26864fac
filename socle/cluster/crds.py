"""The CustomResourceDefinitions the stacks use, from their pinned upstream releases (through the Go module proxy).

Velero's Schedule and BackupStorageLocation (the version whose models the kit is built with, cloudcoil's velero
1.15.2) and the CSI snapshotter's VolumeSnapshotClass. Each file is checked against its SHA-256 before it is applied:
a changed upstream file is refused, not installed. On a cluster you bring, Velero and the CSI snapshotter install
these themselves.
"""
from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path

# (module, version, file in the module, sha256)
SOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("github.com/vmware-tanzu/velero", "v1.15.2", "config/crd/v1/bases/velero.io_backupstoragelocations.yaml",
     "870352ab9c09495d30e610eb71d7d8d915f0f22a738815d1db693e588c2c56da"),
    ("github.com/vmware-tanzu/velero", "v1.15.2", "config/crd/v1/bases/velero.io_schedules.yaml",
     "708c2ffb98d2b0df3283aa64d42ad70388119955f321234932719b643ba2558c"),
    ("github.com/vmware-tanzu/velero", "v1.15.2", "config/crd/v1/bases/velero.io_backups.yaml",
     "e6786a743ee24fba6a1ef35dcdaaf6072b30c284b0e2030c89ad717c3da32ed5"),
    ("github.com/vmware-tanzu/velero", "v1.15.2", "config/crd/v1/bases/velero.io_volumesnapshotlocations.yaml",
     "a0caf6508d300f5331cd67a21259639d59982c9d865bc49f7240578a5525da46"),
    ("github.com/kubernetes-csi/external-snapshotter/client/v8", "v8.2.0",
     "config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
     "75e6565aac2c0f2949ed13ea884bbaa388cb7be576b558b709cf1168e011828d"),
)


class CrdError(Exception):
    pass


@functools.lru_cache(maxsize=None)
def _module_dir(module: str, version: str) -> Path:
    """The module's folder in the Go module cache, downloaded once per process (several CRDs share a module)."""
    run = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True)
    try:
        info = json.loads(run.stdout or "{}")
    except ValueError:
        info = {}
    if run.returncode != 0 or "Dir" not in info:
        raise CrdError(f"{module}@{version} could not be downloaded from the Go module proxy: "
                       f"{info.get('Error') or run.stderr.strip()[-300:]}")
    return Path(info["Dir"])


def definitions() -> list[dict]:
    """The CRD objects, each file checked against its pinned SHA-256."""
    import yaml

    out = []
    for module, version, path, sha in SOURCES:
        data = (_module_dir(module, version) / path).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise CrdError(f"{module}@{version}/{path} is not the file pinned (SHA-256 {sha}): refused")
        out.append(yaml.safe_load(data))
    return out


def install(request) -> list[str]:
    """Create each CRD through `request(method, path, body) -> (status, body)` and wait until it is established."""
    import time

    names = []
    for crd in definitions():
        name = crd["metadata"]["name"]
        status, body = request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        if status not in (201, 409):
            raise CrdError(f"CRD {name} refused by the API server: {body.get('message', status)}")
        names.append(name)
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            status, body = request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", None)
            conditions = (body.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise CrdError(f"CRD {name} not established after 60 s")
            time.sleep(0.3)
    return names
