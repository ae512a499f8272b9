"""Compare methods on target tasks under one protocol: train each (method, task) cell, evaluate it, tabulate.

    loralab compare --model smollm2-135m --library runs/lib --experts a,b,c,d \\
        --methods loramoe,xlora,rocket,lora --tasks social_iqa --out runs/compare

Every cell trains with the same hyperparameters on the task's train split and is scored on the same
test examples. Cells are idempotent: a finished cell's result JSON is reused on a re-run. The target
task's own LoRA is left out of the experts (leave-one-out) unless `include_own` is set, and each
result says which experts it used. Methods that may start from library LoRAs do so, except those named
in `from_scratch`; the `lora` baseline is the target task's own library LoRA.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loralab.library.hparams import LoRAHparams
from loralab.utils.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


def compare_methods(
    model: str,
    methods: Sequence[str],
    tasks: Sequence[str],
    out: str | os.PathLike[str],
    *,
    library: str | os.PathLike[str] | None = None,
    experts: Sequence[str] | None = None,
    include_own: bool = False,
    from_scratch: Sequence[str] = (),
    hparams: LoRAHparams | None = None,
    eval_limit: int | None = 200,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Run every (method, task) cell not yet done; write `results.md` / `results.json`; return the records."""
    import json

    from loralab.api import run_eval
    from loralab.data import load_task
    from loralab.moe.registry import get_method
    from loralab.train import train_method

    specs = {m: get_method(m) for m in methods}  # unknown names fail before any work
    task_objs = {t: load_task(t, data_dir=data_dir) for t in tasks}
    out = Path(out)
    records = []
    for task_name, task in task_objs.items():
        chosen = [e for e in (experts or []) if include_own or e != task.name]
        for method, spec in specs.items():
            cell = out / "cells" / f"{method}--{task.name}.json"
            if cell.is_file():
                records.append(json.loads(cell.read_text(encoding="utf-8")))
                logger.info("%s on %s: done, skipped", method, task.name)
                continue
            # methods that may use library LoRAs start from them unless listed in `from_scratch`
            uses = bool(chosen) and (spec.library == "required" or (
                spec.library == "optional" and method != "lora" and method not in from_scratch))
            ckpt = out / "checkpoints" / f"{method}--{task.name}"
            info = train_method(method, model, [task], ckpt, library=library if uses or method == "lora" else None,
                                experts=chosen if uses else None, hparams=hparams, data_dir=data_dir, device=device)
            record = run_eval(model, task, adapter=ckpt, split=split, limit=eval_limit, device=device)
            record.update({"method": method, "experts": chosen if uses else [], "leave_one_out": not include_own,
                           "train": info.get("train")})
            atomic_write_json(cell, record)
            records.append(record)
    write_table(records, out)
    return records


def write_table(records: Sequence[dict[str, Any]], out: Path) -> str:
    """Markdown table, method x task with the average, best per column in bold."""
    tasks = sorted({r["task"] for r in records})
    methods = sorted({r["method"] for r in records})
    score = {(r["method"], r["task"]): r["metrics"][r["primary_metric"]] for r in records}
    avg = {m: sum(score[m, t] for t in tasks if (m, t) in score) / max(1, sum((m, t) in score for t in tasks))
           for m in methods}
    best = {t: max((score[m, t] for m in methods if (m, t) in score), default=None) for t in tasks}
    best_avg = max(avg.values(), default=None)

    def cell(value, top):
        text = f"{value:.3f}"
        return f"**{text}**" if top is not None and abs(value - top) < 1e-12 else text

    lines = ["| method | " + " | ".join(tasks) + " | average |", "|---" * (len(tasks) + 2) + "|"]
    for m in methods:
        row = [cell(score[m, t], best[t]) if (m, t) in score else "" for t in tasks]
        lines.append(f"| {m} | " + " | ".join(row) + f" | {cell(avg[m], best_avg)} |")
    n = {r["n"] for r in records}
    lines.append("")
    lines.append(f"Primary metric per task on the {records[0]['split'] if records else 'test'} split "
                 f"(n={', '.join(map(str, sorted(n)))}); best per column in bold.")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "results.md", text)
    atomic_write_json(out / "results.json", list(records))
    return text
