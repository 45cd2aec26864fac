"""Time of the control catalogue over the demo render, and over the same objects copied into N times as many
namespaces (a cluster hosting many établissements), to show how the audit scales with the object count.

Run:  .venv/bin/python benchmarks/audit.py   (writes benchmarks/results/audit.json)
"""
from __future__ import annotations

import copy
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_results  # noqa: E402

from socle.audit import runner  # noqa: E402
from socle.audit.evidence import Evidence  # noqa: E402
from socle.render import run_program  # noqa: E402
from socle.stackfile import load  # noqa: E402

RUNS = 3
SCALES = (1, 5, 20)


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


def main() -> None:
    stack = load("demo")
    objects = run_program(stack).objects
    results = {}
    for n in SCALES:
        objs = copies(objects, n)
        times = []
        for _ in range(RUNS):
            ev = Evidence(source="benchmark", objects=objs, target=f"demo x{n}")
            start = time.perf_counter()
            audit = runner.run(ev, runner.make_context(ev, dt.date(2026, 11, 27), stack_profile="dev"))
            times.append(time.perf_counter() - start)
        results[f"x{n}"] = {"objects": len(objs), "findings": sum(len(r.findings) for r in audit.results),
                            "seconds_median": round(statistics.median(times), 3), "runs": RUNS}
    write_results("audit", scales=results)


if __name__ == "__main__":
    main()
