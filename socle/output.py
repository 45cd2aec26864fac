"""Safe output directories: `socle render --out`, `socle audit --report-dir`, `socle verify --out`.

Every error is an `OutputError` carrying one sentence (the command line prints it and exits 2); in every
error case nothing already on disk has been replaced and no temporary file is left behind.

A render (`write_tree`) is written whole into a temporary directory beside the target
(`.NAME.socle-tmp-XXXXXXXX`), every file and directory fsync'd, then swapped in:

* target exists: `renameat2(RENAME_EXCHANGE)` swaps the two directories in one system call, so at every instant
  the target path holds either the whole previous render or the whole new one; the previous render, now under
  the temporary name, is then deleted;
* target does not exist: a plain `rename`;
* `renameat2` unavailable (no libc symbol, ENOSYS, or EINVAL from a file system that cannot exchange): the previous
  render is renamed aside to `.NAME.socle-old-…`, the new one renamed into place, the old one deleted. Between
  those two renames (two system calls, microseconds) the target path does not exist: a reader then sees no
  directory, and a process killed in that window leaves the previous render whole under `.NAME.socle-old-…`,
  which the next run renames back before doing anything else.

Runs writing the same target are serialised by an `flock` on `.NAME.socle-lock` beside the target (the lock
file stays; the lock dies with its process). Under that lock no other run can be using `.NAME.socle-tmp-*` or
`.NAME.socle-old-*`, so any left by a killed run are removed then.

The marker file records what the kit wrote: the caller's text, then one relative path per line (sorted). A
re-render replaces only an earlier render: entries the previous marker does not list (`.git`, notes…) are
refused by name unless `force` is given; a non-empty directory without a marker is always refused.

Reports (`write_files`) are single files replaced in place among other files: each is staged as a temporary
file in the same directory and fsync'd, then all are `os.replace`d; other files in the directory are left alone.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import itertools
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOCK_TIMEOUT = 120.0
LIST_HEADER = "# files written by this render, one per line (a re-render replaces only these and this marker):"
MAX_NAMES = 10
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class OutputError(Exception):
    """One sentence saying why nothing was written."""


@dataclass
class WriteResult:
    path: Path
    written: list[str] = field(default_factory=list)  # relative paths, sorted (marker excluded)
    removed: list[str] = field(default_factory=list)  # foreign entries deleted because force was given
    replaced: bool = False  # an earlier directory was replaced


# --- checks --------------------------------------------------------------------------------------------------

def _cwd() -> Path:
    try:
        return Path(os.getcwd())
    except FileNotFoundError:
        raise OutputError("the current directory no longer exists; change to an existing directory") from None


def _within(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def _symlink_in_path(out: Path) -> Path | None:
    """The first symbolic link among out, out.parent and every component of out that lies inside the cwd."""
    cwd = _cwd()
    raw = out if out.is_absolute() else cwd / out
    parts = raw.parts
    for i in range(2, len(parts) + 1):
        if parts[i - 1] in (".", ".."):
            continue
        q = Path(*parts[:i])
        if (i >= len(parts) - 1 or _within(Path(os.path.abspath(q)), cwd)) and os.path.islink(q):
            return q
    return None


def _protected(real: Path) -> str | None:
    """Why writing to `real` (a resolved path) must be refused, or None."""
    from .stackfile import project_root

    cwd = _cwd().resolve()
    if real == Path(real.anchor):
        return "the filesystem root"
    if real == cwd:
        return "the current directory"
    if real in cwd.parents:
        return "an ancestor of the current directory"
    with contextlib.suppress(RuntimeError, KeyError, OSError):
        if real == Path.home().resolve():
            return "your home directory"
    if real == project_root().resolve():
        return "the project root (it holds Pulumi.yaml)"
    return None


def check_target(out: Path) -> None:
    """Refuse a symlink, a protected directory or a non-directory as an output directory (nothing is written)."""
    parts = [p for p in out.parts if p != out.anchor]
    leading = len(parts) - len(list(itertools.dropwhile(lambda p: p == "..", parts)))
    if ".." in parts[leading:]:
        # `a/missing/..` is `a` for the kit's path arithmetic but an error, or another directory through a link,
        # for the system: never guess which directory is meant.
        raise OutputError(f"{out}: a '..' after a directory name is ambiguous (a missing directory or a link on the "
                          "way changes where it leads); name the directory directly")
    link = _symlink_in_path(out)
    if link is not None:
        shown = out if link == Path(os.path.abspath(out)) else link
        with contextlib.suppress(ValueError):
            shown = shown if shown == out else Path(os.path.abspath(link)).relative_to(_cwd())
        raise OutputError(f"{shown} is a symbolic link; refusing to write through it (give the real directory)")
    reason = _protected(Path(os.path.realpath(out)))
    if reason:
        raise OutputError(f"refusing to write to {out}: it is {reason}; give a dedicated directory such as out/NAME")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise OutputError(f"{out} exists and is not a directory")


def _names(entries: list[str]) -> str:
    shown = ", ".join(entries[:MAX_NAMES])
    return shown + (f" and {len(entries) - MAX_NAMES} more" if len(entries) > MAX_NAMES else "")


def _sentence(exc: OSError, where: Path | str) -> str:
    e = exc.errno
    if e == errno.EROFS:
        return f"{where} is on a read-only file system; nothing was replaced"
    if e in (errno.EACCES, errno.EPERM):
        return f"permission denied writing in {where}; nothing was replaced"
    if e in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device (or quota exceeded) writing in {where}; nothing was replaced"
    if e in (errno.EXDEV, errno.EBUSY):
        return f"{where} is a mount point or busy and cannot be replaced; give a directory inside it instead"
    if e == errno.ELOOP:
        return f"a symbolic link was found where {where} needs a real file or directory; nothing was replaced"
    return f"cannot write in {where}: {exc.strerror or exc}; nothing was replaced"


# --- marker --------------------------------------------------------------------------------------------------

def marker_content(marker_text: str, files: Iterable[str]) -> str:
    head = marker_text if marker_text.endswith("\n") or not marker_text else marker_text + "\n"
    return head + LIST_HEADER + "\n" + "".join(f"{p}\n" for p in sorted(files))


def marker_listing(text: str) -> set[str] | None:
    """The paths a marker lists, or None for a marker written before markers listed their files."""
    lines = text.splitlines()
    if LIST_HEADER not in lines:
        return None
    return {line for line in lines[lines.index(LIST_HEADER) + 1:] if line.strip()}


# The path the render gives an object: `<namespace or _cluster>/<kind>-<name>.yaml` (socle.render.object_path).
_OBJECT_FILE = re.compile(r"(_cluster|[a-z0-9]([-a-z0-9]*[a-z0-9])?)/[a-z]+-[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.yaml")


def legacy_render_files(out: Path) -> set[str]:
    """What a render made before markers listed their files wrote: kustomization.yaml, secrets-required.yaml and
    the objects its kustomization.yaml lists that have the render's own file names. A resource a user added to
    kustomization.yaml (a patch beside the render) is not the kit's, so it is never deleted without --force."""
    import yaml

    listed = {"kustomization.yaml", "secrets-required.yaml"}
    with contextlib.suppress(OSError, ValueError, yaml.YAMLError):
        doc = yaml.safe_load((out / "kustomization.yaml").read_text(encoding="utf-8"))
        if isinstance(doc, dict) and isinstance(doc.get("resources"), list):
            listed |= {r for r in doc["resources"] if isinstance(r, str) and _OBJECT_FILE.fullmatch(r)}
    return listed


