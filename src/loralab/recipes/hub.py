"""Publish what loralab wrote on the Hugging Face hub: `loralab push FOLDER --repo OWNER/NAME`.

    push_output("runs/more", "me/more-smollm2")                      # a method checkpoint, as it is on disk
    push_output("runs/lib/smollm2-135m/navigate", "me/navigate-lora")  # a library LoRA
    push_output("runs/more-navigate", "me/more-navigate")            # a merged model

The folder is uploaded as it is (hidden files excepted) with `huggingface_hub.HfApi` (`create_repo`, then
`upload_folder`), after checking that it is one of loralab's outputs with its model card, and that its recorded
hashes still match its files, so a modified or corrupt adapter is not published. Reading never modifies it.
From the repo, `MoEModel.from_pretrained(repo_id)` (method checkpoints), `PeftModel.from_pretrained` (PEFT
adapters) or `AutoModelForCausalLM.from_pretrained` (merged models) load it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from loralab.errors import AdapterError, UserInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    """What `push_output` uploaded: the folder, its kind (as its card says), the repo and the commit URL."""

    folder: Path
    kind: str
    repo_id: str
    url: str


def output_kind(folder: str | os.PathLike[str]) -> str:
    """The kind of loralab output `folder` is, after checking its recorded hashes; one `UserInputError` if none.

    method-checkpoint (`loralab_method.json`, or a PEFT-format method output with `loralab_train.json`),
    library-lora (a library entry, `loralab.json`) or merged-model (`loralab_merge.json`).
    """
    from loralab.library.adapters import METHOD_FILE, TRAIN_FILE, read_artifact_json, verify_recorded_hashes
    from loralab.library.store import ENTRY_FILE, verify_files
    from loralab.recipes.merge import MERGE_FILE

    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterError(f"{folder}: no such folder to push")
    if (folder / METHOD_FILE).is_file():
        meta = read_artifact_json(folder / METHOD_FILE, "method config")
        if isinstance(meta, dict) and "files" in meta:
            verify_files(folder, meta["files"], folder / METHOD_FILE)
        return "method-checkpoint"
    if (folder / ENTRY_FILE).is_file() or (folder / TRAIN_FILE).is_file():
        verify_recorded_hashes(folder)
        return "library-lora" if (folder / ENTRY_FILE).is_file() else "method-checkpoint"
    if (folder / MERGE_FILE).is_file():
        return "merged-model"
    raise UserInputError(f"{folder} is not an output of loralab (no {METHOD_FILE}, {TRAIN_FILE}, {ENTRY_FILE} or "
                         f"{MERGE_FILE}); upload other folders with huggingface_hub itself", param="folder")


def push_output(folder: str | os.PathLike[str], repo_id: str, *, private: bool | None = None,
                token: str | bool | None = None, revision: str | None = None, commit_message: str | None = None,
                create_pr: bool = False) -> PushResult:
    """Upload a loralab output folder to the hub repo `repo_id` (created if it does not exist).

    Args:
        folder: A method checkpoint, library entry or merged model folder that loralab wrote.
        repo_id: The hub repo, `owner/name`.
        private: Create the repo private (an existing repo keeps its visibility).
        token: Hub token (default: `HF_TOKEN` or the saved `hf auth login`).
        revision: The branch to commit to (default: main).
        commit_message: Default: "Upload <folder name> with loralab".
        create_pr: Open a pull request instead of committing to the branch.

    Raises:
        UserInputError: not a loralab output, a recorded hash that does not match, no model card (an output
            written before loralab wrote cards), or a malformed repo id; nothing is uploaded.
        HubError: the hub refused the upload or could not be reached.
    """
    from loralab.library.cards import CARD_FILE, read_card_info
    from loralab.models.hub import upload_folder
    from loralab.models.loading import is_hub_id

    if not is_hub_id(repo_id):  # before anything is read
        raise UserInputError(f"repo_id {repo_id!r} is not a hub repo id; expected owner/name", param="repo_id")
    folder = Path(folder)
    kind = output_kind(folder)
    if read_card_info(folder) is None:
        raise UserInputError(f"{folder} has no loralab model card ({CARD_FILE}): it was written before loralab wrote "
                             "cards; write it again with the same command to get one", param="folder")
    url = upload_folder(folder, repo_id, private=private, token=token, revision=revision,
                        commit_message=commit_message, create_pr=create_pr)
    return PushResult(folder=folder, kind=kind, repo_id=repo_id, url=url)
