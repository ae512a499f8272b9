"""Config validation: every mistake a config can hold is found here, before a model loads or a file is written.

A benchmark grid runs for hours; a typo in the last method name, a k larger than the expert pool or
an empty test split must fail in the first second with one line that says what to fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loralab.bench.claimspec import check_claims
from loralab.bench.grid import Bench
from loralab.bench.plan import pool_experts
from loralab.errors import ConfigError, UnknownNameError, UserInputError
from loralab.utils.config import check, read_yaml_mapping

if TYPE_CHECKING:
    from loralab.data import Task
    from loralab.training.hparams import LoRAHparams

logger = logging.getLogger(__name__)


def check_bench(bench: Bench, where: str, base_dir: Path, given: Mapping[str, Task] | None = None) -> Bench:
    """Check names, sizes and options; load every task once (names, splits); return the bench with names filled.

    Types, nulls, unknown keys and ranges were checked by the schema (`BenchConfig`); what is left needs
    the registries or the data: method, strategy and model names, per-method and per-strategy options,
    task files (`given`: task objects by spec, used instead of loading), where the experts come from, and
    k against the expert pool.
    """
    from loralab.moe.registry import get_method

    cfg = bench.config
    for key in ("models", "methods", "targets", "seeds", "strategies", "k", "experts"):
        _unique(where, key, getattr(cfg, key) or ())
    for model in cfg.models:
        _check_model(model)
    specs = {m: get_method(m) for m in cfg.methods}  # unknown names: "did you mean"
    for m in cfg.from_scratch:
        if m not in specs or specs[m].library != "optional":
            raise ConfigError(f"{where}: from_scratch lists {m!r}, which is not a method of this grid that may "
                              "start from library LoRAs (registry library 'optional')")
    taking = [m for m, s in specs.items() if s.takes_experts(from_scratch=m in cfg.from_scratch)]
    selecting = taking if cfg.experts is None else []  # experts chosen per target by the strategies
    _check_sources(bench, where, selecting)
    selection, relevance_at = _check_strategies(bench, where, selecting, base_dir)
    bench = dataclasses.replace(bench, config=dataclasses.replace(cfg, selection=selection))
    _check_method_config(cfg.method_config, specs, where)
    _check_method_names("method_train", cfg.method_train, specs, where)
    _check_device(cfg.device, where)
    bench = _resolve_precision(bench, where)
    if not bench.library.tasks and bench.library.build and selecting:
        raise ConfigError(f"{where}: methods {', '.join(selecting)} take library experts: list library.tasks")
    bench = _check_tasks(bench, where, given or {})
    requiring = [m for m in taking if specs[m].library == "required"]
    _check_pool_left(bench, where, requiring)
    if not bench.library.build:
        bench = _existing_library(bench, where)
    resolved = _resolve_experts(bench, where)
    if resolved.config.experts != bench.config.experts:  # given by path: the pool's names are known only now
        _check_pool_left(resolved, where, requiring)
    bench = resolved
    _check_library_names(bench, where, selecting, specs)
    _check_relevance(bench, relevance_at)
    check_claims(bench, where)
    return bench


def _unique(where: str, key: str, values: Sequence[Any]) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ConfigError(f"{where}: {key} lists {seen[0]!r} twice (values must be distinct)")


def _check_sources(bench: Bench, where: str, selecting: list[str]) -> None:
    """Experts come from strategies or from a fixed pool; one model for all targets cannot take per-target ones."""
    cfg, say = bench.config, bench.option_names
    if cfg.experts is not None and cfg.strategies:
        raise ConfigError(f"{where}: strategies and {say['experts']} both say where experts come from: give "
                          "strategies (chosen per target) or a fixed pool, not both")
    if cfg.include_own and cfg.experts is None:
        raise ConfigError(f"{where}: {say['include_own']} keeps the target's own LoRA in a fixed pool: give "
                          f"{say['experts']} (selection strategies always leave it out)")
    if cfg.multitask and selecting:
        raise ConfigError(f"{where}: multitask: methods {', '.join(selecting)} would get experts chosen per target, "
                          f"but one model serves all targets: give {say['experts']} (a fixed pool) or list them in "
                          "from_scratch")


def _check_pool_left(bench: Bench, where: str, requiring: list[str]) -> None:
    """A method that needs library experts must have some left once the own LoRA(s) are out of the pool."""
    cfg, say = bench.config, bench.option_names
    if cfg.experts is None:
        return
    for method in requiring:
        if any(not pool_experts(bench, t) for t in bench.target_names):
            mode = "in multi-task mode " if cfg.multitask else ""
            own = "target tasks' own LoRAs are" if cfg.multitask else "target's own LoRA is"
            left_out = "" if cfg.include_own else f" (the {own} left out unless {say['include_own']})"
            raise ConfigError(f"{where}: method {method!r} uses library LoRAs as experts: {mode}pass "
                              f"{say['library']} and {say['experts']} naming at least one LoRA{left_out}")


def _existing_library(bench: Bench, where: str) -> Bench:
    """`library.build: false`: the library must exist and hold the listed LoRAs (default: all it holds) for every
    model; the digests of their files' hashes identify them in the cells' protocol."""
    from loralab.library import Library, model_slug

    say = bench.option_names
    if bench.library.path is None:
        raise ConfigError(f"{where}: library.build: false uses an existing library: set {say['library']}")
    if not Path(bench.library.path).is_dir():
        raise ConfigError(f"{where}: {say['library']} {bench.library.path!r} is not a LoRA library folder "
                          "(an existing one is used as it is; nothing is built into it)")
    lib = Library(bench.library.path)
    held = {model: {e.task: e for e in lib.entries(model_slug(model))} for model in bench.config.models}
    names = bench.library_names or tuple(sorted(set.intersection(*(set(h) for h in held.values()))))
    for model, entries in held.items():
        missing = [t for t in names if t not in entries]
        if missing:
            raise ConfigError(f"{where}: library {bench.library.path} has no LoRA of {model} for "
                              f"{', '.join(missing)}; it has: {', '.join(sorted(entries)) or 'none'}")
    digests = {model: {t: _files_digest(held[model][t].files) for t in names} for model in held}
    return dataclasses.replace(bench, library_names=names, library_digests=digests)


def _resolve_experts(bench: Bench, where: str) -> Bench:
    """The fixed pool by name: an expert given as a library LoRA folder or the task file it was built from is
    that LoRA's task name (`loralab.library.names`), so a path and a name make the same cells."""
    from loralab.library.build import data_hash
    from loralab.library.names import KnownTask, resolve_task_names
    from loralab.library.store import Library, model_slug

    cfg = bench.config
    if not cfg.experts or not bench.library_names or all(e in bench.library_names for e in cfg.experts):
        return bench  # names (the usual case), or no library: `_check_library_names` says what is wrong
    if bench.library.build:  # the grid's own library: its tasks, as the build will train them
        limit = bench.library_hparams.max_train_examples
        known = [KnownTask(name, data_hash(_library_task(bench, name).split("train")[:limit]), limit)
                 for name in bench.library_names]
        holder = "the grid's library tasks"
    else:
        lib = Library(str(bench.library.path))
        known = [KnownTask.from_entry(e) for model in cfg.models for e in lib.entries(model_slug(model))
                 if e.task in bench.library_names]
        holder = f"library {bench.library.path}"
    try:
        experts = resolve_task_names(cfg.experts, known, where=holder, option=bench.option_names["experts"],
                                     data_dir=bench.data_dir)
    except UserInputError as exc:  # a path that matches nothing or several, a task file that cannot be read
        raise ConfigError(f"{where}: {exc}") from None
    _unique(where, bench.option_names["experts"], experts)
    return dataclasses.replace(bench, config=dataclasses.replace(cfg, experts=tuple(experts)))