def _foreign(out: Path, marker: str, listed: set[str]) -> list[str]:
    """Entries of `out` that the listing does not cover (directories end with '/'; not descended into)."""
    dirs = {str(a) for p in listed for a in Path(p).parents} - {"."}
    found: list[str] = []

    def walk(path: Path, rel: str) -> None:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            r = rel + entry.name
            if r == marker:
                continue
            if entry.is_dir(follow_symlinks=False):
                if r in dirs:
                    walk(Path(entry.path), r + "/")
                else:
                    found.append(r + "/")
            elif r not in listed:
                found.append(r)

    walk(out, "")
    return found


def check_tree(out: Path, *, marker: str, force: bool = False,
               legacy: Callable[[Path], set[str]] | None = None) -> list[str]:
    """Refuse what `write_tree` would refuse; return the foreign entries force would delete."""
    check_target(out)
    if not os.path.isdir(out):
        return []
    try:
        with os.scandir(out) as it:
            if not any(it):
                return []
        mark = out / marker
        if not mark.is_file() or mark.is_symlink():
            raise OutputError(f"{out} is not empty and holds no earlier socle render; choose an empty or new directory "
                              "(--force does not apply: it only replaces a directory an earlier render wrote)")
        try:
            listed = marker_listing(mark.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            listed = None
        if listed is None:
            listed = legacy(out) if legacy else set()
        foreign = _foreign(out, marker, listed)
    except OSError as exc:
        raise OutputError(_sentence(exc, out)) from None
    if foreign and not force:
        raise OutputError(f"{out} holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} that no earlier render "
                          f"wrote: {_names(foreign)}; move {'it' if len(foreign) == 1 else 'them'} away, or rerun with "
                          f"--force to delete {'it' if len(foreign) == 1 else 'them'}")
    return foreign


# --- locking, cleanup, swapping -----------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(out: Path, timeout: float, *, required: bool = True) -> Iterator[bool]:
    """Hold the flock of `.NAME.socle-lock` beside `out`; yields False when not required and it cannot be created."""
    path = out.parent / f".{out.name}.socle-lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if not required and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            yield False
            return
        raise OutputError(_sentence(exc, out.parent)) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OutputError(f"another socle run is still writing {out} after {timeout:.0f} s (lock {path}); "
                                      "try again when it has finished") from None
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)


