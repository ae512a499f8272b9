"""The `loralab` command: a thin shell over the Python API (`loralab.recipes.evaluate`, `loralab.data`, ...)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from loralab.errors import LoralabError

app = typer.Typer(help="loralab: multi-task LoRA libraries, LoRA-MoE methods and one evaluation protocol.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
tasks_app = typer.Typer(help="The standard task suite.", no_args_is_help=True)
data_app = typer.Typer(help="Export task data in the unified format.", no_args_is_help=True)
models_app = typer.Typer(help="Model aliases.", no_args_is_help=True)
library_app = typer.Typer(help="LoRA libraries: one adapter per (model, task).", no_args_is_help=True)
methods_app = typer.Typer(help="LoRA-MoE methods and baselines.", no_args_is_help=True)
app.add_typer(methods_app, name="methods")
app.add_typer(tasks_app, name="tasks")
app.add_typer(library_app, name="library")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")

# Wide when piped (rich would fold tables to 80 columns), the terminal's width otherwise.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Folder with bigbench/ and gsm8k/ "
                    "(default: $LORALAB_DATA_DIR, else downloaded once into the cache).")]
Split = Annotated[str, typer.Option(help="train, validation, test or all.")]
AllowBaseMismatch = Annotated[bool, typer.Option("--allow-base-mismatch", help="Use an adapter whose loralab "
                              "metadata records another base model (module names and shapes must still fit).")]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's choice). "
                                                   "On a shared machine, 1 avoids thread oversubscription.")] = None,
) -> None:
    if threads is not None:
        if threads < 1:
            raise _usage(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def version() -> None:
    """Print the loralab version."""
    from loralab import __version__

    out.print(__version__)


@tasks_app.command("ls")
def tasks_ls(domain: Annotated[Optional[str], typer.Option(help="Only tasks of this domain tag.")] = None) -> None:
    """List the suite: name, domain tag, source and a one-line description."""
    from loralab.data.suite import DOMAINS, SUITE, suite_names

    if domain is not None and domain not in DOMAINS:
        raise _usage(f"--domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    table = Table(title=f"loralab suite ({len(suite_names(domain))} tasks)")
    for col in ("task", "domain", "source", "description"):
        table.add_column(col)
    for name in suite_names(domain):
        t = SUITE[name]
        table.add_row(name, t.domain, f"{t.source}:{t.path}", t.description)
    out.print(table)


@tasks_app.command("show")
def tasks_show(
    name: Annotated[str, typer.Argument(help="Suite name, BIG-bench task.json/dir, .jsonl, .csv or task .yaml.")],
    n: Annotated[int, typer.Option("-n", help="How many examples to print.")] = 3,
    split: Split = "test",
    num_fewshot: Annotated[int, typer.Option(help="Few-shot demonstrations in the prompt.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Print a task's description, split sizes and a few rendered examples."""
    from loralab.data import load_task

    task = load_task(name, data_dir=data_dir)
    examples = task.split(split, n)
    sizes = {s: sum(ex.split == s for ex in task.examples) for s in ("train", "validation", "test")}
    out.print(f"[bold]{task.name}[/bold] ({task.kind}, metric {task.metric}, domain {task.domain})")
    out.print(f"{task.description}\nsource: {task.source}\nsplit sizes: {sizes}\n")
    for ex in examples:
        out.rule(f"example {ex.id}")
        out.print(repr(task.prompt(ex, task.fewshot_examples(ex, num_fewshot))), markup=False)
        if ex.choices:
            for i, c in enumerate(ex.choices):
                out.print(f"  {'*' if i in ex.answers else ' '} [{i}] {c!r}", markup=False)
        else:
            out.print(f"  targets: {list(ex.targets)!r}", markup=False)


