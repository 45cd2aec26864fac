"""A volume provisioner and a load-balancer controller for the local control plane, standing in for a CSI driver's
external-provisioner and a cloud controller manager.

For each pending claim whose StorageClass names a provisioner (any but `kubernetes.io/no-provisioner`), it creates a
`local` PersistentVolume bound to that claim: on the node the scheduler selected (`volume.kubernetes.io/selected-node`,
WaitForFirstConsumer), or for Immediate binding on a node allowed by the class's `allowedTopologies`. The volume keeps
the class's reclaim policy and is marked `pv.kubernetes.io/provisioned-by`, as a real provisioner's. Nothing is
written on disk but an empty folder per volume: kwok runs no container.

Run:  python -m socle.cluster.provisioner --kubeconfig FILE --root DIR
"""
from __future__ import annotations

import argparse
import ssl
import sys
import time
from pathlib import Path

from .http import request

SELECTED_NODE = "volume.kubernetes.io/selected-node"


class Api:
    def __init__(self, kubeconfig: Path) -> None:
        import yaml

        doc = yaml.safe_load(kubeconfig.read_text())
        cluster = doc["clusters"][0]["cluster"]
        user = doc["users"][0]["user"]
        self.server = cluster["server"]
        self.ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.ctx.load_cert_chain(user["client-certificate"], user["client-key"])

    def call(self, method: str, path: str, body: dict | None = None,
             content_type: str = "application/json") -> tuple[int, dict]:
        return request(self.server, self.ctx, method, path, body, content_type)


def _matches(node: dict, topologies: list[dict]) -> bool:
    if not topologies:
        return True
    labels = node["metadata"].get("labels") or {}
    return any(all(labels.get(e.get("key")) in (e.get("values") or []) for e in t.get("matchLabelExpressions") or [])
               for t in topologies)


def volume_for(claim: dict, sc: dict, node: str, root: Path) -> dict:
    meta = claim["metadata"]
    name = f"pvc-{meta['uid']}"
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": sc.get("provisioner", "")}},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": claim["spec"].get("volumeMode", "Filesystem"),
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                         "name": meta["name"], "uid": meta["uid"]},
            "local": {"path": str(path)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    }


def provision_once(api: Api, root: Path) -> list[str]:
    """Create the volumes of the claims waiting for one; returns the claims served."""
    status, claims = api.call("GET", "/api/v1/persistentvolumeclaims")
    if status != 200:
        return []
    status, classes = api.call("GET", "/apis/storage.k8s.io/v1/storageclasses")
    classes_by_name = {c["metadata"]["name"]: c for c in classes.get("items", [])} if status == 200 else {}
    nodes: list[dict] | None = None
    served = []
    for claim in claims.get("items", []):
        if claim.get("status", {}).get("phase") != "Pending" or claim["spec"].get("volumeName"):
            continue
        sc = classes_by_name.get(claim["spec"].get("storageClassName") or "")
        if sc is None or sc.get("provisioner") in (None, "", "kubernetes.io/no-provisioner"):
            continue
        node = (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE)
        if node is None:
            if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                continue  # the scheduler has not placed its pod yet
            if nodes is None:
                nodes = api.call("GET", "/api/v1/nodes")[1].get("items", [])
            fit = [n for n in nodes if _matches(n, sc.get("allowedTopologies") or [])]
            if not fit:
                continue
            node = sorted(n["metadata"]["name"] for n in fit)[0]
        status, body = api.call("POST", "/api/v1/persistentvolumes", volume_for(claim, sc, node, root))
        if status in (201, 409):
            served.append(f"{claim['metadata']['namespace']}/{claim['metadata']['name']}")
        else:
            print(f"volume for {claim['metadata']['namespace']}/{claim['metadata']['name']}: "
                  f"{body.get('message', status)}", file=sys.stderr, flush=True)
    return served


def load_balancers_once(api: Api) -> list[str]:
    """Give each LoadBalancer Service without an address a loopback one, as a cloud controller gives a cloud load
    balancer's (cloud-provider-kind does the same for kind clusters). Returns the Services served."""
    status, services = api.call("GET", "/api/v1/services")
    if status != 200:
        return []
    served = []
    for svc in services.get("items", []):
        if (svc.get("spec") or {}).get("type") != "LoadBalancer":
            continue
        if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            continue
        meta = svc["metadata"]
        body = {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}}}
        req_status, answer = api.call("PATCH", f"/api/v1/namespaces/{meta['namespace']}/services/{meta['name']}/status",
                                      body, content_type="application/merge-patch+json")
        if req_status == 200:
            served.append(f"{meta['namespace']}/{meta['name']}")
    return served


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    api = Api(args.kubeconfig)
    while True:
        try:
            for claim in provision_once(api, args.root):
                print(f"provisioned a volume for {claim}", flush=True)
            for svc in load_balancers_once(api):
                print(f"load balancer address for {svc}", flush=True)
        except (OSError, ValueError, KeyError) as exc:
            print(f"provisioner: {exc}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