def _library_task(bench: Bench, name: str) -> Task:
    from loralab.data import Task, load_task

    spec = bench.task_specs[name]
    return spec if isinstance(spec, Task) else load_task(spec, data_dir=bench.data_dir)


def _files_digest(files: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(files), sort_keys=True).encode()).hexdigest()[:20]


def _check_library_names(bench: Bench, where: str, selecting: list[str], specs: Mapping[str, Any]) -> None:
    """The pool names library LoRAs; k fits what a strategy may choose from; multi-task `lora` needs the own LoRAs."""
    cfg, say = bench.config, bench.option_names
    library = bench.library_names
    for expert in cfg.experts or ():
        if expert not in library:
            if not library:
                raise ConfigError(f"{where}: {say['experts']} names library LoRAs ({expert!r}), but there is no "
                                  f"library to take them from: pass {say['library']}")
            raise ConfigError(f"{where}: {say['experts']}: {UnknownNameError('library LoRA', expert, library)}")
    for target in bench.target_names if selecting else ():
        pool = [t for t in library if t != target]
        if cfg.k and max(cfg.k) > len(pool):
            raise ConfigError(f"{where}: k={max(cfg.k)} but target {target!r} has only {len(pool)} library "
                              "LoRAs to choose from (its own is left out); add library tasks or lower k")
    if cfg.multitask:
        for method, spec in specs.items():
            missing = [t for t in bench.target_names if t not in library]
            if spec.uses_own_lora and missing:
                where_from = (f"pass {say['library']}" if not library
                              else f"{say['library_tasks']} has none for {', '.join(missing)}")
                raise ConfigError(f"{where}: in multi-task mode {method!r} evaluates each task's own library "
                                  f"LoRA: {where_from}")


