"""Read a saved PEFT adapter, after checking that it is what it claims to be; the integrity checks every
adapter and method checkpoint reader shares.

Every path that reads an adapter or a method checkpoint comes through `loralab.attach_adapter` (`loralab eval`,
`merge`, `analyze-router`, the lm-eval model, `library add`), so these checks hold on all of them; each
failure is one `AdapterError` line:

- recorded SHA-256 hashes match the files: a library entry's `loralab.json`, a method checkpoint's
  `loralab_method.json`, the library entry that a `lora` run copied (`loralab_train.json`);
- the weights are readable (not a truncated safetensors file, not a malformed pickle under `allow_pickle`)
  and finite (a NaN adapter would otherwise score as a result);
- the adapter is for this base model: the base model recorded in loralab metadata must be the one given
  (unless `allow_base_mismatch=True`), and module names and shapes must fit either way;
- a PEFT adapter holds exactly the tensors its config injects: PEFT itself leaves a missing LoRA matrix at
  its initialisation and ignores an extra one, silently.

The given model is not changed. PEFT's `from_pretrained` (and a method build) injects layers into the
model it is given, so `attach_adapter(lm.model, ...)` used to turn `lm.model` itself into the adapted
model, and a later `build_method(..., lm)` wrapped PEFT's own LoRA matrices. The adapter is now attached
to a structural copy of the model: new module objects, the same weight tensors (no second copy of the
weights). One consequence: `merge_and_unload()` on the result folds the update into those shared
tensors, as PEFT's does, so after a merge the given model's weights are the merged ones too.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loralab.errors import AdapterError, UserInputError
from loralab.utils.io import read_json

logger = logging.getLogger(__name__)

ENTRY_FILE = "loralab.json"  # a library entry (loralab.library.store.ENTRY_FILE)
TRAIN_FILE = "loralab_train.json"  # provenance of a PEFT-format method output (lora, merges, lorahub)
METHOD_FILE = "loralab_method.json"  # a LoRA-MoE method checkpoint (loralab.moe.model.CONFIG_FILE)
_META_FILES = (METHOD_FILE, TRAIN_FILE, ENTRY_FILE)
_ALLOW = "--allow-base-mismatch (allow_base_mismatch=True)"


def attach_peft_adapter(model: torch.nn.Module, path: str | os.PathLike[str], *, allow_pickle: bool = False,
                        allow_base_mismatch: bool = False) -> torch.nn.Module:
    """A `PeftModel` of `path` on a structural copy of `model` (shared weights), after every check above.

    `loralab.attach_adapter` (in `loralab.moe.adapters`) is the entry point for users: it also takes method
    checkpoints and refuses models that already carry loralab's or PEFT's adapter layers.
    """
    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"adapter directory does not exist: {path}")
    return on_copy(model, lambda m: _load_peft(m, path, allow_pickle, allow_base_mismatch))


def _load_peft(model: torch.nn.Module, path: Path, allow_pickle: bool, allow_base_mismatch: bool) -> torch.nn.Module:
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    from loralab.library.importer import check_adapter_fits, read_adapter_config, read_adapter_weights

    verify_recorded_hashes(path)  # before any of the files is parsed
    config = read_adapter_config(path)
    check_base_model(model, path, allow_base_mismatch)
    weights = read_adapter_weights(path, allow_pickle=allow_pickle)
    if config.get("peft_type") == "LORA":  # loralab's own check (library add's): modules, shapes, A with B
        check_adapter_fits(model, config, weights, path)
    try:
        peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise AdapterError(f"{path}: adapter does not fit the base model: {_first_line(exc)}") from None
    # PEFT loads with strict=False: a tensor the config injects but the file lacks keeps its initial value,
    # and a tensor the file has but nothing injects is dropped; both are a broken adapter
    expected = set(get_peft_model_state_dict(peft_model))
    missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or extra:
        part = [f"missing {len(missing)} tensor(s) its config injects (first: {missing[0]})"] if missing else []
        part += [f"{len(extra)} tensor(s) that nothing in its config uses (first: {extra[0]})"] if extra else []
        raise AdapterError(f"{path}: the adapter is {' and has '.join(part)}")
    return peft_model


def on_copy(model: torch.nn.Module, attach) -> torch.nn.Module:
    """`attach(copy)` on a copy of `model`'s module tree that shares its parameters and buffers.

    deepcopy with every tensor of the model pre-seeded in the memo copies the modules (and config) but
    returns the tensors themselves, so ties between weights survive and no weight memory is duplicated.
    PEFT and the method builders set `requires_grad` on the shared tensors; the given model's flags are
    put back afterwards, so the given model is unchanged in that respect too.
    """
    tensors = [*model.parameters(), *model.buffers()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    clone = copy.deepcopy(model, memo={id(t): t for t in tensors})
    try:
        return attach(clone)
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


# ----------------------------------------------------------------------------------- integrity helpers


def read_artifact_json(path: Path, what: str) -> Any:
    """A JSON file of an adapter or checkpoint, read with `read_json`'s guards; failures as `PATH: reason`."""
    try:
        return read_json(path, what=what)
    except UserInputError as exc:
        message, lead = str(exc), f"{what} {str(path)!r}"
        reason = message[len(lead):].lstrip(": ") if message.startswith(lead) else message
        raise AdapterError(f"{path}: {reason}") from None


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or corrupt file is one `AdapterError`."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types (and OSError) for bad files
        raise AdapterError(f"{path}: unreadable safetensors file ({_first_line(exc)})") from None