def _siblings(out: Path, kind: str) -> list[Path]:
    pattern = re.compile(rf"\.{re.escape(out.name)}\.socle-{kind}-[A-Za-z0-9_]+")
    with os.scandir(out.parent) as it:
        return sorted(Path(e.path) for e in it if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False))


def _recover(out: Path) -> None:
    """Under the lock: put back a previous render left aside by a fallback swap that was killed, then remove the
    temporary and aside directories of killed runs."""
    olds = _siblings(out, "old")
    if olds and not os.path.lexists(out):
        newest = max(olds, key=lambda p: p.stat().st_mtime_ns)
        os.rename(newest, out)
        olds.remove(newest)
    for p in olds + _siblings(out, "tmp"):
        shutil.rmtree(p, ignore_errors=True)


def _exchange(a: Path, b: Path) -> None:
    """renameat2(a, b, RENAME_EXCHANGE); OSError(ENOSYS) when the C library has no renameat2."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(a), None, str(b))


def _swap(new: Path, out: Path) -> Path | None:
    """Put `new` at `out`; return where the previous tree now is (to delete), None if there was none."""
    if not os.path.lexists(out):
        os.rename(new, out)
        return None
    try:
        _exchange(new, out)
        return new
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise
    # Fallback: the target path is missing between the two renames (see the module docstring).
    aside = out.parent / f".{out.name}.socle-old-{os.getpid()}{os.urandom(4).hex()}"
    os.rename(out, aside)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(aside, out)
        raise
    return aside


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, content: str) -> None:
    """Create `path` (never through a symlink) with `content`, flushed to disk."""
    data = content.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_rel(rel: str) -> None:
    p = Path(rel)
    if not rel or p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise ValueError(f"not a plain relative path: {rel!r}")


# --- writers -------------------------------------------------------------------------------------------------

def write_tree(out: Path, files: dict[str, str], *, marker: str, marker_text: str, force: bool = False,
               legacy: Callable[[Path], set[str]] | None = None, lock_timeout: float = LOCK_TIMEOUT) -> WriteResult:
    """Replace the directory `out` by exactly `files` (relative path -> text) plus the marker, atomically."""
    for rel in files:
        _check_rel(rel)
        if rel == marker:
            raise ValueError(f"{marker} is written by write_tree itself")
    check_target(out)
    shown, out = out, Path(os.path.abspath(out))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(_sentence(exc, out.parent)) from None
    with _locked(out, lock_timeout):
        tmp: Path | None = None
        try:
            _recover(out)
            removed = check_tree(shown, marker=marker, force=force, legacy=legacy)
            replaced = os.path.isdir(out)
            tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.socle-tmp-"))
            os.chmod(tmp, stat.S_IMODE(out.stat().st_mode) if replaced else 0o777 & ~_umask())
            dirs = {tmp}
            for rel in sorted(files):
                target = tmp / rel
                if target.parent not in dirs:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    dirs |= {target.parent, *(d for d in target.parent.parents if _within(d, tmp))}
                _write_file(target, files[rel])
            _write_file(tmp / marker, marker_content(marker_text, files))
            for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
                _fsync_dir(d)
            previous = _swap(tmp, out)
            tmp = previous  # from here on `tmp` is the previous tree (or None)
            with contextlib.suppress(OSError):  # the swap is done: a failure here must not report "nothing replaced"
                _fsync_dir(out.parent)
        except OSError as exc:
            raise OutputError(_sentence(exc, shown)) from None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return WriteResult(path=out, written=sorted(files), removed=removed, replaced=replaced)


def check_files(out: Path, names: Iterable[str]) -> None:
    """Refuse what `write_files` would refuse, before any work (nothing is written)."""
    check_target(out)
    for name in names:
        _check_rel(name)
        path = out / name
        if os.path.islink(path):
            raise OutputError(f"{path} is a symbolic link; refusing to write through it")
        if os.path.lexists(path) and not os.path.isfile(path):
            raise OutputError(f"{path} exists and is not a regular file")


def write_files(out: Path, files: Mapping[str, str | bytes], *, lock_timeout: float = LOCK_TIMEOUT) -> list[Path]:
    """Write `files` (name -> text, or bytes as they are) into the directory `out`, each replaced atomically; other files are kept.

    All files are staged (temporary file in `out`, fsync'd) before the first is replaced, so a full or read-only
    disk fails before any replacement."""
    check_files(out, files)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(_sentence(exc, out)) from None
    absolute = Path(os.path.abspath(out))
    staged: dict[str, str] = {}
    with _locked(absolute, lock_timeout, required=False) as locked:
        try:
            check_files(out, files)
            if locked:  # no other run can be staging here: what is left was left by a killed run
                for name in files:
                    pattern = re.compile(rf"\.{re.escape(name)}\.socle-tmp-[A-Za-z0-9_]+")
                    for e in os.scandir(out):
                        if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False):
                            os.unlink(e.path)
            mask = _umask()
            for name, content in files.items():
                fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.socle-tmp-")
                staged[name] = tmp
                try:
                    existing = os.lstat(out / name) if os.path.lexists(out / name) else None
                    os.fchmod(fd, stat.S_IMODE(existing.st_mode) if existing else 0o666 & ~mask)
                    view = memoryview(content if isinstance(content, bytes) else content.encode("utf-8"))
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for name in files:
                os.replace(staged.pop(name), out / name)
            _fsync_dir(out)
        except OSError as exc:
            raise OutputError(_sentence(exc, out)) from None
        finally:
            for tmp in staged.values():
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
    return [out / name for name in files]