def _check_model(model: str) -> None:
    """An alias, an existing model directory or a hub id (`org/name`); anything else fails with a did-you-mean."""
    from loralab.models import model_aliases

    try:
        is_dir = Path(model).expanduser().is_dir()
    except (OSError, RuntimeError):  # a name too long for the file system; '~user' of no such user
        is_dir = False
    if model in model_aliases() or is_dir or ("/" in model and not model.startswith(".")):
        return
    raise UnknownNameError("model", model, model_aliases())


def _check_strategies(bench: Bench, where: str, selecting: list[str],
                      base_dir: Path) -> tuple[dict[str, Any] | None, tuple[str, tuple[str, ...]]]:
    """Strategy names and options; a relevance file is read here, so its content (not its path) is hashed.

    Returns the options and where the manual relevance map is written (its file, or the config's section).
    """
    from loralab.selection import get_selector, make_selector

    cfg = bench.config
    if selecting and not cfg.strategies:
        raise ConfigError(f"{where}: methods {', '.join(selecting)} take library experts: list strategies "
                          "(random, ppl, manual, embedding)")
    if cfg.strategies and not selecting:
        logger.warning("%s: no method of the grid takes library experts; strategies are ignored", where)
    for strategy in cfg.strategies:
        make_selector(strategy)  # unknown names: "did you mean"
    options = dict(cfg.selection or {})
    relevance_at: tuple[str, tuple[str, ...]] = (where, ("selection", "manual", "relevance"))
    for strategy, opts in options.items():
        if strategy not in cfg.strategies:
            raise ConfigError(f"{where}: selection has options for {strategy!r}, which is not in strategies "
                              f"({', '.join(cfg.strategies) or 'none'})")
        check(get_selector(strategy).config_cls, opts, where, at=("selection", strategy))
        if get_selector(strategy).seeded and "seed" in opts:
            raise ConfigError(f"{where}: selection.{strategy}.seed: {strategy} selection uses each cell's seed "
                              "(seeds)")
        if isinstance(opts.get("relevance"), str):  # hash the relevance map itself, not where the file lies
            path = base_dir / opts["relevance"]
            options[strategy] = {**opts, "relevance": read_yaml_mapping(path)}
            relevance_at = (str(path), ())
        try:
            make_selector(strategy, **options[strategy])
        except ConfigError as exc:  # the strategy's own range checks
            raise ConfigError(f"{where}: selection.{strategy}: {exc}") from None
    return options or None, relevance_at


