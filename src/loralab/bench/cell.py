"""One job, start to finish: select experts, train the method, evaluate each cell, return the database rows.

A job is one cell, or in multi-task mode the cells of one model trained on all targets (`plan.jobs`).

A cell's numbers must be a function of its config alone, so that a re-run, a resumed run and a Ray
worker all produce the same row. Hence: every cell starts from a pristine copy of the base model (no
state leaks from the cell before, whatever a method does to the model it is given), training is
seeded by the cell's seed, the hyperparameters are rebuilt from the hashed protocol (what ran is what
the id says), and expert selection is deterministic (random selection is seeded by the cell's seed).

The job writes no result itself: it returns the rows (each with its per-example outcomes) and the driver
stores them (one writer, one transaction per job, so a multi-task model's rows and their outcomes are
there all together or not at all). It does
write its checkpoint (atomically, by `train_method`) and a cache of the selection ranking, which only
saves work: recomputing either gives the same bytes of result.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loralab.bench.plan import Cell, Job, job_label
from loralab.bench.store import now

if TYPE_CHECKING:
    from loralab.data import Task

logger = logging.getLogger(__name__)

TRAIN_KEYS = ("steps", "loss", "examples", "val_loss")  # train info that is a result; its seconds are timing
_PRISTINE: dict[str, Any] = {}  # per process: model -> LoadedModel on the CPU, never trained on or moved


@dataclass(frozen=True)
class RunContext:
    """Where a cell reads and writes, and how; nothing here may change a cell's numbers (it is not hashed)."""

    out: str
    library: str
    bench: str
    task_specs: Mapping[str, Any]  # task name -> what load_task takes, or the Task itself
    library_names: tuple[str, ...]
    library_hparams: Mapping[str, Any] = field(default_factory=dict)
    library_eval_limit: int = 0
    data_dir: str | None = None
    device: str | None = None
    eval_batch_size: int = 8
    keep_checkpoints: bool = False
    executor: str = "local"
    library_precision: str = "fp32"  # the resolved name the library is built in (cells carry theirs in the protocol)

    def task(self, name: str) -> Task:
        from loralab.data import Task, load_task

        spec = self.task_specs[name]
        return spec if isinstance(spec, Task) else load_task(spec, data_dir=self.data_dir)


def fresh_model(name: str, device: str | None):
    """A private copy of the base model on `device`: loaded once per process (on the CPU, so an accelerator
    holds one copy, not two), deep-copied per cell."""
    from loralab.models import LoadedModel, load_model
    from loralab.utils.env import default_device

    if name not in _PRISTINE:
        _PRISTINE[name] = load_model(name, device="cpu")
    base = _PRISTINE[name]
    model = copy.deepcopy(base.model).to(device or default_device())
    return LoadedModel(model=model, tokenizer=copy.deepcopy(base.tokenizer), name=base.name, source=base.source,
                       revision=base.revision)


def build_model_library(model: str, ctx: RunContext) -> list[str]:
    """Train the model's missing library LoRAs (idempotent: `build_library` skips finished adapters)."""
    from loralab.library import Library, build_library, model_slug
    from loralab.training.hparams import LoRAHparams
    from loralab.utils.config import from_mapping

    lib = Library(ctx.library)
    missing = [t for t in ctx.library_names if not lib.has(model_slug(model), t)]
    if not missing:
        return []
    logger.info("library %s: training %d LoRA(s) for %s: %s", ctx.library, len(missing), model, ", ".join(missing))
    tasks = [ctx.task(t) for t in ctx.library_names]
    hp = from_mapping(LoRAHparams, dict(ctx.library_hparams), where="library.hparams")
    build_library(fresh_model(model, ctx.device), tasks, ctx.library, hparams=hp, eval_limit=ctx.library_eval_limit,
                  data_dir=ctx.data_dir, device=ctx.device, progress=False, precision=ctx.library_precision)
    return missing


