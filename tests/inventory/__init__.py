"""YAML inventories of what each example stack renders: counts by kind and key values.

Regenerate after an intended change with:  python -m tests.inventory --write
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REGENERATE = "python -m tests.inventory --write"


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("spec", {}).get("template", {}).get("spec", {})


def inventory(objects: list[dict[str, Any]], secrets: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(o["kind"] for o in objects)
    values: dict[str, Any] = {}
    for o in sorted(objects, key=lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])):
        meta = o["metadata"]
        key = f"{o['kind']}/{meta.get('namespace', '_cluster')}/{meta['name']}"
        if o["kind"] == "Namespace":
            values[key] = {"pod-security": meta["labels"]["pod-security.kubernetes.io/enforce"]}
        elif o["kind"] in ("Deployment", "StatefulSet"):
            pod = _pod_spec(o)
            values[key] = {
                "replicas": o["spec"]["replicas"],
                "images": sorted(c["image"] for c in pod.get("containers", [])),
                "automountServiceAccountToken": pod.get("automountServiceAccountToken"),
            }
        elif o["kind"] == "Service":
            values[key] = {"type": o["spec"]["type"], "ports": sorted(p["port"] for p in o["spec"]["ports"])}
        elif o["kind"] == "StorageClass":
            values[key] = {"provisioner": o["provisioner"], "reclaimPolicy": o["reclaimPolicy"],
                           "parameters": o.get("parameters", {})}
        elif o["kind"] == "Schedule":
            values[key] = {"schedule": o["spec"]["schedule"], "ttl": o["spec"]["template"]["ttl"]}
        elif o["kind"] == "PodDisruptionBudget":
            values[key] = {"minAvailable": o["spec"]["minAvailable"]}
    return {
        "counts": dict(sorted(counts.items())),
        "total": sum(counts.values()),
        "secrets_left_out": sorted(f"{s['namespace']}/{s['name']}" for s in secrets),
        "values": values,
    }


def path_for(stack: str) -> Path:
    return HERE / f"{stack}.yaml"


def main(argv: list[str]) -> int:
    from socle.render import run_program
    from socle.stackfile import load
    from tests.conftest import EXAMPLE_STACKS

    if "--write" not in argv:
        print(f"usage: {REGENERATE}")
        return 2
    for name in EXAMPLE_STACKS:
        rendered = run_program(load(name))
        inv = inventory(rendered.objects, rendered.secrets)
        path_for(name).write_text(
            f"# Inventory of stack {name}. Regenerate with: {REGENERATE}\n" + yaml.safe_dump(inv, sort_keys=True, width=120),
            encoding="utf-8",
        )
        print(f"wrote {path_for(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
