#!/usr/bin/env python
"""Seconds per LoRA optimiser step, bf16 autocast vs fp32, both loralab's AnswerOnlyTrainer on the same batches.

Both sides are `train_step.py`'s variant (b): `AnswerOnlyTrainer` (logits only where the loss is taken) on a PEFT
LoRA of the same base model, the same LoraConfig and seeded LoRA initialisation, identical TrainingArguments,
the same batches in the same order. The only difference is the trainer's `precision`: fp32 (no autocast) or
bf16 (`torch.autocast` around the forward; parameters, gradients and optimiser state stay fp32; see
`loralab.utils.precision`).

1. Loss after `--loss-steps` steps (default 20): a fresh model per side trains that many steps in ONE
   `Trainer.train()` call (the real schedule: warm-up, cosine) on the same batches from the same seed; the
   per-step losses of the two are compared (final and largest difference). A final loss more than
   `--max-loss-rel-diff` (default 10 %) away from fp32's, or a non-finite loss, fails the check: bf16 rounding
   moves the loss by a few per mille; 10 % means the bf16 path is broken, not imprecise.
2. Timing, on the same two trainers afterwards: `--repeats` x `--steps` steps, interleaved per batch (fp32 then
   bf16 on batch 1, ..., the order swapped every repeat), each step timed `on_step_begin` -> `on_step_end` as in
   `train_step.py`. The ratio is the median of the paired per-step ratios bf16 / fp32.

Where bf16 is not native (`loralab.utils.precision.native_bf16`: a CPU without AVX512-BF16 or AMX), bf16 matmuls
are emulated, ~100x slower than fp32: the script then times nothing and writes `{"status": "n/a", "reason": ...}`
(the CPU model and flags), exit 0. `--allow-emulated` runs anyway (to test this code on such a machine, with a
tiny model); the JSON then says `"bf16": "emulated"` and `benchmarks/run` does not judge its times.

Memory: CUDA: `torch.cuda.max_memory_allocated` during each side's timed steps minus what was allocated before.
CPU: not measured by this script (null in the JSON).

Exit status: 0; 1 if the loss check fails or the ratio exceeds --max-ratio (default 0.5) with native bf16.

    python benchmarks/precision_step.py                 # smollm2-135m, social_iqa, batch 8, 20 loss steps, 4 x 5 timed
    python benchmarks/precision_step.py --quick --allow-emulated   # tiny-llama, emulated bf16 (code path only)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from transformers import set_seed  # noqa: E402

from loralab.training.hparams import LoRAHparams  # noqa: E402
from _bench import (bf16_status, default_device, machine_record, ratio_stats, resolve_threads,  # noqa: E402
                    write_json, write_not_applicable)

QUICK = {"model": "tiny-llama", "steps": 2, "repeats": 2, "loss_steps": 3}
SIDES = ("fp32", "bf16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--task", default="social_iqa", help="loralab task (its train split)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps per side per repeat")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per side before the timed repeats")
    p.add_argument("--loss-steps", type=int, default=20, help="steps of the loss comparison (one train() call)")
    p.add_argument("--max-length", type=int, default=LoRAHparams.max_length)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-ratio", type=float, default=0.5, help="exit 1 above this bf16/fp32 ratio (native bf16)")
    p.add_argument("--max-loss-rel-diff", type=float, default=0.1)
    p.add_argument("--allow-emulated", action="store_true",
                   help="run even where bf16 is emulated (a code-path test; its times mean nothing)")
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = p.parse_args(argv)
    from _bench import apply_quick

    apply_quick(args, p, QUICK)
    for name in ("batch_size", "steps", "repeats", "loss_steps", "max_length"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    args.device = args.device or default_device()
    return args


def loss_comparison(trainers: dict[str, Any], timers: dict[str, Any], batches: list[list[dict]], seed: int,
                    max_rel: float) -> dict[str, Any]:
    """Each side trains on `batches` in one train() call from the same seed; compare the per-step losses."""
    losses, seconds = {}, {}
    for side in SIDES:
        tr = trainers[side]
        tr.train_dataset = [f for b in batches for f in b]
        tr.args.max_steps = len(batches)
        before, start = len(tr.step_losses), len(timers[side].times)
        set_seed(seed)
        tr.train()
        losses[side] = tr.step_losses[before:]
        seconds[side] = timers[side].times[start:]
    a, b = losses["fp32"], losses["bf16"]
    diffs = [abs(x - y) for x, y in zip(a, b)]
    final_rel = diffs[-1] / max(abs(a[-1]), 1e-12)
    finite = all(math.isfinite(v) for v in a + b)
    return {"steps": len(batches), "losses": losses, "seconds_per_step": seconds, "final": {"fp32": a[-1],
            "bf16": b[-1]}, "final_abs_diff": diffs[-1], "final_rel_diff": final_rel,
            "max_abs_diff": max(diffs), "mean_abs_diff": sum(diffs) / len(diffs), "max_rel_diff_allowed": max_rel,
            "ok": finite and final_rel <= max_rel}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    threads = resolve_threads(args.device, args.threads)
    mode, reason = bf16_status(args.device, args.allow_emulated)
    if mode is None:
        return write_not_applicable(args.json, reason, args.device, "train step bf16 autocast vs fp32")
    from loralab.models import load_model
    from loralab.utils.precision import resolve_precision
    from train_step import load_everything, make_trainer, run_steps

    load_before, t0 = os.getloadavg(), time.perf_counter()
    cuda = args.device.startswith("cuda")
    timed_n = args.steps * args.repeats
    plan = argparse.Namespace(**{**vars(args), "warmup": 0, "repeats": 1,
                                 "steps": max(args.loss_steps, args.warmup + timed_n)})
    print(f"# loading {args.model} and {args.task} ...", file=sys.stderr, flush=True)
    first, hp, batches = load_everything(plan)
    precisions = {"fp32": resolve_precision("fp32", args.device), "bf16": resolve_precision("bf16", args.device)}
    step_times: dict[str, list[float]] = {s: [] for s in SIDES}
    peak = {s: 0 for s in SIDES}
    with tempfile.TemporaryDirectory() as work:
        trainers, timers = {}, {}
        for side in SIDES:
            lm = first if side == "fp32" else load_model(args.model, device=args.device)
            trainers[side], timers[side] = make_trainer("b", lm, hp, args, os.path.join(work, side), cuda,
                                                        precision=precisions[side])
        print(f"# loss comparison: {args.loss_steps} steps per side ...", file=sys.stderr, flush=True)
        loss = loss_comparison(trainers, timers, batches[:args.loss_steps], hp.seed, args.max_loss_rel_diff)
        warm, timed = batches[:args.warmup], batches[args.warmup:args.warmup + timed_n]
        for side in SIDES:
            if warm:
                run_steps(trainers[side], timers[side], warm)
        for r in range(args.repeats):
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            for batch in timed[r * args.steps:(r + 1) * args.steps]:
                for side in order:
                    if cuda:
                        torch.cuda.synchronize()
                        base = torch.cuda.memory_allocated()
                        torch.cuda.reset_peak_memory_stats()
                    step_times[side] += run_steps(trainers[side], timers[side], [batch])
                    if cuda:
                        peak[side] = max(peak[side], torch.cuda.max_memory_allocated() - base)
            print(f"# repeat {r + 1}/{args.repeats}: " + ", ".join(f"{s} {step_times[s][-1]:.3f} s" for s in SIDES),
                  file=sys.stderr, flush=True)
    ratio = ratio_stats([b / a for a, b in zip(step_times["fp32"], step_times["bf16"])])
    med = {s: statistics.median(v) for s, v in step_times.items()}
    memory = ({"method": "torch.cuda.max_memory_allocated during the timed steps - allocated before",
               "peak_mib": {s: peak[s] / 2**20 for s in SIDES}} if cuda else
              {"method": "not measured on CPU by this script", "peak_mib": {s: None for s in SIDES}})
    passed = loss["ok"] and (mode != "native" or ratio["median"] <= args.max_ratio)
    print(f"**{args.model} / {args.task}**, {args.device}, batch {args.batch_size}, bf16 {mode} ({reason}), "
          f"{threads} thread(s)\n")
    print(f"- step time: fp32 {med['fp32']:.3f} s, bf16 {med['bf16']:.3f} s; bf16/fp32 = **{ratio['median']:.3f}** "
          f"(IQR {ratio['q1']:.3f}-{ratio['q3']:.3f}, {ratio['n']} paired steps)")
    print(f"- loss after {loss['steps']} steps: fp32 {loss['final']['fp32']:.5f}, bf16 {loss['final']['bf16']:.5f} "
          f"(|diff| {loss['final_abs_diff']:.2e}, relative {loss['final_rel_diff']:.2e}; largest over the steps "
          f"{loss['max_abs_diff']:.2e}) -> {'OK' if loss['ok'] else 'FAIL'}")
    if args.json:
        write_json(args.json, {
            "status": "measured", "bf16": mode, "bf16_reason": reason, "model": args.model, "task": args.task,
            "device": args.device, "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
            "warmup": args.warmup, "threads": threads, "precisions": {s: p.to_dict() for s, p in precisions.items()},
            "seconds_per_step": step_times, "seconds_per_step_median": med, "ratio": ratio, "loss": loss,
            "memory": memory, "max_ratio": args.max_ratio, "passed": passed, "load_before": load_before,
            "load_after": os.getloadavg(), "machine": machine_record(args.device, threads),
            "wall_seconds": time.perf_counter() - t0})
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
