"""Time and peak memory of the offline render of every example stack.

Run:  .venv/bin/python benchmarks/render.py   (writes benchmarks/results/render.json)
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_results  # noqa: E402

from socle.render import render_files, run_program  # noqa: E402
from socle.stackfile import load  # noqa: E402

RUNS = 5


def main() -> None:
    results = {}
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        stack = load(str(path))
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            rendered = run_program(stack)
            files = render_files(stack, rendered)
            times.append(time.perf_counter() - start)
        results[stack.name] = {
            "objects": len(rendered.objects),
            "files": len(files),
            "seconds_median": round(statistics.median(times), 3),
            "seconds_min": round(min(times), 3),
            "runs": RUNS,
        }
    write_results("render", stacks=results)


if __name__ == "__main__":
    main()
