"""`socle` command line: validate, render, new, list, preview/up/destroy."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .stackfile import StackError, display, load, project_root, resolve

app = typer.Typer(add_completion=False, no_args_is_help=True, help="socle: the ANS digital-health target architecture as code.")
# emoji off: `:x:` in a key path or a value stays text.
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)

EXIT_INVALID = 2


def _fail_stack(exc: StackError) -> None:
    for problem in exc.problems:
        # One line per problem, `<stack file>:<key.path>: <message>`; never wrapped, never a traceback.
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    err.print(f"{len(exc.problems)} problem(s); nothing was written or deployed.", style="bold red")
    raise typer.Exit(EXIT_INVALID)


def _load(stack: str):
    """The validated stack, or every problem printed and exit 2."""
    try:
        return load(stack)
    except StackError as exc:
        _fail_stack(exc)


def _version(value: bool) -> None:
    if value:
        out.print(f"socle {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", help="Print the kit version and exit.", callback=_version, is_eager=True),
) -> None:
    """socle: the ANS digital-health target architecture as code."""


@app.command()
def validate(stack: str = typer.Argument(..., help="Stack name (stacks/Pulumi.<name>.yaml) or path to a stack file")) -> None:
    """Validate a stack file: exit 0 when valid, 2 with every problem listed when not."""
    st = _load(stack)
    bp = st.blueprint
    for advice in st.advisories:
        err.print(f"warning: {advice}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"{st.file}: valid ({bp.name} {bp.version}, profile {getattr(st.params, 'profile', '?')})")


@app.command()
def render(
    stack: str = typer.Argument("demo", help="Stack name or path to a stack file (default: the demo stack)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory to write the manifests to (default: out/STACK)"),
    force: bool = typer.Option(False, "--force", help="Replace files in the output directory that no earlier render wrote"),
) -> None:
    """Render a stack offline (the Pulumi program under the SDK's mocks) to one file per Kubernetes object."""
    from .output import OutputError, check_tree, legacy_render_files
    from .render import MARKER, RenderError, render_files, run_program, write

    st = _load(stack)
    if out_dir is None:
        out_dir = Path("out") / st.name
    try:  # refuse an unusable --out before running the program; write() checks again under its lock
        check_tree(out_dir, marker=MARKER, force=force, legacy=legacy_render_files)
    except OutputError as exc:
        err.print(f"render failed: {exc}", style="bold red", markup=False)
        raise typer.Exit(EXIT_INVALID)
    with err.status(f"Running the {st.blueprint.name} program for stack {st.name} under mocks…"):
        try:
            rendered = run_program(st)
            files = render_files(st, rendered)
            result = write(out_dir, files, force=force)
        except RenderError as exc:
            err.print(f"render failed: {exc}", style="bold red", markup=False)
            raise typer.Exit(EXIT_INVALID)
    out.print(
        f"{st.file}: {len(rendered.objects)} objects written to {out_dir}/ "
        f"({len(rendered.secrets)} Secrets left out, see {out_dir}/secrets-required.yaml); "
        f"check with: kubectl kustomize {out_dir}"
    )
    if result.removed:
        out.print(f"--force: removed {len(result.removed)} entries no earlier render wrote:", markup=False, highlight=False)
        for name in result.removed:
            out.print(f"  removed {out_dir}/{name}", markup=False, highlight=False)


@app.command()
def new(
    blueprint: str = typer.Argument(..., help="Blueprint to clone, e.g. etablissement"),
    name: str = typer.Argument(..., help="Name of the new stack (stacks/Pulumi.NAME.yaml)"),
) -> None:
    """Create stacks/Pulumi.NAME.yaml from a blueprint, listing every parameter with its default."""
    import re

    from socle.blueprints import registry

    from .scaffold import stack_file

    bps = registry()
    if blueprint not in bps:
        err.print(f"unknown blueprint {blueprint!r}; available: {', '.join(sorted(bps))}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", name):
        err.print(f"stack name {name!r} must be lower-case letters, digits and '-'", markup=False)
        raise typer.Exit(EXIT_INVALID)
    _, path = resolve(name)
    if os.path.lexists(path):  # a dangling symlink too: never written through
        err.print(f"{display(path)} already exists; refusing to overwrite it", markup=False)
        raise typer.Exit(EXIT_INVALID)
    from .scaffold import project_files

    root = project_root()
    # Outside any Pulumi project (an installed kit, an empty directory): this directory becomes one, whose program
    # is the installed kit; files that exist are kept.
    extra = {} if (root / "Pulumi.yaml").is_file() else {
        root / p: text for p, text in project_files(root.name).items() if not os.path.lexists(root / p)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, text in [(path, stack_file(bps[blueprint], name)), *extra.items()]:
            with open(target, "x", encoding="utf-8") as fh:  # O_EXCL: fails rather than follow a link created meanwhile
                fh.write(text)
    except OSError as exc:
        err.print(f"socle new: cannot create {display(path)}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if extra:
        out.print(f"created the Pulumi project {', '.join(sorted(p.name for p in extra))} in {root}", markup=False,
                  highlight=False)
    from .certify import pin_for

    pinned, warning = pin_for(bps[blueprint])  # the digest stack_file wrote as socle:blueprintDigest
    if warning:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    out.print(f"created {display(path)}: fill in the values marked REQUIRED, then run `socle validate {name}`"
              + (f" (pinned to the certified {blueprint}: {pinned})" if pinned else ""), markup=False, highlight=False)


@app.command("list")
def list_() -> None:
    """List the blueprints (with versions) and the stacks."""
    from rich.markup import escape

    from socle.blueprints import registry

    table = Table(title="Blueprints")
    table.add_column("name")
    table.add_column("version")
    table.add_column("description")
    table.add_column("certification")
    from .certify import status as certification_status
    from .certify import summary as certification_summary

    for bp in registry().values():
        try:
            certified = certification_summary(certification_status(bp))
        except OSError as exc:
            certified = f"unreadable: {exc.strerror or exc}"
        table.add_row(bp.name, bp.version, bp.description, escape(certified))
    out.print(table)
    stacks = Table(title="Stacks")
    stacks.add_column("stack")
    stacks.add_column("file")
    stacks.add_column("status")
    for path in sorted((project_root() / "stacks").glob("Pulumi.*.yaml")):
        name = path.name[len("Pulumi."):-len(".yaml")]
        try:
            st = load(str(path))
            status = escape(f"valid ({st.blueprint.name}, {getattr(st.params, 'profile', '?')})")
        except StackError as exc:
            status = f"[red]{len(exc.problems)} problem(s)[/red]"
        except Exception as exc:  # noqa: BLE001 -- one bad file never stops the listing
            sentence = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            status = f"[red]unreadable: {escape(sentence)}[/red]"
        stacks.add_row(escape(name), escape(display(path)), status)
    out.print(stacks)


@app.command()
def audit(
    render_stack: Optional[str] = typer.Option(None, "--render", metavar="STACK", help="Audit the offline render of a stack"),
    snapshot: Optional[Path] = typer.Option(None, "--snapshot", metavar="FILE", help="Audit a `kubectl get -o yaml|json` export"),
    live: bool = typer.Option(False, "--live", help="Audit the cluster of the current kube context (read-only)"),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="Kubeconfig for --live"),
    context: Optional[str] = typer.Option(None, "--context", help="Kube context for --live"),
    stack: Optional[str] = typer.Option(None, "--stack", help="Stack file whose profile, waivers and evidence apply (snapshot/live)"),
    profile: Optional[str] = typer.Option(None, "--profile", help="Judge against this profile (dev|production); default: the "
                                          "stack's (--render, --stack), else production, never the namespaces' labels"),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="Write report.html, report.md, report.json, junit.xml, report.sarif here"),
    fmt: str = typer.Option("text", "--format", help="Output on stdout: text or json"),
    as_of: Optional[str] = typer.Option(None, "--as-of", metavar="YYYY-MM-DD",
                                        help="Judge waiver expiry as of this date (default: today); every report says so in its headline"),
    print_snapshot_command: bool = typer.Option(False, "--print-snapshot-command",
                                                help="Print the kubectl command that exports what the audit reads, and exit"),
    lang: str = typer.Option("fr", "--lang", help="Language of the reports: fr (default) or en"),
) -> None:
    """Audit a render, a snapshot or a live cluster against the requirements: exit 0 pass, 1 fail, 2 input error."""
    if print_snapshot_command:
        from .audit.sources import snapshot_command

        out.print(snapshot_command(), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(0)
    import datetime as dt

    from .audit import reports, runner, sources
    from .output import OutputError, check_files
    from .render import RenderError

    chosen = [x for x in (render_stack is not None, snapshot is not None, live) if x]
    problems = []
    if len(chosen) != 1:
        problems.append("give exactly one evidence source: --render STACK, --snapshot FILE or --live")
    if fmt not in ("text", "json"):
        problems.append(f"--format must be text or json (got {fmt!r})")
    if profile not in (None, "dev", "production"):
        problems.append(f"--profile must be dev or production (got {profile!r})")
    if lang not in ("fr", "en"):
        problems.append(f"--lang must be fr or en (got {lang!r})")
    if (kubeconfig or context) and not live:
        problems.append("--kubeconfig and --context only apply to --live")
    if render_stack is not None and stack is not None:
        problems.append("--stack applies to --snapshot and --live; --render already names its stack")
    audit_day = dt.date.today()  # the day of the audit, stated in every report when --as-of differs
    # The time of the audit (UTC), stated in the reports: read here once, never by the reports (deterministic).
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    pdf_problem = reports.pdf_available() if report_dir is not None else None
    try:
        today = dt.date.fromisoformat(as_of) if as_of else audit_day
    except ValueError:
        problems.append(f"--as-of must be a date YYYY-MM-DD (got {as_of!r})")
    if report_dir is not None:
        try:  # before the audit runs; written later with the same checks
            check_files(report_dir, reports.REPORT_FILES + (() if pdf_problem else (reports.PDF_FILE,)))
        except OutputError as exc:
            problems.append(str(exc))
    if problems:
        for p in problems:
            err.print(f"socle audit: {p}", markup=False)
        raise typer.Exit(EXIT_INVALID)

    st = _load(render_stack or stack) if (render_stack or stack) else None  # type: ignore[arg-type]
    try:
        if render_stack is not None:
            with err.status(f"Rendering stack {st.name} under mocks…"):
                ev = sources.from_render(st)
        elif snapshot is not None:
            ev = sources.from_snapshot(snapshot)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            from .constants import AUDITED_RESOURCES

            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err, transient=True) as bar:
                task = bar.add_task("Reading the cluster (one LIST per kind)", total=len(AUDITED_RESOURCES))
                ev = sources.from_live(kubeconfig, context,
                                       progress=lambda kind, n: bar.update(task, advance=1, description=f"{kind}: {n}"))
        # The evidence lives until the command ends and holds no cycle: out of the collector's sight, the reports
        # and the audit do not pay for rescanning it.
        import gc

        gc.freeze()
        # The auditor's standard: --profile, else the stack's (--render, --stack), else production; never the labels.
        ctx = runner.make_context(ev, today, profile=profile, stack_profile=st.inventory.profile if st else None,
                                  allowed_registries=st.inventory.allowed_registries if st else (),
                                  stack_file=str(st.file) if st else None)
        result = runner.run(ev, ctx, st.audit if st else None, audit_day=audit_day)
    except (runner.AuditInputError, RenderError) as exc:
        err.print(f"socle audit: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if st is not None:  # the blueprint's certification and the stack's deviations from its certified reference
        from .certify import audit_section

        result.certification = audit_section(st)
    try:
        provenance = {"lang": lang, "generated_at": started, "stack_file": st.file if st else None,
                      "snapshot_file": snapshot}
        written = reports.write_reports(result, ev, report_dir, pdf=True, **provenance) if report_dir else []
    except OutputError as exc:
        err.print(f"socle audit: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if fmt == "json":
        sys.stdout.write(reports.to_json(result, ev, **provenance))
    else:
        if result.as_of_notice:
            out.print(f"DATE {result.as_of_notice}: waivers and dated evidence are judged at that date",
                      markup=False, highlight=False)
        _print_audit(result)
        from .certify import text_lines

        for line in text_lines(result.certification):
            out.print(line, markup=False, highlight=False)
        for path in written:
            out.print(f"report: {path}", markup=False)
    if pdf_problem:
        err.print(f"socle audit: {pdf_problem}", markup=False)
    raise typer.Exit(1 if result.failed else 0)


STATUS_STYLE = {"pass": "green", "fail": "bold red", "evidence-missing": "bold red", "waived": "yellow", "not-applicable": "dim",
               "declared": "yellow", "manual: evidence recorded": "blue", "manual: missing": "yellow"}


def _print_audit(result) -> None:
    from .audit.model import RESERVED_STATUSES

    ctx = result.context
    out.print(f"{result.target} — evidence {result.source} ({result.object_count} objects), profile {ctx.profile} "
              f"({ctx.profile_origin}), {result.date}", markup=False, highlight=False)
    table = Table(show_lines=False)
    for col in ("ID", "status", "severity", "requirement", "objects"):
        table.add_column(col)
    for r in result.results:
        n = len(r.findings) + len(r.waived)
        table.add_row(r.control.id, f"[{STATUS_STYLE.get(r.status, 'bold')}]{r.status}[/]", r.control.severity, r.control.title, str(n))
    out.print(table)
    # One line per finding that is not a pass, printed at once (a regional cluster has thousands).
    lines: list[str] = []
    for r in result.results:
        lines += [f"FAIL {r.control.id} {f.obj}: {f.reason}" + (f" [{f.file}]" if f.file else "") for f in r.failures]
        lines += [f"EVIDENCE MISSING {r.control.id} {f.obj}: {f.reason}" + (f" [{f.file}]" if f.file else "")
                  for f in r.missing]
        lines += [f"DECLARED {r.control.id} {f.obj}: {f.reason}" for f in r.findings if f.status == "declared"]
        lines += [f"NOTE {r.control.id}: {n}" for n in r.notes if "waiver" in n]
    if lines:
        out.print("\n".join(lines), markup=False, highlight=False)
    counts = result.counts()
    verdict = "[bold red]FAIL[/]" if result.failed else "[bold green]PASS[/]"
    out.print(f"{verdict}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), highlight=False)
    reserved = [f"{counts[s]} {s}" for s in RESERVED_STATUSES if counts.get(s)]
    if reserved:
        out.print("Not passes (the auditor needs documents): " + ", ".join(reserved), markup=False, highlight=False)


@app.command("auditor-kubeconfig")
def auditor_kubeconfig(
    user: str = typer.Option(..., "--user", help="Auditor's name (the certificate's CN)"),
    stack: Optional[str] = typer.Option(None, "--stack", help="Stack whose auditors.group to use (default group: socle:auditors)"),
    days: int = typer.Option(30, "--days", min=1, max=365, help="Validity of the auditor's certificate"),
) -> None:
    """Print how to obtain a kubeconfig bound to the read-only socle-auditor role (K8S-10)."""
    from .audit.access import AccessError, kubeconfig_instructions

    group, profile, stack_file = "socle:auditors", "production", None
    if stack:
        st = _load(stack)
        group, profile, stack_file = st.inventory.auditors_group, st.inventory.profile, str(st.file)
    try:
        # The last command is complete: the auditor's profile (production, or the stack's with --stack) and the reports.
        text = kubeconfig_instructions(user, group, days, profile=profile, stack=stack_file)
    except AccessError as exc:
        err.print(f"socle auditor-kubeconfig: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out.print(text, markup=False, highlight=False)


@app.command()
def verify(
    stack: str = typer.Argument("demo", help="Stack name or path to a stack file (default: the demo stack)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the report (default: out/verify-STACK)"),
    no_scan: bool = typer.Option(False, "--no-scan", help="Skip the checkov scan of the manifests"),
) -> None:
    """Run the stack's rendered configs in the real daemons on 127.0.0.1, probe them, scan the manifests."""
    import tempfile

    from .output import OutputError, check_files, write_files
    from .verify import harness, missing_programs
    from .verify import verify as run_verify

    st = _load(stack)
    out_dir = out_dir or Path("out") / f"verify-{st.name}"
    report_files = ("verify.md", "verify.json")
    try:  # before the daemons run; written later with the same checks
        check_files(out_dir, report_files)
    except OutputError as exc:
        err.print(f"socle verify: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    missing = missing_programs()
    if no_scan:
        missing = [m for m in missing if not m.startswith("checkov")]
    if missing:
        for sentence in missing:
            err.print(f"socle verify: {sentence}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    with tempfile.TemporaryDirectory(prefix=f"socle-verify-{st.name}-") as tmp, err.status("starting…") as status:
        try:
            report = run_verify(st, Path(tmp), scan=not no_scan, progress=lambda msg: status.update(msg))
        except (harness.HarnessError, RuntimeError) as exc:
            err.print(f"socle verify: {exc}", markup=False)
            raise typer.Exit(1)
    try:
        write_files(out_dir, dict(zip(report_files, (report.to_markdown(), report.to_json()))))
    except OutputError as exc:
        err.print(f"socle verify: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    for p in report.probes:
        style = "green" if p.ok else "bold red"
        out.print(f"[{style}]{'ok  ' if p.ok else 'FAIL'}[/] {p.requirement:9} {p.name}: {p.detail}", highlight=False)
    if report.scan:
        out.print(report.scan.summary(), markup=False)
        for check, title, resource, _ in report.scan.unjustified:
            out.print(f"[bold red]FAIL[/] checkov {check} {resource}: {title} (not in security/checkov-accepted.yaml)")
    failed = sum(not p.ok for p in report.probes)
    out.print(f"{'[bold green]PASS' if report.ok else '[bold red]FAIL'}[/]: {len(report.probes) - failed} probes passed, "
              f"{failed} failed; report in {out_dir}/verify.md")
    raise typer.Exit(0 if report.ok else 1)


audit_log = typer.Typer(help="The audit log's seal chain (TRACE-04).", no_args_is_help=True)
app.add_typer(audit_log, name="audit-log")


@audit_log.command("verify")
def audit_log_verify(
    directory: Path = typer.Argument(..., help="Directory holding audit-YYYY-MM-DD.jsonl files and chain.sha256"),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="The seal key (the `key` of the seal key Secret); "
                                            "without it the links cannot be verified and the chain is never called intact"),
    retention_days: int = typer.Option(365, "--retention-days", min=1, help="Files older than this may have been removed"),
    as_of: Optional[str] = typer.Option(None, "--as-of", metavar="YYYY-MM-DD", help="Date of the check (default: today, UTC)"),
    max_gap_days: int = typer.Option(1, "--max-gap-days", min=0,
                                     help="Days the seal may go without a run before the chain counts as truncated"),
    started: Optional[str] = typer.Option(None, "--started", metavar="YYYY-MM-DD",
                                          help="Day the keyed seal was deployed (your change records): files older than "
                                               "the chain, sealed by its first run that day, are not reported late"),
) -> None:
    """Recompute the keyed seal chain: exit 0 only when every link verifies with the key and nothing is missing,
    1 naming the first broken entry (or when no key was given), 2 on a usage error."""
    import datetime as dt

    from .auditlog import LIMITS, check_chain

    try:
        today = dt.date.fromisoformat(as_of) if as_of else dt.datetime.now(dt.timezone.utc).date()
    except ValueError:
        err.print(f"--as-of must be a date YYYY-MM-DD (got {as_of!r})", markup=False)
        raise typer.Exit(EXIT_INVALID)
    try:
        start_day = dt.date.fromisoformat(started) if started else None
    except ValueError:
        err.print(f"--started must be a date YYYY-MM-DD (got {started!r})", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if not directory.is_dir():
        err.print(f"{directory}: not a directory", markup=False)
        raise typer.Exit(EXIT_INVALID)
    key = None
    if key_file is not None:
        try:
            key = key_file.read_bytes()
        except OSError as exc:
            err.print(f"{key_file}: cannot read the seal key ({exc.strerror})", markup=False)
            raise typer.Exit(EXIT_INVALID)
        if len(key) < 32:
            err.print(f"{key_file}: a seal key has at least 32 bytes (got {len(key)})", markup=False)
            raise typer.Exit(EXIT_INVALID)
    report = check_chain(directory, today, retention_days, key, max_gap_days, start_day)
    for p in report.problems:
        out.print(f"BROKEN {p}", markup=False, highlight=False)
    for note in report.notes:
        out.print(f"NOTE {note}", markup=False, highlight=False)
    last = f"{report.last_run:%Y-%m-%dT%H:%M:%SZ}" if report.last_run else "none"
    counts = f"{report.sealed} sealed files, {report.runs} seal runs, last {last}"
    if report.intact:
        out.print(f"{directory}: seal chain intact, every link verified with the key ({counts})", markup=False)
    elif not report.problems:
        out.print(f"{directory}: hashes consistent; links NOT verified (no key) — not reported intact; "
                  f"run again with --key-file ({counts})", markup=False)
    else:
        out.print(f"{directory}: seal chain NOT intact ({len(report.problems)} problems; {counts})", markup=False)
    out.print(LIMITS, markup=False, highlight=False)
    raise typer.Exit(0 if report.intact else 1)


audit_report = typer.Typer(help="Sign an audit report bundle, and verify a signed one.", no_args_is_help=True)
app.add_typer(audit_report, name="audit-report")


@audit_report.command("sign")
def audit_report_sign(
    directory: Path = typer.Argument(..., help="The report directory (socle audit --report-dir)"),
    key: Path = typer.Option(..., "--key", help="The auditor's private key (PEM)"),
    cert: Path = typer.Option(..., "--cert", help="The auditor's certificate (PEM)"),
) -> None:
    """Write MANIFEST.sha256 and its detached CMS signature (MANIFEST.sha256.p7s) in DIRECTORY."""
    from .audit.signing import SigningError, sign

    try:
        manifest, signature = sign(directory, key, cert)
    except (SigningError, OSError) as exc:
        err.print(f"socle audit-report sign: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out.print(f"signed: {manifest} and {signature}; check with: socle audit-report verify {directory} --ca CA.pem",
              markup=False, highlight=False)


@audit_report.command("verify")
def audit_report_verify(
    directory: Path = typer.Argument(..., help="A signed report directory"),
    ca: Optional[Path] = typer.Option(None, "--ca", help="Trust anchor of the auditors' certificates (PEM)"),
) -> None:
    """Check every file against the signed manifest and the signature against --ca: exit 0 only when all hold."""
    from .audit.signing import SigningError, verify

    try:
        result = verify(directory, ca)
    except (SigningError, OSError, ValueError) as exc:
        err.print(f"socle audit-report verify: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    for problem in result.problems:
        out.print(f"NOT VERIFIED {problem}", markup=False, highlight=False)
    if result.verified:
        out.print(f"{directory}: verified — every file as signed by {result.signer}, trusted by {ca}", markup=False)
    raise typer.Exit(0 if result.verified else 1)


blueprint_app = typer.Typer(help="Certified blueprints: certify one (render, audit, real daemons), and say whether the "
                            "blueprint on disk is the certified one.", no_args_is_help=True)
app.add_typer(blueprint_app, name="blueprint")


@blueprint_app.command("certify")
def blueprint_certify(
    name: str = typer.Argument(..., help="Blueprint to certify, e.g. etablissement"),
    approver: str = typer.Option(..., "--approver", help='Who approves the certification: "Name <email>"'),
    date: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="Date of the certification (default: today, UTC)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the evidence: the render, the audit "
                                           "reports and the verification report (default: out/certify-NAME)"),
    sign_key: Optional[Path] = typer.Option(None, "--sign-key", help="Private key (PEM) that signs the record (with --sign-cert)"),
    sign_cert: Optional[Path] = typer.Option(None, "--sign-cert", help="Certificate (PEM) of --sign-key"),
    lang: str = typer.Option("fr", "--lang", help="Language of the audit reports: fr (default) or en"),
) -> None:
    """Render, audit and verify with the real daemons (as root; a few minutes) the blueprint's reference stack; when
    all three pass, write socle/blueprints/NAME/certification.json. Exit 0 certified, 1 the reference stack does not pass
    (no record written), 2 input error."""
    import datetime as dt

    from .certify import CertifyError, CertifyFailed, certify
    from .verify import missing_programs

    problems = []
    day = None
    try:
        day = dt.date.fromisoformat(date) if date else dt.datetime.now(dt.timezone.utc).date()
    except ValueError:
        problems.append(f"--date must be a date YYYY-MM-DD (got {date!r})")
    problems += [f"the verification needs: {m}" for m in missing_programs()]
    if problems:
        for p in problems:
            err.print(f"socle blueprint certify: {p}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out_dir = out_dir or Path("out") / f"certify-{name}"
    with err.status(f"certifying {name}…") as status:
        try:
            done = certify(name, approver=approver, date=day, out_dir=out_dir, sign_key=sign_key, sign_cert=sign_cert,
                           lang=lang, progress=lambda msg: status.update(msg))
        except CertifyError as exc:
            for p in exc.problems:
                err.print(f"socle blueprint certify: {p}", markup=False)
            raise typer.Exit(EXIT_INVALID)
        except CertifyFailed as exc:
            err.print(f"socle blueprint certify: {name} NOT certified, no record written: {exc}", markup=False)
            raise typer.Exit(1)
    rec = done.record
    out.print(f"certified {rec['blueprint']} {rec['version']}: {rec['digest']} ({len(rec['files'])} files), approved by "
              f"{rec['approver']} on {rec['date']}", markup=False, highlight=False)
    for step in ("render", "audit", "verification"):
        out.print(f"  {step}: {rec[step]['result']} — {rec[step]['summary']} ({out_dir}/{rec[step]['report']})",
                  markup=False, highlight=False)
    out.print(f"record: {display(done.path)}" + (" (signed: certification.sha256 and certification.sha256.p7s)"
                                                if done.signed else " (not signed)"), markup=False, highlight=False)


@blueprint_app.command("status")
def blueprint_status(
    name: Optional[str] = typer.Argument(None, help="Blueprint (default: every blueprint)"),
    ca: Optional[Path] = typer.Option(None, "--ca", help="Trust anchor (PEM) the record's signature must chain to"),
) -> None:
    """Whether the blueprint on disk is the certified one, and which files differ: exit 0 only when every blueprint
    named is certified and unchanged (with --ca: its record signed by a trusted signer), 1 otherwise."""
    from socle.blueprints import registry

    from .certify import signature
    from .certify import status as certification_status
    from .certify import summary as certification_summary

    bps = registry()
    if name is not None and name not in bps:
        err.print(f"unknown blueprint {name!r}; available: {', '.join(sorted(bps))}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    good = True
    for bp in [bps[name]] if name else list(bps.values()):
        st = certification_status(bp)
        lines = [f"{bp.name} {bp.version}: {certification_summary(st)}"]
        lines += [f"  UNREADABLE {p}" for p in st.error]
        rec = st.record
        if rec is None and not st.error:
            lines.append(f"  no {st.record_file}; certify it with: socle blueprint certify {bp.name} --approver \"Name <email>\"")
        if rec is not None:
            lines.append(f"  certified digest {rec.digest}; on disk {st.digest} ({len(st.files)} files)")
            lines.append(f"  reference stack {rec.reference.stack}: render {rec.render.result}, audit {rec.audit.result} "
                         f"({rec.audit.summary}), verification {rec.verification.result} ({rec.verification.summary})")
            if st.version_differs:
                lines.append(f"  the record certifies version {rec.version}; the blueprint is {bp.version}")
            lines += [f"  {kind:8} {path}" for path, kind in st.differences]
        sig = signature(bp, ca) if rec is not None else None
        if sig is not None:
            lines.append(f"  {sig.text()}")
        signed_ok = sig is None or not sig.signed or sig.valid
        if ca is not None and not (sig is not None and sig.signed and sig.trusted):
            signed_ok = False
            if sig is not None and not sig.signed:
                lines.append("  --ca given, but the record is not signed")
        good = good and st.certified and signed_ok
        for line in lines:
            out.print(line, markup=False, highlight=False)
    raise typer.Exit(0 if good else 1)


cluster = typer.Typer(no_args_is_help=True, help="A local Kubernetes control plane built from pinned Go modules "
                      "(etcd, kube-apiserver, controller-manager, scheduler, kwok nodes), for tests and trials.")
app.add_typer(cluster, name="cluster")


@cluster.command("build")
def cluster_build(force: bool = typer.Option(False, "--force", help="Rebuild even when the cache holds the binaries")) -> None:
    """Build (or find in the cache) the control plane, the Pulumi CLI, its Python host and the providers."""
    from .cluster import build as _build

    try:
        paths = _build.build(force=force)
    except _build.BuildError as exc:
        err.print(f"socle cluster build: {exc}", markup=False)
        raise typer.Exit(1) from None
    for group, path in paths.items():
        out.print(f"{group}: {path}", markup=False, highlight=False)


@cluster.command("up")
def cluster_up() -> None:
    """Start the local control plane on 127.0.0.1 (building it if needed) and print its KUBECONFIG line."""
    from .cluster import build as _build
    from .cluster import local

    try:
        lay, started = local.up()
    except (local.ClusterError, _build.BuildError) as exc:
        err.print(f"socle cluster up: {exc}", markup=False)
        raise typer.Exit(1) from None
    if not started:
        err.print("a local cluster is already running", markup=False)
    out.print(local.env_line(lay), markup=False, highlight=False)


@cluster.command("env")
def cluster_env() -> None:
    """Print the `export KUBECONFIG=…` line of the running local cluster."""
    from .cluster import local

    if local.running() is None:
        err.print("no local cluster is running: start one with `socle cluster up`", markup=False)
        raise typer.Exit(1)
    out.print(local.env_line(), markup=False, highlight=False)


@cluster.command("down")
def cluster_down() -> None:
    """Stop every process `socle cluster up` started; its state folder's etcd data goes with it."""
    from .cluster import local

    stopped = local.down()
    if stopped:
        out.print("stopped: " + ", ".join(stopped), markup=False, highlight=False)


# Kinds whose replacement or deletion loses data or its placement: a production `socle up` shows them and stops.
GUARDED_KINDS = {"kubernetes:apps/v1:StatefulSet": "StatefulSet", "kubernetes:core/v1:PersistentVolumeClaim":
                 "PersistentVolumeClaim", "kubernetes:storage.k8s.io/v1:StorageClass": "StorageClass",
                 "kubernetes:core/v1:Namespace": "Namespace"}


def _data_loss(stack_obj, printer) -> list[str]:
    """The stateful objects a preview would replace or delete (Kind/namespace/name)."""
    from pulumi.automation import OpType

    losing = {OpType.REPLACE, OpType.CREATE_REPLACEMENT, OpType.DELETE, OpType.DELETE_REPLACED}
    found: set[str] = set()

    def on_event(event) -> None:
        pre = getattr(event, "resource_pre_event", None)
        meta = pre.metadata if pre else None
        if meta is None or meta.op not in losing or meta.type not in GUARDED_KINDS:
            return
        state = meta.old or meta.new
        data = (state.outputs or state.inputs or {}) if state else {}
        md = data.get("metadata") or {}
        found.add("/".join(p for p in (GUARDED_KINDS[meta.type], md.get("namespace"), md.get("name")) if p))

    from pulumi.automation import CommandError

    try:
        stack_obj.preview(on_output=printer, on_event=on_event)
    except CommandError:
        # The engine also refuses a protected object's replacement in the preview; its steps were reported first.
        if not found:
            raise
    return sorted(found)


def _config_value(text: str):
    """A value of `pulumi config --json`: objects and lists come as JSON text."""
    import json

    if text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _target(st, action: str):
    """The cluster the stack deploys to, checked (one sentence and exit 2 when it does not answer)."""
    from . import engine

    try:
        return engine.check_cluster(context=(st.config.get("kubernetes:context") if isinstance(st.config, dict) else None))
    except engine.EngineError as exc:
        err.print(f"socle {action}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None


def _pulumi(stack: str, action: str, yes: bool, allow_replace: list[str] | None = None,
            config: list[str] | None = None, config_path: bool = False) -> None:
    from . import engine
    from .safeyaml import load_stack_file
    from .stackfile import Problem, environments

    name, file = resolve(stack)
    sets: list = []
    if config:  # `--config KEY=VALUE`, parsed as Pulumi parses it; the configuration it gives is what is validated
        sets, bad = engine.parse_config(config, config_path, engine.project_name(project_root()))
    else:
        bad = []

    def checked(resolved: dict | None = None, doc_file: Path = file):
        """The stack with the --config values applied (not yet written), validated."""
        if not sets or not doc_file.is_file():
            return load(stack, resolved=resolved)
        given = sets if doc_file == file else ()  # a copy the engine wrote already holds them
        return engine.checked_config(load_stack_file(doc_file, display(file)), name, display(file), given, resolved,
                                     config_path)

    resolved = None
    if bad:  # the keys Pulumi could not parse, and every problem of the values it could: all at once
        problems = [Problem(display(file), p, m) for p, m in bad]
        try:
            checked()
        except StackError as exc:
            problems += exc.problems
        _fail_stack(StackError(problems))
    try:
        st = checked()
    except StackError as exc:
        # A stack importing ESC environments may take values from them: only the engine can open them (below).
        try:
            doc = load_stack_file(file, display(file)) if file.is_file() else None
        except StackError:
            doc = None
        if not environments(doc):
            _fail_stack(exc)
        st = None
    else:
        doc = {"secretsprovider": st.secretsprovider}
    path = engine.program_path()
    missing = engine.missing_programs(path)
    if missing:
        err.print(f"socle {action}: {', '.join(missing)} not found on PATH: install the Pulumi CLI and its plugins "
                  "(https://www.pulumi.com/docs/install/), or build them here with `socle cluster build`.", markup=False)
        raise typer.Exit(EXIT_INVALID)
    root = project_root()
    be = engine.backend(root)
    problem = engine.secrets_problem(engine.secrets_provider(doc, be))
    if problem:
        err.print(f"socle {action}: {problem}.", markup=False)
        raise typer.Exit(EXIT_INVALID)
    target = _target(st, action) if st is not None else None  # before any stack is created in the backend
    from pulumi import automation as auto

    if be.default:  # nobody chose a backend: the project's local file backend
        (root / ".pulumi-state").mkdir(exist_ok=True)
    from .policy import PACK, STACK_FILE_ENV

    env = {"PULUMI_BACKEND_URL": be.url, "PATH": path, **engine.QUIET_ENV,
           # the policy pack judges the stack's resources with its profile and waivers (socle/policy)
           STACK_FILE_ENV: str(file.resolve()),
           # the language host runs the program with this interpreter (the one socle runs in, which has the SDK)
           "PULUMI_PYTHON_CMD": os.environ.get("PULUMI_PYTHON_CMD", sys.executable)}
    os.environ["PATH"] = path  # the Automation API finds the `pulumi` it runs on this process's PATH
    ws = auto.LocalWorkspace(work_dir=str(root), env_vars=env)
    try:
        stack_obj = auto.Stack.create_or_select(name, ws)
    except auto.CommandError as exc:  # the backend is unreachable or refuses the credentials: nothing was done
        said = [line.split("error:", 1)[1].strip() for line in str(exc).splitlines() if "error:" in line]
        err.print(f"socle {action}: the state backend {be.url} ({be.origin}) refused to open stack {name}: "
                  f"{(said[-1] if said else str(exc).strip().splitlines()[-1])[:400]}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    if st is None:  # the engine opens the stack's ESC environments (`pulumi config`), then socle validates the result
        try:
            resolved = {k: _config_value(v.value) for k, v in stack_obj.get_all_config().items()}
        except auto.CommandError as exc:
            err.print(f"socle {action}: the Pulumi engine could not resolve the stack's configuration (its ESC "
                      f"environments): {str(exc).strip().splitlines()[-1][:300]}", markup=False)
            raise typer.Exit(EXIT_INVALID) from None
        try:
            st = checked(resolved)
        except StackError as exc:
            _fail_stack(exc)
        target = _target(st, action)

    def printer(line: str) -> None:
        out.print(line.rstrip("\n"), markup=False, highlight=False)

    err.print(f"socle {action}: stack {st.name} on {target.server} (context {target.context}); state in {be.url} "
              f"({be.origin})", markup=False)
    if sets:
        # Saved into the stack file, as `pulumi up|preview --config` saves them, once every check above has passed:
        # written by the engine into a copy, the copy validated again, then renamed over the stack file.
        try:
            engine.save_config(file, name, sets, config_path, env, root, lambda copy: checked(resolved, copy))
        except engine.EngineError as exc:
            err.print(f"socle {action}: {exc}.", markup=False)
            raise typer.Exit(EXIT_INVALID) from None
        except StackError as exc:
            _fail_stack(exc)
        st = load(stack, resolved=resolved)
        err.print(f"socle {action}: saved {', '.join(s.shown[len('config.'):] for s in sets)} in {display(file)} "
                  f"(as `pulumi {action} --config` does: the value stays)", markup=False)
    if action == "up":
        # Never take over someone else's objects: a kit namespace that exists in the cluster but not in this stack's
        # state belongs to someone else (or to another state). Provider releases before 4.29 would silently adopt it.
        ours = {((r.get("outputs") or {}).get("metadata") or {}).get("name")
                for r in stack_obj.export_stack().deployment.get("resources", [])
                if r.get("type") == "kubernetes:core/v1:Namespace"}
        foreign = [n for n in engine.existing_namespaces(target, sorted(st.inventory.namespaces)) if n not in ours]
        if foreign:
            err.print(f"socle up: namespace(s) {', '.join(foreign)} already exist on {target.server} but are not in "
                      f"stack {st.name}'s state: deploying would take them over. Delete them, or adopt them on purpose "
                      "with `pulumi import`, then run again; nothing was changed.", markup=False)
            raise typer.Exit(EXIT_INVALID)
    try:
        if action == "preview":
            stack_obj.preview(on_output=printer, policy_packs=[str(PACK)])
        elif action == "refresh":
            if not yes and not typer.confirm(f"Refresh stack {st.name}'s state from {target.server}?"):
                raise typer.Exit(1)
            stack_obj.refresh(on_output=printer)
        elif action == "up":
            if st.inventory.profile == "production":
                # Data-loss guard: a replaced StatefulSet, claim or storage class means new, empty volumes.
                at_risk = [o for o in _data_loss(stack_obj, lambda _line: None) if o not in set(allow_replace or [])]
                if at_risk:
                    err.print(f"socle up: stack {st.name} is production and this update would replace or delete "
                              f"{', '.join(at_risk)} (their data with them); nothing was changed. If that is what you "
                              "want, name each one: " + " ".join(f"--allow-replace {o}" for o in at_risk), markup=False)
                    raise typer.Exit(EXIT_INVALID)
            if not yes and not typer.confirm(f"Deploy stack {st.name} to {target.server}?"):
                raise typer.Exit(1)
            stack_obj.up(on_output=printer, policy_packs=[str(PACK)])
        else:
            if not yes and not typer.confirm(f"Destroy stack {st.name} on {target.server}? Protected stateful resources are kept."):
                raise typer.Exit(1)
            # Protected resources (production's namespaces, stateful sets, claims, storage class) are kept, the
            # rest removed: what `pulumi destroy --exclude-protected` does. They stay in the state, protected.
            stack_obj.destroy(on_output=printer, exclude_protected=True)
            kept = sorted(r["urn"].rsplit("::", 1)[-1] for r in stack_obj.export_stack().deployment.get("resources", [])
                          if r.get("protect") and str(r.get("type", "")).startswith("kubernetes:"))
            if kept:
                err.print(f"socle destroy: {len(kept)} protected Kubernetes object(s) kept with their data: {', '.join(kept)}. "
                          "They stay in the stack's state; remove their protection in the stack's code to delete "
                          "them.", markup=False)
    except auto.CommandError as exc:
        # The engine printed the resources it refused and the API server's messages above; the state records what
        # was done, so a re-run after the fix continues from there.
        refused = sorted({line.strip() for line in str(exc).splitlines() if line.strip().startswith("error: resource ")})
        err.print(f"socle {action}: the Pulumi engine stopped; "
                  + (f"{len(refused)} resource(s) refused, the first: {refused[0][7:][:600]}" if refused else
                     "see its output above") + ". The state records what was done: fix, then run it again.", markup=False)
        raise typer.Exit(1) from None


_CONFIG_HELP = ("Save KEY=VALUE into the stack file, then run, as `pulumi up --config` does (repeatable; the value "
                "stays). Checked first: a bad value changes nothing. Plain text: a secret goes through `pulumi config "
                "set --secret`.")
_CONFIG_PATH_HELP = ("--config keys are paths (socle:params.gateway.replicas): the value is set inside the object, as "
                     "`pulumi config set --path` sets it")


@app.command()
def upgrade(
    stack: str = typer.Argument(..., help="Stack name (stacks/Pulumi.<name>.yaml) or path to a stack file"),
    to: str = typer.Option(..., "--to", metavar="VERSION", help="The blueprint version of this kit (MAJOR or MAJOR.MINOR.PATCH)"),
    from_ref: Optional[str] = typer.Option(None, "--from-ref", metavar="GIT_REF",
                                           help="The objects before: the kit's code at this git ref renders the stack"),
    from_state: bool = typer.Option(False, "--from-state", help="The objects before: the stack's deployed Pulumi state"),
    acknowledge: Optional[list[str]] = typer.Option(
        None, "--acknowledge", metavar="KIND/NAMESPACE/NAME",
        help="Let the upgrade replace or delete this stateful object (repeat for each)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and show the stack file's diff; write nothing"),
) -> None:
    """Migrate a stack file to this kit's blueprint version, after an upgrade-safety check: every object the new
    code would replace or delete is listed; a stateful one (StatefulSet, claim, volume, namespace, storage class,
    Velero object) stops the upgrade unless acknowledged. Exit 0 done, 1 blocked, 2 bad input; nothing written
    unless 0 (docs/UPGRADING.md)."""
    from .upgrade import run

    outcome = run(stack, to, from_ref, from_state, list(acknowledge or []), dry_run,
                  say=lambda line: out.print(line, markup=False, highlight=False, soft_wrap=True),
                  warn=lambda line: err.print(line, markup=False, highlight=False, soft_wrap=True))
    raise typer.Exit(outcome.code)


@app.command()
def preview(stack: str = typer.Argument(...),
            config: Optional[list[str]] = typer.Option(None, "--config", "-c", metavar="KEY=VALUE", help=_CONFIG_HELP),
            config_path: bool = typer.Option(False, "--config-path", help=_CONFIG_PATH_HELP)) -> None:
    """`pulumi preview` of a stack through the Automation API, on the state backend Pulumi would use."""
    _pulumi(stack, "preview", True, config=config, config_path=config_path)


@app.command()
def refresh(stack: str = typer.Argument(...), yes: bool = typer.Option(False, "--yes", "-y"),
            config: Optional[list[str]] = typer.Option(None, "--config", "-c", metavar="KEY=VALUE", help=_CONFIG_HELP),
            config_path: bool = typer.Option(False, "--config-path", help=_CONFIG_PATH_HELP)) -> None:
    """`pulumi refresh`: read the stack's objects back from the cluster into its state (nothing is changed in the
    cluster)."""
    _pulumi(stack, "refresh", yes, config=config, config_path=config_path)


@app.command()
def up(stack: str = typer.Argument(...), yes: bool = typer.Option(False, "--yes", "-y"),
       allow_replace: Optional[list[str]] = typer.Option(
           None, "--allow-replace", metavar="KIND/NAMESPACE/NAME",
           help="Production: let this update replace or delete this stateful object (repeat for each)"),
       config: Optional[list[str]] = typer.Option(None, "--config", "-c", metavar="KEY=VALUE", help=_CONFIG_HELP),
       config_path: bool = typer.Option(False, "--config-path", help=_CONFIG_PATH_HELP)) -> None:
    """Deploy a stack with Pulumi (Automation API). In production, an update that would replace or delete a
    StatefulSet, claim, storage class or namespace stops first and names them."""
    _pulumi(stack, "up", yes, allow_replace, config=config, config_path=config_path)


@app.command()
def destroy(stack: str = typer.Argument(...), yes: bool = typer.Option(False, "--yes", "-y"),
            config: Optional[list[str]] = typer.Option(None, "--config", "-c", metavar="KEY=VALUE", help=_CONFIG_HELP),
            config_path: bool = typer.Option(False, "--config-path", help=_CONFIG_PATH_HELP)) -> None:
    """Destroy a stack with Pulumi. Protected stateful resources (production) are refused by the engine."""
    _pulumi(stack, "destroy", yes, config=config, config_path=config_path)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
