"""What every benchmark script shares: the machine it ran on, and where its results go."""
from __future__ import annotations

import json
import platform
import resource
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def write_results(name: str, **fields: Any) -> None:
    """benchmarks/results/NAME.json: Python version, machine, peak RSS of this process, then `fields`; printed too."""
    out = {"python": platform.python_version(), "machine": platform.machine(),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), **fields}
    target = ROOT / "benchmarks" / "results" / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
