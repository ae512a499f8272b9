"""An in-memory Hugging Face hub for tests: `huggingface_hub.HfApi` and `snapshot_download` replaced, no network.

`FakeHub.install(monkeypatch, tmp_path)` patches the two names loralab calls (it imports them from
`huggingface_hub` when it calls them), records every call, keeps each uploaded repo as a folder of the
uploaded bytes, and serves `snapshot_download` from a copy of that folder, as the real hub cache would.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeHub:
    root: Path
    repos: dict[str, Path] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_upload: Exception | None = None
    fail_download: Exception | None = None

    @classmethod
    def install(cls, monkeypatch, root: Path) -> FakeHub:
        import huggingface_hub

        hub = cls(root)
        monkeypatch.setattr(huggingface_hub, "HfApi", hub.api)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
        return hub

    def api(self, token: Any = None) -> _Api:
        self.calls.append(("HfApi", {"token": token}))
        return _Api(self)

    def names(self, what: str) -> list[str]:
        return [name for name, _ in self.calls if name == what]

    def snapshot_download(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("snapshot_download", {"repo_id": repo_id, **kwargs}))
        if self.fail_download is not None:
            raise self.fail_download
        if repo_id not in self.repos:
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError(f"repository {repo_id} not found in the cache and the hub is offline")
        target = self.root / "cache" / repo_id.replace("/", "--") / str(len(self.calls))
        shutil.copytree(self.repos[repo_id], target)
        return str(target)


class _Api:
    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub

    def create_repo(self, repo_id: str, **kwargs: Any):
        self.hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        if self.hub.fail_upload is not None:
            raise self.hub.fail_upload

        class RepoUrl(str):
            pass

        url = RepoUrl(f"https://huggingface.co/{repo_id}")
        url.repo_id = repo_id  # type: ignore[attr-defined]
        return url

    def upload_folder(self, *, repo_id: str, folder_path, ignore_patterns=None, **kwargs: Any):
        self.hub.calls.append(("upload_folder", {"repo_id": repo_id, "folder_path": folder_path,
                                                 "ignore_patterns": ignore_patterns, **kwargs}))
        stored = self.hub.root / "repos" / repo_id.replace("/", "--")
        shutil.rmtree(stored, ignore_errors=True)
        for path in sorted(Path(folder_path).rglob("*")):
            rel = path.relative_to(folder_path).as_posix()
            if path.is_file() and not any(fnmatch.fnmatch(rel, p) for p in ignore_patterns or []):
                (stored / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, stored / rel)
        self.hub.repos[repo_id] = stored

        class CommitInfo:
            commit_url = f"https://huggingface.co/{repo_id}/commit/0123abc"
            pr_url = None

        return CommitInfo()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative POSIX path -> bytes), hidden files included."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