def run_job(job: Job, ctx: RunContext) -> list[dict[str, Any]]:
    """Run one job (one cell, or a multi-task model's cells) and return one database row per cell.

    The job's cells share everything but the target: select (single-task only), train once on
    `train_targets`, then evaluate that checkpoint on each cell's target.
    """
    from loralab.moe.registry import get_method
    from loralab.recipes.evaluate import run_eval
    from loralab.recipes.train import train_method
    from loralab.utils.env import git_hash, package_versions

    first = job[0]
    precision = cell_precision(first)
    started, t0 = now(), time.perf_counter()
    logger.info("job %s: %s", first.job_id, job_label(job))
    lm = fresh_model(first.model, ctx.device)
    if first.protocol["eval"].get("apply_chat_template"):  # refused before anything trains, not after
        from loralab.eval.chat import chat_template

        chat_template(lm.tokenizer, f"the tokenizer of model {first.model!r}")
    train_tasks = [ctx.task(t) for t in first.train_targets]
    selection = choose_experts(first, lm, train_tasks[0], ctx) if first.strategy is not None else None
    if selection is not None:
        experts = [s["task"] for s in selection["chosen"]]
        lm = fresh_model(first.model, ctx.device)  # train on a copy nothing was scored with, cached ranking or not
    else:
        experts = list(first.protocol.get("experts") or [])
    t1 = time.perf_counter()
    ckpt = Path(ctx.out) / "checkpoints" / first.job_id
    shutil.rmtree(ckpt, ignore_errors=True)  # a leftover of a killed run is never trusted
    # the own LoRA is copied only when the library is meant to hold it (else the cell is seeded and trains one)
    own_lora = get_method(first.method).uses_own_lora and first.target in ctx.library_names
    info = train_method(first.method, lm, train_tasks, ckpt, library=ctx.library if experts or own_lora else None,
                        experts=experts or None, config=dict(first.protocol.get("method_config") or {}),
                        hparams=cell_hparams(first), data_dir=ctx.data_dir, device=ctx.device, progress=False,
                        precision=precision)
    t2 = time.perf_counter()
    train = info.get("train") or {}
    shared = {"versions": package_versions(), "git_hash": git_hash(), "executor": ctx.executor,
              "host": socket.gethostname(), "train": {k: train[k] for k in TRAIN_KEYS if k in train} or None}
    loaded = {t.name: t for t in train_tasks}
    rows = []
    for cell in job:
        t_eval = time.perf_counter()
        ev = cell.protocol["eval"]
        target = loaded.get(cell.target) or ctx.task(cell.target)
        record = run_eval(lm, target, adapter=ckpt, split=ev["split"], limit=ev["limit"],
                          batch_size=ctx.eval_batch_size, device=ctx.device, progress=False, precision=precision,
                          log_outcomes=True, apply_chat_template=bool(ev.get("apply_chat_template", False)))
        seconds_eval = time.perf_counter() - t_eval
        # the shared selection and training time is split over the job's rows, so sums over rows stay true
        select, training = (t1 - t0) / len(job), (t2 - t1) / len(job)
        rows.append({
            "cell_id": cell.cell_id, "bench": ctx.bench, **cell.key, "config": cell.config,
            "primary_metric": record["primary_metric"], "score": float(record["metrics"][record["primary_metric"]]),
            "n": record["n"], "split": record["split"], "metrics": record["metrics"], "experts": experts,
            "selection": selection, "own_lora": _own_lora(cell, selection, experts, ctx), **shared,
            "seconds": round(select + training + seconds_eval, 3), "seconds_select": round(select, 3),
            "seconds_train": round(training, 3), "seconds_eval": round(seconds_eval, 3), "started_at": started,
            "finished_at": now(), "device": record.get("device"), "precision": record["precision"],
            "outcomes": record["outcomes"],  # per example: the store writes them with the row, in one transaction
        })
    if not ctx.keep_checkpoints:
        shutil.rmtree(ckpt, ignore_errors=True)
    return rows


