"""The benchmark config (YAML) and its expansion into cells: one cell per (model, method, strategy, k, target, seed).

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

Every name is checked (with "did you mean") before anything runs (`loralab.bench.checks`), so a typo
costs a second, not a half-finished grid. Methods that take library experts (registry `library`
"required"/"optional", except `lora`, the target's own LoRA, and methods listed in `from_scratch`) get
one cell per strategy and k; the others ignore selection and get one cell per (model, target, seed).
`base` (and `lora` when the target is in the library, so its LoRA is copied, not trained) trains
nothing: one seed-free cell per (model, target). A cell's id hashes everything that can change its
numbers, so a changed protocol never reuses a stale result and an unchanged one is never recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import StringConstraints

from loralab.errors import ConfigError, UnknownNameError
from loralab.training.hparams import LoRAHparams
from loralab.utils.config import Describe, check, from_mapping, read_yaml_mapping

SHIPPED = {"quickstart": "quickstart.yaml", "loralib": "loralib.yaml"}
LIST_KEYS = ("models", "methods", "targets", "strategies", "k", "seeds", "from_scratch")

# `name` names the default output folder (./bench-NAME) and the report: one path component that cannot
# climb out of the working folder (no '/', no '..', no leading dot).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"
BenchName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=100),
                      Describe("letters, digits, '_', '-' and single dots inside, at most 100 characters "
                               "(it names the folder bench-NAME)")]
Names = Annotated[tuple[str, ...], MinLen(1)]
Seeds = tuple[Annotated[int, Ge(0), Le(2**32 - 1)], ...]
Options = dict[str, Any]  # one strategy's / method's options: checked against its own config class later


@dataclass(frozen=True)
class LibrarySpec:
    """The expert pool: one LoRA per task (default: the targets), built with `hparams` when missing.

    `path` defaults to OUT/library; `eval_limit` 0 skips the library's own base-vs-adapter evaluation.
    """

    tasks: tuple[str, ...] = ()
    path: str | None = None
    hparams: dict | str | None = field(default=None, metadata={"schema": LoRAHparams | str | None})
    eval_limit: Annotated[int, Ge(0)] = 0


@dataclass(frozen=True)
class EvalSpec:
    split: Literal["train", "validation", "test"] = "test"
    limit: Annotated[int, Ge(1)] | None = 200
    batch_size: Annotated[int, Ge(1)] = 8


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
    against the strategy's / method's config class once the names are known)."""

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
    selection: dict | None = field(default=None, metadata={"schema": dict[str, Options] | None})
    from_scratch: tuple[str, ...] = ()
    eval: dict | None = field(default=None, metadata={"schema": EvalSpec | None})
    resources: dict | None = field(default=None, metadata={"schema": Resources | None})
    keep_checkpoints: bool = False
    device: str | None = None
    data_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Bench:
    """A checked config with its parts resolved; `target_names`/`library_names` are the loaded tasks' names."""

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
    task_specs: Mapping[str, str] = field(default_factory=dict)  # task name -> what load_task takes