def check_finite(tensors: Mapping[str, torch.Tensor], where: Path | str) -> None:
    """Every floating tensor is finite: a NaN or infinite weight makes every score NaN, which is no result."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise AdapterError(f"{where}: weight {name} holds {bad} NaN or infinite value(s); the adapter is broken "
                               "(a diverged or corrupted training run)")


def verify_recorded_hashes(path: Path) -> None:
    """Check the SHA-256 hashes that loralab metadata in `path` records (nothing to check without metadata).

    A library entry (`loralab.json`) is verified as the library does, including that no file was added; a
    `loralab_train.json` may record `files` itself, or the `library_entry` (with its hashes) it was copied from.
    """
    from loralab.library.store import read_entry, verify_entry, verify_files

    if (path / ENTRY_FILE).is_file():
        verify_entry(read_entry(path / ENTRY_FILE))
        return
    train_file = path / TRAIN_FILE
    if not train_file.is_file():
        return
    meta = read_artifact_json(train_file, "training record")
    if not isinstance(meta, dict):
        raise AdapterError(f"{train_file}: must be a JSON object, got {type(meta).__name__}")
    files = meta.get("files")
    if files is None and isinstance(meta.get("library_entry"), dict):
        files = meta["library_entry"].get("files")
    if files is not None:
        verify_files(path, files, train_file)


@dataclass(frozen=True)
class RecordedBase:
    """The base model an adapter's loralab metadata names, and where it says so."""

    name: str
    source: str | None
    record: Path


def recorded_base_model(path: str | os.PathLike[str]) -> RecordedBase | None:
    """The base model recorded in `path`'s loralab metadata (None for an adapter without any)."""
    for file_name in _META_FILES:
        record = Path(path) / file_name
        if not record.is_file():
            continue
        meta = read_artifact_json(record, "adapter metadata")
        if not isinstance(meta, dict):
            raise AdapterError(f"{record}: must be a JSON object, got {type(meta).__name__}")
        name = meta.get("model") if isinstance(meta.get("model"), str) else meta.get("base_model")
        if isinstance(name, str) and name:
            source = meta.get("model_source")
            return RecordedBase(name, source if isinstance(source, str) and source else None, record)
    return None


def check_base_model(model: torch.nn.Module, path: Path, allow_base_mismatch: bool = False) -> None:
    """Refuse an adapter whose metadata records another base model than `model` (one line).

    Same model: the same name (alias, directory as given, hub id), or the same source (a directory given by
    another path resolves to the same place). A model that `load_model` did not load carries no identity;
    then only module names and shapes can be checked, and a warning says so.
    """
    from loralab.models.loading import model_identity

    recorded = recorded_base_model(path)
    if recorded is None:
        return
    identity = model_identity(model)
    if identity is None:
        logger.warning("%s was trained on %s; the model given has no loralab identity (not loaded by load_model), "
                       "so only module names and shapes are checked", path, recorded.name)
        return
    if recorded.name == identity.name or (recorded.source is not None and recorded.source == identity.source):
        return
    message = (f"{path} was trained on base model {recorded.name!r} (recorded in {recorded.record.name}), "
               f"not {identity.name!r}")
    if allow_base_mismatch:
        logger.warning("%s; attaching it anyway (allow_base_mismatch)", message)
        return
    raise AdapterError(f"{message}; use that model, or pass {_ALLOW} to try this one (module names and shapes "
                       "must still fit)")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
