"""Evaluation: `eval` (a model, optionally with an adapter, on one task) and `data export` (the scored strings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from loralab.cli.app import app, data_app, verb
from loralab.cli.errors import usage
from loralab.cli.options import (AllowBaseMismatch, AllowPickle, DataDir, Device, Limit, Model, NumFewshot, Precision,
                                 Split, Task, TrustRemoteCode, out_option)
from loralab.cli.output import done, note, show


@verb(app, "eval", example=("loralab eval --model smollm2-135m --task social_iqa --limit 200 --out social_iqa.json",
                            "loralab eval --model HuggingFaceTB/SmolLM2-135M-Instruct --task social_iqa --limit 200 "
                            "--apply-chat-template --log-samples --out chat.json"))
def eval_cmd(
    model: Model,
    task: Task,
    adapter: Annotated[Optional[Path], typer.Option(help="PEFT adapter or method checkpoint to apply.")] = None,
    limit: Limit = None,
    split: Split = "test",
    out: Annotated[Optional[Path], out_option("Write the result JSON here (atomically).")] = None,
    num_fewshot: NumFewshot = 0,
    batch_size: Annotated[int, typer.Option(help="Questions per forward (multiple choice) or sequences per "
                                                  "generation batch.")] = 8,
    device: Device = None,
    precision: Precision = "auto",
    log_samples: Annotated[bool, typer.Option("--log-samples/--no-log-samples",
                                              help="Keep one record per example in the result JSON: the prompt as "
                                                   "scored, the choices/targets, the choice log-likelihoods and "
                                                   "picks, or the generated output and extracted answer.")] = False,
    apply_chat_template: Annotated[bool, typer.Option("--apply-chat-template/--no-apply-chat-template",
                                                      help="Instruct models: render each prompt as a user turn "
                                                           "with the tokenizer's chat template (generation prompt "
                                                           "added), as lm-eval's flag. Off by default; a model "
                                                           "without a chat template is refused.")] = False,
    allow_pickle: AllowPickle = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_base_mismatch: AllowBaseMismatch = False,
    data_dir: DataDir = None,
) -> None:
    """Evaluate a model (and optional adapter) on a task: acc/acc_norm/acc_ppl or exact_match."""
    from loralab.recipes.evaluate import run_eval

    if batch_size < 1:
        raise usage(f"batch_size must be >= 1, got {batch_size}", "batch_size")
    record = run_eval(model, task, adapter=adapter, split=split, limit=limit, num_fewshot=num_fewshot,
                      batch_size=batch_size, data_dir=data_dir, device=device, log_samples=log_samples,
                      allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                      allow_base_mismatch=allow_base_mismatch, out=out, precision=precision,
                      apply_chat_template=apply_chat_template)
    # a line of its own, not the table's title: rich would wrap a title to the narrow table's width
    chat = ", chat template" if record["apply_chat_template"] else ""
    show(f"{record['model']} on {record['task']} ({record['split']}, n={record['n']}, adapter "
         f"{record['adapter'] or 'none'}, precision {record['precision']['name']}{chat})", markup=False)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("stderr", justify="right")
    for key, value in record["metrics"].items():
        if not key.endswith("_stderr"):
            table.add_row(key, f"{value:.4f}", f"{record['metrics'].get(key + '_stderr', float('nan')):.4f}")
    show(table)
    if out is not None:
        note(f"wrote {out}")


@verb(data_app, "export", example="loralab data export social_iqa --split test --out social_iqa.jsonl")
def data_export(
    task: Annotated[str, typer.Argument(help="Suite name or task file.")],
    out: Annotated[Path, out_option("Output .jsonl (unified format).")],
    split: Split = "test",
    limit: Limit = None,
    num_fewshot: NumFewshot = 0,
    data_dir: DataDir = None,
) -> None:
    """Write rendered examples (prompt, choices, answer_index or targets) that any harness can score."""
    from loralab.recipes.evaluate import export_task

    n = export_task(task, out, split=split, limit=limit, num_fewshot=num_fewshot, data_dir=data_dir)
    done(f"wrote {n} examples to {out}")
