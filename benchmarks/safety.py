"""What the input and output safety costs, as ratios against a baseline measured in the same run:
- the configuration files of each example stack rendered with the grammar safety net (each file rendered twice
  and parsed back, Postfix's own postconf/postmap where installed) against the same files without the net;
- the stack-file loader (socle.safeyaml: duplicate keys, tags, alias expansion checked) against yaml.safe_load;
- the whole program under mocks (`socle render`, which validates then builds: the second rendering of each file
  is served by the net's cache), for scale.

Run:  .venv/bin/python benchmarks/safety.py   (writes benchmarks/results/safety.json)
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_results  # noqa: E402

from socle.components import grammar  # noqa: E402
from socle.render import run_program  # noqa: E402
from socle.safeyaml import load_stack_file  # noqa: E402
from socle.stackfile import load  # noqa: E402

RUNS = 7


def median_seconds(fn, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    results = {}
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        stack = load(str(path))
        def files() -> dict[str, str]:
            grammar._CHECKED.clear()  # every call renders and checks anew (the cache serves validate, then build)
            return stack.blueprint.config_files(stack.params)

        checked = median_seconds(files)
        with mock.patch.object(grammar, "check_parse_back", lambda *a, **k: None):
            unchecked = median_seconds(files)
        loader = median_seconds(lambda: load_stack_file(path, path.name), 21)
        plain = median_seconds(lambda: yaml.safe_load(path.read_text()), 21)
        program = median_seconds(lambda: (grammar._CHECKED.clear(), run_program(stack)), 5)
        results[stack.name] = {
            "config_files": len(files()),
            "config_files_with_net_s": round(checked, 4),
            "config_files_without_net_s": round(unchecked, 4),
            "net_ratio": round(checked / unchecked, 2),
            "stack_loader_s": round(loader, 5),
            "yaml_safe_load_s": round(plain, 5),
            "loader_ratio": round(loader / plain, 2),
            "render_program_s": round(program, 3),
            "net_share_of_render": round((checked - unchecked) / program, 3),
        }
    write_results("safety", postfix_parsers=bool(grammar._postfix_program("postconf")), runs=RUNS, stacks=results)


if __name__ == "__main__":
    main()
