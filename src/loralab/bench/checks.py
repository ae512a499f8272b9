"""Config validation: every mistake a config can hold is found here, before a model loads or a file is written.

A benchmark grid runs for hours; a typo in the last method name, a k larger than the expert pool or
an empty test split must fail in the first second with one line that says what to fix.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loralab.bench.grid import Bench, uses_selection
from loralab.errors import ConfigError, UnknownNameError
from loralab.utils.config import check, read_yaml_mapping

logger = logging.getLogger(__name__)


def check_bench(bench: Bench, where: str, base_dir: Path) -> Bench:
    """Check names, sizes and options; load every task once (names, splits); return the bench with names filled.

    Types, nulls, unknown keys and ranges were checked by the schema (`BenchConfig`); what is left needs
    the registries or the data: method, strategy and model names, per-method and per-strategy options,
    task files, and k against the expert pool.
    """
    from loralab.moe.registry import get_method

    cfg = bench.config
    for key in ("models", "methods", "targets", "seeds", "strategies", "k"):
        _unique(where, key, getattr(cfg, key))
    for model in cfg.models:
        _check_model(model)
    specs = {m: get_method(m) for m in cfg.methods}  # unknown names: "did you mean"
    for m in cfg.from_scratch:
        if m not in specs or specs[m].library != "optional":
            raise ConfigError(f"{where}: from_scratch lists {m!r}, which is not a method of this grid that may "
                              "start from library LoRAs (registry library 'optional')")
    selecting = [m for m, s in specs.items() if uses_selection(m, s.library, cfg.from_scratch)]
    selection, relevance_at = _check_strategies(bench, where, selecting, base_dir)
    bench = dataclasses.replace(bench, config=dataclasses.replace(cfg, selection=selection))
    _check_method_config(cfg.method_config, specs, where)
    _check_device(cfg.device, where)
    if not bench.library.tasks and selecting:
        raise ConfigError(f"{where}: methods {', '.join(selecting)} take library experts: list library.tasks")
    return _check_tasks(bench, where, selecting, relevance_at)


def _unique(where: str, key: str, values: Sequence[Any]) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ConfigError(f"{where}: {key} lists {seen[0]!r} twice")


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
        if strategy == "random" and "seed" in opts:
            raise ConfigError(f"{where}: selection.random.seed: random selection uses each cell's seed (seeds)")
        if isinstance(opts.get("relevance"), str):  # hash the relevance map itself, not where the file lies
            path = base_dir / opts["relevance"]
            options[strategy] = {**opts, "relevance": read_yaml_mapping(path)}
            relevance_at = (str(path), ())
        try:
            make_selector(strategy, **options[strategy])
        except ConfigError as exc:  # the strategy's own range checks
            raise ConfigError(f"{where}: selection.{strategy}: {exc}") from None
    return options or None, relevance_at


def _check_method_config(method_config: Mapping[str, Any] | None, specs: Mapping[str, Any], where: str) -> None:
    for method, overrides in (method_config or {}).items():
        if method not in specs:
            raise ConfigError(f"{where}: method_config has an entry for {method!r}, which is not in methods")
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


def _check_tasks(bench: Bench, where: str, selecting: list[str], relevance_at: tuple[str, tuple[str, ...]]) -> Bench:
    """Load targets and library tasks (names, splits); k must fit the pool left once a target's own LoRA is out."""
    from loralab.data import load_task
    from loralab.library.store import check_name

    specs: dict[str, str] = {}
    names = {}
    for spec in dict.fromkeys([*bench.targets, *bench.library.tasks]):
        task = load_task(spec, data_dir=bench.data_dir)
        check_name("task", task.name)
        if task.name in specs and specs[task.name] != spec:
            raise ConfigError(f"{where}: two tasks are named {task.name!r} ({specs[task.name]}, {spec})")
        specs[task.name], names[spec] = spec, task.name
        task.split("train")
        if spec in bench.targets:
            task.split(bench.evaluation.split, bench.evaluation.limit)
    targets = tuple(names[s] for s in bench.targets)
    library = tuple(names[s] for s in bench.library.tasks)
    _unique(where, "targets", targets)
    _unique(where, "library.tasks", library)
    for target in targets if selecting else ():
        pool = [t for t in library if t != target]
        if bench.config.k and max(bench.config.k) > len(pool):
            raise ConfigError(f"{where}: k={max(bench.config.k)} but target {target!r} has only {len(pool)} library "
                              "LoRAs to choose from (its own is left out); add library tasks or lower k")
    _check_relevance(bench, relevance_at, targets, library)
    return dataclasses.replace(bench, target_names=targets, library_names=library, task_specs=specs)


def _check_relevance(bench: Bench, relevance_at: tuple[str, tuple[str, ...]], targets: tuple[str, ...],
                     library: tuple[str, ...]) -> None:
    """A relevance map must name known tasks and have an entry per target: check it now, not in cell 37."""
    from loralab.selection.strategies.manual import parse_relevance

    relevance = ((bench.config.selection or {}).get("manual") or {}).get("relevance")
    if relevance is None or "manual" not in bench.config.strategies:
        return
    where, at = relevance_at
    for target in targets:
        parse_relevance(relevance, target, set(library), where, at=at)
