"""Figures of the real control plane path (issue 10), measured on this machine in one run:

- `build_cached_seconds`: `socle cluster build` when every group is in the cache (the cold build is measured by
  the build itself and written to each cache folder's BUILD.json: reported here as it was for the folders in the cache, cold or with a warm Go build cache; the cold figures are in controlplane/README.md);
- `cluster_up_seconds`: `socle cluster up` from nothing running to every node Ready (programs already built);
- `up_demo_seconds`: `socle up demo --yes` with the real engine onto that cluster (fresh state);
- `audit_live_seconds` and `audit_live_requests`: `socle audit --live --stack demo`, and the requests its user
  made, counted in the API server's audit log (one LIST per audited kind expected).

Run:  .venv/bin/python benchmarks/cluster.py   (writes benchmarks/results/cluster.json; stops the cluster after)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_results  # noqa: E402

from socle.cluster import build, local  # noqa: E402


def timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return time.perf_counter() - start, run


def main() -> None:
    socle = str(Path(sys.executable).parent / "socle")
    env = dict(os.environ)
    build_cached, _ = timed([sys.executable, "-m", "socle.cluster.build"], env)
    cold = {}
    for group in build.GROUPS.values():
        record = build.group_dir(group) / "BUILD.json"
        if record.is_file():
            cold[group.name] = json.loads(record.read_text()).get("total_seconds")
    local.down(quiet=True)
    up_seconds, _ = timed([socle, "cluster", "up"], env)
    lay = local.layout()
    stack = ROOT / "stacks" / "Pulumi.demo.yaml"
    saved = stack.read_bytes()
    with tempfile.TemporaryDirectory() as state:
        env.update(KUBECONFIG=str(lay.admin_kubeconfig), PULUMI_CONFIG_PASSPHRASE="benchmark",
                   PULUMI_BACKEND_URL=f"file://{state}")
        try:
            deploy, _ = timed([socle, "up", "demo", "--yes"], env)
            before = lay.audit_log.read_text().count("\n")
            audit, _ = timed([socle, "audit", "--live", "--stack", "demo", "--format", "json"], env)
            events = [json.loads(line) for line in lay.audit_log.read_text().splitlines()[before:]]
            requests = [e for e in events if e["user"]["username"] == "socle-admin" and e["stage"] == "ResponseComplete"]
            timed([socle, "destroy", "demo", "--yes"], env)
        finally:
            stack.write_bytes(saved)
            local.down(quiet=True)
    write_results(
        "cluster", build_cached_seconds=round(build_cached, 2), build_seconds_of_the_cached_folders=cold,
        cluster_up_seconds=round(up_seconds, 2), up_demo_seconds=round(deploy, 2),
        audit_live_seconds=round(audit, 2), audit_live_requests=len(requests),
        audit_live_requests_by_verb={v: sum(1 for e in requests if e["verb"] == v) for v in sorted({e["verb"] for e in requests})},
        machine_cores=os.cpu_count(),
    )


if __name__ == "__main__":
    main()
