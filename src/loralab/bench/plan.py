"""The plan: a checked grid expanded into cells (one database row each) and jobs (what trains once).

A cell is one (model, method, strategy, k, target, seed) and one row of the database. What a method
gets is read from its `MethodSpec`, never from its name: methods that take library experts
(`takes_experts`) get one cell per strategy and k, or one with the fixed `experts` pool; the others one
per (model, target, seed); a method whose result cannot depend on a seed (`seed_free`: it trains
nothing, or copies the target's own library LoRA) one seed-free cell per (model, target). A method that
uses no seed (`uses_seed` false: a linear or TIES merge) on experts chosen by a strategy that draws
nothing gets one seed-free cell per strategy and k (a merge of the `ppl` LoRAs), while a merge of `random`
ones has one per seed.

A job is what runs at once: one cell, or in multi-task mode every target's cell of one (model, method,
seed), whose model is trained once on all targets and evaluated on each. A cell's id hashes everything
that can change its numbers, so a changed protocol never reuses a stale result and an unchanged one is
never recomputed; a multi-task cell's protocol names the tasks its model is trained on (in order: they
are its task ids), so another target set is another cell; a cell that runs in another precision than fp32
names it (`precision`), so fp32 and bf16 cells never share an id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loralab.bench.grid import Bench, plain
from loralab.training.hparams import LoRAHparams

if TYPE_CHECKING:
    from loralab.moe.registry import MethodSpec

Job = tuple["Cell", ...]


@dataclass(frozen=True)
class Cell:
    """One row. `strategy`/`k` are None for methods without selection, `seed` for seed-free ones."""

    model: str
    method: str
    target: str
    strategy: str | None
    k: int | None
    seed: int | None
    protocol: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def key(self) -> dict[str, Any]:
        return {"model": self.model, "method": self.method, "strategy": self.strategy, "k": self.k,
                "target": self.target, "seed": self.seed}

    @property
    def config(self) -> dict[str, Any]:
        """Everything this cell's numbers depend on: its grid position plus the shared protocol."""
        return {**self.key, "protocol": dict(self.protocol)}

    @property
    def cell_id(self) -> str:
        return _digest(self.config)

    @property
    def train_targets(self) -> tuple[str, ...]:
        """The tasks its model is trained on: all targets in multi-task mode, else its own."""
        return tuple(self.protocol.get("train_tasks") or (self.target,))

    @property
    def job_id(self) -> str:
        return job_id(self.config)

    @property
    def label(self) -> str:
        sel = f" [{self.strategy}, k={self.k}]" if self.strategy is not None else ""
        joint = " (trained on all targets)" if self.protocol.get("train_tasks") else ""
        seed = "" if self.seed is None else f", seed {self.seed}"
        return f"{self.method}{sel} on {self.target}{joint} ({self.model}{seed})"


def job_id(config: Mapping[str, Any]) -> str:
    """Which checkpoint a cell's numbers come from: its own, or the multi-task model its job trains once.

    (Also the checkpoint's folder name under OUT/checkpoints.)
    """
    if not config["protocol"].get("train_tasks"):
        return _digest(config)
    return _digest({k: v for k, v in config.items() if k != "target"})


def jobs(cells: Sequence[Cell]) -> list[Job]:
    """The cells grouped by job, in plan order (a job where its first cell is)."""
    grouped: dict[str, list[Cell]] = {}
    for cell in cells:
        grouped.setdefault(cell.job_id, []).append(cell)
    return [tuple(group) for group in grouped.values()]


def job_label(job: Job) -> str:
    more = f" and {len(job) - 1} more target(s)" if len(job) > 1 else ""
    return job[0].label + more


def expand(bench: Bench) -> list[Cell]:
    """Every cell, seed by seed (the first seed gives a complete table first); seed-free cells once, first.

    Single-task mode goes target by target, multi-task mode method by method (a job's cells together).
    """
    from loralab.moe.registry import get_method

    cfg = bench.config
    specs = {m: get_method(m) for m in cfg.methods}
    cells: list[Cell] = []
    for i, seed in enumerate(cfg.seeds):
        for model in cfg.models:
            pairs = ([(t, m) for m in cfg.methods for t in bench.target_names] if cfg.multitask
                     else [(t, m) for t in bench.target_names for m in cfg.methods])
            for target, method in pairs:
                cells += _cells(bench, specs[method], model, target, seed, first_seed=i == 0)
    return cells


