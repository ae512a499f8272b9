"""`select`: choose k library LoRAs for a target task with one of the selection strategies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from loralab.cli.app import app, verb
from loralab.cli.options import DataDir, Device, IncludeOwn, Model, Precision, out_option
from loralab.cli.output import note as status
from loralab.cli.output import show


@verb(app, "select", example=("loralab select --strategy ppl --model smollm2-135m --library runs/lib --task navigate "
                              "--k 3",
                              "loralab select --strategy random --seed 1 --model smollm2-135m --library runs/lib "
                              "--task navigate --k 2 --include-own --out selection.json"))
def select_cmd(
    strategy: Annotated[str, typer.Option(help="random, ppl, manual or embedding.")],
    library: Annotated[Path, typer.Option(help="LoRA library folder.")],
    task: Annotated[str, typer.Option("--task", help="Target task (suite name, task file, or its LoRA folder in "
                                                     "--library).")],
    k: Annotated[int, typer.Option(help="How many LoRAs to choose.")],
    model: Model,
    include_own: IncludeOwn = False,
    seed: Annotated[Optional[int], typer.Option(help="random: the seed (default 0).")] = None,
    relevance: Annotated[Optional[Path], typer.Option(help="manual: YAML mapping each target task to a list of "
                                                      "relevant tasks or to {task: score} (default: same domain "
                                                      "tag = relevant).")] = None,
    n_examples: Annotated[Optional[int], typer.Option(help="ppl, embedding: target examples read "
                                                          "(default 16).")] = None,
    split: Annotated[Optional[str], typer.Option(help="ppl, embedding: the target's train or validation split "
                                                 "(default train; never test).")] = None,
    out: Annotated[Optional[Path], out_option("Also write the selection as JSON here (atomically): the request, "
                                              "every candidate's score and the chosen LoRAs.")] = None,
    device: Device = None,
    precision: Precision = "auto",
    data_dir: DataDir = None,
) -> None:
    """Choose k library LoRAs for a target task and print them with their scores."""
    from loralab.selection import get_selector, select_experts

    chosen = select_experts(strategy, model, library, task, k, exclude_own=not include_own, data_dir=data_dir,
                            device=device, seed=seed, relevance=relevance, n_examples=n_examples, split=split,
                            precision=precision, out=out)
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
    ran = f"precision {first.precision}" if first.precision else "no model run"
    show(f"{strategy} selection for {first.target} ({model}, library {library}, {ran}): "
         f"{'highest' if spec.higher_is_better else 'lowest'} {spec.score_name} wins", markup=False)
    show(table)
    show(note, markup=False)
    if out is not None:
        status(f"wrote {out}")
