#!/usr/bin/env python
"""MoRE's cost claim: a per-task merged MoRE model costs what the base model costs (part B, after it ran).

    python studies/cpu-2026-12/merged_cost.py --out ~/loralab-studies/cpu-2026-12/more \\
        --json studies/cpu-2026-12/results/more-merged-cost.json

For the seed-0 MoRE model of part B (its checkpoint is kept: `keep_checkpoints: true` in more.yaml) and each
of its tasks: the model merged for that task (`MoEModel.merge_and_unload`, what `loralab merge` writes), the
unmerged model routed by the task, and the base model, each run forward (no grad) on the same padded batch
of the task's first test prompts, interleaved round by round so that load changes hit all three alike. The
ratios are per round (merged / base, unmerged / base); the JSON has their median and IQR over all rounds
and tasks, and the largest logit difference between merged and unmerged (they compute the same function).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def measure(model: str, checkpoint: Path, tasks: list[Any], *, n_examples: int = 16, rounds: int = 7,
            device: str | None = None) -> dict[str, Any]:
    """Paired forward timings of base, merged and unmerged MoRE on each task's first `n_examples` prompts."""
    from loralab.models import load_model
    from loralab.moe.adapters import attach_adapter

    base = load_model(model, device=device)
    unmerged = attach_adapter(load_model(model, device=device).model, checkpoint)
    ratios: dict[str, list[float]] = {"merged": [], "unmerged": []}
    per_task: dict[str, Any] = {}
    max_diff = 0.0
    for task in tasks:
        merged = attach_adapter(load_model(model, device=device).model, checkpoint).merge_and_unload(task.name)
        merged.eval()
        prompts = [ex.prompt for ex in task.split("test")[:n_examples]]
        enc = base.tokenizer(prompts, return_tensors="pt", padding=True).to(base.model.device)
        runs = {"base": lambda: base.model(**enc), "merged": lambda: merged(**enc),
                "unmerged": lambda: _routed(unmerged, task.name, enc)}
        with torch.no_grad():
            max_diff = max(max_diff, float((runs["merged"]().logits - runs["unmerged"]().logits).abs().max()))
            seconds: dict[str, list[float]] = {k: [] for k in runs}
            for r in range(rounds):
                order = list(runs) if r % 2 == 0 else list(reversed(runs))  # alternate who goes first
                for name in order:
                    start = time.perf_counter()
                    runs[name]()
                    seconds[name].append(time.perf_counter() - start)
        for name in ("merged", "unmerged"):
            ratios[name] += [m / b for m, b in zip(seconds[name], seconds["base"], strict=True)]
        per_task[task.name] = {**{k: statistics.median(v) for k, v in seconds.items()},
                               "tokens": int(enc["input_ids"].numel())}
        del merged
    q = statistics.quantiles(ratios["merged"], n=4)
    return {"model": model, "checkpoint": str(checkpoint), "n_examples": n_examples, "rounds": rounds,
            "threads": torch.get_num_threads(), "n_pairs": len(ratios["merged"]),
            "ratio_median": statistics.median(ratios["merged"]), "ratio_iqr": [q[0], q[2]],
            "unmerged_ratio_median": statistics.median(ratios["unmerged"]), "max_abs_logit_diff": max_diff,
            "median_seconds": per_task}


def _routed(net, task: str, enc):
    with net.routing(task=task, record=False):
        return net(**enc)


def seed0_more_checkpoint(out: Path) -> tuple[Path, list[Any], str]:
    """Part B's seed-0 MoRE job: its kept checkpoint, its tasks and its model."""
    from loralab.bench import expand, load_bench

    bench = load_bench(HERE / "more.yaml")
    job = {c.job_id for c in expand(bench) if c.method == "more" and c.seed == 0}
    if len(job) != 1:
        raise SystemExit(f"expected one seed-0 MoRE job in more.yaml, found {len(job)}")
    ckpt = out / "checkpoints" / job.pop()
    if not ckpt.is_dir():
        raise SystemExit(f"{ckpt}: no kept checkpoint (has part B run with keep_checkpoints: true?)")
    from loralab.data import load_task

    return ckpt, [load_task(t, data_dir=bench.data_dir) for t in bench.targets], bench.config.models[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="part B's bench --out")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from loralab.utils.io import atomic_write_json

    ckpt, tasks, model = seed0_more_checkpoint(args.out.expanduser())
    result = measure(model, ckpt, tasks, n_examples=args.examples, rounds=args.rounds)
    atomic_write_json(args.json, result)
    logging.info("merged MoRE / base: %.3fx (IQR %.3f-%.3f); unmerged %.3fx", result["ratio_median"],
                 *result["ratio_iqr"], result["unmerged_ratio_median"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
