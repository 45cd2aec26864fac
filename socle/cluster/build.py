"""Pinned, reproducible builds of the control plane programs from Go modules (controlplane/README.md).

Each group is one or more small Go modules under ``controlplane/`` (go.mod + complete go.sum, a few-line main.go
where upstream ships no usable main package). A group is built into

    ${SOCLE_CACHE:-$HOME/.cache/socle}/controlplane/<group>-<key16>/bin/

where the key is the sha256 of the group's module files (go.mod, go.sum, main.go), the Go version and the build
flags: the same inputs give the same directory, and a directory that exists is complete (it is built in a temporary
directory next to it and renamed), so a second run does nothing. Modules come only from the Go module proxy
($GOPROXY without its ``direct`` fallback), with ``-mod=readonly``: go.sum must already list every module.

    python -m socle.cluster.build [--group NAME]... [--force] [--path] [--list]

``build(groups=None, force=False)`` returns ``{binary name: path}``; ``bin_path()`` returns a PATH fragment of the
bin directories of the groups already built.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTROLPLANE = ROOT / "controlplane"
# Bumped when the way a group is built changes in a way the key would not otherwise see.
SCHEME = 1

KUBERNETES = "v1.35.4"
KUBERNETES_DATE = "2026-04-15T18:01:22Z"  # the module's release time (proxy .info): a fixed, reproducible buildDate
ETCD = "v3.6.6"
ETCD_SHA = "d2809cf"  # `git rev-parse --short v3.6.6` in etcd-io/etcd, as etcd's scripts/build_lib.sh stamps it
KWOK = "v0.8.0"
PULUMI = "v3.274.1"
PULUMI_LANGUAGE_PYTHON = "v3.68.0"
PULUMI_KUBERNETES = "v4.25.0"
# socle's own stand-ins (controlplane/providers/standins): the releases whose resources they reproduce, + build metadata
RANDOM_STANDIN = "4.21.4+socle.standin"
TLS_STANDIN = "5.6.2+socle.standin"
# the gateway's session proxy; the kit's image (socle/components/common.py IMAGES: quay.io/oauth2-proxy/oauth2-proxy) has the
# same version, so that `socle verify` and tests/test_authz_chain.py run the program the cluster runs
OAUTH2_PROXY = "v7.15.6"
# an S3-compatible object store (Versity Gateway, Apache-2.0) for Pulumi state in an S3 backend on this machine
# (tests/cluster/test_backends.py, socle/cluster/objectstore.py)
VERSITYGW = "v1.8.0"
VERSITYGW_DATE = "2026-09-04T20:21:34Z"  # the module's release time (proxy .info), as the build time: reproducible


@dataclasses.dataclass(frozen=True)
class Binary:
    name: str  # the file name in bin/ (what a program looks for on PATH)
    package: str  # import path of the main package, or "." / "./dir" for a main package of the unit itself
    ldflags: tuple[str, ...] = ()  # after the unit's


@dataclasses.dataclass(frozen=True)
class Unit:
    """One Go module under controlplane/ and the binaries built from it."""

    path: str  # relative to controlplane/
    binaries: tuple[Binary, ...]
    ldflags: tuple[str, ...] = ()  # after "-s -w"
    tags: tuple[str, ...] = ()
    cgo: bool = False
    # (name, argument) of a step that writes generated files into the build copy of the module before `go build`
    prepare: tuple[str, str] | None = None
    # files copied verbatim from a module of the build list into bin/: (module path, path in module, name in bin/)
    ship: tuple[tuple[str, str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Group:
    name: str
    description: str
    units: tuple[Unit, ...]

    @property
    def binaries(self) -> list[str]:
        return [b.name for u in self.units for b in u.binaries] + [s[2] for u in self.units for s in u.ship]


def _kube_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for key, value in (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor),
                       ("gitTreeState", "clean"), ("buildDate", KUBERNETES_DATE)):
        # what kubernetes' hack/lib/version.sh (kube::version::ldflags) sets
        flags += [f"-X k8s.io/client-go/pkg/version.{key}={value}", f"-X k8s.io/component-base/version.{key}={value}"]
    return tuple(flags)


_PULUMI_VERSION = "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version"

GROUPS: dict[str, Group] = {g.name: g for g in (
    Group("kubernetes", f"Kubernetes {KUBERNETES} control plane", (
        Unit("kubernetes", tuple(Binary(n, f"k8s.io/kubernetes/cmd/{n}")
                                 for n in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")),
             ldflags=_kube_ldflags(KUBERNETES)),
    )),
    Group("etcd", f"etcd {ETCD}", (
        Unit("etcd", (Binary("etcd", "."),), ldflags=(f"-X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_SHA}",)),
    )),
    Group("kwok", f"kwok {KWOK}", (
        # kwok's own version constant (pkg/consts.Version) already reads 0.8.0: nothing to stamp
        Unit("kwok", (Binary("kwok", "sigs.k8s.io/kwok/cmd/kwok"),)),
    )),
    Group("pulumi", f"Pulumi CLI {PULUMI} and Python language host {PULUMI_LANGUAGE_PYTHON}", (
        # as upstream's .goreleaser.yml: -trimpath, -w -s -X ...version.Version=v<version>, tags osusergo grpcnotrace
        Unit("pulumi/cli", (Binary("pulumi", "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"),),
             ldflags=(f"-X {_PULUMI_VERSION}={PULUMI}",), tags=("osusergo", "grpcnotrace"),
             # the scripts upstream's release archive puts next to the binaries (its bin/linux), from the SDK of
             # the same release: the language host runs the program through pulumi-language-python-exec
             ship=(("github.com/pulumi/pulumi/sdk/v3", "python/cmd/pulumi-language-python-exec",
                    "pulumi-language-python-exec"),
                   ("github.com/pulumi/pulumi/sdk/v3", "python/dist/pulumi-resource-pulumi-python",
                    "pulumi-resource-pulumi-python"))),
        Unit("pulumi/language-python",
             (Binary("pulumi-language-python", "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"),),
             ldflags=(f"-X {_PULUMI_VERSION}={PULUMI_LANGUAGE_PYTHON}",), tags=("osusergo",)),
    )),
    Group("providers", f"Pulumi resource providers: kubernetes {PULUMI_KUBERNETES}; socle's stand-ins for random and tls", (
        # as upstream's .goreleaser.yml: CGO_ENABLED=0, -s -w -X .../pkg/version.Version={{.Tag}}
        Unit("providers/kubernetes", (Binary("pulumi-resource-kubernetes", "."),),
             ldflags=(f"-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version={PULUMI_KUBERNETES}",),
             prepare=("kubernetes-schema", PULUMI_KUBERNETES)),
        # not upstream code: github.com/pulumi/pulumi-random and pulumi-tls are not served (controlplane/README.md)
        Unit("providers/standins", (Binary("pulumi-resource-random", "./random", (f"-X main.Version={RANDOM_STANDIN}",)),
                                    Binary("pulumi-resource-tls", "./tls", (f"-X main.Version={TLS_STANDIN}",)))),
    )),
    Group("oauth2-proxy", f"oauth2-proxy {OAUTH2_PROXY}", (
        # as upstream's Makefile: CGO_ENABLED=0, -X .../pkg/version.VERSION=<tag>
        Unit("oauth2-proxy", (Binary("oauth2-proxy", "github.com/oauth2-proxy/oauth2-proxy/v7"),),
             ldflags=(f"-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION={OAUTH2_PROXY}",)),
    )),
    Group("versitygw", f"Versity Gateway {VERSITYGW}, an S3-compatible object store", (
        # as upstream's .goreleaser.yaml: CGO_ENABLED=0, -X main.Version={{.Version}} (no "v"), main.BuildTime
        Unit("versitygw", (Binary("versitygw", "github.com/versity/versitygw/cmd/versitygw"),),
             ldflags=(f"-X main.Version={VERSITYGW.lstrip('v')}", f"-X main.BuildTime={VERSITYGW_DATE}")),
    )),
)}


class BuildError(RuntimeError):
    """A group failed to build; the message says which and ends with the last lines of go's output."""


