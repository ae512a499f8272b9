"""Method checkpoints: `train` (any method, one path), `merge` (into the base weights), `ranks`, `analyze-router`,
and `push` (any loralab output to the Hugging Face hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from loralab.cli.app import app, verb
from loralab.cli.errors import usage
from loralab.cli.options import (Adapter, AllowBaseMismatch, BaseModel, DataDir, Device, Experts, Hparams, Library,
                                 Limit, MaxSteps, MethodConfig, Model, NumFewshot, Precision, PrintConfig, ReportTo,
                                 Resume, Split, checked_report_to, names, out_option, overrides_argument)
from loralab.cli.output import done, note, note_tracking, show

TASK_LIST_ALIAS = {"--task": "--tasks"}  # these commands took a comma-separated `--task` before 0.1.1


@verb(app, "train", aliases={**TASK_LIST_ALIAS, "--config": "--method-config"},
      example=("loralab train --method loramoe --model smollm2-135m --library runs/lib --experts navigate,winowhy "
               "--tasks social_iqa --out runs/loramoe",
               "loralab train --method loramoe --model tiny-llama --tasks navigate --out runs/moe rank=4 max_steps=50 "
               "method.num_experts=4 --print-config"))
def train_cmd(
    method: Annotated[str, typer.Option(help="Method name (loralab methods ls).")],
    model: Model,
    tasks: Annotated[str, typer.Option("--tasks", help="Task(s) to train on, comma-separated (several: "
                                                       "multi-task).")],
    out: Annotated[Path, out_option("Checkpoint folder (written atomically).")],
    overrides: Annotated[Optional[list[str]], overrides_argument(
        "Bare keys (and train.KEY) set the training hyperparameters (rank=4 max_steps=50), method.KEY the "
        "method's settings (method.num_experts=4).")] = None,
    library: Library = None,
    experts: Experts = None,
    method_config: MethodConfig = None,
    hparams: Hparams = None,
    max_steps: MaxSteps = None,
    seed: Annotated[Optional[int], typer.Option(help="Training seed (LoRA init, data order, dropout), recorded "
                                                     "with the checkpoint's hyperparameters (default: the "
                                                     "hyperparameters' seed, 0).")] = None,
    report_to: ReportTo = None,
    resume: Resume = None,
    device: Device = None,
    precision: Precision = "auto",
    data_dir: DataDir = None,
    print_config: PrintConfig = False,
) -> None:
    """Train any method through one path; `loralab eval --adapter OUT` evaluates the checkpoint."""
    from loralab.cli.configs import TRAIN_SECTIONS, full_hparams, method_settings, print_yaml
    from loralab.library import load_hparams
    from loralab.moe.registry import get_method
    from loralab.recipes.train import train_method
    from loralab.utils.config import parse_overrides, route_overrides

    spec = get_method(method)  # an unknown method fails before its settings are read
    routed = route_overrides(parse_overrides(overrides), TRAIN_SECTIONS, default="hparams")
    hp = load_hparams(hparams, overrides=routed["hparams"], max_steps=max_steps, seed=seed,
                      report_to=checked_report_to(report_to))
    settings = method_settings(spec, method_config, routed["method"])
    if print_config:
        print_yaml({**full_hparams(hp), "method": spec.config_cls.from_dict(settings).to_dict()},
                   f"loralab train --method {method}: the training hyperparameters (top-level keys: a --hparams "
                   "file)\nand the method's settings (method: a --method-config file)")
        return
    info = train_method(method, model, names(tasks), out, library=library, experts=names(experts) or None,
                        config=settings or None, hparams=hp, data_dir=data_dir, device=device, precision=precision,
                        resume=resume)
    val = info["train"].get("val_loss") or []
    last = f", validation loss {val[-1]['loss']:.4f} at step {val[-1]['step']}" if val else ""
    note_tracking(info.get("tracking"), out)  # before the final line, which `done` keeps last
    done(f"trained {method} for {info['train']['steps']} steps (loss {info['train']['loss']:.4f}{last}, precision "
         f"{info['precision']['name']}); wrote {out}")


@verb(app, "merge", renames={"nearest_examples": "nearest"},
      example=("loralab merge --adapter runs/more --task winowhy --out runs/more-winowhy",
               "loralab merge --adapter runs/more --task sports_understanding --nearest 16 --out runs/more-sports"))
def merge_cmd(
    adapter: Adapter,
    out: Annotated[Path, out_option("New folder for the merged transformers model.")],
    task: Annotated[Optional[str], typer.Option(help="Task to merge for (task-routed methods: MoRE, MOELoRA, "
                                                     "MTL-LoRA): a training task's name, its task file or its "
                                                     "library LoRA folder.")] = None,
    model: BaseModel = None,
    nearest: Annotated[int, typer.Option(help="MoRE, task not seen in training: pick the nearest training task "
                                              "from this many of its train examples.")] = 0,
    device: Device = None,
    precision: Precision = "auto",
    allow_base_mismatch: AllowBaseMismatch = False,
    data_dir: DataDir = None,
) -> None:
    """Fold an adapter into the base weights (per task) and save a plain transformers model."""
    from loralab.recipes.merge import merge_adapter

    if nearest < 0:
        raise usage(f"nearest must be >= 0, got {nearest}", "nearest")
    record = merge_adapter(adapter, out, task=task, model=model, nearest_examples=nearest, data_dir=data_dir,
                           device=device, allow_base_mismatch=allow_base_mismatch, precision=precision)
    chosen = f" for task {record['merged_task']}" if record.get("merged_task") else ""
    if record.get("nearest_task"):
        chosen += f" (the nearest training task, found in {record['precision']['name']})"
    done(f"merged {record['method']} adapter{chosen} into {record['model']}; wrote {out}")


@verb(app, "push", renames={"repo_id": "repo"},
      example=("loralab push runs/more --repo me/more-smollm2",
               "loralab push runs/lib/smollm2-135m/navigate --repo me/navigate-lora --private"))
def push_cmd(
    folder: Annotated[Path, typer.Argument(help="What loralab wrote: a method checkpoint, a library LoRA "
                                                "(LIB/<model>/<task>) or a merged model.")],
    repo: Annotated[str, typer.Option("--repo", help="Hub repo id, owner/name (created if it does not exist).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private (an existing repo keeps its "
                                                            "visibility).")] = False,
    revision: Annotated[Optional[str], typer.Option(help="Branch to commit to (default: main).")] = None,
    message: Annotated[Optional[str], typer.Option("--message", help="Commit message.")] = None,
    create_pr: Annotated[bool, typer.Option("--create-pr", help="Open a pull request instead of committing.")] = False,
) -> None:
    """Upload a loralab output with its model card to the Hugging Face hub (login: HF_TOKEN or `hf auth login`)."""
    from loralab.recipes.hub import push_output

    result = push_output(folder, repo, private=private or None, revision=revision, commit_message=message,
                         create_pr=create_pr)
    show(result.url, markup=False)
    note(f"pushed {result.kind} {folder} to {result.repo_id}")


@verb(app, "ranks", example="loralab ranks runs/more")
def ranks_cmd(adapter: Annotated[Path, typer.Argument(help="MoRE checkpoint folder.")]) -> None:
    """MoRE: the rank each task chose in each module (histogram) and how the mean changed during training."""
    from loralab.moe.rank_report import rank_report

    show(rank_report(adapter).markdown(), markup=False)


@verb(app, "analyze-router", aliases=TASK_LIST_ALIAS,
      example="loralab analyze-router --model smollm2-135m --adapter runs/loramoe --tasks social_iqa,navigate "
              "--limit 50 --out runs/router")
def analyze_router_cmd(
    model: Model,
    adapter: Annotated[Path, typer.Option(help="Method checkpoint (loralab train --out).")],
    tasks: Annotated[str, typer.Option("--tasks", help="Tasks to route, comma-separated (suite names or task "
                                                       "files).")],
    out: Annotated[Path, out_option("Folder for router_weights.csv, router_top1.csv, router.md, router.json and "
                                    "router_heatmap.png.")],
    limit: Limit = None,
    split: Split = "test",
    num_fewshot: NumFewshot = 0,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 8,
    device: Device = None,
    precision: Precision = "auto",
    data_dir: DataDir = None,
) -> None:
    """Mean gate weight and top-1 share of each expert per task (prompt + gold answer tokens, all routed layers)."""
    from loralab.moe.analysis import analyze_router

    task_names = names(tasks)
    if not task_names:
        raise usage("tasks must name at least one task", "tasks")
    if batch_size < 1:
        raise usage(f"batch_size must be >= 1, got {batch_size}", "batch_size")
    if num_fewshot < 0:
        raise usage(f"num_fewshot must be >= 0, got {num_fewshot}", "num_fewshot")
    result = analyze_router(model, adapter, task_names, split=split, limit=limit, num_fewshot=num_fewshot,
                            batch_size=batch_size, data_dir=data_dir, device=device, out=out, precision=precision)
    table = Table(title=f"{result.method}: mean gate weight per task ({len(result.layers)} routed layers, {split}, "
                        f"precision {result.meta['precision']['name']})")
    table.add_column("task")
    for expert in result.experts:
        table.add_column(expert, justify="right")
    table.add_column("tokens", justify="right")
    for name, row, n_tokens in zip(result.tasks, result.mean_weight, result.n_tokens):
        table.add_row(name, *(f"{v:.3f}" for v in row), str(n_tokens))
    show(table)
    note(f"wrote {out}")
