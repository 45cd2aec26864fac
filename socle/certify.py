"""Certified blueprints: the record that says which blueprint code was proven, and the checks that compare with it.

`socle blueprint certify NAME` renders, audits and verifies (real daemons) the blueprint's reference stack and, when
all three pass, writes `socle/blueprints/<name>/certification.json`: the blueprint's version, the SHA-256 of every file
that makes the blueprint (the rule below) and one digest over them, the SHA-256 of the reference audit report and
verification report, the reference stack's parameters, the date and the approver. `--sign-key/--sign-cert` add a
detached CMS signature made by socle.audit.signing (`certification.sha256` + `certification.sha256.p7s`).

What makes a blueprint (when `Blueprint.sources` is empty): its package directory, the shared modules of
`socle/blueprints/` (the Blueprint type and any common module beside it), every file under `socle/components/` (code and
templates), and what the render reads from `socle/`: `socle/constants.py`, `socle/secretvalue.py` and `socle/fhir/`
(HAPI's property names, the INS interceptor). Bytecode (`__pycache__`, *.pyc), hidden files and the record's own
files are left out. The overall digest is the SHA-256 of the `sha256sum` listing of those files (sorted paths), so
`sha256sum -c` can check a copy.

A stack pins the certified blueprint with `socle:blueprintDigest` (`socle new` writes it from the record). A pinned
stack whose pin, record and files do not agree is refused in production (`config.socle:blueprintDigest`) and warned
about in any other profile; an unpinned production stack is warned about (it follows whatever code is on disk); an
unpinned dev stack (the kit's demo) says nothing. `socle audit` reports the certification and the stack's deviations
from the certified reference parameters, each relaxation of a requirement flagged with its ID.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RECORD = "certification.json"
MANIFEST = "certification.sha256"  # signed form: the sha256sum line of the record
SIGNATURE = MANIFEST + ".p7s"  # detached CMS signature of the manifest (socle.audit.signing)
RECORD_FILES = (RECORD, MANIFEST, SIGNATURE)
FORMAT = 1
PIN_KEY = "socle:blueprintDigest"
PIN_PATH = f"config.{PIN_KEY}"
_HEX = r"[0-9a-f]{64}"
DIGEST = re.compile(rf"sha256:{_HEX}")
# The files that make a blueprint, relative to the code root: `{package}` is the blueprint's package directory,
# `{imported}` each other package of socle/blueprints/ its code imports (socle/blueprints/shared), whole.
DEFAULT_SOURCES = ("{package}/**", "{imported}/**", "socle/blueprints/*", "socle/components/**", "socle/constants.py",
                   "socle/secretvalue.py", "socle/fhir/**")
APPROVER = re.compile(r"[^<>@\s][^<>]{0,126}[^<>\s] <[^<>@\s]+@[^<>@\s]+\.[^<>@\s]+>")
LISTED = 8  # differing files named in a one-line message; `socle blueprint status` lists them all


class CertifyError(Exception):
    """Input problems (exit 2): every one, nothing written."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class CertifyFailed(Exception):
    """The reference stack did not pass (exit 1): no record written; the evidence says why."""


# --- the files of a blueprint and their digests ----------------------------------------------------------------

def code_root() -> Path:
    """The directory holding the `socle` package in use (the kit's checkout, or site-packages)."""
    import socle

    return Path(socle.__file__).resolve().parent.parent


def package_dir(bp) -> str:
    """The blueprint's package directory, relative to the code root (`socle/blueprints/etablissement`)."""
    return "/".join(bp.build.__module__.split(".")[:3])


def source_rule(bp, root: Path | None = None) -> tuple[str, ...]:
    """The globs (relative to the code root) of the files that make the blueprint: `Blueprint.sources` when set,
    else DEFAULT_SOURCES with the blueprint's package and the socle/blueprints/ packages its code imports."""
    if bp.sources:
        return tuple(bp.sources)
    package = package_dir(bp)
    out: list[str] = []
    for pattern in DEFAULT_SOURCES:
        if "{imported}" in pattern:
            out += [pattern.format(imported=d) for d in imported_packages(root or code_root(), package)]
        else:
            out.append(pattern.format(package=package))
    return tuple(out)


_IMPORTS: dict[tuple[str, int, int, int], tuple[str, ...]] = {}


def _imports(path: Path, package: tuple[str, ...]) -> tuple[str, ...]:
    """The modules a Python file imports (absolute names; relative imports resolved against its package)."""
    import ast

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _IMPORTS:
        names: list[str] = []
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = list(package[:len(package) - node.level + 1]) if node.level else []
                module = ".".join(base + (node.module.split(".") if node.module else []))
                names += [module] + [f"{module}.{a.name}" for a in node.names]
        _IMPORTS[key] = tuple(names)
    return _IMPORTS[key]


def imported_packages(root: Path, package: str) -> list[str]:
    """The other packages of socle/blueprints/ (`socle/blueprints/shared`) the blueprint's code imports, directly
    or through one another: sorted, its own package left out."""
    seen = {package}
    todo = [package]
    while todo:
        folder = root / todo.pop()
        for py in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            rel = py.relative_to(root)
            if _skipped(rel.as_posix()):
                continue
            for name in _imports(py, rel.parent.parts):
                parts = name.split(".")
                if (parts[:2] == ["socle", "blueprints"] and len(parts) > 2
                        and (root / "socle" / "blueprints" / parts[2]).is_dir()):
                    sub = f"socle/blueprints/{parts[2]}"
                    if sub not in seen:
                        seen.add(sub)
                        todo.append(sub)
    return sorted(seen - {package})


def _skipped(rel: str) -> bool:
    parts = rel.split("/")
    return ("__pycache__" in parts or rel.endswith((".pyc", ".pyo")) or any(p.startswith(".") for p in parts))


_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _DIGESTS:
        with open(path, "rb") as fh:
            _DIGESTS[key] = hashlib.file_digest(fh, "sha256").hexdigest()
    return _DIGESTS[key]


def source_files(bp, root: Path | None = None) -> dict[str, str]:
    """Relative path -> SHA-256 of every file the rule names, sorted by path."""
    root = root or code_root()
    record_dir = package_dir(bp)
    found: dict[str, str] = {}
    for pattern in source_rule(bp, root):
        if pattern.endswith("/**"):
            base = root / pattern[:-3]
            candidates = base.rglob("*") if base.is_dir() else []
        else:
            candidates = root.glob(pattern)
        for path in candidates:
            rel = path.relative_to(root).as_posix()
            if _skipped(rel) or not path.is_file() or rel in found:
                continue
            if rel.rsplit("/", 1)[0] == record_dir and path.name in RECORD_FILES:
                continue
            found[rel] = _sha256(path)
    return dict(sorted(found.items()))


def listing(files: dict[str, str]) -> str:
    """The `sha256sum` listing of the files (sorted paths): what the overall digest is the SHA-256 of."""
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))


def overall(files: dict[str, str]) -> str:
    return "sha256:" + hashlib.sha256(listing(files).encode("utf-8")).hexdigest()