def _own_lora(cell: Cell, selection: dict[str, Any] | None, experts: list[str], ctx: RunContext) -> str | None:
    """Whether the target's own LoRA was among the candidates: what the selection recorded, or for a fixed pool
    the same words (None for a method given no experts)."""
    if selection is not None:
        return selection["own_lora"]
    if "experts" not in cell.protocol:
        return None
    if cell.target in experts:
        return "included"
    return "excluded" if cell.target in ctx.library_names else "absent"


def cell_precision(cell: Cell) -> str:
    """The resolved precision the cell's id names (absent: fp32), passed on by name: what runs is what the id says."""
    return str(cell.protocol.get("precision", "fp32"))


def cell_hparams(cell: Cell):
    """The training hyperparameters rebuilt from the hashed protocol, with the cell's seed."""
    from loralab.training.hparams import LoRAHparams
    from loralab.utils.config import from_mapping

    train = dict(cell.protocol.get("train") or {})  # seed-free cells train nothing: defaults
    if cell.seed is not None:
        train["seed"] = cell.seed
    return from_mapping(LoRAHparams, train, where="train")


def choose_experts(cell: Cell, lm, target, ctx: RunContext) -> dict[str, Any]:
    """The top k of the strategy's full ranking of the pool (the target's own LoRA left out).

    The whole pool is ranked once per (model, target, strategy, options, seed for random) and cached:
    every method and k of that selection reuses it, and a top k of the full ranking is exactly what a
    selection of k would give (strategies score candidates independently; ties break by name).
    """
    ranking = _ranking(cell, lm, target, ctx)
    return {"strategy": cell.strategy, "k": cell.k, "score_name": ranking["score_name"],
            "own_lora": ranking["own_lora"], "chosen": ranking["ranked"][: cell.k]}


def _ranking(cell: Cell, lm, target, ctx: RunContext) -> dict[str, Any]:
    from loralab.selection import get_selector
    from loralab.utils.io import atomic_write_json, read_json

    options = {k: v for k, v in cell.protocol["selection"].items() if k != "strategy"}
    if get_selector(cell.strategy).seeded:  # its draw is the cell's: one ranking per seed
        options["seed"] = cell.seed
    key = {"model": cell.model, "target": cell.target, "strategy": cell.strategy, "options": options,
           "library": cell.protocol["library"]}
    if cell_precision(cell) != "fp32":  # (fp32 rankings keep the cache key they had before precisions)
        key["precision"] = cell_precision(cell)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    cache = Path(ctx.out) / "selections" / f"{digest}.json"
    if cache.is_file():
        return read_json(cache, what="selection cache")
    ranking = {**key, **_rank_pool(cell, lm, target, ctx, options)}
    atomic_write_json(cache, ranking)
    return ranking


def _rank_pool(cell: Cell, lm, target, ctx: RunContext, options: dict[str, Any]) -> dict[str, Any]:
    """Rank every library LoRA of the model but the target's own, then keep those of the bench's pool."""
    from loralab.library import Library, model_slug
    from loralab.selection import select_experts

    entries = [e for e in Library(ctx.library).entries(model_slug(lm.name)) if e.task != target.name]
    # an existing library's tasks may be unlisted: the strategies load those by name themselves
    library_tasks = {t: ctx.task(t) for t in ctx.library_names if t in ctx.task_specs}
    chosen = select_experts(cell.strategy, lm, ctx.library, target, len(entries), exclude_own=True,
                            data_dir=ctx.data_dir, device=ctx.device, library_tasks=library_tasks, progress=False,
                            precision=cell_precision(cell), **options)
    pool = set(ctx.library_names)
    ranked = [{"task": s.task, "score": s.score, "domain": s.domain} for s in chosen if s.task in pool]
    for rank, item in enumerate(ranked, start=1):
        item["rank"] = rank
    return {"score_name": chosen[0].score_name, "own_lora": chosen[0].own_lora, "ranked": ranked}
