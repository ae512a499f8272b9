#!/usr/bin/env python
"""Achieved GFLOP/s of a LoRA training step and of the evaluation forwards, against this machine's matmul peak.

Per dtype (fp32, and bf16 where it is native), in ONE process with the same torch threads:

1. Peak: the best GFLOP/s of a square (n x n) @ (n x n) matmul over `--sizes` (default 1024, 2048, 4096) in that
   dtype (bf16: bf16 tensors, the kernel bf16 autocast calls), each size timed >= 3 times and >= 0.5 s after a
   warm-up (`_flops.matmul_peak`). This is what the BLAS reaches here, not a datasheet figure.
2. Training: `--steps` optimiser steps of loralab's `AnswerOnlyTrainer` (`train_step.py` variant (b): PEFT LoRA
   r=8 on every linear, logits only where the loss is taken) on `--task`'s train split, batch `--batch-size`, in
   that precision (bf16: autocast); each step timed on_step_begin -> on_step_end (the optimiser included).
3. Evaluation: loralab `evaluate` on the first `--limit` test examples of `--task` (batch size 8, packed rows),
   the base model under that precision's autocast; every model forward is timed by forward hooks (synchronised
   on CUDA), `--eval-repeats` rounds after one warm-up round. Whole-`evaluate` time is reported beside it.

FLOPs are analytic (`_flops.py` says exactly what is counted): 2 x in x out per linear per token row (padding
included), the LM head only on the rows whose logits are computed; a LoRA step with the base frozen costs 2x the
forward for a frozen linear (input gradient only) and 3x for a LoRA linear; attention score/value products and
elementwise work are excluded and the attention FLOPs are reported separately (`attention_flops_excluded`).
Fraction of peak = achieved / peak; per step (training) and per round (evaluation), median and spread.

Where bf16 is not native the bf16 part is skipped with its reason (emulated bf16 would take minutes and measure
the emulation); `--allow-emulated` runs it anyway (code-path test; labelled "emulated").

    python benchmarks/physical_limit.py            # smollm2-135m, social_iqa, 10 steps, 200 eval examples
    python benchmarks/physical_limit.py --quick    # tiny-llama, small sizes, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from _bench import (bf16_status, default_device, machine_record, ratio_stats, resolve_threads,  # noqa: E402
                    sync, write_json)
from _flops import forward_flops, inventory, matmul_peak, train_step_flops  # noqa: E402

QUICK = {"model": "tiny-llama", "steps": 2, "limit": 16, "sizes": "128,256,512", "eval_repeats": 1}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from loralab.training.hparams import LoRAHparams

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--task", default="social_iqa", help="a multiple-choice task: train split to train, test to eval")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per dtype (after one warm-up)")
    p.add_argument("--limit", type=int, default=200, help="evaluation examples")
    p.add_argument("--eval-repeats", type=int, default=2, help="timed evaluation rounds (after one warm-up)")
    p.add_argument("--sizes", default="1024,2048,4096", help="square matmul sizes of the peak sweep")
    p.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or bf16 (bf16 only where native)")
    p.add_argument("--max-length", type=int, default=LoRAHparams.max_length)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--allow-emulated", action="store_true", help="bf16 even where it is emulated (code-path test)")
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = p.parse_args(argv)
    from _bench import apply_quick

    apply_quick(args, p, QUICK)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes: comma-separated integers, got {args.sizes!r}")
    args.dtype_list = [d.strip() for d in args.dtypes.split(",")]
    if not set(args.dtype_list) <= set(DTYPES):
        p.error(f"--dtypes: {args.dtypes!r}; allowed: fp32, bf16")
    for name in ("batch_size", "steps", "limit", "eval_repeats", "max_length"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.size_list) < 1:
        p.error("--sizes must be >= 1")
    args.device = args.device or default_device()
    return args


def train_part(args: argparse.Namespace, precision, peak: float) -> dict[str, Any]:
    """`--steps` timed AnswerOnlyTrainer steps; FLOPs per step from the batch shape and kept logit rows."""
    from loralab.training.trainer import IGNORE, PadCollator
    from train_step import load_everything, make_trainer, run_steps

    plan = argparse.Namespace(**{**vars(args), "warmup": 1, "repeats": 1})
    lm, hp, batches = load_everything(plan)
    collator = PadCollator(lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0)
    with tempfile.TemporaryDirectory() as work:
        trainer, timer = make_trainer("b", lm, hp, plan, work, args.device.startswith("cuda"), precision=precision)
        inv = inventory(trainer.model)
        run_steps(trainer, timer, batches[:1])
        seconds = [run_steps(trainer, timer, [b])[0] for b in batches[1:]]
    steps = []
    for batch, sec in zip(batches[1:], seconds):
        x = collator(batch)
        rows, length = x["input_ids"].shape
        keep = int((x["labels"][:, 1:] != IGNORE).any(dim=0).sum())
        f = train_step_flops(inv, rows, length, rows * keep)
        steps.append({"seconds": sec, "rows": rows, "length": length, "head_rows": rows * keep, **f,
                      "gflops": f["flops"] / sec / 1e9})
    total = sum(s["flops"] for s in steps)
    return {"inventory": inv.to_dict(), "steps": steps, "fraction_of_peak": ratio_stats(
        [s["gflops"] / peak for s in steps]), "gflops_median": statistics.median(s["gflops"] for s in steps),
        "flops_total": total, "attention_fraction_excluded": sum(s["attention_flops_excluded"] for s in steps) / total}


class ForwardClock:
    """Forward hooks on the model: seconds and (rows, length) of every forward (synchronised on CUDA)."""

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.device, self.calls, self._t0 = device, [], 0.0
        self._handles = [model.register_forward_pre_hook(self._before, with_kwargs=True),
                         model.register_forward_hook(self._after)]

    def _before(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._shape = tuple(ids.shape)
        sync(self.device)
        self._t0 = time.perf_counter()

    def _after(self, module, args, output):
        sync(self.device)
        self.calls.append((time.perf_counter() - self._t0, *self._shape))

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def eval_part(args: argparse.Namespace, precision, peak: float) -> dict[str, Any]:
    from loralab.data import load_task
    from loralab.eval import evaluate
    from loralab.models import load_model

    lm = load_model(args.model, device=args.device)
    task = load_task(args.task)
    inv = inventory(lm.model)
    clock = ForwardClock(lm.model, args.device)
    rounds = []
    try:
        for r in range(args.eval_repeats + 1):  # round 0: warm-up
            clock.calls = []
            start = time.perf_counter()
            with precision.autocast():
                evaluate(lm.model, lm.tokenizer, task, split="test", limit=args.limit, batch_size=8, progress=False)
            sync(args.device)
            whole = time.perf_counter() - start
            flops = sum(forward_flops(inv, rows, length)["flops"] for _, rows, length in clock.calls)
            attention = sum(forward_flops(inv, rows, length)["attention_flops_excluded"]
                            for _, rows, length in clock.calls)
            fwd = sum(c[0] for c in clock.calls)
            if r:
                rounds.append({"forward_seconds": fwd, "evaluate_seconds": whole, "forwards": len(clock.calls),
                               "token_rows": sum(c[1] * c[2] for c in clock.calls), "flops": flops,
                               "attention_flops_excluded": attention, "gflops": flops / fwd / 1e9,
                               "gflops_whole_evaluate": flops / whole / 1e9})
    finally:
        clock.close()
    return {"inventory": inv.to_dict(), "rounds": rounds, "fraction_of_peak": ratio_stats(
        [r["gflops"] / peak for r in rounds]), "gflops_median": statistics.median(r["gflops"] for r in rounds),
        "attention_fraction_excluded": rounds[0]["attention_flops_excluded"] / rounds[0]["flops"]}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    threads = resolve_threads(args.device, args.threads)
    from loralab.utils.precision import resolve_precision

    load_before, t0 = os.getloadavg(), time.perf_counter()
    results: dict[str, Any] = {}
    for name in args.dtype_list:
        mode, reason = ("native", "fp32") if name == "fp32" else bf16_status(args.device, args.allow_emulated)
        if mode is None:
            results[name] = {"status": "n/a", "reason": reason}
            print(f"# {name}: n/a here: {reason}", file=sys.stderr, flush=True)
            continue
        print(f"# {name}: matmul peak over sizes {args.size_list} ...", file=sys.stderr, flush=True)
        peak = matmul_peak(args.size_list, DTYPES[name], args.device)
        precision = resolve_precision(name, args.device)
        print(f"# {name}: peak {peak['gflops']:.1f} GFLOP/s; {args.steps} training steps ...", file=sys.stderr,
              flush=True)
        train = train_part(args, precision, peak["gflops"])
        print(f"# {name}: training {train['gflops_median']:.1f} GFLOP/s; evaluation ...", file=sys.stderr,
              flush=True)
        ev = eval_part(args, precision, peak["gflops"])
        results[name] = {"status": "measured", "bf16": None if name == "fp32" else mode, "reason": reason,
                         "precision": precision.to_dict(), "peak": peak, "train": train, "eval": ev}
        print(f"- {name}: matmul peak {peak['gflops']:.1f} GFLOP/s; training step {train['gflops_median']:.1f} "
              f"GFLOP/s ({train['fraction_of_peak']['median']:.2f} of peak); eval forward {ev['gflops_median']:.1f} "
              f"GFLOP/s ({ev['fraction_of_peak']['median']:.2f} of peak)")
    if args.json:
        write_json(args.json, {"status": "measured", "model": args.model, "task": args.task, "device": args.device,
                               "threads": threads, "batch_size": args.batch_size, "steps": args.steps,
                               "limit": args.limit, "sizes": args.size_list, "dtypes": results,
                               "load_before": load_before, "load_after": os.getloadavg(),
                               "machine": machine_record(args.device, threads),
                               "wall_seconds": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
