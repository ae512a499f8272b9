"""The on-disk LoRA library: one PEFT adapter per (model, task), and a manifest.

    LIB/
      manifest.json                    index of every adapter (rebuilt from the entries below)
      <model>/<task>/adapter_config.json, adapter_model.safetensors   plain PEFT format
      <model>/<task>/loralab.json      the entry: task, domain, model and revision, hyperparameters,
                                       precision, metrics, data hash, time, versions, SHA-256 of every file
      .work/<model>/<task>/            trainer checkpoints of an adapter still being trained

An adapter directory appears in one rename once it is complete, so an interrupted build never leaves a
half-written adapter; each `loralab.json` is the source of truth and the manifest is rebuilt from them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.errors import AdapterError, UserInputError
from loralab.utils.io import atomic_write_json, read_json

logger = logging.getLogger(__name__)

FORMAT = "loralab-library/1"
ENTRY_FILE = "loralab.json"
MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_name(kind: str, name: str) -> str:
    """A task or model name that is safe as one path component (no separators, no leading dot)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UserInputError(f"{kind} name {name!r} cannot name a library folder: use letters, digits, '_', '-', "
                             "'.' (not leading), at most 128 characters")
    return name


def model_slug(model: str) -> str:
    """Folder name for a model: an alias or hub id as written ('/' -> '--'); a local dir by name + path hash."""
    path = Path(model).expanduser()
    if path.exists():
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        return check_name("model", f"{path.resolve().name}-{digest}")
    return check_name("model", model.replace("/", "--"))


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class AdapterEntry:
    """One library adapter and what is known about it (the content of its `loralab.json`)."""

    task: str
    model: str
    model_slug: str
    domain: str = "general"
    origin: str = "trained"
    model_source: str | None = None
    model_revision: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    precision: dict[str, Any] | None = None  # the resolved `Precision.to_dict()` it was trained and evaluated in
    data_hash: str | None = None
    created: str = ""
    seconds: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    git_hash: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "path"}
        return out

    def precision_name(self) -> str:
        """The precision it was trained in. Entries written before precisions were recorded ran fp32, unless their
        hyperparameters asked bf16/fp16 explicitly (`mixed_precision`, the only setting there was)."""
        if isinstance(self.precision, Mapping) and isinstance(self.precision.get("name"), str):
            return self.precision["name"]
        legacy = self.hparams.get("mixed_precision")
        return legacy if legacy in ("bf16", "fp16") else "fp32"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> AdapterEntry:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "path"}
        return cls(**known, path=path)


class Library:
    """A folder of PEFT LoRA adapters, one per (model, task)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserInputError(f"library path {self.root} exists and is not a directory")

    def adapter_dir(self, model_slug_: str, task: str) -> Path:
        return self.root / check_name("model", model_slug_) / check_name("task", task)

    def work_dir(self, model_slug_: str, task: str) -> Path:
        return self.root / ".work" / check_name("model", model_slug_) / check_name("task", task)

    def remove_empty_work_dirs(self) -> None:
        """Remove `.work/` folders left empty once every adapter in them is finished."""
        work = self.root / ".work"
        if not work.is_dir():
            return
        for folder in sorted((p for p in work.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            work.rmdir()

    def has(self, model_slug_: str, task: str) -> bool:
        return (self.adapter_dir(model_slug_, task) / ENTRY_FILE).is_file()

    def entries(self, model_slug_: str | None = None) -> list[AdapterEntry]:
        """Every complete adapter (optionally of one model), sorted by model and task."""
        if not self.root.is_dir():
            return []
        pattern = f"{model_slug_ or '*'}/*/{ENTRY_FILE}"
        entries = []
        for entry_file in sorted(self.root.glob(pattern)):
            if entry_file.parts[-3].startswith(".") or entry_file.parts[-2].startswith("."):
                continue  # .work/ and the temporary folder of an adapter being written (or left by a kill)
            entries.append(self._read_entry(entry_file))
        return entries

    def get(self, model_slug_: str, task: str, *, verify: bool = True) -> AdapterEntry:
        entry_file = self.adapter_dir(model_slug_, task) / ENTRY_FILE
        if not entry_file.is_file():
            have = sorted(e.task for e in self.entries(model_slug_))
            raise UserInputError(f"library {self.root} has no adapter for task {task!r} and model {model_slug_!r}; "
                                 f"it has: {', '.join(have) or 'none'}")
        entry = self._read_entry(entry_file)
        if verify:
            self.verify(entry)
        return entry

    def verify(self, entry: AdapterEntry) -> None:
        """Check every recorded file hash, so a tampered or truncated adapter is never used."""
        verify_entry(entry)

    def write_entry(self, adapter_dir: Path, entry: AdapterEntry) -> None:
        """Record file hashes and write `loralab.json` into a (temporary) adapter directory."""
        entry.files = {p.name: sha256_file(p) for p in sorted(adapter_dir.iterdir())
                       if p.is_file() and p.name != ENTRY_FILE and not p.name.startswith(".")}
        entry.created = entry.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        atomic_write_json(adapter_dir / ENTRY_FILE, entry.to_dict())

    def refresh_manifest(self) -> None:
        """Rebuild `manifest.json` from the adapters' entries (atomically)."""
        adapters = [{**e.to_dict(), "path": str(e.path.relative_to(self.root))} for e in self.entries()
                    if e.path is not None]
        atomic_write_json(self.root / MANIFEST_FILE, {"format": FORMAT, "adapters": adapters})

    def _read_entry(self, entry_file: Path) -> AdapterEntry:
        return read_entry(entry_file)


