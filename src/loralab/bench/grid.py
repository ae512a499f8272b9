"""The benchmark config (YAML): its schema, and its resolution into a checked `Bench` (expansion: `plan`).

    name: quickstart
    models: [smollm2-135m]
    library: {tasks: [...], hparams: {max_steps: 40}}      # built once per model if missing
    targets: [social_iqa, strategyqa]
    methods: [base, lora, more, loramoe, xlora, rocket]
    strategies: [random, ppl, manual, embedding]
    k: [2]
    seeds: [0, 1]
    train: {max_steps: 10}                                  # LoRAHparams fields for every method
    eval: {split: test, limit: 50}
    precision: auto                                         # auto | fp32 | bf16 | fp16 (every forward)
    claims:                                                 # pre-registered claims (default: a small family)
      - {id: loramoe-vs-base, text: "LoRAMoE improves on the base model", source: "LoRALib (arXiv 2509.18137)",
         a: {method: loramoe}, b: {method: base}, direction: 1}

`claims` are the comparisons the report tests (`loralab.bench.claims`): each names two sides by cell
fields (`a`, `b`: model, method, strategy, k; a value or a list), the claimed sign of a - b, optionally
the targets it covers and its family (`headline`, tested together with Holm's correction, or
`secondary`). They do not change any cell (ids hash the protocol, not the claims).

Every name is checked (with "did you mean") before anything runs (`loralab.bench.checks`), so a typo
costs a second, not a half-finished grid.

Where experts come from: each selection strategy (and k) chooses them per target from the library, or
`experts: [t1, t2, ...]` fixes the pool (no strategies), leaving the target's own LoRA out unless
`include_own: true`. `library: {path: DIR, build: false}` uses an existing library as it is (nothing is
trained into it; cells hash its LoRAs' file hashes instead of the hyperparameters they were built with).
`multitask: true` trains, per (model, method, seed), one model on all `targets` jointly and evaluates it
on each target (one database row per target); methods that train nothing or use the target's own LoRA
are evaluated per target as in single-task mode.
`precision` is resolved once, when the grid is checked, on `device` (default: this machine's best): "auto"
is bf16 where that device multiplies bf16 natively, else fp32 (or the `train` hyperparameters' explicit
`mixed_precision`). Every cell runs (selects, trains, evaluates) in that resolved precision, its id
includes it, and its row records it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import StringConstraints

from loralab.bench.claimspec import ClaimSpec
from loralab.configs import SHIPPED as SHIPPED_CONFIGS
from loralab.configs import config_path
from loralab.errors import ConfigError, UnknownNameError
from loralab.training.hparams import LoRAHparams
from loralab.utils.config import (OVERRIDES_WHERE, Describe, Override, apply_overrides, as_overrides, check,
                                  from_mapping, read_yaml_mapping)
from loralab.utils.precision import Precision

if TYPE_CHECKING:
    from loralab.data import Task

SHIPPED = tuple(name for name, kind in SHIPPED_CONFIGS.items() if kind == "bench")  # grids in `loralab.configs`
LIST_KEYS = ("models", "methods", "targets", "strategies", "k", "seeds", "from_scratch", "experts")

# `name` names the default output folder (./bench-NAME) and the report: one path component that cannot
# climb out of the working folder (no '/', no '..', no leading dot).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"
BenchName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=100),
                      Describe("letters, digits, '_', '-' and single dots inside, at most 100 characters "
                               "(it names the folder bench-NAME)")]
Names = Annotated[tuple[str, ...], MinLen(1)]
Seeds = tuple[Annotated[int, Ge(0), Le(2**32 - 1)], ...]
Options = dict[str, Any]
# how messages name what to change: the YAML keys here, a front-end's flags in its own mapping
CONFIG_NAMES = {"library": "library.path", "library_tasks": "library.tasks", "experts": "experts",
                "include_own": "include_own: true"}  # one strategy's / method's options: checked against its own config class later


@dataclass(frozen=True)
class LibrarySpec:
    """The expert pool: one LoRA per task (default: the targets), built with `hparams` when missing.

    `path` defaults to OUT/library; `eval_limit` 0 skips the library's own base-vs-adapter evaluation.
    `build: false` uses the library at `path` as it is: `tasks` (default: every LoRA it holds for each
    model) must be in it already, and `hparams` does not apply.
    """

    tasks: tuple[str, ...] = ()
    path: str | None = None
    build: bool = True
    hparams: dict | str | None = field(default=None, metadata={"schema": LoRAHparams | str | None})
    eval_limit: Annotated[int, Ge(0)] = 0


@dataclass(frozen=True)
class EvalSpec:
    """The evaluation protocol of every cell. `apply_chat_template` (off by default; lm-eval's flag): each prompt
    is a user turn in the model's chat template (`loralab.eval.chat`), for instruct models; a cell's id holds it
    only when on, so the cells of earlier grids keep their ids."""

    split: Literal["train", "validation", "test"] = "test"
    limit: Annotated[int, Ge(1)] | None = 200
    batch_size: Annotated[int, Ge(1)] = 8
    apply_chat_template: bool = False


@dataclass(frozen=True)
class Resources:
    """Per-cell resources for the Ray executor (the local executor runs one cell at a time)."""

    cpus: Annotated[float, Gt(0)] = 1.0
    gpus: Annotated[float, Ge(0)] = 0.0


@dataclass(frozen=True)
class BenchConfig:
    """The YAML keys. `library`, `train`, `eval`, `resources` stay mappings here (as written, for the database)
    but are checked as `LibrarySpec`, `LoRAHparams` (or a YAML path), `EvalSpec`, `Resources` (`metadata["schema"]`);
    `selection` maps a strategy to its options, `method_config` a method to its config overrides (both checked
    against the strategy's / method's config class once the names are known), `method_train` a method to
    `train` overrides (e.g. its own learning rate; checked as LoRAHparams merged over `train`). `experts` (a fixed pool of
    library LoRAs, by task name) replaces `strategies`; `include_own` keeps the target's own LoRA in it."""

    models: Names
    methods: Names
    targets: Names
    name: BenchName = "bench"
    strategies: tuple[str, ...] = ()
    k: tuple[Annotated[int, Ge(1)], ...] = (2,)
    seeds: Annotated[Seeds, MinLen(1)] = (0,)
    library: dict | None = field(default=None, metadata={"schema": LibrarySpec | None})
    train: dict | str | None = field(default=None, metadata={"schema": LoRAHparams | str | None})
    method_config: dict | None = field(default=None, metadata={"schema": dict[str, Options] | None})
    method_train: dict | None = field(default=None, metadata={"schema": dict[str, Options] | None})
    selection: dict | None = field(default=None, metadata={"schema": dict[str, Options] | None})
    from_scratch: tuple[str, ...] = ()
    experts: tuple[str, ...] | None = None
    include_own: bool = False
    multitask: bool = False
    eval: dict | None = field(default=None, metadata={"schema": EvalSpec | None})
    resources: dict | None = field(default=None, metadata={"schema": Resources | None})
    keep_checkpoints: bool = False
    device: str | None = None
    data_dir: str | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    claims: tuple[dict, ...] | None = field(default=None, metadata={"schema": tuple[ClaimSpec, ...] | None})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Bench:
    """A checked config with its parts resolved; `target_names`/`library_names` are the loaded tasks' names.

    `task_specs` maps a task name to what `load_task` takes, or to the `Task` itself when a front-end
    passed task objects; `library_digests` (model -> task -> digest of its files' hashes) identifies the
    LoRAs of an existing library (`library.build: false`); `option_names` is how error messages name the
    options (a front-end's flags instead of the YAML keys); `precision` / `library_precision` are the resolved
    precisions of the cells and of the library build (set by `check_bench`; None: not resolved, i.e. fp32);
    `chance` maps each target name to the chance level of its primary metric on the evaluated examples (None:
    none, e.g. generation; `loralab.eval.metrics.chance_accuracy`), for the report's figures.
    """

    config: BenchConfig
    library: LibrarySpec
    library_hparams: LoRAHparams
    hparams: LoRAHparams
    evaluation: EvalSpec
    resources: Resources
    targets: tuple[str, ...]
    data_dir: str | None
    target_names: tuple[str, ...] = ()
    library_names: tuple[str, ...] = ()
    task_specs: Mapping[str, Any] = field(default_factory=dict)
    library_digests: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    option_names: Mapping[str, str] = field(default_factory=lambda: dict(CONFIG_NAMES))
    precision: Precision | None = None
    library_precision: Precision | None = None
    method_hparams: Mapping[str, LoRAHparams] = field(default_factory=dict)
    chance: Mapping[str, float | None] = field(default_factory=dict)

    def hparams_for(self, method: str) -> LoRAHparams:
        """The training hyperparameters of `method`'s cells: `train` with its `method_train` overrides."""
        return self.method_hparams.get(method, self.hparams)

    @property
    def precision_name(self) -> str:
        return self.precision.name if self.precision is not None else "fp32"


def shipped_config(name: str) -> Path:
    """A config that ships inside the package (`quickstart`, `loralib`), so `loralab bench` works anywhere."""
    if name not in SHIPPED:
        raise UnknownNameError("shipped benchmark config", name, SHIPPED)
    return config_path(name)


def resolve_config_path(spec: str | os.PathLike[str] | None) -> Path:
    """None -> the shipped quickstart; an existing file wins over a shipped name; else a did-you-mean error."""
    if spec is None:
        return shipped_config("quickstart")
    path = Path(spec)
    try:
        if path.is_file():
            return path
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        shown = str(spec) if len(str(spec)) <= 60 else str(spec)[:57] + "..."
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"config path {shown!r} is not a usable path ({reason})") from None
    if str(spec) in SHIPPED:
        return shipped_config(str(spec))
    if path.suffix in (".yaml", ".yml") or "/" in str(spec) or os.sep in str(spec):
        raise ConfigError(f"config file does not exist: {spec}")
    raise UnknownNameError("benchmark config (a YAML file or a shipped name)", str(spec), SHIPPED)