def _cells(bench: Bench, spec: MethodSpec, model: str, target: str, seed: int, first_seed: bool) -> list[Cell]:
    from loralab.selection import get_selector

    cfg = bench.config
    takes = spec.takes_experts(from_scratch=spec.name in cfg.from_scratch)
    if takes and cfg.experts is None:  # chosen per target by each strategy
        out = []
        for s in cfg.strategies:
            if spec.uses_seed or get_selector(s).seeded:
                out += [Cell(model, spec.name, target, s, k, seed, protocol(bench, model, spec.name, strategy=s))
                        for k in cfg.k]
            elif first_seed:  # a deterministic choice and a method that draws nothing: no seed changes it
                out += [Cell(model, spec.name, target, s, k, None, protocol(bench, model, spec.name, strategy=s))
                        for k in cfg.k]
        return out
    if spec.seed_free(target_in_library=target in bench.library_names):
        return [Cell(model, spec.name, target, None, None, None, _seed_free_protocol(bench, model, spec))] \
            if first_seed else []
    experts = pool_experts(bench, target) if takes else None
    return [Cell(model, spec.name, target, None, None, seed,
                 protocol(bench, model, spec.name, experts=experts, joint=cfg.multitask))]


def pool_experts(bench: Bench, target: str) -> list[str]:
    """The fixed pool for `target`: without its own LoRA (in multi-task mode, without every target's, since
    one model serves them all) unless `include_own`."""
    cfg = bench.config
    own = set(bench.target_names) if cfg.multitask else {target}
    return [e for e in cfg.experts or () if cfg.include_own or e not in own]


def protocol(bench: Bench, model: str, method: str, *, strategy: str | None = None,
             experts: Sequence[str] | None = None, joint: bool = False) -> dict[str, Any]:
    """What a cell shares with its row of the grid and what changes its numbers (not paths, devices, batch sizes).

    The keys of the original grid (train, method_config, library, eval, selection) are written as they
    always were, so a database of an earlier run keeps its cell ids; `experts` and `train_tasks` appear
    only where a fixed pool or multi-task training is used, `precision` (the resolved name) only where it is
    not fp32 (what every run before precisions were recorded used). The validation settings change no weight
    but do change a row (its `train.val_loss`), so `train` keeps them; they are in it only when `val_every` is
    set (`LoRAHparams.to_dict`), so cells without validation keep their ids. The library's hyperparameters
    leave them out: a library LoRA is the same with or without its validation loss.
    """
    ignored = {"seed", *(LoRAHparams.LOGGING_FIELDS - LoRAHparams.VALIDATION_FIELDS)}
    if bench.library.build:
        lib_hp = {k: v for k, v in bench.library_hparams.to_dict().items() if k not in LoRAHparams.LOGGING_FIELDS}
        library: dict[str, Any] = {"tasks": sorted(bench.library_names), "hparams": lib_hp}
    else:  # an existing library: its LoRAs are what they are, so their files' hashes stand for them
        library = {"tasks": sorted(bench.library_names), "adapters": dict(bench.library_digests.get(model, {}))}
    out: dict[str, Any] = {
        "train": {k: v for k, v in bench.hparams_for(method).to_dict().items() if k not in ignored},
        "method_config": plain((bench.config.method_config or {}).get(method) or {}),
        "library": library,
        "eval": {"split": bench.evaluation.split, "limit": bench.evaluation.limit,
                 **({"apply_chat_template": True} if bench.evaluation.apply_chat_template else {})},
    }
    if strategy is not None:
        out["selection"] = {"strategy": strategy, **plain((bench.config.selection or {}).get(strategy) or {})}
    if experts is not None:
        out["experts"] = list(experts)
    if joint:
        out["train_tasks"] = list(bench.target_names)
    if bench.precision_name != "fp32":
        out["precision"] = bench.precision_name
    return out


def _seed_free_protocol(bench: Bench, model: str, spec: MethodSpec) -> dict[str, Any]:
    """What trains nothing depends on the evaluation only, the own library LoRA also on the library: not on `train`."""
    out = protocol(bench, model, spec.name)
    drop = ("train", "method_config") if spec.trains else ("train", "method_config", "library")
    return {k: v for k, v in out.items() if k not in drop}


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