def read_entry(entry_file: Path) -> AdapterEntry:
    """The library entry in `entry_file` (a `loralab.json`), checked for the fields loralab relies on."""
    try:
        data = read_json(entry_file, what="library entry")
    except UserInputError as exc:  # missing, unreadable, not JSON, NaN, nested too deeply: one line
        raise AdapterError(f"{entry_file}: unreadable library entry ({_reason(exc, 'library entry', entry_file)})") \
            from None
    if not isinstance(data, dict) or "task" not in data or "model" not in data:
        raise AdapterError(f"{entry_file}: not a loralab library entry (needs 'task' and 'model')")
    for key in ("task", "model"):
        if not isinstance(data[key], str):
            raise AdapterError(f"{entry_file}: {key!r} must be a string, got {data[key]!r}")
    for key in ("hparams", "metrics", "versions", "files"):
        if not isinstance(data.get(key, {}), dict):
            raise AdapterError(f"{entry_file}: {key!r} must be a JSON object, got {data[key]!r}")
    if data.get("precision") is not None and not isinstance(data["precision"], dict):
        raise AdapterError(f"{entry_file}: 'precision' must be a JSON object or null, got {data['precision']!r}")
    return AdapterEntry.from_dict(data, entry_file.parent)


def _reason(exc: UserInputError, what: str, path: Path) -> str:
    """`read_json`'s message without its "<what> '<path>'" lead (the caller names the file itself)."""
    message, lead = str(exc), f"{what} {str(path)!r}"
    return message[len(lead):].lstrip(": ") if message.startswith(lead) else message


def verify_files(folder: Path, files: Any, record: Path) -> None:
    """Every file named in `files` (name -> SHA-256, as recorded in `record`) exists in `folder` and matches."""
    if not isinstance(files, dict) or not files:
        raise AdapterError(f"{record}: 'files' must map file names to SHA-256 hashes, got {files!r}")
    for name, expected in files.items():
        if not isinstance(name, str) or not _FILE_NAME.match(name) or name == record.name:
            raise AdapterError(f"{record}: 'files' lists {name!r}, which is not a file name inside the adapter folder")
        if not isinstance(expected, str) or not _SHA256.match(expected):
            raise AdapterError(f"{record}: the hash of {name} must be 64 hex digits, got {expected!r}")
        path = folder / name
        if not path.is_file():
            raise AdapterError(f"{folder}: file {name} listed in {record.name} is missing")
        if sha256_file(path) != expected:
            raise AdapterError(f"{folder}: {name} does not match its recorded SHA-256 (modified or corrupt)")


def verify_entry(entry: AdapterEntry) -> None:
    """A library entry's files match their recorded hashes, and no file was added beside them."""
    if entry.path is None:
        raise AdapterError(f"library entry for task {entry.task!r} has no folder")
    verify_files(entry.path, entry.files, entry.path / ENTRY_FILE)
    unlisted = sorted(p.name for p in entry.path.iterdir() if p.is_file() and p.name not in entry.files
                      and p.name != ENTRY_FILE and not p.name.startswith("."))
    if unlisted:
        raise AdapterError(f"{entry.path}: {', '.join(unlisted)} not recorded in {ENTRY_FILE} (added after the "
                           "adapter was written); remove it or re-add the adapter")