# --- the record ------------------------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reference(_Strict):
    stack: str
    file: str
    sha256: str = Field(pattern=rf"^{_HEX}$")
    profile: str
    params: dict[str, Any]
    waivers: list[dict[str, Any]] = Field(default_factory=list)


class Step(_Strict):
    result: str
    report: str  # the report's path in the evidence directory
    sha256: str = Field(pattern=rf"^{_HEX}$")
    summary: str


class Record(_Strict):
    format: int
    blueprint: str
    version: str
    kit_version: str
    digest: str = Field(pattern=rf"^sha256:{_HEX}$")
    sources: list[str]
    files: dict[str, str]
    reference: Reference
    render: Step
    audit: Step
    verification: Step
    date: dt.date
    approver: str


def record_path(bp, root: Path | None = None) -> Path:
    return (root or code_root()) / package_dir(bp) / RECORD


def record_text(record: dict[str, Any]) -> str:
    """Deterministic JSON: sorted keys, two-space indent, UTF-8, one final newline."""
    return json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_record(bp, root: Path | None = None) -> Record | None:
    """The blueprint's record, None when there is none; CertifyError (`file:key: message` lines) when unusable."""
    path = record_path(bp, root)
    shown = f"{package_dir(bp)}/{RECORD}"
    if not os.path.lexists(path):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CertifyError([f"{shown}: unreadable certification record ({exc})"]) from None
    try:
        rec = Record.model_validate(data)
    except ValidationError as exc:
        raise CertifyError([f"{shown}:{'.'.join(str(p) for p in e['loc']) or '-'}: {e['msg']}"
                            for e in exc.errors()]) from None
    problems = []
    if rec.format != FORMAT:
        problems.append(f"{shown}:format: format {rec.format} is not the one this kit reads ({FORMAT})")
    if rec.blueprint != bp.name:
        problems.append(f"{shown}:blueprint: certifies blueprint {rec.blueprint!r}, not {bp.name!r}")
    bad = sorted(p for p, d in rec.files.items() if not re.fullmatch(_HEX, d))
    if bad:
        problems.append(f"{shown}:files: not a SHA-256 for {', '.join(bad[:LISTED])}")
    elif overall(rec.files) != rec.digest:
        problems.append(f"{shown}:digest: is not the digest of the files it lists: the record was edited by hand")
    if problems:
        raise CertifyError(problems)
    return rec


@dataclass
class Status:
    blueprint: str
    version: str
    record_file: str  # relative to the code root
    digest: str  # of the files on disk
    files: dict[str, str]
    record: Record | None = None
    error: list[str] = field(default_factory=list)  # the record could not be read
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[tuple[str, str]]:
        return sorted([(p, "changed") for p in self.changed] + [(p, "added") for p in self.added]
                      + [(p, "removed") for p in self.removed])

    @property
    def version_differs(self) -> bool:
        return self.record is not None and self.record.version != self.version

    @property
    def certified(self) -> bool:
        """A record that holds, for exactly the files on disk and this version."""
        return self.record is not None and not self.error and not self.differences and not self.version_differs

    @property
    def state(self) -> str:
        if self.error:
            return "unreadable"
        if self.record is None:
            return "uncertified"
        return "certified" if self.certified else "modified"

    def difference_text(self, limit: int = LISTED) -> str:
        diff = self.differences
        text = ", ".join(f"{kind} {path}" for path, kind in diff[:limit])
        return text + (f" and {len(diff) - limit} more" if len(diff) > limit else "")


def status(bp, root: Path | None = None) -> Status:
    """The blueprint on disk against its record: which files were added, removed or changed."""
    root = root or code_root()
    files = source_files(bp, root)
    st = Status(bp.name, bp.version, f"{package_dir(bp)}/{RECORD}", overall(files), files)
    try:
        st.record = load_record(bp, root)
    except CertifyError as exc:
        st.error = exc.problems
        return st
    if st.record is not None:
        certified = st.record.files
        st.added = sorted(set(files) - set(certified))
        st.removed = sorted(set(certified) - set(files))
        st.changed = sorted(p for p in set(files) & set(certified) if files[p] != certified[p])
    return st


def summary(st: Status) -> str:
    """One line for `socle list` and `socle blueprint status`."""
    if st.state == "unreadable":
        return "record unreadable"
    if st.record is None:
        return "not certified"
    r = st.record
    if st.certified:
        return f"certified {r.date} by {r.approver} ({r.digest[:19]}…)"
    if st.version_differs and not st.differences:
        return f"record certifies {r.version}, not {st.version}"
    return f"modified since its certification of {r.date} ({len(st.differences)} files differ)"


# --- signature (socle.audit.signing) -----------------------------------------------------------------------------

def check_signing_material(key: Path, cert: Path) -> None:
    """Refuse an unreadable or mismatched key/certificate before the long run (socle.audit.signing's own checks)."""
    from .audit.signing import SigningError, sign

    with tempfile.TemporaryDirectory(prefix="socle-certify-key-") as tmp:
        Path(tmp, RECORD).write_text("{}\n", encoding="utf-8")
        try:
            sign(Path(tmp), key, cert)
        except (SigningError, OSError) as exc:
            raise CertifyError([f"--sign-key/--sign-cert: {exc}"]) from None


def _sign(text: str, key: Path, cert: Path) -> tuple[bytes, bytes]:
    """The manifest (`sha256sum` line of the record) and its detached CMS signature, by socle.audit.signing."""
    from .audit.signing import MANIFEST as BUNDLE_MANIFEST
    from .audit.signing import SIGNATURE as BUNDLE_SIGNATURE
    from .audit.signing import sign

    with tempfile.TemporaryDirectory(prefix="socle-certify-sign-") as tmp:
        Path(tmp, RECORD).write_text(text, encoding="utf-8")
        sign(Path(tmp), key, cert)
        return Path(tmp, BUNDLE_MANIFEST).read_bytes(), Path(tmp, BUNDLE_SIGNATURE).read_bytes()


@dataclass(frozen=True)
class Signature:
    signed: bool
    valid: bool = False
    trusted: bool | None = None  # None: no trust anchor given, the signer's identity was not checked
    signer: str = ""
    problems: tuple[str, ...] = ()

    def text(self) -> str:
        if not self.signed:
            return "not signed"
        if not self.valid:
            return "signature does NOT verify: " + "; ".join(self.problems)
        if self.trusted is None:
            return f"signature valid, by {self.signer}; the signer's identity was not checked (no trust anchor: --ca)"
        if self.trusted:
            return f"signature valid, by {self.signer}, trusted by the CA given"
        return f"signature valid, by {self.signer}, but the signer does NOT chain to the CA given"

    def as_dict(self) -> dict[str, Any]:
        return {"signed": self.signed, "valid": self.valid if self.signed else None,
                "signer_checked": self.trusted is not None, "trusted": self.trusted, "signer": self.signer or None,
                "text": self.text()}


