"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every temporary file or folder lives beside its target as `.<name>.<8 chars>.tmp` and is locked
(`flock`) by the process writing it. A process killed with SIGKILL leaves that leftover behind
unlocked; the next atomic write of the same target removes it, and puts back the previous version
of a folder if the kill fell between moving it aside (`.<name>.<8 chars>.old`) and renaming the new
one into place. So after any kill the target is the previous complete version (or absent if there was
none), and re-running the job cleans up.

Temporary files and folders get the permissions an ordinary `open`/`mkdir` would give (0666/0777 minus the
umask), not mkstemp's 0600 / mkdtemp's 0700: a library or result written with umask 022 or 002 can be
shared on a cluster as any other file.

Outputs never destroy what loralab did not write (`check_output_dir`, `check_output_file`): a folder is
replaced or written into only when it is absent, empty, or already loralab's output of the same kind (a
hidden marker file `.loralab-output.json` in comparisons, benchmarks and reports; the kind's own format
files in checkpoints, libraries and router analyses, whose layout is fixed); an existing file only when it
is empty or loralab's output of the same kind (an eval result, a task export); and a read-only location
fails at once. Each is one `UserInputError` line, raised before any work starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from loralab.errors import UserInputError

try:  # POSIX; without it (Windows) leftovers are never judged stale and stay for the user to remove
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)
_TOKEN = r"[A-Za-z0-9_]{8}"  # tempfile's random part
_LEFTOVER = re.compile(rf"^\..+\.{_TOKEN}\.(tmp|old)$")  # what a killed atomic write leaves (see the docstring)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, on error remove it."""
    target = Path(path)
    _prepare_target(target, want_dir=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp_path = Path(tmp)
    fd = _lock(fd)
    try:
        yield tmp_path
        _give_default_mode(tmp_path)  # mkstemp makes it 0600, and so may a writer that replaced it (safetensors)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        if fd is not None:
            os.close(fd)
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj, indent=2) + "\n")


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None (JSON has no such numbers; null means missing)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps_json(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """Strict JSON text (RFC 8259): non-finite floats become null instead of the bare `NaN` strict parsers reject."""
    return json.dumps(json_safe(obj), indent=indent, ensure_ascii=False, sort_keys=sort_keys, allow_nan=False)


MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_JSON_DEPTH = 100


def read_json(path: str | os.PathLike[str], *, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read a JSON file loralab did not necessarily write: every failure is one `UserInputError` line.

    The one reader for adapter configs, method checkpoints, library entries, caches and configs: a
    missing or unreadable file, a file over `max_bytes`, invalid UTF-8 or JSON, `NaN`/`Infinity`
    (not JSON), or nesting deeper than `max_depth` (which would otherwise end in a RecursionError)
    each name the file and what was wrong. Reading never modifies the file.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise UserInputError(f"{what} {str(p)!r} is a folder, not a file")
        if size > max_bytes:
            raise UserInputError(f"{what} {str(p)!r} is {size} bytes; at most {max_bytes} allowed")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{what} {str(p)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{what} {str(p)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserInputError(f"{what} {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    return loads_json(text, what=f"{what} {str(p)!r}", max_depth=max_depth)


def loads_json(text: str, *, what: str = "JSON text", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text with `read_json`'s guards (no NaN/Infinity, bounded nesting), one error line on failure."""

    def _reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON (use null for a missing number)")

    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise UserInputError(f"{what}: JSON nested too deeply; at most {max_depth} levels allowed") from None
    except ValueError as exc:
        raise UserInputError(f"{what}: not valid JSON ({exc})") from None
    if _nesting(value) > max_depth:
        raise UserInputError(f"{what}: JSON nested more than {max_depth} levels deep; at most {max_depth} allowed")
    return value


def _nesting(value: Any) -> int:
    """Deepest container nesting of a parsed JSON value (iterative, so depth itself cannot overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return deepest


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` in one rename.

    An existing `path` is moved aside first and removed only after the new one is in place, so
    an interruption leaves either the old or the new directory (a hidden leftover is cleaned up by
    the next atomic write of the same path).
    """
    target = Path(path)
    _prepare_target(target, want_dir=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    with contextlib.suppress(OSError):  # mkdtemp makes it 0700: give what mkdir() would
        os.chmod(tmp, 0o777 & ~current_umask())
    fd = _lock(os.open(tmp, os.O_RDONLY)) if fcntl is not None else None
    try:
        yield tmp
        mask = current_umask()
        for folder, dirs, files in os.walk(tmp):  # what writers made private (safetensors: 0600) becomes shareable
            for name in (*dirs, *files):
                _give_default_mode(Path(folder, name), mask)
        fsync_tree(tmp)
        old = None
        if target.exists():
            old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if fd is not None:
            os.close(fd)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _give_default_mode(path: Path, mask: int | None = None) -> None:
    """A private (owner-only) file or folder gets the mode `open`/`mkdir` would give under the umask.

    0666/0777 minus the umask (executables keep their x bits). Only owner-only modes are changed: those are
    what mkstemp/mkdtemp (and writers such as safetensors) make; a mode a writer chose on purpose is kept.
    """
    with contextlib.suppress(OSError):  # a filesystem without modes (some network mounts) keeps its own
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or st.st_mode & 0o077:
            return
        full = 0o777 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111 else 0o666
        os.chmod(path, full & ~(current_umask() if mask is None else mask))


def fsync_tree(root: Path) -> None:
    """fsync every file below `root` and the folders themselves (so a rename publishes durable content)."""
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError), open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(folder))


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (`os.umask` alone must set one to read it)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore at once (a thread creating a file meanwhile gets 022)
    os.umask(mask)
    return mask


def check_output_path(path: str | os.PathLike[str], *, kind: str, option: str = "out") -> Path:
    """Fail early, before any work, when `path` cannot become a file (`kind="file"`) or folder (`kind="dir"`).

    A file target must not be an existing folder or a special file (a device such as /dev/null would be
    replaced by the atomic rename); a folder target must not be an existing file; no existing ancestor may
    be a file; and the place it is written to (the folder itself when it exists, else its nearest existing
    ancestor) must be writable. `option` is the parameter the path came in (`out`), named in the message.
    """
    target = Path(path)
    if kind == "file" and target.is_dir():
        raise UserInputError(f"{option} {str(target)!r} is an existing folder; give a file path", param=option)
    if kind == "file" and target.exists() and not target.is_file():
        raise UserInputError(f"{option} {str(target)!r} is not a regular file (a device, pipe or socket); "
                             "give a file path", param=option)
    if kind == "dir" and target.exists() and not target.is_dir():
        raise UserInputError(f"{option} {str(target)!r} is an existing file; give a folder path", param=option)
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"{option} {str(target)!r}: {str(parent)!r} is a file, not a folder",
                                     param=option)
            break
    _check_writable(target, option, into=kind == "dir")
    return target


def _check_writable(target: Path, option: str, *, into: bool) -> None:
    """The folder that receives the output (or its temporary file) must be writable: fail now, not hours in.

    `into`: the output is written inside `target` when it exists (else, as for a file or a replaced folder,
    beside it). Root passes `os.access` on any folder except on a read-only file system, where writing fails too.
    """
    if into and target.is_dir():
        folder = target
    else:
        folder = next((p for p in target.parents if p.exists()), Path("."))
    mode = os.W_OK | os.X_OK
    ok = os.access(folder, mode, effective_ids=True) if os.access in os.supports_effective_ids \
        else os.access(folder, mode)
    if not ok:
        raise UserInputError(f"{option} {str(target)!r}: folder {str(folder)!r} is not writable (read-only folder "
                             "or file system); choose a writable location", param=option)


OUTPUT_MARKER = ".loralab-output.json"  # what kind of output a folder holds (kinds without a fixed layout of files)
OUTPUT_FORMAT = "loralab-output/1"


def output_kind(folder: str | os.PathLike[str]) -> str | None:
    """The kind recorded by `mark_output` in `folder` (None: no marker, or not one loralab wrote)."""
    path = Path(folder) / OUTPUT_MARKER
    if not path.is_file():
        return None
    try:
        data = read_json(path, what="output marker", max_bytes=64 * 1024)
    except UserInputError:
        return None
    if isinstance(data, dict) and data.get("format") == OUTPUT_FORMAT and isinstance(data.get("kind"), str):
        return data["kind"]
    return None


def mark_output(folder: str | os.PathLike[str], kind: str) -> Path:
    """Create `folder` if needed and record that it holds loralab's `kind` output (so a re-run may write there)."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    if output_kind(target) != kind:
        atomic_write_json(target / OUTPUT_MARKER, {"format": OUTPUT_FORMAT, "kind": kind})
    return target


def is_output_dir(folder: Path, kind: str, recognise: Callable[[Path], bool] | None = None) -> bool:
    """Whether loralab may write `kind` output into (or replace) the existing folder: empty, or already its output.

    Its output is a folder with `kind`'s marker, or one that `recognise` identifies by the kind's own
    format files (outputs without a marker). A marker of another kind is never overridden. A folder that
    holds only the leftovers of loralab's own interrupted atomic writes counts as empty.
    """
    try:
        with os.scandir(folder) as entries:
            if all(_LEFTOVER.match(entry.name) for entry in entries):
                return True
    except OSError as exc:
        raise UserInputError(f"folder {str(folder)!r} cannot be read: {exc.strerror or exc}") from None
    marked = output_kind(folder)
    if marked is not None:
        return marked == kind
    if recognise is None:
        return False
    try:
        return bool(recognise(folder))
    except (OSError, ValueError):  # unreadable or malformed format files: not recognisably ours
        return False


def check_output_dir(path: str | os.PathLike[str], *, kind: str, what: str, option: str = "out",
                     recognise: Callable[[Path], bool] | None = None) -> Path:
    """Refuse, before any work, a folder output that would destroy or mix with files loralab did not write.

    `path` must be absent, an empty folder, or loralab's `kind` output already (see `is_output_dir`); then
    it is replaced (a checkpoint) or written into (a library, a comparison, a benchmark, a report) as before.
    `what` names the kind in the message ("method checkpoint", "LoRA library").
    """
    target = check_output_path(path, kind="dir", option=option)
    if target.is_dir() and not is_output_dir(target, kind, recognise):
        names = sorted(p.name for p in target.iterdir())
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} entries)" if len(names) > 5 else "")
        raise UserInputError(f"{option} {str(target)!r} is an existing folder that is not a loralab {what} "
                             f"(it holds {shown}); loralab writes only into a new or empty folder or its own "
                             f"{what}: give another path", param=option)
    return target


def check_output_file(path: str | os.PathLike[str], *, what: str, option: str = "out",
                      recognise: Callable[[Path], bool]) -> Path:
    """Refuse, before any work, to replace an existing file that is not loralab's `what` output.

    An existing file is replaced only when it is empty or `recognise` says loralab wrote it as the same
    kind of output (re-running a command updates its result; it never overwrites an unrelated file).
    """
    target = check_output_path(path, kind="file", option=option)
    if target.is_file() and target.stat().st_size > 0:
        try:
            ours = bool(recognise(target))
        except (OSError, ValueError):  # unreadable, not UTF-8, not JSON: not recognisably ours
            ours = False
        if not ours:
            raise UserInputError(f"{option} {str(target)!r} is an existing file that is not a loralab {what}; "
                                 f"loralab replaces only its own {what}s: remove it or give another path",
                                 param=option)
    return target


EVAL_RESULT_KEYS = frozenset({"model", "task", "split", "n", "metrics", "primary_metric"})
EXPORT_KEYS = frozenset({"id", "prompt", "choices", "answer_index", "targets", "generation", "split", "metadata"})


def is_eval_result(path: Path) -> bool:
    """A result JSON written by `loralab eval --out` / `run_eval(out=...)`: an object with the record's keys."""
    data = read_json(path, what="result file")
    return isinstance(data, dict) and EVAL_RESULT_KEYS <= set(data) and isinstance(data.get("metrics"), dict)


def is_task_export(path: Path, *, max_lines: int = 1000) -> bool:
    """A JSONL written by `loralab data export`: every line one record with exactly the export's fields.

    The first `max_lines` lines decide (an export is uniform). A hand-written unified task file with other
    fields (or none of `split`) is not an export and is never overwritten.
    """
    with open(path, encoding="utf-8") as fh:
        seen = 0
        for line in fh:
            if seen >= max_lines:
                break
            if not line.strip():
                continue
            record = loads_json(line, what=f"line of {path}")
            keys = set(record) if isinstance(record, dict) else set()
            if not keys <= EXPORT_KEYS or not {"id", "prompt", "split"} <= keys:
                return False
            if not ({"choices", "answer_index"} <= keys or {"targets", "generation"} <= keys):
                return False
            seen += 1
    return seen > 0


def _prepare_target(target: Path, *, want_dir: bool) -> None:
    check_output_path(target, kind="dir" if want_dir else "file", option="output path")
    _check_writable(target, "output path", into=False)  # the temporary file/folder and the rename are beside it
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_leftovers(target)


def recover_leftovers(target: Path) -> None:
    """Remove the leftovers of killed atomic writes of `target`; restore a folder moved aside and never replaced."""
    if fcntl is None or not target.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.({_TOKEN})\.(tmp|old)$")
    leftovers = sorted((m.group(2), m.group(1), p) for p in target.parent.iterdir()
                       if (m := pattern.match(p.name)))
    live = set()
    for kind, token, path in leftovers:
        if kind == "tmp":
            if _is_locked(path):
                live.add(token)  # another process is writing this target right now
                continue
            logger.info("removing %s, left by an interrupted write", path)
            _remove(path)
    for kind, token, path in leftovers:
        if kind != "old" or token in live:
            continue
        if not target.exists():
            logger.warning("restoring %s from %s (a replacement was interrupted)", target, path)
            os.replace(path, target)
        else:
            _remove(path)


def _lock(fd: int) -> int | None:
    """Lock the open temporary `fd` for as long as it stays open; returns it (None: closed, no locking here)."""
    if fcntl is None:
        os.close(fd)
        return None
    with contextlib.suppress(OSError):  # a filesystem without flock: the write still works, unprotected
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _is_locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # held by a live writer (or no flock here: keep it, to be safe)
    finally:
        os.close(fd)  # closing releases the probe lock
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
