"""Scale of the regional blueprint: a generated `plateforme-regionale` stack with N tenants (stack file + one
tenant file each, in a temporary directory), rendered by the real program under the render mocks, against the raw
Pulumi SDK registration of the same resources (same types, names and inputs, flat, no component) under the same
mocks, measured in the same run; then the audit of the rendered objects.

Each measurement runs in a process of its own (its peak RSS is its own). Every ninth tenant is dedicated (a cell
of its own), the others shared, unless --dedicated-every says otherwise.

Run:  .venv/bin/python benchmarks/regional_scale.py [--tenants 10,50,165,300] [--runs 3]
      (writes benchmarks/results/regional_scale.json)
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_results  # noqa: E402


def luhn_siret(prefix13: str) -> str:
    for d in "0123456789":
        s = prefix13 + d
        total = sum((int(c) * (2 if i % 2 else 1)) - (9 if int(c) * (2 if i % 2 else 1) > 9 else 0)
                    for i, c in enumerate(reversed(s)))
        if total % 10 == 0:
            return s
    raise AssertionError("unreachable")


def make_stack(folder: Path, tenants: int, dedicated_every: int) -> Path:
    """stacks/Pulumi.scale.yaml (the region demo's parameters) and its tenant files."""
    demo = (ROOT / "stacks" / "Pulumi.region-demo.yaml").read_text()
    stack = folder / "Pulumi.scale.yaml"
    stack.write_text(demo.split("  # Auditors' section")[0])
    tdir = folder / "scale" / "tenants"
    tdir.mkdir(parents=True)
    for i in range(tenants):
        finess = f"98{i:07d}"
        tier = "dedicated" if dedicated_every and i % dedicated_every == dedicated_every - 1 else "shared"
        lines = [f"name: Etablissement {i}", f'finess: "{finess}"', f"short_name: t{i}", f"tier: {tier}",
                 f"org_certificates: ['CN=Etablissement {i} (FINESS {finess}),O=Etablissement {i},C=FR']"]
        if tier == "shared":
            lines.append(f"partition_id: {i + 1}")
        (tdir / f"{finess}.yaml").write_text("\n".join(lines) + "\n")
    return stack


def _as_the_render(replay) -> float:
    """Run `replay` under the same collector settings as socle.render.run_under_mocks (a fair baseline)."""
    import gc

    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        start = time.perf_counter()
        _sync_await(run_pulumi_func(replay))
        return time.perf_counter() - start
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def one(mode: str, stack_path: str) -> dict:
    """Run in a child process: `program` (the blueprint under mocks), `tree` (the same resources and components with
    their parents, straight through the SDK), `raw` (the same custom resources, flat), `audit`."""
    import gc

    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from socle.render import RenderMocks, run_program
    from socle.stackfile import load

    stack = load(stack_path)
    if mode == "program":
        start = time.perf_counter()
        rendered = run_program(stack)
        cold = time.perf_counter() - start  # with the lazy imports of the provider SDKs' modules
        start = time.perf_counter()
        rendered = run_program(stack)
        return {"seconds": time.perf_counter() - start, "cold_seconds": cold, "objects": len(rendered.objects)}
    if mode == "audit":
        from socle.audit import runner
        from socle.audit.evidence import Evidence

        rendered = run_program(stack)
        gc.collect()
        import datetime as dt

        start = time.perf_counter()
        ev = Evidence(source=f"render:{stack.name}", objects=rendered.objects, target=f"stack {stack.name}")
        ctx = runner.make_context(ev, dt.date(2026, 11, 28), stack_profile=stack.inventory.profile,
                                  allowed_registries=stack.inventory.allowed_registries)
        runner.run(ev, ctx, stack.audit)
        return {"seconds": time.perf_counter() - start, "objects": len(rendered.objects)}
    if mode == "tree":
        # the same resources with the same parents (components included) and dependencies, registered straight
        # through the SDK
        from pulumi.runtime import rpc
        from pulumi.runtime.mocks import MockMonitor

        from socle.program import run
        from socle.stackfile import pulumi_config

        class Recording(MockMonitor):
            def __init__(self, mocks) -> None:
                super().__init__(mocks)
                self.records: list[dict] = []

            def RegisterResource(self, request):  # noqa: N802 - the gRPC method name
                response = super().RegisterResource(request)
                if request.type != "pulumi:pulumi:Stack":
                    self.records.append({"urn": response.urn, "type": request.type, "name": request.name,
                                         "parent": request.parent, "custom": request.custom,
                                         "depends_on": list(request.dependencies),
                                         "inputs": rpc.deserialize_properties(request.object) if request.custom else None})
                return response

        mocks = RenderMocks()
        monitor = Recording(mocks)
        pulumi.runtime.set_mocks(mocks, project="socle", stack=stack.name, preview=False, monitor=monitor)
        pulumi.runtime.set_all_config(pulumi_config(stack.config))
        _sync_await(run_pulumi_func(run))
        records = monitor.records

        def tree() -> None:
            made: dict[str, pulumi.Resource] = {}
            for r in records:
                opts = pulumi.ResourceOptions(parent=made.get(r["parent"]),
                                              depends_on=[made[u] for u in r["depends_on"] if u in made])
                made[r["urn"]] = (pulumi.CustomResource(r["type"], r["name"], r["inputs"], opts) if r["custom"]
                                  else pulumi.ComponentResource(r["type"], r["name"], None, opts))

        times = []
        for _ in range(2):  # the first pays the provider SDKs' lazy imports
            pulumi.runtime.set_mocks(RenderMocks(), project="socle", stack=stack.name, preview=False)
            times.append(_as_the_render(tree))
        return {"seconds": times[1], "cold_seconds": times[0], "objects": len(records)}
    # raw: record what the program registers (type, name, inputs), then register exactly that, flat
    recorded: list[tuple[str, str, dict]] = []

    class Recording(RenderMocks):
        def new_resource(self, args):
            recorded.append((args.typ, args.name, dict(args.inputs)))
            return super().new_resource(args)

    from socle.program import run
    from socle.stackfile import pulumi_config

    pulumi.runtime.set_mocks(Recording(), project="socle", stack=stack.name, preview=False)
    pulumi.runtime.set_all_config(pulumi_config(stack.config))
    _sync_await(run_pulumi_func(run))
    custom = [(t, n, i) for t, n, i in recorded if not t.startswith("socle:")]

    def flat() -> None:
        for typ, name, inputs in custom:
            pulumi.CustomResource(typ, name, inputs)

    pulumi.runtime.set_mocks(RenderMocks(), project="socle", stack=stack.name, preview=False)
    cold = _as_the_render(flat)
    pulumi.runtime.set_mocks(RenderMocks(), project="socle", stack=stack.name, preview=False)
    return {"seconds": _as_the_render(flat), "cold_seconds": cold, "objects": len(custom)}


def measure(mode: str, stack: Path) -> dict:
    code = (f"import json,sys,resource; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.regional_scale import one; "
            f"r = one({mode!r}, {str(stack)!r}); "
            "r['peak_rss_mib'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1); print(json.dumps(r))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{mode} on {stack}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", default="10,50,165,300")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dedicated-every", type=int, default=9)
    a = ap.parse_args()
    sizes = [int(n) for n in a.tenants.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            stack = make_stack(folder, n, a.dedicated_every)
            program, raw, tree = [], [], []
            for _ in range(a.runs):  # alternated, in the same run: the ratio is not skewed by the machine's load
                program.append(measure("program", stack))
                tree.append(measure("tree", stack))
                raw.append(measure("raw", stack))
            audit = measure("audit", stack)
            p_med = statistics.median(r["seconds"] for r in program)
            r_med = statistics.median(r["seconds"] for r in raw)
            t_med = statistics.median(r["seconds"] for r in tree)
            row = {"tenants": n, "dedicated": sum(1 for i in range(n) if a.dedicated_every and
                                                    i % a.dedicated_every == a.dedicated_every - 1),
                   "objects": program[0]["objects"], "resources_registered": raw[0]["objects"],
                   "render_seconds_median": round(p_med, 2), "raw_sdk_seconds_median": round(r_med, 2),
                   "render_cold_seconds": round(program[0]["cold_seconds"], 2),
                   "raw_sdk_tree_seconds_median": round(t_med, 2),
                   "ratio_render_to_raw_tree": round(p_med / t_med, 3),
                   "ratio_render_to_raw": round(p_med / r_med, 3),
                   "render_peak_rss_mib": max(r["peak_rss_mib"] for r in program),
                   "audit_seconds": round(audit["seconds"], 2), "runs": a.runs}
            results.append(row)
            print(json.dumps(row), flush=True)
    growth = None
    if len(results) >= 2:
        (a0, b0), (a1, b1) = (results[0]["tenants"], results[0]["render_seconds_median"]), \
                             (results[-1]["tenants"], results[-1]["render_seconds_median"])
        growth = round(math.log(b1 / b0) / math.log(a1 / a0), 3)
    write_results("regional_scale", sizes=results, render_growth_exponent=growth,
                  targets={"ratio_render_to_raw_tree": 1.3, "render_peak_rss_mib": 2048, "audit_seconds": 3.0},
                  note="every run under the render's collector settings (socle.render.run_under_mocks); warm runs (a second run in the same process: the provider SDKs' lazy imports paid once, see "
                       "render_cold_seconds); ratios: the blueprint under the render mocks vs the same resources registered straight "
                       "through the SDK under the same mocks, with their parents (tree: components included) or flat, alternated in one run; growth exponent between the smallest "
                       "and largest sizes (1.0 = linear)")


if __name__ == "__main__":
    main()