def load_bench(spec: str | os.PathLike[str] | None = None, *, precision: str | None = None,
               overrides: Sequence[str | Override] = ()) -> Bench:
    """Read, resolve and check a config; every name, option and size is validated before any work.

    `precision` (a front-end's `--precision`) replaces the config's `precision` key before the checks, so the
    override is validated, resolved and recorded (in the cell ids and the database's config) like the key;
    None keeps the config's value. `overrides` (`KEY=VALUE`, `loralab.utils.config.parse_override`: dotted keys
    of the YAML, `train.max_steps=5`, `seeds=[0]`) are set in the mapping before the checks too: the file is
    checked alone first (its errors name it), then with the overrides (schema errors name the overrides).
    """
    path = resolve_config_path(spec)
    data = read_yaml_mapping(path)
    where = str(path)
    if overrides:
        parsed = as_overrides(overrides)
        if precision is not None and any(o.path == ("precision",) for o in parsed):
            raise ConfigError("precision is given twice: by its option and by a precision=... override; give it once",
                              param="precision")
        check(BenchConfig, _listified(data), where)
        data = apply_overrides(data, parsed)
        check(BenchConfig, _listified(data), OVERRIDES_WHERE)
        where = f"{path} with overrides"
    if precision is not None and isinstance(data, Mapping):
        data = {**data, "precision": precision}
    return bench_from_mapping(data, where=where, base_dir=path.parent)


