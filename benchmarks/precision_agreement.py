#!/usr/bin/env python
"""Does bf16 change evaluation results? Per-example agreement of fp32 and bf16 evaluation of the same model.

SmolLM2-135M (`--model`) is evaluated by loralab `evaluate` on the first `--limit` (default 200) test examples of
4 suite tasks (`--tasks`, default social_iqa, sports_understanding, strategyqa, arithmetic_3_digit_subtraction:
three multiple-choice tasks and one generation task), once in fp32 and once in bf16. Per example the outcome is
the task's primary metric (multiple choice: `acc`; generation: `exact_match`), and the prediction (the chosen
choice; the generated text). Reported per task and pooled: the fraction of examples with the same outcome and
with the same prediction, and bf16 - fp32 accuracy with its 95 % interval and McNemar's p
(`loralab.stats.paired_difference`, 0/1 outcomes on the same examples).

bf16 is one of two things, and the JSON says which (`"bf16": "native"` or `"emulated"`):

* native (a CUDA device with bf16, a CPU with AVX512-BF16/AMX): `torch.autocast` (`loralab.utils.precision`),
  exactly what a bf16 run of loralab does.
* emulated, only with `--emulate`, where bf16 is not native: CPU autocast would run bf16 matmuls through a slow
  emulation (~100x fp32; hours for this script), so instead `EmulatedBf16`, a torch function mode, rounds to bf16
  the input, weight and bias of every `F.linear` (every nn.Linear, the LM head included) and the query, key and
  value of `scaled_dot_product_attention`, computes the op in fp32, and rounds its output to bf16. Other
  matmul-like calls (`matmul`/`@`, `mm`, `bmm`, `addmm`, `baddbmm`) are left in fp32 and counted
  (`emulation_calls` in the JSON): autocast rounds those too, except inside regions that disable it (rotary
  angles), which a function mode cannot see; SmolLM2's SDPA forward makes none (0 in the JSON), so nothing
  autocast would round is missed there.
  What this reproduces of CPU autocast: the rounding of each matmul's operands (bf16 inputs, exact products,
  wide accumulation) and of its result. What it does not: under autocast a matmul's result stays a bf16 tensor,
  so elementwise ops on it (SiLU x up in the MLP, the attention-output reshape) run in bf16 and round again;
  here they run in fp32 on bf16-rounded values; the accumulation order (oneDNN's blocking) differs, so
  results that round differently in the last bf16 bit differ; attention masks are not rounded (autocast leaves
  boolean masks alone; a float mask's fp32 minimum would round to -inf). It is an estimate of how much bf16
  rounding moves results, not a bit-exact CPU autocast.

Before evaluating, a check on `--check-examples` prompts of the first task: the last-position and all-position
logits of fp32 vs bf16 (native or emulated) must differ by a bf16-sized amount: relative (Frobenius) difference
above 0 (emulation did something) and below 0.25 (not broken); beside it, for scale, the relative change of
rounding the fp32 logits to bf16 once (~1e-3).

Without native bf16 and without `--emulate` nothing runs: `{"status": "n/a", "reason": ...}`, exit 0.

    python benchmarks/precision_agreement.py --emulate     # this CPU (no native bf16): emulated, ~10 min
    python benchmarks/precision_agreement.py --quick --emulate   # 8 examples per task
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

from _bench import bf16_status, default_device, machine_record, resolve_threads, write_json  # noqa: E402
from _bench import write_not_applicable  # noqa: E402

QUICK = {"limit": 8}
TASKS = "social_iqa,sports_understanding,strategyqa,arithmetic_3_digit_subtraction"
OTHER_MATMULS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm, torch.bmm,
                 torch.Tensor.bmm, torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm}
CHECK_MAX_REL = 0.25


def to_bf16_and_back(t: Any) -> Any:
    """An fp32 tensor rounded to the nearest bf16 value (still fp32); anything else unchanged."""
    if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
        return t.to(torch.bfloat16).to(torch.float32)
    return t


class EmulatedBf16(TorchFunctionMode):
    """bf16 rounding of every matmul's operands and result, computed in fp32 (see the module docstring).

    Rounded weights are cached per parameter (evaluation does not change them; a changed `_version` refreshes)."""

    def __init__(self) -> None:
        super().__init__()
        self._weights: dict[int, tuple[int, torch.Tensor]] = {}
        self.calls = {"linear": 0, "scaled_dot_product_attention": 0, "other_matmuls_left_fp32": 0}

    def _round(self, t: Any) -> Any:
        if isinstance(t, nn.Parameter) and t.dtype == torch.float32:
            hit = self._weights.get(id(t))
            if hit is None or hit[0] != t._version:
                hit = (t._version, to_bf16_and_back(t.detach()))
                self._weights[id(t)] = hit
            return hit[1]
        return to_bf16_and_back(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.calls["scaled_dot_product_attention"] += 1
            qkv = ("query", "key", "value")
            args = tuple(to_bf16_and_back(a) if i < 3 else a for i, a in enumerate(args))
            kwargs = {k: to_bf16_and_back(v) if k in qkv else v for k, v in kwargs.items()}
            return to_bf16_and_back(func(*args, **kwargs))
        if func is F.linear:
            self.calls["linear"] += 1
            out = func(*(self._round(a) for a in args), **{k: self._round(v) for k, v in kwargs.items()})
            return to_bf16_and_back(out)
        if func in OTHER_MATMULS:
            self.calls["other_matmuls_left_fp32"] += 1
        return func(*args, **kwargs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", default=TASKS, help="comma-separated suite tasks")
    p.add_argument("--limit", type=int, default=200, help="first N test examples of each task")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--check-examples", type=int, default=4, help="prompts of the logit check")
    p.add_argument("--emulate", action="store_true",
                   help="where bf16 is not native: run the labelled emulation (EmulatedBf16) instead of nothing")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed of the intervals")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = p.parse_args(argv)
    from _bench import apply_quick

    apply_quick(args, p, QUICK)
    args.task_list = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for name in ("limit", "batch_size", "check_examples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    args.device = args.device or default_device()
    return args


def bf16_context(mode: str, device: str, counts: dict[str, int] | None = None):
    """Native: loralab's bf16 autocast. Emulated: an `EmulatedBf16` whose call counts are added to `counts`."""
    from loralab.utils.precision import resolve_precision

    if mode == "native":
        return resolve_precision("bf16", device).autocast()
    return _counted(EmulatedBf16(), counts)


