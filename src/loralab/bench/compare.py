"""Compare methods under one protocol: train each cell, evaluate it, tabulate.

    loralab compare --model smollm2-135m --library runs/lib --experts a,b,c,d \\
        --methods loramoe,xlora,rocket,lora --tasks social_iqa --out runs/compare

Every cell trains with the same hyperparameters (the same budget) and is scored on the same test
examples. Cells are idempotent: a finished cell's JSON is reused on a re-run, and it is written
atomically only once all its evaluations are done, so an interrupted run never leaves half a cell.

Single-task mode (the default): one cell per (method, task) trains on that task's train split. The
target task's own LoRA is left out of the experts (leave-one-out) unless `include_own` is set, and each
result says which experts it used. Methods that may start from library LoRAs do so, except those named
in `from_scratch`; the `lora` baseline is the target task's own library LoRA.

Multi-task mode (`multitask=True`): one cell per method trains ONE model on all the tasks jointly (task
ids route task-conditioned methods) and evaluates that one checkpoint on each task, so every number in
a method's row comes from the same model. `base` evaluates the base model and `lora` each task's own
library LoRA (the single-task reference; nothing is trained). The target tasks' own LoRAs are left out
of the experts unless `include_own` (leave-one-out cannot be per task when one model serves all tasks);
methods that require library experts need some left, methods that may use them train from scratch
without (the record's "experts" is then empty).

Seeds: each cell runs once per seed (`hparams.seed` replaced), seed by seed, so the first seed gives a
complete table first. With one seed, single-task cells keep their names (`cells/{method}--{task}.json`)
and earlier runs are reused; with several, `--seed{s}` is appended (checkpoints likewise). Multi-task
cells are always `cells/{method}--multitask--seed{s}.json` (a list of one record per task).

`out` must be absent, empty, or a comparison folder loralab wrote (re-running resumes it): a folder
holding anything else is refused before any work, so no file of the user's is overwritten.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.bench.compare_table import write_table
from loralab.data import Task
from loralab.errors import UserInputError
from loralab.training.hparams import LoRAHparams
from loralab.utils.io import atomic_write_json, check_output_dir, mark_output, read_json

logger = logging.getLogger(__name__)

__all__ = ["compare_methods", "write_table"]

OUTPUT_KIND = "compare"
OUTPUT_NAMES = frozenset({"cells", "checkpoints", "results.md", "results.json"})  # all a comparison writes
SEED_FREE = ("base", "lora")  # multi-task baselines that train nothing: one evaluation serves every seed


@dataclass(frozen=True)
class Protocol:
    """What every cell shares, so that methods differ only in the method: model, budget, test examples."""

    model: str
    out: Path
    hparams: LoRAHparams
    library: Path | None
    eval_limit: int | None
    split: str
    data_dir: str | os.PathLike[str] | None
    device: str | None

    def begin(self) -> None:
        """Mark `out` as a comparison folder, once every input is checked and before the first file is written."""
        mark_output(self.out, OUTPUT_KIND)

    def train(self, method: str, tasks: list[Task], name: str, seed: int, experts: list[str] | None,
              library: Path | None) -> tuple[Path, dict[str, Any]]:
        """Train `method` on `tasks` (jointly when several) into `checkpoints/NAME`; return it and the info."""
        from loralab.recipes.train import train_method

        ckpt = self.out / "checkpoints" / name
        info = train_method(method, self.model, tasks, ckpt, library=library, experts=experts,
                            hparams=self.hparams.replace(seed=seed), data_dir=self.data_dir, device=self.device)
        return ckpt, info

    def evaluate(self, task: Task, adapter: Path | None) -> dict[str, Any]:
        from loralab.recipes.evaluate import run_eval

        return run_eval(self.model, task, adapter=adapter, split=self.split, limit=self.eval_limit, device=self.device)


def compare_methods(
    model: str,
    methods: Sequence[str],
    tasks: Sequence[str | Task],
    out: str | os.PathLike[str],
    *,
    library: str | os.PathLike[str] | None = None,
    experts: Sequence[str] | None = None,
    include_own: bool = False,
    from_scratch: Sequence[str] = (),
    hparams: LoRAHparams | None = None,
    eval_limit: int | None = 200,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    seeds: Sequence[int] | None = None,
    multitask: bool = False,
) -> list[dict[str, Any]]:
    """Run every cell not yet done; write `results.md` / `results.json`; return the records.

    There is one record per (method, task, seed); `seeds=None` runs once with `hparams.seed`.
    """
    from loralab.data import load_task
    from loralab.library.store import check_name
    from loralab.moe.registry import get_method

    specs = {m: get_method(m) for m in methods}  # unknown names fail before any work
    check_output_dir(out, kind=OUTPUT_KIND, what="comparison folder", recognise=is_compare_dir)
    task_objs = [t if isinstance(t, Task) else load_task(t, data_dir=data_dir) for t in tasks]
    for t in task_objs:  # task names become cell and checkpoint file names below `out`
        check_name("task", t.name)
    hp = hparams or LoRAHparams()
    seed_list = _check_seeds(seeds, hp.seed)
    proto = Protocol(model, Path(out), hp, Path(library) if library is not None else None, eval_limit, split,
                     data_dir, device)
    run = _multitask if multitask else _single_task
    records = run(proto, specs, task_objs, seed_list, list(experts or []), include_own, from_scratch)
    write_table(records, proto.out)
    return records


def is_compare_dir(folder: Path) -> bool:
    """A comparison folder from before output markers: only the names it writes, and cells or results in its format."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    if not names or not names <= OUTPUT_NAMES:
        return False
    candidates = [folder / "results.json", *sorted((folder / "cells").glob("*.json"))[:1]]
    for path in candidates:
        if path.is_file():
            data = read_json(path, what="comparison result")
            records = data if isinstance(data, list) else [data]
            return bool(records) and all(isinstance(r, dict) and "method" in r and "primary_metric" in r
                                         for r in records)
    return False