def signature(bp, ca: Path | None = None, root: Path | None = None) -> Signature:
    """Check the record's signature, if it has one: the record against the signed manifest, the manifest's CMS
    signature (OpenSSL), and with `ca` the signer's certificate against that trust anchor."""
    from .audit.signing import MANIFEST as BUNDLE_MANIFEST
    from .audit.signing import SIGNATURE as BUNDLE_SIGNATURE
    from .audit.signing import SigningError, verify

    folder = record_path(bp, root).parent
    present = [n for n in (MANIFEST, SIGNATURE) if (folder / n).is_file()]
    if not present:
        return Signature(False)
    if len(present) == 1:
        return Signature(True, problems=(f"{present[0]} is there without its pair",))
    with tempfile.TemporaryDirectory(prefix="socle-certify-verify-") as tmp:
        for src, dst in ((RECORD, RECORD), (MANIFEST, BUNDLE_MANIFEST), (SIGNATURE, BUNDLE_SIGNATURE)):
            shutil.copyfile(folder / src, Path(tmp, dst))
        try:
            result = verify(Path(tmp), ca)
        except (SigningError, OSError, ValueError) as exc:
            return Signature(True, problems=(str(exc),))
    problems = tuple(p for p in result.problems if "identity was not checked" not in p)
    return Signature(True, valid=result.files_ok and result.signature_ok, trusted=(result.signer_trusted if ca else None),
                     signer=result.signer, problems=problems)


# --- the stack's pin: socle validate -------------------------------------------------------------------------------

def _profile(bp, params: Any) -> str | None:
    try:
        return bp.inventory(params).profile
    except (AttributeError, TypeError):
        return getattr(params, "profile", None)


def pin_form_problem(value: Any) -> str | None:
    if isinstance(value, str) and DIGEST.fullmatch(value):
        return None
    return ("must be the certified blueprint's digest, sha256:<64 hex digits> (the `digest` of "
            "socle/blueprints/<name>/certification.json, written by `socle new`)")


def mismatches(bp, pin: str, root: Path | None = None) -> list[str]:
    """Every way a stack pinned to `pin` does not run the certified blueprint."""
    st = status(bp, root)
    name = bp.name
    if st.error:
        return [f"the certification record cannot be read: {p}" for p in st.error]
    if st.record is None:
        return [f"pinned to {pin}, but blueprint {name} {bp.version} is not certified (no {st.record_file}): certify "
                f"it (`socle blueprint certify {name}`) or use a kit whose blueprint is"]
    r = st.record
    out = []
    if r.digest != pin:
        out.append(f"pinned to {pin}, but the certified {name} is {r.digest} (certified {r.date} by {r.approver}): "
                   f"review what changed, then pin the new digest")
    if st.version_differs:
        out.append(f"{st.record_file} certifies {name} {r.version}; this kit has {bp.version}")
    if st.differences:
        out.append(f"blueprint {name} was modified after its certification of {r.date}: {len(st.differences)} "
                   f"file(s) differ ({st.difference_text()}); `socle blueprint status {name}` lists them: restore "
                   "the certified files or certify again")
    return out


def pin_problems(bp, config: dict[str, Any], params: Any, root: Path | None = None) -> list[tuple[str, str]]:
    """validate_config's refusals: a pin that is not a digest (every profile); in production, a pinned stack whose
    blueprint is not the certified one."""
    if PIN_KEY not in config:
        return []
    pin = config[PIN_KEY]
    form = pin_form_problem(pin)
    if form:
        return [(PIN_PATH, form)]
    if _profile(bp, params) != "production":
        return []
    return [(PIN_PATH, m + " (production refuses it)") for m in mismatches(bp, pin, root)]


def pin_advisories(bp, config: dict[str, Any], params: Any, root: Path | None = None) -> list[tuple[str, str]]:
    """`socle validate`'s warnings: a pinned stack that is not on the certified blueprint (outside production, where
    it is refused), and a production stack that pins nothing."""
    production = _profile(bp, params) == "production"
    if PIN_KEY not in config:
        if not production:
            return []
        st = status(bp, root)
        if st.error:
            return [(PIN_PATH, f"not pinned, and the certification record cannot be read: {st.error[0]}")]
        if st.record is None:
            return [(PIN_PATH, f"production stack on blueprint {bp.name} {bp.version}, which is not certified (no "
                               f"{st.record_file}); nothing pins it to a certified blueprint")]
        pin_line = f'add `{PIN_KEY}: "{st.record.digest}"`'
        if st.certified:
            return [(PIN_PATH, f"not pinned to the certified blueprint: {pin_line} ({bp.name} {st.record.version}, "
                               f"certified {st.record.date}) so that a blueprint modified after its certification "
                               "is refused")]
        return [(PIN_PATH, f"not pinned, and blueprint {bp.name} was modified after its certification of "
                           f"{st.record.date}: {len(st.differences)} file(s) differ ({st.difference_text()})")]
    pin = config[PIN_KEY]
    if production or pin_form_problem(pin):
        return []  # refused by validate_config
    return [(PIN_PATH, m) for m in mismatches(bp, pin, root)]


def pin_for(bp, root: Path | None = None) -> tuple[str | None, str | None]:
    """(digest to pin, warning) for `socle new`: the record's digest, None when the blueprint is not certified."""
    try:
        st = status(bp, root)
    except OSError as exc:
        return None, f"the blueprint's files cannot be read ({exc}); the stack is not pinned"
    if st.error:
        return None, f"the certification record cannot be read ({st.error[0]}); the stack is not pinned"
    if st.record is None:
        return None, f"blueprint {bp.name} {bp.version} is not certified: the stack is not pinned to a certified digest"
    if not st.certified:
        return st.record.digest, (f"blueprint {bp.name} was modified after its certification of {st.record.date} "
                                  f"({st.difference_text()}): the stack is pinned to the certified digest, which "
                                  "production will refuse until the files are restored or certified again")
    return st.record.digest, None


# --- deviations from the certified reference ------------------------------------------------------------------

# Identity and site-specific fields: they differ from one établissement to the next by nature (names, hosts, FINESS,
# partner clients, database addresses, bucket and Secret names, storage driver settings) and are not compared.
IDENTITY = (
    "organisation.*", "hosting.region_label", "hosting.regions[*].name", "backup.region.name", "backup.bucket",
    "backup.s3_url", "backup.velero_namespace", "gateway.apis[*].host", "gateway.apis[*].owner_group",
    "gateway.apis[*].service", "gateway.apis[*].namespace", "gateway.apis[*].port", "psc.client_id",
    "psc.redirect_host", "authz.host", "authz.realm", "authz.api_clients", "authz.database.*", "fhir.database.host",
    "fhir.database.port", "fhir.database.name", "fhir.database.user", "fhir.database.network",
    "fhir.database.provider_backup.region.name", "fhir.database.provider_backup.evidence", "relay.hostname",
    "relay.authorized_domains", "relay.client_fingerprints", "relay.next_hop", "relay.operator_contract",
    "storage.generic_csi.provisioner", "storage.generic_csi.parameters", "storage.generic_csi.snapshot_driver",
    "storage.scaleway_sbs.*", "storage.ceph_rbd.*", "pki.crl_urls", "auditors.group",
)
# ... and every Secret name (`*_secret`) and secret value: the name of a Secret is the site's choice, a secret value
# is never compared (nor written: the record holds `<secret: ...>` in its place).
SECRET_VALUES = ("psc.client_secret_value", "fhir.annuaire_api_key", "fhir.database.password")
KEYED_LISTS = {"gateway.apis": "name"}  # list entries matched by this key, not by position


