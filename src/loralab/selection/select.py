"""`select_experts`: choose k library LoRAs for a target task with any registered strategy.

Everything that is not a strategy's own scoring happens here, once: the strategy and its options are
checked, the target task and the library are read, the target's own LoRA is left out (leave-one-out,
the default, so a selection is judged on transfer and not on the answer), k is checked against the
candidates that remain, and only then is the model loaded, and only for strategies that need it. Their
forwards (perplexities, embeddings) run in one resolved precision, recorded in each `Selection`. With `out`,
the selection is also written as one JSON file (atomically; `selection_record`): what was asked, every
candidate's score in rank order, and the chosen LoRAs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import os
from collections.abc import Mapping
from typing import Any

from loralab.data import Task, load_task
from loralab.errors import ConfigError, UserInputError
from loralab.library.store import AdapterEntry, Library, model_slug
from loralab.models import LoadedModel, load_model
from loralab.models.loading import check_device, model_device
from loralab.selection.base import OwnLoRA, Selection, SelectionContext, Selector, rank_scores
from loralab.selection.registry import get_selector
from loralab.utils.io import atomic_write_json, check_output_file, read_json
from loralab.utils.precision import resolve_precision

logger = logging.getLogger(__name__)


def make_selector(strategy: str, **options: Any) -> Selector:
    """The strategy with its options (None values are left at their defaults); unknown names fail loudly."""
    cls = get_selector(strategy)
    fields = [f.name for f in dataclasses.fields(cls.config_cls)]
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in fields:
            raise ConfigError(f"option {key!r} does not apply to strategy {strategy!r}; its options: "
                              f"{', '.join(fields) or 'none'}")
    return cls(cls.config_cls(**given))


def select_experts(
    strategy: str | Selector,
    model: str | LoadedModel,
    library: str | os.PathLike[str],
    task: str | Task,
    k: int,
    *,
    exclude_own: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    library_tasks: Mapping[str, Task] | None = None,
    progress: bool = True,
    precision: str | None = "auto",
    out: str | os.PathLike[str] | None = None,
    **options: Any,
) -> list[Selection]:
    """The k best library LoRAs of `model` for `task` under `strategy`, best first.

    Args:
        strategy: A registered strategy name (`random`, `ppl`, `manual`, `embedding`) or a `Selector`.
        model: Base model: alias, local directory or hub id, or an already loaded `LoadedModel` (it is
            used as is and handed back unwrapped). Its name picks the library's adapters.
        library: Library folder (`loralab library build --out`).
        task: Target task: suite name, task file, or a `Task`. A task file named otherwise than the library LoRA
            built from it (same training examples) takes that LoRA's name, and a library LoRA folder stands for its
            task (`loralab.library.names`), so the own LoRA is recognised either way.
        k: How many LoRAs to choose, 1 to the number of candidates.
        exclude_own: Leave the target's own library LoRA out (leave-one-out). Each `Selection` records
            whether it was excluded, included, or absent from the library.
        data_dir: Task data folder (suite tasks).
        device: Where a model given by name is loaded.
        library_tasks: Task objects for library tasks that are not suite tasks (`embedding` reads them).
        progress: Progress bars on stderr.
        precision: Autocast of the strategy's forwards ("auto", "fp32", "bf16", "fp16"; "auto": bf16 where
            the device has it natively, else fp32); the resolved name is each `Selection.precision` (None
            for strategies that run no model).
        out: Write the selection here as JSON (`selection_record`), atomically, once it is made; an existing
            file is replaced only when it is empty or a selection loralab wrote (checked before any work).
        **options: The strategy's options (fields of its config dataclass): `seed` (random),
            `relevance` (manual: a YAML path or mapping), `n_examples`, `split`, `batch_size`,
            `max_length` (ppl, embedding), `layer` (embedding). None leaves an option at its default.

    Raises:
        UserInputError: unknown strategy (with "did you mean") or option, a k outside 1..candidates,
            a library with no adapters for the model, a bad relevance file, a missing task.
    """
    selector = strategy if isinstance(strategy, Selector) else make_selector(strategy, **options)
    if isinstance(strategy, Selector) and any(v is not None for v in options.values()):
        raise ConfigError("options go into the Selector's config when a Selector object is given")
    if isinstance(k, bool) or not isinstance(k, int):
        raise UserInputError(f"k must be an integer, got {k!r}", param="k")
    if out is not None:  # a file that is not our own selection is never replaced, and is refused before any work
        check_output_file(out, what="selection file", option="out", recognise=is_selection_file)
    model_name = model.name if isinstance(model, LoadedModel) else model
    lib, slug, entries = _library_entries(library, model_name)
    target = task if isinstance(task, Task) else _target_task(task, lib, slug, entries, data_dir)
    own_in_library = any(e.task == target.name for e in entries)
    candidates = [e for e in entries if not (exclude_own and e.task == target.name)]
    own: OwnLoRA = ("excluded" if exclude_own else "included") if own_in_library else "absent"
    if not candidates:
        raise UserInputError(f"library {lib.root} has only the target's own LoRA ({target.name!r}) for model "
                             f"{slug!r}: nothing is left to choose from (pass --include-own to allow it)")
    if not 1 <= k <= len(candidates):
        left_out = ", the target's own left out" if own == "excluded" else ""
        why = f"{len(candidates)} LoRAs of {slug!r} in {lib.root}{left_out}"
        raise UserInputError(f"k must be between 1 and {len(candidates)} ({why}), got {k}", param="k")
    context = SelectionContext(target=target, candidates=candidates, library=lib, model_slug=slug, entries=entries,
                               data_dir=data_dir, library_tasks=dict(library_tasks or {}), progress=progress)
    selector.prepare(context)
    prec = None
    if selector.needs_model:
        # resolved before the model loads, so a precision the device cannot run fails at once
        prec = resolve_precision(precision, model_device(model.model) if isinstance(model, LoadedModel)
                                 else check_device(device))
        context.lm = model if isinstance(model, LoadedModel) else load_model(model, device=device)
    with prec.autocast() if prec is not None else contextlib.nullcontext():
        scores = selector.scores(context)
    if set(scores) != {e.task for e in candidates}:
        raise RuntimeError(f"strategy {selector.name!r} scored {sorted(scores)}, not the candidates "
                           f"{sorted(e.task for e in candidates)}")  # a bug in the strategy, not bad input
    by_task = {e.task: e for e in candidates}
    ranked = rank_scores(scores, selector.higher_is_better)
    chosen = [Selection(rank=i, task=name, score=score, score_name=selector.score_name, strategy=selector.name,
                        target=target.name, own_lora=own, domain=by_task[name].domain, path=str(by_task[name].path),
                        precision=prec.name if prec is not None else None)
              for i, (name, score) in enumerate(ranked[:k], start=1)]
    logger.info("%s selection for %s (own LoRA %s): %s", selector.name, target.name, own,
                ", ".join(f"{s.task} ({s.score:.4g})" for s in chosen))
    if out is not None:
        record = selection_record(selector, chosen, ranked, model=model_name, library=lib.root, k=k,
                                  exclude_own=exclude_own, precision=prec.to_dict() if prec is not None else None)
        atomic_write_json(out, record)
        logger.info("wrote %s", out)
    return chosen


SELECTION_FORMAT = "loralab-selection/1"


def selection_record(selector: Selector, chosen: list[Selection], ranked: list[tuple[str, float]], *, model: str,
                     library: str | os.PathLike[str], k: int, exclude_own: bool,
                     precision: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON of `select --out`: the request, every candidate's score (rank order) and the chosen LoRAs.

    A score that is not finite (a perplexity that overflowed) is null, as everywhere in loralab's JSON.
    """
    from loralab.utils.env import git_hash, package_versions

    first = chosen[0]
    return {
        "format": SELECTION_FORMAT, "strategy": selector.name, "score_name": selector.score_name,
        "higher_is_better": selector.higher_is_better, "target": first.target, "model": model,
        "library": str(library), "k": k, "exclude_own": exclude_own, "own_lora": first.own_lora,
        "options": _plain_options(selector.config), "precision": precision,
        "candidates": [{"rank": i, "task": name, "score": score} for i, (name, score) in enumerate(ranked, start=1)],
        "chosen": [s.to_dict() for s in chosen],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(), "git_hash": git_hash(),
    }