@dataclass(frozen=True)
class Cell:
    """One job. `strategy`/`k` are None for methods without selection, `seed` for seed-free ones."""

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
        blob = json.dumps(self.config, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def label(self) -> str:
        sel = f" [{self.strategy}, k={self.k}]" if self.strategy is not None else ""
        seed = "" if self.seed is None else f", seed {self.seed}"
        return f"{self.method}{sel} on {self.target} ({self.model}{seed})"


def shipped_config(name: str) -> Path:
    """A config that ships inside the package (`quickstart`, `loralib`), so `loralab bench` works anywhere."""
    return Path(str(resources.files("loralab.configs").joinpath(SHIPPED[name])))


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


def load_bench(spec: str | os.PathLike[str] | None = None) -> Bench:
    """Read, resolve and check a config; every name, option and size is validated before any work."""
    path = resolve_config_path(spec)
    return bench_from_mapping(read_yaml_mapping(path), where=str(path), base_dir=path.parent)


def bench_from_mapping(data: Mapping[str, Any], where: str = "config", base_dir: Path | None = None) -> Bench:
    """Check `data` against the `BenchConfig` schema (every section, at any depth), then names and sizes."""
    from loralab.bench.checks import check_bench

    if isinstance(data, Mapping):
        data = {k: _listify(k, v) for k, v in data.items()}
        if isinstance(data.get("library"), Mapping) and "tasks" in data["library"]:
            data["library"] = {**data["library"], "tasks": _listify("targets", data["library"]["tasks"])}
    config = BenchConfig(**check(BenchConfig, data, where))
    base_dir = base_dir or Path.cwd()
    return check_bench(_resolve(config, where, base_dir), where, base_dir)


def _listify(key: str, value: Any) -> Any:
    """`k: 2` and `seeds: 0` mean one value; the schema wants lists."""
    if key in LIST_KEYS and isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    return value


def _resolve(cfg: BenchConfig, where: str, base_dir: Path) -> Bench:
    """Typed sub-configs (already checked by the schema); relative paths in a config file are relative to it."""
    lib = LibrarySpec(**{"tasks": cfg.targets, **(cfg.library or {})})
    lib = dataclasses.replace(lib, tasks=tuple(_path_or_name(t, base_dir) for t in lib.tasks),
                              path=str(base_dir / lib.path) if lib.path else None)
    return Bench(
        config=cfg, library=lib,
        library_hparams=_hparams(lib.hparams, where, ("library", "hparams"), base_dir),
        hparams=_hparams(cfg.train, where, ("train",), base_dir),
        evaluation=EvalSpec(**(cfg.eval or {})),
        resources=Resources(**(cfg.resources or {})),
        targets=tuple(_path_or_name(t, base_dir) for t in cfg.targets),
        data_dir=str(base_dir / cfg.data_dir) if cfg.data_dir else None,
    )


def uses_selection(method: str, library: str, from_scratch: tuple[str, ...] = ()) -> bool:
    """Whether a method takes library experts, so that the selection strategy and k matter."""
    return library in ("required", "optional") and method != "lora" and method not in from_scratch


def seed_free(method: str, target: str, library_names: tuple[str, ...]) -> bool:
    """`base` trains nothing; `lora` copies the target's own library LoRA (trained once, with the library's seed)."""
    return method == "base" or (method == "lora" and target in library_names)


def expand(bench: Bench) -> list[Cell]:
    """Every cell, seed by seed (the first seed gives a complete table first); seed-free cells once, first."""
    from loralab.moe.registry import get_method

    cfg = bench.config
    cells: list[Cell] = []
    for i, seed in enumerate(cfg.seeds):
        for model in cfg.models:
            for target in bench.target_names:
                for method in cfg.methods:
                    if uses_selection(method, get_method(method).library, cfg.from_scratch):
                        cells += [Cell(model, method, target, s, k, seed, protocol(bench, method, s))
                                  for s in cfg.strategies for k in cfg.k]
                    elif not seed_free(method, target, bench.library_names):
                        cells.append(Cell(model, method, target, None, None, seed, protocol(bench, method, None)))
                    elif i == 0:
                        cells.append(Cell(model, method, target, None, None, None, _seed_free_protocol(bench, method)))
    return cells


def protocol(bench: Bench, method: str, strategy: str | None) -> dict[str, Any]:
    """What a cell shares with its row of the grid and what changes its numbers (not paths, devices, batch sizes)."""
    ignored = {"seed", *LoRAHparams.LOGGING_FIELDS}
    lib_hp = {k: v for k, v in bench.library_hparams.to_dict().items() if k not in LoRAHparams.LOGGING_FIELDS}
    out: dict[str, Any] = {
        "train": {k: v for k, v in bench.hparams.to_dict().items() if k not in ignored},
        "method_config": _plain((bench.config.method_config or {}).get(method) or {}),
        "library": {"tasks": sorted(bench.library_names), "hparams": lib_hp},
        "eval": {"split": bench.evaluation.split, "limit": bench.evaluation.limit},
    }
    if strategy is not None:
        out["selection"] = {"strategy": strategy, **_plain((bench.config.selection or {}).get(strategy) or {})}
    return out


def _seed_free_protocol(bench: Bench, method: str) -> dict[str, Any]:
    """`base` depends on the evaluation only, the library's own `lora` also on the library: not on `train`."""
    out = protocol(bench, method, None)
    drop = ("train", "method_config", "library") if method == "base" else ("train", "method_config")
    return {k: v for k, v in out.items() if k not in drop}


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


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