def _pattern(pattern: str) -> re.Pattern[str]:
    text = re.escape(pattern).replace(r"\[\*\]", r"\[[^\]]*\]").replace(r"\*", r".*")
    return re.compile(text + r"(\.|\[|$)")


_IDENTITY = tuple(_pattern(p) for p in IDENTITY)


def identity(path: str) -> bool:
    last = re.split(r"[.\[]", path)[-1]
    return (last.endswith("_secret") or path in SECRET_VALUES or any(p.match(path) for p in _IDENTITY))


def _ordered(order: tuple[str, ...]) -> Callable[[Any, Any], bool]:
    return lambda s, r: s in order and r in order and order.index(s) < order.index(r)


def _num(convert: Callable[[Any], float] = float) -> Callable[[Any], float | None]:
    def f(v: Any) -> float | None:
        try:
            return None if v is None or isinstance(v, bool) else convert(v)
        except (TypeError, ValueError):
            return None
    return f


def _lower(convert: Callable[[Any], float] = float) -> Callable[[Any, Any], bool]:
    n = _num(convert)
    return lambda s, r: n(s) is not None and n(r) is not None and n(s) < n(r)  # type: ignore[operator]


def _higher(convert: Callable[[Any], float] = float) -> Callable[[Any, Any], bool]:
    n = _num(convert)
    return lambda s, r: n(s) is not None and n(r) is not None and n(s) > n(r)  # type: ignore[operator]


def _nginx_size(v: str) -> float:
    text = str(v).lower()
    return float(text[:-1]) * {"k": 1024, "m": 1024 ** 2}[text[-1]] if text[-1] in "km" else float(text)


def _minutes(v: str) -> float:
    return float(v[:-1]) * (60 if v.endswith("h") else 1)


def _turned_off(s: Any, r: Any) -> bool:
    return s is False and r is not False


def _turned_on(s: Any, r: Any) -> bool:
    return s is True and r is not True


def _adds(s: Any, r: Any) -> bool:
    return isinstance(s, list) and isinstance(r, list) and bool(set(map(str, s)) - set(map(str, r)))


def _becomes(value: str) -> Callable[[Any, Any], bool]:
    return lambda s, r: s == value and r != value


def _leaves(stay_in: frozenset[str]) -> Callable[[Any, Any], bool]:
    return lambda s, r: s not in stay_in and r in stay_in


def _differs(s: Any, r: Any) -> bool:
    return s != r


def _relaxations() -> tuple[tuple[str, str, Callable[[Any, Any], bool], str], ...]:
    from .constants import EEA_COUNTRIES, PSC_SANDBOX_HOSTS

    def sandbox(s: Any, r: Any) -> bool:
        return any(h in str(s) for h in PSC_SANDBOX_HOSTS) and not any(h in str(r) for h in PSC_SANDBOX_HOSTS)

    eea = _leaves(frozenset(EEA_COUNTRIES))
    return (
        # (key path, requirement, weaker(stack, reference), what is weaker)
        ("tls.min_version", "TLS-01", _ordered(("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")), "an older TLS version"),
        ("gateway.hsts_max_age", "TLS-03", _lower(), "a shorter HSTS max-age"),
        ("pki.mode", "PKI-01", _ordered(("demo", "provided")), "the throw-away demo PKI"),
        ("pki.crl_refresh_minutes", "PKI-02", _higher(), "CRLs refreshed less often"),
        ("gateway.apis[*].sensitivity", "API-01", _ordered(("public", "restricted", "sensitive")), "a lower sensitivity"),
        ("gateway.apis[*].mtls", "API-01", _turned_off, "client certificates turned off"),
        ("gateway.apis[*].token_validation", "API-03", _turned_off, "token validation turned off"),
        ("gateway.apis[*].rate_per_second", "GW-06", _higher(), "a higher rate limit"),
        ("gateway.apis[*].burst", "GW-06", _higher(), "a larger burst"),
        ("gateway.apis[*].max_body", "GW-06", _higher(_nginx_size), "a larger request body limit"),
        ("gateway.session_lifetime", "API-04", _higher(_minutes), "a longer browser session"),
        ("authz.access_token_minutes", "API-03", _higher(), "longer-lived API tokens"),
        ("authz.session_idle_minutes", "API-04", _higher(), "a longer idle session"),
        ("authz.session_max_hours", "API-04", _higher(), "a longer session"),
        ("psc.issuer", "PSC-05", sandbox, "the Pro Santé Connect sandbox"),
        ("fhir.validation_fr_core", "FHIR-04", _turned_off, "FR Core validation turned off"),
        ("fhir.terminology_server", "FHIR-02", _differs, "another terminology server than the certified one"),
        ("fhir.ins_systems", "INS-02", _adds, "INS systems the reference does not accept"),
        ("relay.require_client_certificate", "MSS-06", _turned_off, "no organisation certificate required"),
        ("relay.enforce_operator_dn", "MSS-05", _turned_off, "operator certificate names not enforced"),
        ("relay.domain_list_url", "MSS-05", _differs, "another domain list than the certified one"),
        ("relay.refresh_interval_hours", "MSS-05", _higher(), "the domain list refreshed less often"),
        ("relay.list_min_domains", "MSS-05", _lower(), "a smaller downloaded list accepted"),
        ("relay.list_max_shrink_percent", "MSS-05", _higher(), "a list that shrank more accepted"),
        ("relay.list_max_invalid_percent", "MSS-05", _higher(), "more invalid entries accepted"),
        ("relay.mailbox_purge_days", "MSS-08", _higher(), "unused mailboxes kept longer"),
        ("audit.retention_days", "TRACE-01", _lower(), "audit records kept a shorter time"),
        ("backup.enabled", "BCK-01", _turned_off, "backups turned off"),
        ("backup.data_mover", "BCK-01", _becomes("snapshots-in-place"), "volume data left in the primary region"),
        ("backup.daily_ttl_days", "BCK-01", _lower(), "daily backups kept a shorter time"),
        ("backup.monthly_ttl_days", "BCK-01", _lower(), "monthly backups kept a shorter time"),
        ("backup.region.country", "HDS-01", eea, "a backup region outside the EEA"),
        ("hosting.regions[*].country", "HDS-01", eea, "a region outside the EEA"),
        ("fhir.database.provider_backup.region.country", "HDS-01", eea, "database backups outside the EEA"),
        ("fhir.database.provider_backup.retention_days", "BCK-01", _lower(), "database backups kept a shorter time"),
        ("fhir.database.provider_backup.monthly_retention_days", "BCK-01", _lower(),
         "monthly database backups kept a shorter time"),
        ("storage.encrypted", "HDS-04", _turned_off, "unencrypted volumes"),
        ("storage.generic_csi.encrypted", "HDS-04", _turned_off, "a driver that does not encrypt"),
        ("images.allowed_registries", "K8S-05", _adds, "registries the reference does not allow"),
        ("gateway.replicas", "K8S-09", _lower(), "fewer replicas"),
        ("fhir.replicas", "K8S-09", _lower(), "fewer replicas"),
        ("authz.replicas", "K8S-09", _lower(), "fewer replicas"),
        ("relay.replicas", "K8S-09", _lower(), "fewer replicas"),
        ("auditors.live_checks", "K8S-10", _turned_on, "auditors allowed to exec into the pods"),
    )