def cache_root() -> Path:
    base = os.environ.get("SOCLE_CACHE") or str(Path.home() / ".cache" / "socle")
    return Path(base).expanduser() / "controlplane"


def _go_env(cgo: bool = False) -> dict[str, str]:
    """The environment of every go command: module proxy only, no workspace, go.sum read-only."""
    env = dict(os.environ)
    proxies = [p for p in re.split(r"[,|]", env.get("GOPROXY", "")) if p and p != "direct"]
    env.update({
        "GOPROXY": ",".join(proxies) or "https://proxy.golang.org",
        "GOPRIVATE": "", "GONOPROXY": "", "GONOSUMDB": "",  # nothing bypasses the proxy
        "GOWORK": "off",
        "GOFLAGS": "-mod=readonly -buildvcs=false",  # replaces any GOFLAGS (-mod=mod is not allowed)
        "CGO_ENABLED": "1" if cgo else "0",
    })
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"`{' '.join(cmd)}` failed in {cwd}: {_tail(proc.stderr + proc.stdout)}")
    return proc.stdout


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _need_go() -> str:
    go = shutil.which("go")
    if not go:
        raise BuildError("the `go` command is not on PATH: install Go (see controlplane/README.md)")
    return go


def _unit_files(unit_dir: Path) -> dict[str, str]:
    if not (unit_dir / "go.mod").is_file() or not (unit_dir / "go.sum").is_file():
        raise BuildError(f"{unit_dir} has no go.mod and go.sum")
    return {p.relative_to(unit_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(unit_dir.rglob("*")) if p.is_file()}


_go_version_cache: dict[Path, list[str]] = {}


def _go_version(unit_dir: Path) -> list[str]:
    # in the module's folder: the toolchain the go line and GOTOOLCHAIN select there
    if unit_dir not in _go_version_cache:
        out = _run([_need_go(), "env", "GOVERSION", "GOOS", "GOARCH", "GOAMD64"], unit_dir, _go_env())
        _go_version_cache[unit_dir] = out.split()
    return _go_version_cache[unit_dir]


def group_key(group: Group) -> str:
    """sha256 over the group's module files (go.mod, go.sum, main.go), the Go version and the build flags."""
    payload = {"scheme": SCHEME, "group": group.name, "units": [
        # the unit's spec holds every build flag (ldflags, tags, cgo), the binaries and the generation steps
        {"spec": dataclasses.asdict(unit), "files": _unit_files(CONTROLPLANE / unit.path),
         "go": _go_version(CONTROLPLANE / unit.path)}
        for unit in group.units]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def group_dir(group: Group) -> Path:
    return cache_root() / f"{group.name}-{group_key(group)[:16]}"


def _build_flags(unit: Unit, binary: Binary | None = None) -> list[str]:
    ldflags = ("-s", "-w") + unit.ldflags + (binary.ldflags if binary else ())
    flags = ["-mod=readonly", "-trimpath", "-ldflags", " ".join(ldflags)]
    if unit.tags:
        flags += ["-tags", ",".join(unit.tags)]
    return flags


def _module_dir(workdir: Path, module: str, env: dict[str, str]) -> Path:
    """The folder of `module` (the version the build list selects) in GOMODCACHE, downloaded if needed."""
    info = json.loads(_run([_need_go(), "mod", "download", "-json", module], workdir, env))
    if info.get("Error") or not info.get("Dir"):
        raise BuildError(f"cannot download {module}: {info.get('Error', 'no folder')}")
    return Path(info["Dir"])


def _prepare_kubernetes_schema(workdir: Path, version: str, env: dict[str, str]) -> None:
    """What pulumi-kubernetes' cmd/pulumi-resource-kubernetes/generate.go does (`go generate`, not in the module
    zip's output): schema.json with "version" set, minified, as schema-embed.json; terraform-mapping.json minified
    as terraform-mapping-embed.json. Both are embedded by main.go."""
    src = _module_dir(workdir, "github.com/pulumi/pulumi-kubernetes/provider/v4", env) / "cmd/pulumi-resource-kubernetes"
    schema = json.loads((src / "schema.json").read_text(encoding="utf-8"))
    schema["version"] = version.lstrip("v")
    mapping = json.loads((src / "terraform-mapping.json").read_text(encoding="utf-8"))
    for name, data in (("schema-embed.json", schema), ("terraform-mapping-embed.json", mapping)):
        (workdir / name).write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")


PREPARE: dict[str, Callable[[Path, str, dict[str, str]], None]] = {"kubernetes-schema": _prepare_kubernetes_schema}


def _fmt(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _say(msg: str) -> None:
    print(f"[controlplane] {msg}", file=sys.stderr, flush=True)


def _go_build(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, what: str) -> tuple[int, float]:
    """Run `go build`, its output to `log`, saying every minute that it is still running."""
    start = time.monotonic()
    with log.open("ab") as out:
        out.write(("$ " + shlex.join(cmd) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(60):
                _say(f"  … {what} still building ({_fmt(time.monotonic() - start)})")

        threading.Thread(target=heartbeat, daemon=True).start()
        try:
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            done.set()
    return rc, time.monotonic() - start


def _build_group(group: Group, force: bool, jobs: int) -> Path:
    final = group_dir(group)
    if (final / "bin").is_dir() and not force:
        _say(f"{group.name}: up to date in {final}")
        return final / "bin"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    log = tmp / "build.log"
    go = _need_go()
    _say(f"{group.name}: building {group.description} ({', '.join(group.binaries)}) into {final}")
    started = time.monotonic()
    timings: dict[str, float] = {}
    try:
        for unit in group.units:
            env = _go_env(unit.cgo)
            # a copy of the module, so that generated files never land in the repository
            work = tmp / "src" / unit.path
            shutil.copytree(CONTROLPLANE / unit.path, work)
            if unit.prepare:
                step, arg = unit.prepare
                PREPARE[step](work, arg, env)
            for binary in unit.binaries:
                out = tmp / "bin" / binary.name
                _say(f"{group.name}: {binary.name} ({binary.package if binary.package != '.' else unit.path}) …")
                cmd = [go, "build", "-p", str(jobs), *_build_flags(unit, binary), "-o", str(out), binary.package]
                rc, took = _go_build(cmd, work, env, log, binary.name)
                if rc != 0:
                    failed = final.parent / f"{final.name}.failed.log"
                    shutil.copyfile(log, failed)
                    raise BuildError(
                        f"group {group.name} failed: `go build` of {binary.name} exited with status {rc} "
                        f"(full log: {failed}); last lines of go's output:\n"
                        + _tail(log.read_text(errors="replace")))
                timings[binary.name] = round(took, 1)
                _say(f"{group.name}: {binary.name} built in {_fmt(took)}")
            for module, rel, name in unit.ship:
                src = _module_dir(work, module, env) / rel
                shutil.copyfile(src, tmp / "bin" / name)
                (tmp / "bin" / name).chmod(0o755)
        shutil.rmtree(tmp / "src")
        (tmp / "BUILD.json").write_text(json.dumps({
            "group": group.name, "description": group.description, "key": group_key(group),
            "go": _go_version(CONTROLPLANE / group.units[0].path),
            "flags": {b.name: _build_flags(u, b) for u in group.units for b in u.binaries}, "seconds": timings,
            "total_seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
        if final.exists():  # --force: swap the new build in
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                tmp.rename(final)
            except OSError:  # another build of the same key finished first: keep it
                if not (final / "bin").is_dir():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _say(f"{group.name}: done in {_fmt(time.monotonic() - started)}")
    return final / "bin"


def _select(groups: Iterable[str] | None) -> list[Group]:
    names = list(groups) if groups else list(GROUPS)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise BuildError(f"unknown group(s) {', '.join(unknown)}: choose among {', '.join(GROUPS)}")
    return [GROUPS[n] for n in names]


def build(groups: Iterable[str] | None = None, force: bool = False, jobs: int | None = None) -> dict[str, Path]:
    """Build the groups (all by default) unless already cached; return {binary name: path}."""
    selected = _select(groups)
    jobs = jobs or os.cpu_count() or 2
    started = time.monotonic()
    paths: dict[str, Path] = {}
    for group in selected:
        bin_dir = _build_group(group, force, jobs)
        paths.update({name: bin_dir / name for name in group.binaries})
    _say(f"total {_fmt(time.monotonic() - started)}")
    return paths


def bin_path(groups: Iterable[str] | None = None) -> str:
    """A PATH fragment (os.pathsep-separated) of the bin/ folders of the groups already built."""
    dirs = [group_dir(g) / "bin" for g in _select(groups)]
    return os.pathsep.join(str(d) for d in dirs if d.is_dir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m socle.cluster.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", action="append", choices=list(GROUPS), help="build only this group (repeatable)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache has this build")
    parser.add_argument("--jobs", "-p", type=int, default=None, help="go build -p (default: number of CPUs)")
    parser.add_argument("--path", action="store_true", help="print the PATH fragment of the built groups and exit")
    parser.add_argument("--list", action="store_true", help="list the groups and their cache folders and exit")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for g in _select(args.group):
                d = group_dir(g)
                state = "built" if (d / "bin").is_dir() else "not built"
                print(f"{g.name:12} {state:10} {d}  ({', '.join(g.binaries)})")
            return 0
        if args.path:
            print(bin_path(args.group))
            return 0
        for name, path in build(args.group, force=args.force, jobs=args.jobs).items():
            print(f"{name}\t{path}")
        return 0
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