def bench_from_mapping(data: Mapping[str, Any], where: str = "config", base_dir: Path | None = None, *,
                       tasks: Mapping[str, Task] | None = None,
                       option_names: Mapping[str, str] | None = None) -> Bench:
    """Check `data` against the `BenchConfig` schema (every section, at any depth), then names and sizes.

    `tasks` gives task objects for specs of `targets` / `library.tasks` (a front-end that already loaded
    them, or tasks that exist only in memory); `option_names` overrides `CONFIG_NAMES` in messages.
    """
    from loralab.bench.checks import check_bench

    config = BenchConfig(**check(BenchConfig, _listified(data), where))
    base_dir = base_dir or Path.cwd()
    bench = _resolve(config, where, base_dir, dict(tasks or {}))
    if option_names:
        bench = dataclasses.replace(bench, option_names={**CONFIG_NAMES, **option_names})
    return check_bench(bench, where, base_dir, dict(tasks or {}))


def _listified(data: Any) -> Any:
    """The mapping with one-value list keys as lists (`k: 2` -> `k: [2]`, also `library.tasks`); else as it is."""
    if not isinstance(data, Mapping):
        return data
    data = {k: _listify(k, v) for k, v in data.items()}
    if isinstance(data.get("library"), Mapping) and "tasks" in data["library"]:
        data["library"] = {**data["library"], "tasks": _listify("targets", data["library"]["tasks"])}
    return data