@contextlib.contextmanager
def _counted(mode: EmulatedBf16, counts: dict[str, int] | None):
    with mode:
        yield
    if counts is not None:
        for key, n in mode.calls.items():
            counts[key] = counts.get(key, 0) + n


def logit_check(lm, task, n: int, mode: str, device: str) -> dict[str, Any]:
    """fp32 vs bf16 logits on the first `n` prompts of `task`: a bf16-sized difference, not 0 and not O(1)."""
    per_prompt = []
    with torch.no_grad():
        for ex in task.split("test", n):
            ids = lm.tokenizer(task.prompt(ex), return_tensors="pt")["input_ids"].to(device)
            ref = lm.model(input_ids=ids).logits.float()
            with bf16_context(mode, device):
                low = lm.model(input_ids=ids).logits.float()
            diff = (low - ref).norm() / ref.norm()
            once = (to_bf16_and_back(ref) - ref).norm() / ref.norm()
            per_prompt.append({"tokens": ids.shape[1], "rel_diff": float(diff), "max_abs_diff": float(
                (low - ref).abs().max()), "rel_diff_one_rounding": float(once),
                "same_argmax_last": bool(low[0, -1].argmax() == ref[0, -1].argmax())})
    worst = max(p["rel_diff"] for p in per_prompt)
    least = min(p["rel_diff"] for p in per_prompt)
    return {"prompts": per_prompt, "max_rel_diff": worst, "min_rel_diff": least, "max_rel_allowed": CHECK_MAX_REL,
            "ok": least > 0 and worst < CHECK_MAX_REL}


def outcomes(task, out) -> tuple[dict[str, float], dict[str, Any]]:
    """Per example id: the primary 0/1 outcome and the prediction."""
    if task.kind == "multiple_choice":
        return ({s["id"]: float(s["predictions"]["acc"] in s["answers"]) for s in out.samples},
                {s["id"]: s["predictions"]["acc"] for s in out.samples})
    return {s["id"]: float(s["exact_match"]) for s in out.samples}, {s["id"]: s["output"] for s in out.samples}