def is_selection_file(path: os.PathLike[str]) -> bool:
    """A selection JSON that `select_experts(out=...)` / `loralab select --out` wrote (its format marker)."""
    data = read_json(path, what="selection file")
    return isinstance(data, dict) and data.get("format") == SELECTION_FORMAT


def _plain_options(config: Any) -> dict[str, Any]:
    """A strategy's options as JSON data (a relevance file as its path, a mapping as a dict)."""
    if not dataclasses.is_dataclass(config):
        return {}
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = os.fspath(value) if isinstance(value, os.PathLike) else \
            dict(value) if isinstance(value, Mapping) else value
    return out


def _target_task(spec: str, lib: Library, slug: str, entries: list[AdapterEntry],
                 data_dir: str | os.PathLike[str] | None) -> Task:
    """The target task of `spec`: a name, a task file (named as the library LoRA it was built from, so that LoRA is
    its own), or a library LoRA folder (its task, by name); see `loralab.library.names`."""
    from loralab.errors import UnknownNameError
    from loralab.library.names import KnownTask, match_task

    match = match_task(spec, [KnownTask.from_entry(e) for e in entries], where=f"library {lib.root} (model {slug})",
                       option="task", data_dir=data_dir)
    if match.task is not None:
        if match.name is not None and match.name != match.task.name:
            logger.info("task %s has the training examples of library LoRA %s: named %s", spec, match.name,
                        match.name)
            match.task.name = match.name  # a task we just loaded: renaming it changes nothing else
        return match.task
    name = match.name or spec
    try:
        return load_task(name, data_dir=data_dir)
    except UnknownNameError:
        if name == spec:
            raise
        raise UserInputError(f"task {spec!r} is the library LoRA of task {name!r}, which is not a suite task: give "
                             "the task file it was built from", param="task") from None


def _library_entries(library: str | os.PathLike[str], model_name: str) -> tuple[Library, str, list[AdapterEntry]]:
    """The library, the model's folder name in it, and that model's adapters; a clear error when there are none."""
    lib = Library(library)
    if not lib.root.is_dir():
        raise UserInputError(f"library folder does not exist: {lib.root}")
    slug = model_slug(model_name)
    entries = lib.entries(slug)
    if not entries:
        models = sorted({e.model_slug for e in lib.entries()})
        have = f"it has adapters for: {', '.join(models)}" if models else "it has no adapters at all"
        raise UserInputError(f"library {lib.root} has no adapters for model {slug!r}; {have}")
    return lib, slug, entries