@models_app.command("ls")
def models_ls() -> None:
    """List model aliases (a hub id or a local directory works too)."""
    from loralab.models import model_aliases

    table = Table(title="model aliases")
    table.add_column("alias")
    table.add_column("description")
    for alias, desc in model_aliases().items():
        table.add_row(alias, desc)
    out.print(table)


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Option(help="Alias (loralab models ls), local directory or hub id.")],
    task: Annotated[str, typer.Option(help="Suite name, BIG-bench task.json/dir, unified .jsonl/.csv or task .yaml.")],
    adapter: Annotated[Optional[Path], typer.Option(help="PEFT adapter directory to apply.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate the first N examples of the split (by id).")] = None,
    split: Split = "test",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write the result JSON here (atomically).")] = None,
    num_fewshot: Annotated[int, typer.Option(help="Few-shot demonstrations from the train split.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Questions per forward (multiple choice) or sequences per "
                                                  "generation batch.")] = 8,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, mps (default: best available).")] = None,
    log_samples: Annotated[bool, typer.Option(help="Keep per-example outputs in the result JSON.")] = False,
    allow_pickle: Annotated[bool, typer.Option(help="Allow pickle (.bin) weights. Only for files you trust.")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Run model code from the hub. Only for repos you trust.")] = False,
    allow_base_mismatch: AllowBaseMismatch = False,
    data_dir: DataDir = None,
) -> None:
    """Evaluate a model (and optional adapter) on a task: acc/acc_norm/acc_ppl or exact_match."""
    from loralab.recipes.evaluate import run_eval

    if batch_size < 1:
        raise _usage(f"--batch-size must be >= 1, got {batch_size}")
    record = run_eval(model, task, adapter=adapter, split=split, limit=limit, num_fewshot=num_fewshot,
                      batch_size=batch_size, data_dir=data_dir, device=device, log_samples=log_samples,
                      allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                      allow_base_mismatch=allow_base_mismatch, out=out_file)
    table = Table(title=f"{record['model']} on {record['task']} ({record['split']}, n={record['n']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("stderr", justify="right")
    for key, value in record["metrics"].items():
        if not key.endswith("_stderr"):
            table.add_row(key, f"{value:.4f}", f"{record['metrics'].get(key + '_stderr', float('nan')):.4f}")
    out.print(table)
    if out_file is not None:
        err.print(f"wrote {out_file}")


@data_app.command("export")
def data_export(
    task: Annotated[str, typer.Argument(help="Suite name or task file.")],
    out_file: Annotated[Path, typer.Option("--out", help="Output .jsonl (unified format).")],
    split: Split = "test",
    limit: Annotated[Optional[int], typer.Option(help="Only the first N examples (by id).")] = None,
    num_fewshot: Annotated[int, typer.Option(help="Few-shot demonstrations baked into each prompt.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Write rendered examples (prompt, choices, answer_index or targets) that any harness can score."""
    from loralab.recipes.evaluate import export_task
    n = export_task(task, out_file, split=split, limit=limit, num_fewshot=num_fewshot, data_dir=data_dir)
    err.print(f"wrote {n} examples to {out_file}")


@library_app.command("build")
def library_build(
    model: Annotated[str, typer.Option(help="Alias, local directory or hub id of the base model.")],
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks (suite names or task files).")],
    out: Annotated[Path, typer.Option(help="Library folder (created if missing; finished adapters are skipped).")],
    config: Annotated[Optional[Path], typer.Option(help="YAML of shared hyperparameters (LoRAHparams fields).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Override max_steps for every adapter.")] = None,
    eval_limit: Annotated[int, typer.Option(help="Evaluate base and adapter on the first N eval examples (0: skip).")] = 200,
    eval_split: Split = "test",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... (default: best available).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Train one LoRA per task with one shared set of hyperparameters, into a PEFT-format library."""
    from loralab.library import build_library, load_hparams

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise _usage("--tasks must name at least one task")
    if eval_limit < 0:
        raise _usage(f"--eval-limit must be >= 0, got {eval_limit}")
    hp = load_hparams(config, max_steps=max_steps)
    entries = build_library(model, names, out, hparams=hp, eval_split=eval_split, eval_limit=eval_limit or 0,
                            data_dir=data_dir, device=device)
    _print_library(entries, f"library {out}")


@library_app.command("ls")
def library_ls(
    library: Annotated[Path, typer.Argument(help="Library folder.")],
    model: Annotated[Optional[str], typer.Option(help="Only adapters of this model.")] = None,
) -> None:
    """Show the library as a table: task, domain, model, rank, steps, and base vs adapter score."""
    from loralab.library import Library, model_slug

    if not library.is_dir():
        raise _usage(f"library folder does not exist: {library}")
    entries = Library(library).entries(model_slug(model) if model else None)
    _print_library(entries, f"library {library} ({len(entries)} adapters)")


@library_app.command("add")
def library_add(
    library: Annotated[Path, typer.Argument(help="Library folder.")],
    adapter: Annotated[Path, typer.Option(help="PEFT LoRA directory to import.")],
    task: Annotated[str, typer.Option(help="The task this adapter is for (suite name or task file).")],
    model: Annotated[Optional[str], typer.Option(help="Base model (default: the library's only model).")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Accept adapter_model.bin (pickle). Only if you trust it.")] = False,
    allow_base_mismatch: AllowBaseMismatch = False,
    eval_limit: Annotated[int, typer.Option(help="Evaluate base and adapter on N examples (0: skip).")] = 0,
    eval_split: Split = "test",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ...")] = None,
    data_dir: DataDir = None,
) -> None:
    """Import an existing PEFT LoRA after checking that it fits the base model (modules, shapes, rank)."""
    from loralab.library import import_adapter
    entry = import_adapter(library, adapter, task, model=model, allow_pickle=allow_pickle,
                           allow_base_mismatch=allow_base_mismatch, eval_split=eval_split, eval_limit=eval_limit,
                           data_dir=data_dir, device=device)
    err.print(f"added {entry.task} ({entry.model}) to {library}")


@methods_app.command("ls")
def methods_ls() -> None:
    """List the registered methods, one line each."""
    from loralab.moe.registry import all_methods

    table = Table(title="methods")
    for col in ("method", "library LoRAs", "mergeable", "faithful", "description"):
        table.add_column(col)
    for name, spec in all_methods().items():
        table.add_row(name, spec.library, "yes" if spec.mergeable else "no", "yes" if spec.faithful else "see docs",
                      spec.description)
    out.print(table)


@app.command("train")
def train_cmd(
    method: Annotated[str, typer.Option(help="Method name (loralab methods ls).")],
    model: Annotated[str, typer.Option(help="Alias, local directory or hub id of the base model.")],
    task: Annotated[str, typer.Option(help="Task(s) to train on, comma-separated (several = multi-task).")],
    out: Annotated[Path, typer.Option(help="Checkpoint folder (written atomically).")],
    library: Annotated[Optional[Path], typer.Option(help="LoRA library the experts come from.")] = None,
    experts: Annotated[Optional[str], typer.Option(help="Comma-separated library tasks to use as experts.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML of method settings (its config dataclass fields).")] = None,
    hparams: Annotated[Optional[Path], typer.Option(help="YAML of training hyperparameters (LoRAHparams).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Override max_steps.")] = None,
    report_to: Annotated[Optional[str], typer.Option(help="'tensorboard': log loss and router statistics "
                                                          "(saved in OUT/tensorboard).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ...")] = None,
    data_dir: DataDir = None,
) -> None:
    """Train any method through one path; `loralab eval --adapter OUT` evaluates the checkpoint."""
    from loralab.library import load_hparams
    from loralab.recipes.train import train_method
    from loralab.utils.config import read_yaml_mapping

    tasks = [t.strip() for t in task.split(",") if t.strip()]
    expert_list = [e.strip() for e in experts.split(",") if e.strip()] if experts else None
    hp = load_hparams(hparams, max_steps=max_steps, report_to=report_to)
    method_cfg = read_yaml_mapping(config) if config is not None else None
    if method_cfg is not None:  # checked here too, so an error names the file (train_method only sees a mapping)
        from loralab.moe.registry import get_method

        get_method(method).config_cls.from_dict(method_cfg, where=str(config))
    info = train_method(method, model, tasks, out, library=library, experts=expert_list, config=method_cfg,
                        hparams=hp, data_dir=data_dir, device=device)
    err.print(f"trained {method} for {info['train']['steps']} steps (loss {info['train']['loss']:.4f}); wrote {out}")


@app.command("merge")
def merge_cmd(
    adapter: Annotated[Path, typer.Option(help="Method checkpoint (loralab train --out) or PEFT adapter folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New folder for the merged transformers model.")],
    task: Annotated[Optional[str], typer.Option(help="Task to merge for (task-routed methods: MoRE, MOELoRA, "
                                                     "MTL-LoRA).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Base model (default: the one the adapter records).")] = None,
    nearest: Annotated[int, typer.Option(help="MoRE, task not seen in training: pick the nearest training task "
                                              "from this many of its train examples.")] = 0,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ...")] = None,
    allow_base_mismatch: AllowBaseMismatch = False,
    data_dir: DataDir = None,
) -> None:
    """Fold an adapter into the base weights (per task) and save a plain transformers model."""
    from loralab.recipes.merge import merge_adapter

    if nearest < 0:
        raise _usage(f"--nearest must be >= 0, got {nearest}")
    record = merge_adapter(adapter, out_dir, task=task, model=model, nearest_examples=nearest, data_dir=data_dir,
                           device=device, allow_base_mismatch=allow_base_mismatch)
    chosen = f" for task {record['merged_task']}" if record.get("merged_task") else ""
    err.print(f"merged {record['method']} adapter{chosen} into {record['model']}; wrote {out_dir}")


@app.command("ranks")
def ranks_cmd(adapter: Annotated[Path, typer.Argument(help="MoRE checkpoint folder.")]) -> None:
    """MoRE: the rank each task chose in each module (histogram) and how the mean changed during training."""
    from loralab.moe.rank_report import rank_report

    out.print(rank_report(adapter).markdown(), markup=False)


@app.command("analyze-router")
def analyze_router_cmd(
    model: Annotated[str, typer.Option(help="Alias, local directory or hub id of the base model.")],
    adapter: Annotated[Path, typer.Option(help="Method checkpoint (loralab train --out).")],
    task: Annotated[str, typer.Option(help="Task(s) to route, comma-separated (suite names or task files).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for router_weights.csv, router_top1.csv, "
                                               "router.md, router.json and router_heatmap.png.")],
    limit: Annotated[Optional[int], typer.Option(help="Only the first N examples (by id) of each task.")] = None,
    split: Split = "test",
    num_fewshot: Annotated[int, typer.Option(help="Few-shot demonstrations in each prompt.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 8,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... (default: best available).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Mean gate weight and top-1 share of each expert per task (prompt + gold answer tokens, all routed layers)."""
    from loralab.moe.analysis import analyze_router

    names = [t.strip() for t in task.split(",") if t.strip()]
    if not names:
        raise _usage("--task must name at least one task")
    if batch_size < 1:
        raise _usage(f"--batch-size must be >= 1, got {batch_size}")
    if num_fewshot < 0:
        raise _usage(f"--num-fewshot must be >= 0, got {num_fewshot}")
    result = analyze_router(model, adapter, names, split=split, limit=limit, num_fewshot=num_fewshot,
                            batch_size=batch_size, data_dir=data_dir, device=device, out=out_dir)
    table = Table(title=f"{result.method}: mean gate weight per task ({len(result.layers)} routed layers, {split})")
    table.add_column("task")
    for expert in result.experts:
        table.add_column(expert, justify="right")
    table.add_column("tokens", justify="right")
    for name, row, n_tokens in zip(result.tasks, result.mean_weight, result.n_tokens):
        table.add_row(name, *(f"{v:.3f}" for v in row), str(n_tokens))
    out.print(table)
    err.print(f"wrote {out_dir}")


@app.command("compare")
def compare_cmd(
    model: Annotated[str, typer.Option(help="Alias, local directory or hub id of the base model.")],
    methods: Annotated[str, typer.Option(help="Comma-separated methods (loralab methods ls).")],
    tasks: Annotated[str, typer.Option(help="Comma-separated target tasks.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (cells, checkpoints, results.md).")],
    library: Annotated[Optional[Path], typer.Option(help="LoRA library the experts come from.")] = None,
    experts: Annotated[Optional[str], typer.Option(help="Comma-separated library tasks used as experts.")] = None,
    include_own: Annotated[bool, typer.Option(help="Keep the target task's own LoRA among the experts.")] = False,
    from_scratch: Annotated[Optional[str], typer.Option(help="Methods that could start from library LoRAs but "
                                                        "should train from scratch (comma-separated).")] = None,
    hparams: Annotated[Optional[Path], typer.Option(help="YAML of training hyperparameters (LoRAHparams).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Override max_steps.")] = None,
    eval_limit: Annotated[int, typer.Option(help="Evaluate on the first N examples of the split.")] = 200,
    split: Split = "test",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ...")] = None,
    data_dir: DataDir = None,
    seeds: Annotated[Optional[str], typer.Option(help="Comma-separated training seeds, e.g. 0,1,2: every cell runs "
                                                 "once per seed and the table shows mean ± std (default: the "
                                                 "hyperparameters' seed).")] = None,
    multitask: Annotated[bool, typer.Option(help="Train one model per method on all --tasks jointly and evaluate "
                                            "it on each task (base: the base model; lora: each task's own "
                                            "library LoRA).")] = False,
) -> None:
    """Train and evaluate every (method, task) cell under one protocol; print the method x task table."""
    from loralab.bench.compare import compare_methods
    from loralab.library import load_hparams

    if eval_limit < 1:
        raise _usage(f"--eval-limit must be >= 1, got {eval_limit}")
    split_list = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(s) for s in split_list(seeds)]
        except ValueError:
            raise _usage(f"--seeds must be comma-separated integers like 0,1,2, got {seeds!r}") from None
        if not seed_list:
            raise _usage("--seeds must name at least one seed")
    hp = load_hparams(hparams, max_steps=max_steps)
    compare_methods(model, split_list(methods), split_list(tasks), out_dir, library=library,
                    experts=split_list(experts) if experts else None, include_own=include_own,
                    from_scratch=split_list(from_scratch) if from_scratch else (), hparams=hp, eval_limit=eval_limit,
                    split=split, data_dir=data_dir, device=device, seeds=seed_list, multitask=multitask)
    out.print((out_dir / "results.md").read_text(encoding="utf-8"), markup=False)
    err.print(f"wrote {out_dir / 'results.md'}")


@app.command("select")
def select_cmd(
    strategy: Annotated[str, typer.Option(help="random, ppl, manual or embedding.")],
    library: Annotated[Path, typer.Option(help="LoRA library folder.")],
    task: Annotated[str, typer.Option(help="Target task (suite name or task file).")],
    k: Annotated[int, typer.Option(help="How many LoRAs to choose.")],
    model: Annotated[str, typer.Option(help="Alias, local directory or hub id of the base model.")],
    exclude_own: Annotated[bool, typer.Option("--exclude-own/--include-own",
                                              help="Leave the target task's own LoRA out (leave-one-out).")] = True,
    seed: Annotated[Optional[int], typer.Option(help="random: the seed (default 0).")] = None,
    relevance: Annotated[Optional[Path], typer.Option(help="manual: YAML mapping each target task to a list of "
                                                      "relevant tasks or to {task: score} (default: same domain "
                                                      "tag = relevant).")] = None,
    n_examples: Annotated[Optional[int], typer.Option(help="ppl, embedding: target examples read (default 16).")] = None,
    split: Annotated[Optional[str], typer.Option(help="ppl, embedding: the target's train or validation split "
                                                 "(default train; never test).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... (default: best available).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Choose k library LoRAs for a target task and print them with their scores."""
    from loralab.selection import get_selector, select_experts

    chosen = select_experts(strategy, model, library, task, k, exclude_own=exclude_own, data_dir=data_dir,
                            device=device, seed=seed, relevance=relevance, n_examples=n_examples, split=split)
    spec = get_selector(strategy)
    first = chosen[0]
    table = Table()
    for col in ("rank", "task", "domain", spec.score_name):
        table.add_column(col, justify="right" if col in ("rank", spec.score_name) else "left")
    for s in chosen:
        table.add_row(str(s.rank), s.task, s.domain, f"{s.score:.4f}")
    note = {"excluded": f"target's own LoRA ({first.target}) excluded (leave-one-out)",
            "included": f"target's own LoRA ({first.target}) included (--include-own)",
            "absent": f"target {first.target} has no LoRA of its own in the library"}[first.own_lora]
    out.print(f"{strategy} selection for {first.target} ({model}, library {library}): "
              f"{'highest' if spec.higher_is_better else 'lowest'} {spec.score_name} wins", markup=False)
    out.print(table)
    out.print(note, markup=False)


@app.command("bench")
def bench_cmd(
    config: Annotated[Optional[str], typer.Argument(help="Benchmark YAML, or a shipped config: quickstart "
                                                    "(the default), loralib.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Output folder: database, report, library, "
                                                    "selections (default: ./bench-NAME).")] = None,
    executor: Annotated[str, typer.Option(help="local (one cell at a time in this process) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(help="ray: cluster to join (auto, ray://host:10001); "
                                                   "default: start a local one.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the config, count its cells, run nothing.")] = False,
) -> None:
    """Run a benchmark grid (models x methods x strategies x k x targets x seeds); cells already done are skipped."""
    from collections import Counter

    from loralab.bench import expand, load_bench, run_bench

    bench = load_bench(config)
    if dry_run:
        cells = expand(bench)
        counts = Counter((c.method, c.strategy or "-") for c in cells)
        table = Table(title=f"{bench.config.name}: {len(cells)} cells")
        for col in ("method", "strategy", "cells"):
            table.add_column(col, justify="right" if col == "cells" else "left")
        for (method, strategy), n in counts.items():
            table.add_row(method, strategy, str(n))
        out.print(table)
        return
    result = run_bench(bench, out_dir, executor=executor, address=address)
    out.print(f"{result.cells} cells: {result.ran} run now, {result.skipped} already done, {len(result.failed)} failed")
    for failure in result.failed:
        err.print(f"failed: {failure['label']}: {failure['error']}", markup=False)
    out.print(f"report: {result.report} (and report.html, PNG figures beside it)\ndatabase: {result.db}")
    if result.failed:
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    db: Annotated[Path, typer.Argument(help="Benchmark database (OUT/bench.sqlite of `loralab bench`).")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Report folder (default: report/ beside DB).")] = None,
) -> None:
    """Rebuild a benchmark's report (Markdown, HTML, PNG) from its database alone."""
    from loralab.bench import write_report

    path = write_report(db, out_dir)
    out.print(f"report: {path} (and report.html, PNG figures beside it)")


def _print_library(entries, title: str) -> None:
    table = Table(title=title)
    for col in ("task", "domain", "model", "origin", "rank", "steps", "train loss", "metric", "base", "adapter", "delta"):
        table.add_column(col, justify="right" if col in ("rank", "steps", "train loss", "base", "adapter", "delta") else "left")
    for e in entries:
        ev = e.metrics.get("eval", {})
        metric = ev.get("metric", "")
        base, ada = ev.get("base", {}).get(metric), ev.get("adapter", {}).get(metric)
        fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
        delta = f"{ada - base:+.3f}" if base is not None and ada is not None else ""
        table.add_row(e.task, e.domain, e.model, e.origin, str(e.hparams.get("rank", "")),
                      str(e.metrics.get("train_steps", "")), fmt(e.metrics.get("train_loss")),
                      f"{metric} ({ev.get('split', '')}, n={ev.get('n', '')})" if metric else "", fmt(base), fmt(ada), delta)
    out.print(table)


def _usage(message: str) -> LoralabError:
    from loralab.errors import UserInputError

    return UserInputError(message)


def main() -> None:
    """Console entry point: user mistakes become one line on stderr and a non-zero exit, never a traceback."""
    try:
        app(standalone_mode=False)
    except LoralabError as exc:
        _print_error(str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click usage errors (missing option, bad value, unknown command)
        if not _is_click_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # `loralab` alone: the help text
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _print_error(exc.format_message() + hint)
        sys.exit(exc.exit_code)


def _print_error(message: str) -> None:
    """One line on stderr: `error: ...` (newlines folded, rich markup in the message shown as typed)."""
    from rich.markup import escape

    err.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def _is_click_error(exc: BaseException) -> bool:
    """A click usage error, from click itself or from the copy of click that newer typer versions vendor."""
    classes: list[type] = []
    try:
        from typer.exceptions import TyperException

        classes.append(TyperException)
    except ImportError:
        pass
    try:
        import click

        classes.append(click.exceptions.ClickException)
    except ImportError:
        pass
    return isinstance(exc, tuple(classes)) and hasattr(exc, "format_message") and hasattr(exc, "exit_code")


if __name__ == "__main__":
    main()


__all__ = ["app", "main"]