def _check_seeds(seeds: Sequence[int] | None, default: int) -> list[int]:
    if seeds is None:
        return [default]
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise UserInputError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise UserInputError(f"seeds must be distinct, got {seeds}")
    return seeds


def _uses_experts(method: str, spec, chosen: Sequence[str], from_scratch: Sequence[str]) -> bool:
    """Methods that may start from library LoRAs do so unless listed in `from_scratch` (`lora` is the own LoRA)."""
    return bool(chosen) and (spec.library == "required" or (
        spec.library == "optional" and method != "lora" and method not in from_scratch))


def _read_cell(cell: Path) -> Any:
    logger.info("%s: done, skipped", cell.stem)
    return read_json(cell, what="comparison cell")


# ---------------------------------------------------------------- single-task mode

def _single_task(proto: Protocol, specs: dict, tasks: list[Task], seeds: list[int], experts: list[str],
                 include_own: bool, from_scratch: Sequence[str]) -> list[dict[str, Any]]:
    proto.begin()
    records = []
    for seed in seeds:
        for task in tasks:
            chosen = [e for e in experts if include_own or e != task.name]
            for method, spec in specs.items():
                name = f"{method}--{task.name}" + (f"--seed{seed}" if len(seeds) > 1 else "")
                uses = _uses_experts(method, spec, chosen, from_scratch)
                records.append(_single_cell(proto, method, task, name, seed, chosen if uses else [],
                                            not include_own))
    return records


def _single_cell(proto: Protocol, method: str, task: Task, name: str, seed: int, experts: list[str],
                 leave_one_out: bool) -> dict[str, Any]:
    cell = proto.out / "cells" / f"{name}.json"
    if cell.is_file():
        record = _read_cell(cell)
        record.setdefault("seed", seed)  # cells from before seeds were recorded ran with the seed asked for
        return record
    library = proto.library if experts or method == "lora" else None
    ckpt, info = proto.train(method, [task], name, seed, experts or None, library)
    record = proto.evaluate(task, ckpt)
    record.update({"method": method, "experts": experts, "leave_one_out": leave_one_out,
                   "train": info.get("train"), "seed": seed})
    atomic_write_json(cell, record)
    return record


# ---------------------------------------------------------------- multi-task mode

