"""Time of the control catalogue over the demo render, and over the same objects copied into N times as many
namespaces (a cluster hosting many établissements), to show how the audit scales with the object count.

Figures per scale, measured in the same run, each scale in a process of its own:
- `audit_seconds_first` (the first audit of the process, as an auditor's run is) and `audit_seconds_median` (of
  three): the audit in memory (the objects indexed into an `Evidence`, every control run);
- for the 2k and 20k scales, the snapshot path as an auditor runs it, for the export `socle audit
  --print-snapshot-command` prints (`kubectl get … -o json`) and for a YAML export (`-o yaml`): the file read by
  `sources.from_snapshot` (parse + shape check, `load_seconds_median`), and the whole command `socle audit --snapshot
  FILE` in a subprocess (`cli_seconds`: interpreter start, imports, load, audit, text report).
The target of issue 9 (20,000 objects in ≤ 3 s, time(20k)/time(2k) ≤ 12) is checked on the in-memory audit and on
the whole command with the JSON export; the YAML figures are reported beside them.

Run:  .venv/bin/python benchmarks/audit.py   (writes benchmarks/results/audit.json)
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_results  # noqa: E402

import yaml  # noqa: E402

from socle.audit import runner, sources  # noqa: E402
from socle.audit.evidence import Evidence  # noqa: E402
from socle.render import run_program  # noqa: E402
from socle.stackfile import load  # noqa: E402

RUNS = 3
SCALES = (1, 5, 20, 27, 270)  # 27 copies: ~2,000 objects; 270 copies: ~20,000 objects (a regional cluster)
SNAPSHOT_SCALES = {27: "2k", 270: "20k"}
AS_OF = dt.date(2026, 11, 27)


def copies(objects: list[dict], n: int) -> list[dict]:
    """n copies of the kit, the i-th in namespaces suffixed -i (cluster-scoped objects kept once)."""
    out = [o for o in objects if not o["metadata"].get("namespace")]
    for i in range(n):
        for o in objects:
            ns = o["metadata"].get("namespace")
            if not ns:
                continue
            c = copy.deepcopy(o)
            c["metadata"]["namespace"] = f"{ns}-{i}" if n > 1 else ns
            out.append(c)
        for o in objects:
            if o["kind"] == "Namespace" and n > 1:
                c = copy.deepcopy(o)
                c["metadata"]["name"] = f"{o['metadata']['name']}-{i}"
                out.append(c)
    return [o for o in out if not (n > 1 and o["kind"] == "Namespace" and not o["metadata"]["name"][-1].isdigit())]


def audit_once(objs: list[dict]) -> tuple[float, runner.Audit]:
    start = time.perf_counter()
    ev = Evidence(source="benchmark", objects=objs, target="benchmark")
    audit = runner.run(ev, runner.make_context(ev, AS_OF, profile="dev"))
    return time.perf_counter() - start, audit


def snapshot_figures(objs: list[dict], tmp: Path, label: str) -> dict:
    """The JSON export (what kubectl -o json writes: indent 4) and the YAML one, each loaded and audited by the CLI."""
    doc = {"apiVersion": "v1", "kind": "List", "items": objs}
    json_path = tmp / f"snapshot-{label}.json"
    json_path.write_text(json.dumps(doc, indent=4))
    yaml_path = tmp / f"snapshot-{label}.yaml"
    yaml_path.write_text(yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))
    out = {}
    for form, path in (("json", json_path), ("yaml", yaml_path)):
        out.update({f"{form}_{k}": v for k, v in export_figures(objs, path).items()})
    return out


def export_figures(objs: list[dict], path: Path) -> dict:
    loads = []
    for _ in range(RUNS):
        start = time.perf_counter()
        ev = sources.from_snapshot(path)
        loads.append(time.perf_counter() - start)
    assert len(ev.objects) == len(objs)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    script = Path(sys.executable).parent / "socle"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "socle.cli"]
    run = subprocess.run(command + ["audit", "--snapshot", str(path), "--profile", "dev", "--as-of", AS_OF.isoformat()],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    cli = time.perf_counter() - start
    assert run.returncode in (0, 1), run.stderr[-2000:]
    return {"snapshot_mib": round(path.stat().st_size / 2**20, 1), "load_seconds_median": round(statistics.median(loads), 3),
            "cli_seconds": round(cli, 3), "cli_exit": run.returncode}


def one_scale(n: int, tmp: Path) -> dict:
    """The figures of one scale, in a process of its own (run by main): no heap, cache or collector state left by
    another scale. `audit_seconds_first` is the first audit of the process, as an auditor's run is."""
    objs = copies(run_program(load("demo")).objects, n)
    times = []
    for _ in range(RUNS):
        seconds, audit = audit_once(objs)
        times.append(seconds)
    row = {"objects": len(objs), "findings": sum(len(r.findings) for r in audit.results),
           "audit_seconds_first": round(times[0], 3), "audit_seconds_median": round(statistics.median(times), 3),
           "runs": RUNS}
    if n in SNAPSHOT_SCALES:
        row.update(snapshot_figures(objs, tmp, SNAPSHOT_SCALES[n]))
    return row


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(one_scale(int(sys.argv[2]), Path(sys.argv[3]))))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in SCALES:
            run = subprocess.run([sys.executable, __file__, "--one", str(n), tmp], capture_output=True, text=True,
                                 check=True)
            row = json.loads(run.stdout.strip().splitlines()[-1])
            results[f"x{n}"] = row
            print(f"x{n}: {json.dumps(row)}", file=sys.stderr)
    small, large = results["x27"], results["x270"]
    keys = ("audit_seconds_first", "audit_seconds_median", "json_load_seconds_median", "json_cli_seconds", "yaml_load_seconds_median",
            "yaml_cli_seconds")
    ratio = {key: round(large[key] / small[key], 2) for key in keys}
    write_results(
        "audit", scales=results,
        target={"objects": large["objects"], "limit_seconds": 3.0, "ratio_limit": 12, "ratio_20k_2k": ratio,
                "audit_seconds": large["audit_seconds_first"], "json_cli_seconds": large["json_cli_seconds"],
                "met": large["audit_seconds_first"] <= 3.0 and ratio["audit_seconds_first"] <= 12
                and large["json_cli_seconds"] <= 3.0 and ratio["json_cli_seconds"] <= 12,
                "covers": "the in-memory audit (Evidence indexes + every control) and the whole `socle audit "
                          "--snapshot cluster.json` command on the JSON export the kit prints; the YAML export is "
                          "reported beside them (yaml_*), not held to the target"},
        machine_cores=os.cpu_count(),
        load_average_at_end=os.getloadavg()[0],
    )


if __name__ == "__main__":
    main()