def compare(a: dict[str, float], b: dict[str, float], pa: dict[str, Any], pb: dict[str, Any], seed: int):
    from loralab.stats import paired_difference

    ids = sorted(a)
    effect = paired_difference([a[i] for i in ids], [b[i] for i in ids], seed=seed)
    return {"n": len(ids), "outcome_agreement": sum(a[i] == b[i] for i in ids) / len(ids),
            "prediction_agreement": sum(pa[i] == pb[i] for i in ids) / len(ids),
            "acc_bf16": effect.mean_a, "acc_fp32": effect.mean_b, "diff": effect.diff, "ci_low": effect.ci_low,
            "ci_high": effect.ci_high, "p_value": effect.p_value, "test": effect.test, "n10": effect.n10,
            "n01": effect.n01, "effect": dataclasses.asdict(effect)}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    threads = resolve_threads(args.device, args.threads)
    mode, reason = bf16_status(args.device, args.emulate)
    if mode is None:
        return write_not_applicable(args.json, reason + "; --emulate runs a labelled emulation instead",
                                    args.device, "bf16 vs fp32 evaluation agreement")
    from loralab.data import load_task
    from loralab.eval import evaluate
    from loralab.models import load_model

    load_before, t0 = os.getloadavg(), time.perf_counter()
    lm = load_model(args.model, device=args.device)
    lm.model.eval()
    tasks = {name: load_task(name) for name in args.task_list}
    check = logit_check(lm, tasks[args.task_list[0]], args.check_examples, mode, args.device)
    print(f"# logit check ({mode}): relative difference {check['min_rel_diff']:.2e}-{check['max_rel_diff']:.2e} "
          f"-> {'OK' if check['ok'] else 'NOT bf16-sized'}", file=sys.stderr, flush=True)
    per_task, pooled = {}, {"a": {}, "b": {}, "pa": {}, "pb": {}}
    calls: dict[str, int] = {}
    for name, task in tasks.items():
        runs, seconds = {}, {}
        for side in ("fp32", "bf16"):
            start = time.perf_counter()
            ctx = bf16_context(mode, args.device, calls) if side == "bf16" else contextlib.nullcontext()
            with ctx:
                out = evaluate(lm.model, lm.tokenizer, task, split="test", limit=args.limit, log_samples=True,
                               progress=False, batch_size=args.batch_size)
            runs[side], seconds[side] = outcomes(task, out), time.perf_counter() - start
        (a, pa), (b, pb) = runs["bf16"], runs["fp32"]
        per_task[name] = {"kind": task.kind, "seconds": seconds, **compare(a, b, pa, pb, args.seed)}
        for key, d in (("a", a), ("b", b), ("pa", pa), ("pb", pb)):
            pooled[key].update({f"{name}/{i}": v for i, v in d.items()})
        r = per_task[name]
        print(f"- {name}: agree {r['outcome_agreement']:.3f} (predictions {r['prediction_agreement']:.3f}), "
              f"bf16 - fp32 = {r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], McNemar p {r['p_value']:.2f}"
              f" (n={r['n']}, {seconds['fp32']:.0f} s / {seconds['bf16']:.0f} s)", flush=True)
    all_ = compare(pooled["a"], pooled["b"], pooled["pa"], pooled["pb"], args.seed)
    print(f"- pooled: agree {all_['outcome_agreement']:.3f}, bf16 - fp32 = {all_['diff']:+.3f} "
          f"[{all_['ci_low']:+.3f}, {all_['ci_high']:+.3f}], McNemar p {all_['p_value']:.2f} (n={all_['n']}); "
          f"bf16 {mode}")
    if args.json:
        write_json(args.json, {"status": "measured", "bf16": mode, "bf16_reason": reason, "model": args.model,
                               "tasks": args.task_list, "limit": args.limit, "batch_size": args.batch_size,
                               "device": args.device, "threads": threads, "logit_check": check,
                               "emulation_calls": calls if mode == "emulated" else None,
                               "attn_implementation": getattr(lm.model.config, "_attn_implementation", None),
                               "per_task": per_task, "pooled": all_, "load_before": load_before,
                               "load_after": os.getloadavg(), "machine": machine_record(args.device, threads),
                               "wall_seconds": time.perf_counter() - t0})
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