def resolved_config(bench: Bench) -> dict[str, Any]:
    """The grid as it will run, as a config mapping: every key with its value or default, the sections filled in
    (`library` with its hyperparameters, `train`, `eval`, `resources`), task files and folders as absolute paths.

    What `loralab bench --print-config` prints; a config written from it expands to the same cells.
    """
    out = bench.config.to_dict()
    library = dataclasses.asdict(bench.library)
    library["hparams"] = dataclasses.asdict(bench.library_hparams) if bench.library.build else None
    out.update(library=library, train=dataclasses.asdict(bench.hparams), targets=list(bench.targets),
               eval=dataclasses.asdict(bench.evaluation), resources=dataclasses.asdict(bench.resources),
               data_dir=bench.data_dir)
    return plain(out)


def _listify(key: str, value: Any) -> Any:
    """`k: 2` and `seeds: 0` mean one value; the schema wants lists."""
    if key in LIST_KEYS and isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    return value


def _resolve(cfg: BenchConfig, where: str, base_dir: Path, given: Mapping[str, Task]) -> Bench:
    """Typed sub-configs (already checked by the schema); relative paths in a config file are relative to it."""
    def spec(task: str) -> str:
        return task if task in given else _path_or_name(task, base_dir)

    builds = (cfg.library or {}).get("build", True)
    lib = LibrarySpec(**{"tasks": cfg.targets if builds else (), **(cfg.library or {})})
    lib = dataclasses.replace(lib, tasks=tuple(spec(t) for t in lib.tasks),
                              path=str(base_dir / lib.path) if lib.path else None)
    hparams = _hparams(cfg.train, where, ("train",), base_dir)
    method_hparams = {m: from_mapping(LoRAHparams, {**hparams.to_dict(), **dict(over)}, where, at=("method_train", m))
                      for m, over in (cfg.method_train or {}).items()}
    return Bench(
        config=cfg, library=lib,
        library_hparams=_hparams(lib.hparams, where, ("library", "hparams"), base_dir),
        hparams=hparams, method_hparams=method_hparams,
        evaluation=EvalSpec(**(cfg.eval or {})),
        resources=Resources(**(cfg.resources or {})),
        targets=tuple(spec(t) for t in cfg.targets),
        data_dir=str(base_dir / cfg.data_dir) if cfg.data_dir else None,
    )


def _hparams(value: Mapping[str, Any] | str | None, where: str, at: tuple[str, ...], base_dir: Path) -> LoRAHparams:
    """A section's hyperparameters: inline (checked where they are written) or a YAML file beside the config."""
    if value is None:
        return LoRAHparams()
    if isinstance(value, str):
        path = base_dir / value
        return from_mapping(LoRAHparams, read_yaml_mapping(path), where=str(path))
    return from_mapping(LoRAHparams, value, where=where, at=at)


def _path_or_name(spec: str, base_dir: Path) -> str:
    """Suite names stay names; a task file given relative to the config file is made absolute."""
    candidate = base_dir / spec
    try:
        exists = candidate.exists()
    except OSError:  # a name too long for the file system: not a file, so a name (refused later if unknown)
        exists = False
    if ("/" in spec or os.sep in spec or Path(spec).suffix) and exists:
        return str(candidate.resolve())
    return spec


def plain(value: Any) -> Any:
    """Tuples as lists, mappings as dicts, at any depth: what JSON (the database, the hash) holds."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value