def _check_method_names(key: str, section: Mapping[str, Any] | None, specs: Mapping[str, Any], where: str) -> None:
    for method in section or {}:
        if method not in specs:
            raise ConfigError(f"{where}: {key} has an entry for {method!r}, which is not in methods")


def _check_method_config(method_config: Mapping[str, Any] | None, specs: Mapping[str, Any], where: str) -> None:
    _check_method_names("method_config", method_config, specs, where)
    for method, overrides in (method_config or {}).items():
        specs[method].config_cls.from_dict(overrides, where=where, at=("method_config", method))


def _check_device(device: str | None, where: str) -> None:
    if device is None:
        return
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{where}: device: not a torch device (got {device!r:.60}; allowed: cpu, cuda, cuda:N "
                          "or mps)") from None


def _resolve_precision(bench: Bench, where: str) -> Bench:
    """The cells' and the library build's precision, resolved once here (the cell ids hold the name)."""
    from loralab.training.hparams import training_precision
    from loralab.utils.env import default_device

    device = bench.config.device or default_device()
    try:
        cells = training_precision(bench.config.precision, bench.hparams, device)
        library = training_precision(bench.config.precision, bench.library_hparams, device) \
            if bench.library.build else None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return dataclasses.replace(bench, precision=cells, library_precision=library)


def _check_tasks(bench: Bench, where: str, given: Mapping[str, Task]) -> Bench:
    """Load targets and library tasks (names, splits); the targets' chance levels on the evaluated examples."""
    from loralab.data import load_task
    from loralab.eval.metrics import MC_METRICS, chance_accuracy
    from loralab.library.store import check_name

    specs: dict[str, Any] = {}
    names = {}
    chance: dict[str, float | None] = {}
    for spec in dict.fromkeys([*bench.targets, *bench.library.tasks]):
        task = given[spec] if spec in given else load_task(spec, data_dir=bench.data_dir)
        check_name("task", task.name)
        if task.name in specs and specs[task.name] != spec:
            raise ConfigError(f"{where}: two tasks are named {task.name!r} ({specs[task.name]}, {spec})")
        specs[task.name], names[spec] = (task if spec in given else spec), task.name
        task.split("train")
        if spec in bench.targets:
            scored = task.split(bench.evaluation.split, bench.evaluation.limit)
            chance[task.name] = chance_accuracy(scored) if task.metric in MC_METRICS else None
            _check_validation(task, bench.hparams, f"{where}: train.")
        if spec in bench.library.tasks and bench.library.build:
            _check_validation(task, bench.library_hparams, f"{where}: library.hparams.")
    targets = tuple(names[s] for s in bench.targets)
    library = tuple(names[s] for s in bench.library.tasks)
    _unique(where, "targets", targets)
    _unique(where, "library.tasks", library)
    return dataclasses.replace(bench, target_names=targets, library_names=library, task_specs=specs, chance=chance)


def _check_validation(task: Task, hp: LoRAHparams, at: str) -> None:
    """With `val_every`, every task trained on needs a validation split: refuse now, not in the cell that trains."""
    from loralab.training.features import validation_examples

    if hp.val_every is None:
        return
    try:
        validation_examples(task, hp)
    except ConfigError as exc:
        raise ConfigError(f"{at}{exc}") from None


def _check_relevance(bench: Bench, relevance_at: tuple[str, tuple[str, ...]]) -> None:
    """A relevance map must name known tasks and have an entry per target: check it now, not in cell 37."""
    from loralab.selection.strategies.manual import parse_relevance

    relevance = ((bench.config.selection or {}).get("manual") or {}).get("relevance")
    if relevance is None or "manual" not in bench.config.strategies:
        return
    where, at = relevance_at
    for target in bench.target_names:
        parse_relevance(relevance, target, set(bench.library_names), where, at=at)
