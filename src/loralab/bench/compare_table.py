"""The comparison table: method x task, primary metric, average column, best per column in bold.

With one seed a cell is the score itself. With several, a cell is `mean ± std` over seeds (sample std,
ddof=1, so three seeds do not understate the spread), and the average column averages over tasks
*within* each seed first, then takes mean ± std over seeds: the spread of the average is then the
seed-to-seed spread of what a user would report, not a mix of task and seed variation.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loralab.utils.io import atomic_write_json, atomic_write_text


def write_table(records: Sequence[dict[str, Any]], out: Path) -> str:
    """Write `results.md` (the table) and `results.json` (every record) into `out`; return the table."""
    out = Path(out)
    seeds = sorted({r.get("seed") for r in records}, key=lambda s: (s is None, s or 0))
    text = _seeds_table(records, seeds) if len(seeds) > 1 else _single_table(records)
    if any(r.get("multitask") for r in records):
        text += ("Multi-task: one model per method (and seed) trained on all tasks jointly; `lora` is each task's "
                 "own library LoRA, `base` the base model.\n")
    atomic_write_text(out / "results.md", text)
    atomic_write_json(out / "results.json", list(records))
    return text


def _score(record: dict[str, Any]) -> float:
    return record["metrics"][record["primary_metric"]]


def _bold_if(text: str, value: float, top: float | None) -> str:
    return f"**{text}**" if top is not None and abs(value - top) < 1e-12 else text


def _header(tasks: Sequence[str]) -> list[str]:
    return ["| method | " + " | ".join(tasks) + " | average |", "|---" * (len(tasks) + 2) + "|"]


def _single_table(records: Sequence[dict[str, Any]]) -> str:
    """One score per (method, task): the format every single-seed run has always had."""
    tasks = sorted({r["task"] for r in records})
    methods = sorted({r["method"] for r in records})
    score = {(r["method"], r["task"]): _score(r) for r in records}
    avg = {m: sum(score[m, t] for t in tasks if (m, t) in score) / max(1, sum((m, t) in score for t in tasks))
           for m in methods}
    best = {t: max((score[m, t] for m in methods if (m, t) in score), default=None) for t in tasks}
    best_avg = max(avg.values(), default=None)
    lines = _header(tasks)
    for m in methods:
        row = [_bold_if(f"{score[m, t]:.3f}", score[m, t], best[t]) if (m, t) in score else "" for t in tasks]
        lines.append(f"| {m} | " + " | ".join(row) + f" | {_bold_if(f'{avg[m]:.3f}', avg[m], best_avg)} |")
    n = {r["n"] for r in records}
    lines.append("")
    lines.append(f"Primary metric per task on the {records[0]['split'] if records else 'test'} split "
                 f"(n={', '.join(map(str, sorted(n)))}); best per column in bold.")
    return "\n".join(lines) + "\n"


def _seeds_table(records: Sequence[dict[str, Any]], seeds: Sequence[Any]) -> str:
    """`mean ± std` over seeds per cell; the average column is per-seed task averages, then over seeds."""
    tasks = sorted({r["task"] for r in records})
    methods = sorted({r["method"] for r in records})
    by_seed: dict[tuple[str, str], dict[Any, float]] = {}
    for r in records:
        by_seed.setdefault((r["method"], r["task"]), {})[r.get("seed")] = _score(r)
    cells = {key: list(values.values()) for key, values in by_seed.items()}
    for m in methods:  # the average column has the key (method, None)
        cells[m, None] = _per_seed_averages(by_seed, m, tasks, seeds)
    best = {t: max((statistics.fmean(cells[m, t]) for m in methods if (m, t) in cells), default=None)
            for t in [*tasks, None]}
    lines = _header(tasks)
    for m in methods:
        row = [_spread(cells[m, t], best[t], len(seeds)) if (m, t) in cells else "" for t in [*tasks, None]]
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"Primary metric per task on the {records[0]['split']} split ({_n_per_task(records, tasks)}); "
                 f"mean ± sample std (ddof=1) over {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
                 "average: mean over tasks within each seed, then mean ± std over seeds; "
                 "best mean per column in bold.")
    return "\n".join(lines) + "\n"


def _per_seed_averages(by_seed: dict[tuple[str, str], dict[Any, float]], method: str, tasks: Sequence[str],
                       seeds: Sequence[Any]) -> list[float]:
    """For each seed the method ran with, its mean score over the tasks it has for that seed."""
    averages = []
    for seed in seeds:
        values = [by_seed[method, t][seed] for t in tasks if seed in by_seed.get((method, t), {})]
        if values:
            averages.append(statistics.fmean(values))
    return averages


def _spread(values: Sequence[float], top: float | None, n_seeds: int) -> str:
    """`mean ± std` (± only with two values or more), marked when some seeds are missing."""
    mean = statistics.fmean(values)
    text = f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) >= 2 else f"{mean:.3f}"
    if len(values) < n_seeds:
        text += f" ({len(values)}/{n_seeds} seeds)"
    return _bold_if(text, mean, top)


def _n_per_task(records: Sequence[dict[str, Any]], tasks: Sequence[str]) -> str:
    """`n=200 per task`, or each task's n when they differ (a task with a smaller test split)."""
    n = {t: sorted({r["n"] for r in records if r["task"] == t}) for t in tasks}
    if len({tuple(v) for v in n.values()}) == 1:
        return f"n={'/'.join(map(str, next(iter(n.values()))))} per task"
    return "n per task: " + ", ".join(f"{t} {'/'.join(map(str, v))}" for t, v in n.items())
