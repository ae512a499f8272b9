"""The Hugging Face hub for loralab's own artifacts: download a checkpoint or adapter folder, upload one.

Both go through `huggingface_hub` (`snapshot_download`; `HfApi.create_repo` + `HfApi.upload_folder`), so the
hub cache, `HF_TOKEN` / `huggingface-cli login`, `HF_ENDPOINT` and `HF_HUB_OFFLINE` work as they do for
transformers and PEFT. A local folder never touches the network. What a downloaded folder holds is checked by
the same loader as a local one (`loralab.attach_adapter`): this module only moves files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from loralab.errors import AdapterError, HubError, UserInputError
from loralab.models.loading import is_hub_id

logger = logging.getLogger(__name__)


def local_or_download(spec: str | os.PathLike[str], *, what: str = "checkpoint", revision: str | None = None,
                      token: str | bool | None = None, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """`spec` as a local folder: an existing folder as it is, else a hub repo id downloaded into the hub cache.

    Args:
        spec: A folder, or a hub repo id (`owner/name`) when no such folder exists.
        what: What `spec` is, for the error messages.
        revision: Branch, tag or commit of the repo (a local folder has none: ignored, with a warning).
        token: Hub token (default: `HF_TOKEN` or the saved login).
        cache_dir: Hub cache folder (default: the hub's, `HF_HUB_CACHE`).

    Raises:
        AdapterError: `spec` is a file, neither a folder nor a repo id, or the repo cannot be downloaded
            (unknown repo or revision, no access, offline without a cached copy): one line.
    """
    from huggingface_hub import snapshot_download

    from loralab import __version__

    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        if revision is not None:
            logger.warning("revision %r ignored for local folder %s", revision, path)
        return path
    if path.exists():
        raise AdapterError(f"{what} {text!r} is a file, not a folder")
    if not is_hub_id(text):
        raise AdapterError(f"{what} {text!r}: no such folder, and not a hub repo id (owner/name)")
    logger.info("downloading %s %s from the Hugging Face hub (revision %s)", what, text, revision or "main")
    try:
        folder = snapshot_download(repo_id=text, revision=revision, token=token, cache_dir=cache_dir,
                                   library_name="loralab", library_version=__version__)
    except (OSError, ValueError) as exc:  # HfHubHTTPError, LocalEntryNotFoundError (offline), HFValidationError
        raise AdapterError(f"cannot download {what} {text!r} from the Hugging Face hub: {_first_line(exc)}") from None
    return Path(folder)


def upload_folder(folder: str | os.PathLike[str], repo_id: str, *, private: bool | None = None,
                  token: str | bool | None = None, revision: str | None = None, commit_message: str | None = None,
                  create_pr: bool = False) -> str:
    """Create `repo_id` on the hub if needed and upload every file of `folder` (hidden files excepted).

    Returns the URL of the commit (or pull request). Hidden files are loralab's own bookkeeping (output markers,
    the temporary files of an interrupted write), not part of the artifact.

    Raises:
        UserInputError: `folder` is not a folder or `repo_id` is not spelled `owner/name`.
        HubError: the hub refused the upload or could not be reached (one line).
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{folder} is not a folder to upload", param="folder")
    if not is_hub_id(repo_id):
        raise UserInputError(f"repo_id {repo_id!r} is not a hub repo id; expected owner/name", param="repo_id")
    api = HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        commit = api.upload_folder(repo_id=repo.repo_id, folder_path=folder, repo_type="model", revision=revision,
                                   commit_message=commit_message or f"Upload {folder.name} with loralab",
                                   create_pr=create_pr, ignore_patterns=[".*", "**/.*"])
    except (OSError, ValueError) as exc:  # HfHubHTTPError (401, 403, ...), LocalTokenNotFoundError, no network
        raise HubError(f"cannot upload {folder} to {repo_id!r} on the Hugging Face hub: {_first_line(exc)}") from None
    url = str(getattr(commit, "pr_url", None) or getattr(commit, "commit_url", None) or commit)
    logger.info("uploaded %s to %s (%s)", folder, repo_id, url)
    return url


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
