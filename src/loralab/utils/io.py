"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every temporary file or folder lives beside its target as `.<name>.<8 chars>.tmp` and is locked
(`flock`) by the process writing it. A process killed with SIGKILL leaves that leftover behind
unlocked; the next atomic write of the same target removes it, and puts back the previous version
of a folder if the kill fell between moving it aside (`.<name>.<8 chars>.old`) and renaming the new
one into place. So after any kill the target is the previous complete version (or absent if there was
none), and re-running the job cleans up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loralab.errors import UserInputError

try:  # POSIX; without it (Windows) leftovers are never judged stale and stay for the user to remove
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)
_TOKEN = r"[A-Za-z0-9_]{8}"  # tempfile's random part


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
    fd = _lock(os.open(tmp, os.O_RDONLY)) if fcntl is not None else None
    try:
        yield tmp
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


def fsync_tree(root: Path) -> None:
    """fsync every file below `root` and the folders themselves (so a rename publishes durable content)."""
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError), open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(folder))


def check_output_path(path: str | os.PathLike[str], *, kind: str, option: str = "--out") -> Path:
    """Fail early, before any work, when `path` cannot become a file (`kind="file"`) or folder (`kind="dir"`).

    A file target must not be an existing folder; a folder target must not be an existing file; and no
    existing ancestor may be a file.
    """
    target = Path(path)
    if kind == "file" and target.is_dir():
        raise UserInputError(f"{option} {str(target)!r} is an existing folder; give a file path")
    if kind == "dir" and target.exists() and not target.is_dir():
        raise UserInputError(f"{option} {str(target)!r} is an existing file; give a folder path")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"{option} {str(target)!r}: {str(parent)!r} is a file, not a folder")
            break
    return target


def _prepare_target(target: Path, *, want_dir: bool) -> None:
    check_output_path(target, kind="dir" if want_dir else "file", option="output path")
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