def relaxation_table() -> list[tuple[str, str, str]]:
    """(key path, requirement ID, what is weaker): the table docs/certification.md describes."""
    return [(path, req, what) for path, req, _, what in _relaxations()]


_MISSING = object()


def flatten(tree: Any, path: str = "") -> dict[str, Any]:
    """Leaf key paths of parameters as JSON: mappings walked, lists of mappings by position (or by name for
    KEYED_LISTS: `gateway.apis[fhir].mtls`), other lists kept whole."""
    out: dict[str, Any] = {}
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            out.update(flatten(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(tree, list) and tree and all(isinstance(x, dict) for x in tree):
        key = KEYED_LISTS.get(path)
        for i, item in enumerate(tree):
            label = item.get(key) if key and isinstance(item.get(key), str) else str(i)
            out.update(flatten(item, f"{path}[{label}]"))
    else:
        out[path] = tree
    return out


def _entry(path: str) -> str | None:
    """`gateway.apis[fhir]` for `gateway.apis[fhir].mtls`: the keyed list entry a path is in, if any."""
    for list_path in KEYED_LISTS:
        m = re.match(rf"{re.escape(list_path)}\[[^\]]*\]", path)
        if m:
            return m.group(0)
    return None


def _defaults(params: BaseModel) -> dict[str, dict[str, Any]]:
    """For each keyed list, its entry's default values (compared with an entry the reference does not have)."""
    out: dict[str, dict[str, Any]] = {}
    for list_path in KEYED_LISTS:
        node: Any = params
        for part in list_path.split("."):
            node = getattr(node, part, None)
        if isinstance(node, list) and node and isinstance(node[0], BaseModel):
            model = type(node[0])
            out[list_path] = {k: json.loads(json.dumps(f.get_default(call_default_factory=True), default=str))
                              for k, f in model.model_fields.items() if not f.is_required()}
    return out


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _waiver_key(waiver: dict[str, Any], short_names: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """A waiver as (control, objects), each établissement's namespace prefix replaced by `<short_name>`."""
    prefixes = sorted((f"{n}-" for n in short_names if n), key=len, reverse=True)

    def norm(ref: str) -> str:
        parts = []
        for p in ref.split("/"):
            prefix = next((x for x in prefixes if p.startswith(x)), None)
            parts.append(f"<short_name>-{p[len(prefix):]}" if prefix else p)
        return "/".join(parts)
    return str(waiver.get("control")), tuple(sorted(norm(str(o)) for o in waiver.get("objects") or []))


def _short_names(stack) -> tuple[str, ...]:
    return tuple(stack.inventory.tenants.values())


def waivers_of(stack) -> list[dict[str, Any]]:
    """The stack's waivers as the record keeps them (control and objects, namespaces made generic)."""
    short = _short_names(stack)
    return [{"control": c, "objects": list(objs)} for c, objs in
            (_waiver_key({"control": w.control, "objects": w.objects}, short) for w in (stack.audit.waivers if stack.audit else []))]


def deviations(stack, ref_params: dict[str, Any], ref_waivers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stack's parameters that differ from the reference's (identity fields left out), each with the
    requirement it relaxes (or None), then the waivers the reference does not have (each relaxes its control)."""
    mine = flatten(json.loads(stack.params.model_dump_json()))
    ref = flatten(ref_params)
    defaults = _defaults(stack.params)
    rules = [(_pattern(p), req, weaker, what) for p, req, weaker, what in _relaxations()]
    out: list[dict[str, Any]] = []
    reported_entries: set[str] = set()
    paths = sorted(set(mine) | set(ref))

    def below(flat: dict[str, Any], prefix: str) -> bool:
        return any(q.startswith((f"{prefix}.", f"{prefix}[")) for q in flat)

    # An optional block one side sets and the other leaves empty (authz.database): said once, its fields not compared.
    blocks = {p: ("(set)", "(none)") for p in paths if ref.get(p, 0) is None and below(mine, p)}
    blocks.update({p: ("(none)", "(set)") for p in paths if mine.get(p, 0) is None and below(ref, p)})
    for path in paths:
        if identity(path) or any(path.startswith((f"{b}.", f"{b}[")) for b in blocks):
            continue
        if path in blocks:
            out.append({"path": path, "stack": blocks[path][0], "reference": blocks[path][1], "relaxes": None, "why": None})
            continue
        s, r = mine.get(path, _MISSING), ref.get(path, _MISSING)
        entry = _entry(path)
        if entry and not any(p.startswith(entry) for p in (ref if s is not _MISSING else mine)):
            # an entry only one side has: said once, then its fields against the entry's defaults
            if entry not in reported_entries:
                reported_entries.add(entry)
                out.append({"path": entry, "stack": "(present)" if s is not _MISSING else "(absent)",
                            "reference": "(absent)" if s is not _MISSING else "(present)", "relaxes": None, "why": None})
            if s is _MISSING:
                continue
            field_name = path[len(entry) + 1:]
            r = defaults.get(entry.split("[", 1)[0], {}).get(field_name, _MISSING)
            if r is _MISSING or s == r:
                continue
            shown_ref = f"{_shown(r)} (default)"
        elif s == r:
            continue
        else:
            shown_ref = _shown(r)
        relaxes = why = None
        for pattern, req, weaker, what in rules:
            if pattern.match(path):
                if s is not _MISSING and r is not _MISSING and weaker(s, r):
                    relaxes, why = req, what
                break
        out.append({"path": path, "stack": _shown(s), "reference": shown_ref, "relaxes": relaxes, "why": why})
    short = _short_names(stack)
    ref_keys = {_waiver_key(w, ()) for w in ref_waivers}
    for i, w in enumerate(stack.audit.waivers if stack.audit else []):
        key = _waiver_key({"control": w.control, "objects": w.objects}, short)
        if key not in ref_keys:
            out.append({"path": f"socle:audit.waivers[{i}]", "stack": f"{w.control} {', '.join(w.objects)}",
                        "reference": "(no such waiver)", "relaxes": w.control,
                        "why": f"a waiver the reference does not have (until {w.expires}, owner {w.owner})"})
    return out


def reference_params(bp, record: Record | None, root: Path | None = None):
    """(params, waivers, basis) of the reference the stack is compared with: the certified one, else the reference
    stack on disk (an uncertified blueprint), else None."""
    if record is not None:
        return record.reference.params, record.reference.waivers, \
            {"kind": "certified", "stack": record.reference.stack, "date": record.date.isoformat()}
    from .stackfile import StackError, load

    path = (root or code_root()) / "stacks" / f"Pulumi.{bp.reference_stack}.yaml"
    try:
        ref = load(str(path))
    except (StackError, OSError):
        return None, [], {"kind": "none", "stack": bp.reference_stack, "date": None}
    return json.loads(ref.params.model_dump_json()), waivers_of(ref), \
        {"kind": "disk", "stack": bp.reference_stack, "date": None}


def audit_section(stack, root: Path | None = None) -> dict[str, Any]:
    """The audit report's certification section: the blueprint's certification, the stack's pin and its deviations
    from the certified reference parameters."""
    bp = stack.blueprint
    st = status(bp, root)
    rec = st.record
    pin = stack.config.get(PIN_KEY) if isinstance(stack.config, dict) else None
    sig = signature(bp, None, root) if rec is not None else Signature(False)
    ref, waivers, basis = reference_params(bp, rec, root)
    devs = deviations(stack, ref, waivers) if ref is not None else []
    return {
        "blueprint": bp.name,
        "version": bp.version,
        "record": st.record_file,
        "status": st.state,
        "record_problems": st.error,
        "certified_version": rec.version if rec else None,
        "certified_digest": rec.digest if rec else None,
        "digest_on_disk": st.digest,
        "matches": st.certified,
        "differences": [{"path": p, "change": kind} for p, kind in st.differences],
        "approver": rec.approver if rec else None,
        "date": rec.date.isoformat() if rec else None,
        "reference_stack": rec.reference.stack if rec else bp.reference_stack,
        "signature": sig.as_dict(),
        "stack_pin": pin if isinstance(pin, str) else None,
        "pin_matches": (pin == rec.digest) if (rec is not None and isinstance(pin, str)) else None,
        "deviations_basis": basis,
        "deviations": devs,
        "relaxations": sum(1 for d in devs if d["relaxes"]),
    }


# --- the report's text (French, English) ------------------------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "basis_certified": "the parameters of reference stack {stack} as certified on {date}",
        "basis_disk": "reference stack {stack} on disk (the blueprint is not certified)",
        "basis_none": "nothing: the blueprint is not certified and reference stack {stack} cannot be loaded",
        "sig_none": "not signed", "sig_bad": "signature does NOT verify", "sig_unchecked":
        "signature valid, by {signer}; the signer's identity was not checked (no trust anchor)",
        "sig_trusted": "signature valid, by {signer}, trusted", "sig_untrusted": "signature valid, by {signer}, NOT trusted",
        "(present)": "(present)", "(absent)": "(absent)", "(set)": "(set)", "(none)": "(none)",
        "(no such waiver)": "(no such waiver)", "(default)": "(default)",
        "title": "Blueprint certification", "blueprint": "Blueprint", "state": "Certification",
        "certified": "certified", "modified": "MODIFIED since its certification", "uncertified": "not certified",
        "unreadable": "certification record unreadable", "record": "Record", "certified_digest": "Certified digest",
        "digest_on_disk": "Digest of the files on disk", "matches": "Blueprint on disk is the certified one",
        "yes": "yes", "no": "no", "differences": "Files that differ", "approver": "Approver", "date": "Certified on",
        "reference": "Reference stack", "signature": "Signature", "pin": "Stack pin (socle:blueprintDigest)",
        "not_pinned": "not pinned", "pin_ok": "the certified digest", "pin_differs": "DIFFERS from the certified digest",
        "deviations": "Deviations from the certified reference", "basis": "Compared with",
        "none": "none", "parameter": "Parameter", "this_stack": "This stack", "reference_value": "Reference",
        "relaxed": "Requirement relaxed", "relaxes": "relaxes {req}", "count": "{n} deviation(s), {k} relaxing a requirement",
        "identity": "Identity and site-specific fields (names, hosts, FINESS, Secret names, partner clients, database "
                    "and storage addresses) are not compared (docs/certification.md).",
        "changed": "changed", "added": "added", "removed": "removed",
    },
    "fr": {
        "basis_certified": "les paramètres de la stack de référence {stack} tels que certifiés le {date}",
        "basis_disk": "la stack de référence {stack} sur disque (le blueprint n'est pas certifié)",
        "basis_none": "rien : le blueprint n'est pas certifié et la stack de référence {stack} ne se charge pas",
        "sig_none": "non signé", "sig_bad": "la signature NE se vérifie PAS", "sig_unchecked":
        "signature valide, par {signer} ; identité du signataire non vérifiée (aucune ancre de confiance)",
        "sig_trusted": "signature valide, par {signer}, de confiance",
        "sig_untrusted": "signature valide, par {signer}, mais PAS de confiance",
        "(present)": "(présente)", "(absent)": "(absente)", "(set)": "(définie)", "(none)": "(aucune)",
        "(no such waiver)": "(aucune dérogation de ce type)", "(default)": "(par défaut)",
        "title": "Certification du blueprint", "blueprint": "Blueprint", "state": "Certification",
        "certified": "certifié", "modified": "MODIFIÉ depuis sa certification", "uncertified": "non certifié",
        "unreadable": "enregistrement de certification illisible", "record": "Enregistrement",
        "certified_digest": "Empreinte certifiée", "digest_on_disk": "Empreinte des fichiers sur disque",
        "matches": "Le blueprint sur disque est celui certifié", "yes": "oui", "no": "non",
        "differences": "Fichiers qui diffèrent", "approver": "Approbateur", "date": "Certifié le",
        "reference": "Stack de référence", "signature": "Signature", "pin": "Épinglage de la stack (socle:blueprintDigest)",
        "not_pinned": "non épinglée", "pin_ok": "l'empreinte certifiée", "pin_differs": "DIFFÈRE de l'empreinte certifiée",
        "deviations": "Écarts par rapport à la référence certifiée", "basis": "Comparée à",
        "none": "aucun", "parameter": "Paramètre", "this_stack": "Cette stack", "reference_value": "Référence",
        "relaxed": "Exigence assouplie", "relaxes": "assouplit {req}",
        "count": "{n} écart(s), dont {k} assouplissant une exigence",
        "identity": "Les champs d'identité et propres au site (noms, hôtes, FINESS, noms de Secret, clients partenaires, "
                    "adresses de base de données et de stockage) ne sont pas comparés (docs/certification.md).",
        "changed": "modifié", "added": "ajouté", "removed": "supprimé",
    },
}


def _labels(lang: str) -> dict[str, str]:
    return LABELS.get(lang, LABELS["en"])


def _value(v: str, L: dict[str, str]) -> str:
    if v in L:
        return L[v]
    return v[:-len(" (default)")] + " " + L["(default)"] if v.endswith(" (default)") else v


def _signature_text(sig: dict[str, Any], L: dict[str, str]) -> str:
    if not sig["signed"]:
        return L["sig_none"]
    if not sig["valid"]:
        return L["sig_bad"]
    key = "sig_unchecked" if not sig["signer_checked"] else "sig_trusted" if sig["trusted"] else "sig_untrusted"
    return L[key].format(signer=sig["signer"])


def _basis(c: dict[str, Any], L: dict[str, str]) -> str:
    b = c["deviations_basis"]
    return L[f"basis_{b['kind']}"].format(stack=b["stack"], date=b["date"])


def _facts(c: dict[str, Any], L: dict[str, str]) -> list[tuple[str, str]]:
    pin = c["stack_pin"]
    pin_text = L["not_pinned"] if pin is None else f"{pin} — " + (
        L["pin_ok"] if c["pin_matches"] else L["pin_differs"] if c["pin_matches"] is False else L["uncertified"])
    diffs = ", ".join(f"{d['path']} ({L[d['change']]})" for d in c["differences"]) or L["none"]
    rows = [(L["blueprint"], f"{c['blueprint']} {c['version']}"), (L["state"], L[c["status"]]),
            (L["record"], c["record"])]
    if c["record_problems"]:
        rows.append((L["unreadable"], "; ".join(c["record_problems"])))
    rows += [(L["certified_digest"], c["certified_digest"] or L["none"]), (L["digest_on_disk"], c["digest_on_disk"]),
             (L["matches"], L["yes"] if c["matches"] else L["no"]), (L["differences"], diffs),
             (L["approver"], c["approver"] or L["none"]), (L["date"], c["date"] or L["none"]),
             (L["reference"], c["reference_stack"]), (L["signature"], _signature_text(c["signature"], L)),
             (L["pin"], pin_text)]
    return rows


def markdown(c: dict[str, Any] | None, lang: str) -> list[str]:
    """The section's Markdown lines (none without a stack)."""
    if not c:
        return []
    L = _labels(lang)

    def md(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["", f"## {L['title']}", ""] + [f"- {k}: {md(v)}" for k, v in _facts(c, L)]
    lines += ["", f"### {L['deviations']}", "", f"{L['basis']}: {md(_basis(c, L))}. "
              + L["count"].format(n=len(c["deviations"]), k=c["relaxations"]), "", L["identity"], ""]
    if c["deviations"]:
        lines += [f"| {L['parameter']} | {L['this_stack']} | {L['reference_value']} | {L['relaxed']} |", "|---|---|---|---|"]
        for d in c["deviations"]:
            relaxed = f"**{L['relaxes'].format(req=d['relaxes'])}**" if d["relaxes"] else ""
            if d["relaxes"] and lang == "en":
                relaxed += f" ({md(d['why'])})"
            lines.append(f"| `{md(d['path'])}` | {md(_value(d['stack'], L))} | {md(_value(d['reference'], L))} | {relaxed} |")
    return lines


def html(c: dict[str, Any] | None, lang: str) -> str:
    """The section as HTML (escaped), for the report before its limitations."""
    if not c:
        return ""
    from markupsafe import escape

    L = _labels(lang)
    rows = "".join(f"  <tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>\n" for k, v in _facts(c, L))
    out = (f'<h2 id="certification">{escape(L["title"])}</h2>\n<table class="meta">\n{rows}</table>\n'
           f'<h3 id="deviations">{escape(L["deviations"])}</h3>\n'
           f'<p>{escape(L["basis"])}: {escape(_basis(c, L))}. '
           f'{escape(L["count"].format(n=len(c["deviations"]), k=c["relaxations"]))}</p>\n<p>{escape(L["identity"])}</p>\n')
    if c["deviations"]:
        out += (f'<table>\n  <tr><th>{escape(L["parameter"])}</th><th>{escape(L["this_stack"])}</th>'
                f'<th>{escape(L["reference_value"])}</th><th>{escape(L["relaxed"])}</th></tr>\n')
        for d in c["deviations"]:
            relaxed = f'<strong>{escape(L["relaxes"].format(req=d["relaxes"]))}</strong>' if d["relaxes"] else ""
            if d["relaxes"] and lang == "en":
                relaxed += f' ({escape(d["why"])})'
            out += (f'  <tr><td><code>{escape(d["path"])}</code></td><td>{escape(_value(d["stack"], L))}</td>'
                    f'<td>{escape(_value(d["reference"], L))}</td><td>{relaxed}</td></tr>\n')
        out += "</table>\n"
    return out


def text_lines(c: dict[str, Any] | None) -> list[str]:
    """`socle audit`'s terminal lines (English, as the rest of its text output)."""
    if not c:
        return []
    head = f"CERTIFICATION {c['blueprint']} {c['version']}: {LABELS['en'][c['status']]}"
    if c["certified_digest"]:
        head += (f" ({c['certified_digest']}, {c['date']}, approved by {c['approver']}; "
                 f"{_signature_text(c['signature'], LABELS['en'])})")
    lines = [head]
    if c["differences"]:
        lines.append("CERTIFICATION files differing from the certified blueprint: "
                     + ", ".join(f"{d['change']} {d['path']}" for d in c["differences"]))
    if c["stack_pin"] is None:
        lines.append("CERTIFICATION the stack pins no certified digest (socle:blueprintDigest)")
    elif c["pin_matches"] is False:
        lines.append(f"CERTIFICATION the stack is pinned to {c['stack_pin']}, not to the certified digest")
    lines.append(f"DEVIATIONS {len(c['deviations'])} from {_basis(c, LABELS['en'])}, {c['relaxations']} relaxing a "
                 "requirement")
    for d in c["deviations"]:
        flag = f"  [relaxes {d['relaxes']}: {d['why']}]" if d["relaxes"] else ""
        lines.append(f"DEVIATION {d['path']}: {d['stack']} (reference {d['reference']}){flag}")
    return lines


# --- certify -------------------------------------------------------------------------------------------------------

def check_approver(approver: str) -> str | None:
    if not APPROVER.fullmatch(approver) or not approver.isprintable():
        return f"--approver must be `Name <email>` on one line (got {approver!r})"
    return None


@dataclass
class Certified:
    record: dict[str, Any]
    path: Path
    signed: bool
    evidence: list[Path]


def _digest_of(files: dict[str, str]) -> str:
    return hashlib.sha256(listing({k: hashlib.sha256(v.encode("utf-8")).hexdigest() for k, v in files.items()})
                          .encode("utf-8")).hexdigest()


def _write_record(folder: Path, contents: dict[str, bytes], remove: Iterable[str]) -> None:
    """Every file staged (temporary file in the folder, fsync'd) before the first is replaced; then the stale
    signature files removed. Never writes through a symbolic link."""
    staged: dict[str, str] = {}
    try:
        for name, data in contents.items():
            if os.path.islink(folder / name):
                raise CertifyError([f"{folder / name} is a symbolic link; refusing to write through it"])
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
            staged[name] = tmp
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
        for name in contents:
            os.replace(staged.pop(name), folder / name)
        for name in remove:
            if os.path.lexists(folder / name):
                os.unlink(folder / name)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        for tmp in staged.values():
            try:
                os.unlink(tmp)
            except OSError:
                pass


Verifier = Callable[[Any, Callable[[str], None]], Any]


def real_verification(stack, progress: Callable[[str], None]):
    """`socle verify` on the reference stack: its rendered files in the real daemons, probes, checkov."""
    from .verify import verify

    with tempfile.TemporaryDirectory(prefix=f"socle-certify-{stack.name}-") as tmp:
        return verify(stack, Path(tmp), scan=True, progress=progress)


def certify(name: str, *, approver: str, date: dt.date, out_dir: Path, sign_key: Path | None = None,
            sign_cert: Path | None = None, lang: str = "fr", verifier: Verifier | None = None,
            progress: Callable[[str], None] | None = None, now: dt.datetime | None = None,
            root: Path | None = None) -> Certified:
    """Render, audit and verify the blueprint's reference stack; when all pass, write its certification record.

    Raises CertifyError (input problems, nothing written) or CertifyFailed (the reference stack does not pass: the
    evidence is written in `out_dir`, the record is not)."""
    from socle.blueprints import registry

    from .audit import reports, runner, sources
    from .output import OutputError, check_files, check_tree, legacy_render_files, write_files
    from .render import MARKER, RenderError, render_files, run_program, write
    from .stackfile import StackError, load

    step = progress or (lambda _msg: None)
    root = root or code_root()
    problems: list[str] = []
    bps = registry()
    bp = bps.get(name)
    if bp is None:
        problems.append(f"unknown blueprint {name!r}; available: {', '.join(sorted(bps))}")
    why = check_approver(approver)
    if why:
        problems.append(why)
    if (sign_key is None) != (sign_cert is None):
        problems.append("--sign-key and --sign-cert go together")
    if lang not in ("fr", "en"):
        problems.append(f"--lang must be fr or en (got {lang!r})")
    for sub, names in (("audit", reports.REPORT_FILES), ("verify", ("verify.md", "verify.json"))):
        try:
            check_files(out_dir / sub, names)
        except OutputError as exc:
            problems.append(str(exc))
    try:
        check_tree(out_dir / "render", marker=MARKER, force=False, legacy=legacy_render_files)
    except OutputError as exc:
        problems.append(str(exc))
    if bp is not None:
        folder = record_path(bp, root).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            problems.append(f"{folder}: the record cannot be written there")
        for n in RECORD_FILES:
            if os.path.islink(folder / n):
                problems.append(f"{folder / n} is a symbolic link; refusing to write through it")
    if not problems and sign_key is not None and sign_cert is not None:
        try:
            check_signing_material(sign_key, sign_cert)
        except CertifyError as exc:
            problems += exc.problems
    stack = None
    if bp is not None:
        try:
            stack = load(str(root / "stacks" / f"Pulumi.{bp.reference_stack}.yaml"))
        except StackError as exc:
            problems += [f"reference stack: {p}" for p in exc.problems]
        else:
            if stack.blueprint.name != bp.name:
                problems.append(f"reference stack {bp.reference_stack} is a {stack.blueprint.name} stack, not {bp.name}")
    if problems:
        raise CertifyError(problems)
    assert bp is not None and stack is not None
    now = now or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    today = now.astimezone(dt.timezone.utc).date()
    before = source_files(bp, root)

    step(f"rendering reference stack {stack.name}")
    try:
        rendered = run_program(stack)
        files = render_files(stack, rendered)
        write(out_dir / "render", files)
    except RenderError as exc:
        raise CertifyFailed(f"the reference stack {stack.name} does not render: {exc}") from None
    render_step = {"result": "pass", "report": "render/", "sha256": _digest_of(
        {k: v for k, v in files.items() if k != MARKER}), "summary": f"{len(rendered.objects)} objects, "
        f"{len(rendered.secrets)} Secrets left out"}

    step(f"auditing the render of {stack.name}")
    try:
        ev = sources.from_render(stack)
        ctx = runner.make_context(ev, today, stack_profile=stack.inventory.profile,
                                  allowed_registries=stack.inventory.allowed_registries, stack_file=stack.file)
        result = runner.run(ev, ctx, stack.audit, audit_day=today)
        written = reports.write_reports(result, ev, out_dir / "audit", lang=lang, pdf=False, generated_at=now,
                                        stack_file=Path(stack.file))
    except (runner.AuditInputError, RenderError, OutputError) as exc:
        raise CertifyFailed(f"the audit of {stack.name} could not run: {exc}") from None
    counts = ", ".join(f"{v} {k}" for k, v in result.counts().items() if v)
    audit_report = out_dir / "audit" / "report.json"
    audit_step = {"result": "fail" if result.failed else "pass", "report": "audit/report.json",
                  "sha256": reports.sha256_file(audit_report), "summary": f"profile {ctx.profile}: {counts}"}
    evidence = list(written)
    if result.failed:
        failing = sorted(r.control.id for r in result.results if r.status in ("fail", "evidence-missing"))
        raise CertifyFailed(f"the audit of reference stack {stack.name} fails ({', '.join(failing)}); see {audit_report}")

    step("verifying with the real daemons")
    try:
        report = (verifier or real_verification)(stack, step)
    except Exception as exc:  # noqa: BLE001 -- harness errors are one sentence; nothing is certified
        raise CertifyFailed(f"the verification of {stack.name} could not run: {exc}") from None
    try:
        evidence += write_files(out_dir / "verify", {"verify.md": report.to_markdown(), "verify.json": report.to_json()})
    except OutputError as exc:
        raise CertifyFailed(f"the verification report could not be written: {exc}") from None
    failed = [p for p in report.probes if not p.ok]
    scan = getattr(report, "scan", None)
    verify_step = {"result": "pass" if report.ok else "fail", "report": "verify/verify.json",
                   "sha256": reports.sha256_file(out_dir / "verify" / "verify.json"),
                   "summary": f"{len(report.probes) - len(failed)} of {len(report.probes)} probes passed"
                              + (f"; {scan.summary()}" if scan is not None else "")}
    if not report.ok:
        names = ", ".join(f"{p.requirement} {p.name}" for p in failed[:LISTED]) or "the manifest scan"
        raise CertifyFailed(f"the verification of {stack.name} fails ({names}); see {out_dir / 'verify' / 'verify.md'}")

    after = source_files(bp, root)
    if after != before:
        moved = sorted(set(after) ^ set(before) | {p for p in set(after) & set(before) if after[p] != before[p]})
        raise CertifyFailed(f"the blueprint's files changed while it was being certified ({', '.join(moved[:LISTED])}): "
                            "run again on a quiet checkout")
    from . import __version__

    ref_file = root / "stacks" / f"Pulumi.{bp.reference_stack}.yaml"
    record = {
        "format": FORMAT, "blueprint": bp.name, "version": bp.version, "kit_version": __version__,
        "digest": overall(before), "sources": list(source_rule(bp, root)), "files": before,
        "reference": {"stack": stack.name, "file": f"stacks/{ref_file.name}", "sha256": reports.sha256_file(ref_file),
                      "profile": stack.inventory.profile, "params": json.loads(stack.params.model_dump_json()),
                      "waivers": waivers_of(stack)},
        "render": render_step, "audit": audit_step, "verification": verify_step,
        "date": date.isoformat(), "approver": approver,
    }
    Record.model_validate(record)  # what load_record reads back
    text = record_text(record)
    contents = {RECORD: text.encode("utf-8")}
    if sign_key is not None and sign_cert is not None:
        step("signing the record")
        manifest, sig = _sign(text, sign_key, sign_cert)
        contents.update({MANIFEST: manifest, SIGNATURE: sig})
    folder = record_path(bp, root).parent
    _write_record(folder, contents, remove=[n for n in (MANIFEST, SIGNATURE) if n not in contents])
    return Certified(record=record, path=folder / RECORD, signed=len(contents) > 1, evidence=evidence)