def _multitask(proto: Protocol, specs: dict, tasks: list[Task], seeds: list[int], experts: list[str],
               include_own: bool, from_scratch: Sequence[str]) -> list[dict[str, Any]]:
    chosen = [e for e in experts if include_own or e not in {t.name for t in tasks}]
    _check_multitask(proto, specs, tasks, chosen, include_own)
    proto.begin()
    seed_free: dict[str, list[dict[str, Any]]] = {}  # method -> records of a seed-free baseline, any seed
    records = []
    for seed in seeds:
        for method, spec in specs.items():
            uses = _uses_experts(method, spec, chosen, from_scratch)
            cell = _multitask_cell(proto, method, tasks, seed, chosen if uses else [], not include_own,
                                   seed_free.get(method))
            if method in SEED_FREE:
                seed_free[method] = cell
            records.extend(cell)
    return records


def _check_multitask(proto: Protocol, specs: dict, tasks: list[Task], chosen: list[str], include_own: bool) -> None:
    """Fail before anything trains: a cell that cannot run would otherwise stop the run hours in."""
    from loralab.library import Library, model_slug

    if chosen and proto.library is None:
        raise UserInputError("--experts needs --library (the folder the expert LoRAs come from)")
    for method, spec in specs.items():
        if method == "lora":
            if proto.library is None:
                raise UserInputError("in multi-task mode 'lora' evaluates each task's own library LoRA: "
                                     "pass --library")
            for task in tasks:
                Library(proto.library).get(model_slug(proto.model), task.name, verify=False)
        elif spec.library == "required" and not chosen:
            left_out = "" if include_own else " (the target tasks' own LoRAs are left out unless --include-own)"
            raise UserInputError(f"method {method!r} uses library LoRAs as experts: in multi-task mode pass "
                                 f"--library and --experts naming at least one LoRA{left_out}")


def _multitask_cell(proto: Protocol, method: str, tasks: list[Task], seed: int, experts: list[str],
                    leave_one_out: bool, reuse: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One model for all tasks (trained once), evaluated on each task; the cell is written when all are done."""
    name = f"{method}--multitask--seed{seed}"
    cell = proto.out / "cells" / f"{name}.json"
    if cell.is_file():
        return _check_cell_tasks(cell, _read_cell(cell), tasks)
    if reuse is not None:  # base / own LoRAs: the same weights for every seed, so the same scores
        records = [{**r, "seed": seed} for r in reuse]
    else:
        adapters, train, trained_on = _multitask_model(proto, method, tasks, seed, experts, name)
        records = []
        for task in tasks:
            record = proto.evaluate(task, adapters[task.name])
            record.update({"method": method, "experts": experts, "leave_one_out": leave_one_out, "train": train,
                           "seed": seed, "multitask": True, "train_tasks": trained_on[task.name]})
            records.append(record)
    atomic_write_json(cell, records)
    return records


def _multitask_model(proto: Protocol, method: str, tasks: list[Task], seed: int, experts: list[str],
                     name: str) -> tuple[dict[str, Path | None], dict[str, Any] | None, dict[str, list[str]]]:
    """Per task: the adapter evaluated (None: the base model) and the tasks its weights were trained on."""
    names = [t.name for t in tasks]
    if method == "base":
        return dict.fromkeys(names), None, {t: [] for t in names}
    if method == "lora":  # the library's own LoRAs, trained with the library's hyperparameters
        from loralab.library import Library, model_slug

        lib = Library(proto.library)
        return ({t: lib.get(model_slug(proto.model), t, verify=True).path for t in names}, None,
                {t: [t] for t in names})
    ckpt, info = proto.train(method, tasks, name, seed, experts or None, proto.library if experts else None)
    return dict.fromkeys(names, ckpt), info.get("train"), {t: names for t in names}


def _check_cell_tasks(cell: Path, records: list[dict[str, Any]], tasks: list[Task]) -> list[dict[str, Any]]:
    """A finished multi-task cell is reused only for the same task set: its model was trained on those."""
    done, asked = sorted(r["task"] for r in records), sorted(t.name for t in tasks)
    if done != asked:
        raise UserInputError(f"{cell} was run on tasks {','.join(done)}, not {','.join(asked)}: "
                             "use another --out (or remove the cell to rerun it)")
    return records
