#!/usr/bin/env python
"""Inference cost of task-merged methods against the base model and their unmerged form, in one run.

For each mergeable method (MoRE, MOELoRA, MTL-LoRA, MultiLoRA by default; a plain PEFT LoRA stands for
LoraHub and the PEFT merges, whose result is one LoRA), three models share the same base weights:

* base: the plain transformers model;
* unmerged: the method wrapped around it, routed to task 0 (adapter weights perturbed away from their init,
  so nothing is trivially zero);
* merged: `merge_and_unload(task 0)` of a second copy, a plain transformers model again.

`lorahub` (not in the default list) is LoraHub's actual result: four random rank-8 LoRAs on every linear composed
by `loralab.moe.methods.lorahub.compose` with fixed weights (as the search would set them) into one PEFT LoRA,
unmerged = that PEFT model, merged = its `merge_and_unload()`.

Before timing, merged and unmerged must give the same logits (max abs diff <= 1e-4), or the script exits 1.
Timing: forward passes without gradient on a fixed batch; one untimed warm-up each, then `--repeats` rounds
in which every variant runs `--steps` forwards, the order rotated per round. A ratio is the median over
rounds of the paired per-round ratio (steadier on a shared machine than a ratio of medians).

Peak memory of one forward (second table, and `--json`): CUDA: `max_memory_allocated` minus what was allocated
before; CPU: peak RSS minus RSS before, in a fresh subprocess with glibc's mmap threshold pinned (see
benchmarks/_bench.py); `--no-memory` skips it.

    python benchmarks/merged_inference.py                  # tiny Llama, hidden 512, 4 layers, batch 8 x 128
    python benchmarks/merged_inference.py --model smollm2-135m --batch 4 --seq 128
    python benchmarks/merged_inference.py --methods more,moelora,mtllora,lorahub --json out.json   # target 4
    python benchmarks/merged_inference.py --quick          # hidden 256, 2 layers, batch 4 x 64, 3 x 3 forwards
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import PeakMemory, machine_info, paired_stats, resolve_threads, run_probe, write_json

DEFAULT_METHODS = "more,moelora,mtllora,multilora,lora"
TASKS = ["task_a", "task_b"]
QUICK = {"hidden": 256, "layers": 2, "batch": 4, "seq": 64, "steps": 3, "repeats": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="Model alias/dir (default: a random tiny Llama of --hidden).")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help="Comma-separated; 'lora' = one plain PEFT LoRA, 'lorahub' = a LoraHub composition.")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None,
                   help="default: torch's, lowered on CPU to the cores the load average leaves free")
    p.add_argument("--device", default=None)
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--json", default=None, help="also write every number here")
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)  # internal: CPU peak RSS child
    args = p.parse_args(argv)
    from _bench import apply_quick

    apply_quick(args, p, QUICK)
    return args


def base_model(args):
    """A fresh copy of the base model (identical weights every call)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from loralab.models import load_model

    if args.model:
        return load_model(args.model, device=args.device).model
    config = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3, num_hidden_layers=args.layers,
                         num_attention_heads=8, num_key_value_heads=8, vocab_size=512,
                         max_position_embeddings=max(2048, args.seq), tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu")).float()


def perturb(module: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen).to(p.device, p.dtype) * 0.02)


def lorahub_composition(model) -> tuple[list[str], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Four random rank-8 LoRAs (scaling 2) on every linear, composed as LoraHub does, with fixed weights."""
    from types import SimpleNamespace

    from loralab.moe.builder import select_targets
    from loralab.moe.layer import linear_features
    from loralab.moe.methods.lorahub import compose

    names = select_targets(model, "all")
    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(1)
    loras = []
    for _ in range(4):
        weights = {}
        for n in names:
            in_f, out_f = linear_features(modules[n])
            weights[n] = (torch.randn(8, in_f, generator=gen) * 0.05, torch.randn(out_f, 8, generator=gen) * 0.05)
        loras.append(SimpleNamespace(weights=weights, scaling=2.0))
    return names, compose(loras, [0.6, -0.3, 0.9, 0.2])


def wrapped(method: str, args):
    """(unmerged model, merged model) for `method`."""
    if method in ("lora", "lorahub"):
        from peft import LoraConfig, get_peft_model

        def make():
            torch.manual_seed(0)  # both copies get the same adapter init
            model = base_model(args)
            if method == "lora":
                peft_model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
                perturb(peft_model)
                return peft_model.eval()
            names, composed = lorahub_composition(model)
            peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=names))
            layers = dict(peft_model.base_model.model.named_modules())
            with torch.no_grad():  # what LoRAHubObjective.set_weights does with the searched weights
                for name, (a_hat, b_hat) in composed.items():
                    layers[name].lora_A["default"].weight.copy_(a_hat)
                    layers[name].lora_B["default"].weight.copy_(b_hat)
            return peft_model.eval()
        return make(), make().merge_and_unload()
    from loralab.moe.registry import get_method

    spec = get_method(method)

    def make():
        torch.manual_seed(0)  # both copies get the same adapter init
        moe = spec.build(base_model(args), spec.config_cls(), None, TASKS)
        perturb(moe)
        return moe.eval()
    unmerged, other = make(), make()
    return unmerged, other.merge_and_unload(TASKS[0])


def timed(model, batch, steps: int, sync) -> float:
    sync()
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            model(**batch)
    sync()
    return (time.perf_counter() - start) / steps


def build(args):
    """(variants by name, batch, device, {method: max |merged - unmerged| logit diff}); None on a mismatch."""
    base = base_model(args).eval()
    device = next(base.parameters()).device
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, base.config.vocab_size, (args.batch, args.seq), generator=gen).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    variants = {"base": base}
    diffs = {}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        unmerged, merged = wrapped(method, args)
        routed = {"task_ids": torch.zeros(args.batch, dtype=torch.long, device=device)} \
            if method not in ("lora", "lorahub") else {}
        with torch.no_grad():
            diff = (unmerged(**batch, **routed).logits - merged(**batch).logits).abs().max().item()
        diffs[method] = diff
        if diff > 1e-4:
            print(f"FAIL: {method} merged != unmerged (max abs diff {diff:.2e})")
            return None
        variants[f"{method} unmerged"] = _Routed(unmerged, routed)
        variants[f"{method} merged"] = merged
    return variants, batch, device, diffs


def memory_probe(args) -> None:
    """Child (CPU): peak RSS of one forward of every variant, after an untimed one."""
    built = build(args)
    if built is None:
        sys.exit(1)
    variants, batch, device, _ = built
    peaks, method = {}, ""
    for name, model in variants.items():
        with torch.no_grad():
            model(**batch)
            with PeakMemory(device) as pm:
                model(**batch)
        peaks[name], method = pm.mib, pm.method
    print(json.dumps({"peak_mib": peaks, "method": method}))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threads = resolve_threads(args.device or ("cuda" if torch.cuda.is_available() else "cpu"), args.threads)
    if args.memory_probe:
        memory_probe(args)
        return 0
    load_before = os.getloadavg()
    built = build(args)
    if built is None:
        return 1
    variants, batch, device, diffs = built
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = list(variants)
    for name in names:
        timed(variants[name], batch, 1, sync)
    rounds: list[dict[str, float]] = []
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        rounds.append({name: timed(variants[name], batch, args.steps, sync) for name in order})
    median = lambda name: statistics.median(x[name] for x in rounds)  # noqa: E731
    ratio = lambda a, b: statistics.median(x[a] / x[b] for x in rounds)  # noqa: E731
    print(f"device {device}, batch {args.batch} x {args.seq}, {args.repeats} rounds x {args.steps} forwards, "
          f"torch threads {torch.get_num_threads()}")
    print("| method | base ms | merged ms | unmerged ms | merged / base | merged / unmerged | unmerged / base |")
    print("|---|---|---|---|---|---|---|")
    methods = [n.removesuffix(" merged") for n in names if n.endswith(" merged")]
    for method in methods:
        print(f"| {method} | {median('base') * 1e3:.1f} | {median(f'{method} merged') * 1e3:.1f} | "
              f"{median(f'{method} unmerged') * 1e3:.1f} | {ratio(f'{method} merged', 'base'):.3f} | "
              f"{ratio(f'{method} merged', f'{method} unmerged'):.3f} | {ratio(f'{method} unmerged', 'base'):.3f} |")
    memory: dict = {"method": "skipped (--no-memory)", "peak_mib": {}}
    if not args.no_memory:
        if device.type == "cuda":
            peaks = {}
            for name, model in variants.items():
                with torch.no_grad(), PeakMemory(device) as pm:
                    model(**batch)
                peaks[name] = pm.mib
            memory = {"method": pm.method + " (one forward)", "peak_mib": peaks}
        else:
            try:
                memory = run_probe(__file__, [*argv, "--threads", str(threads), "--memory-probe"])
                memory["method"] += " (one forward, fresh subprocess)"
            except (RuntimeError, ValueError) as exc:
                print(f"# {exc}", file=sys.stderr)
                memory = {"method": "failed", "peak_mib": {}}
        if memory["peak_mib"]:
            peak = memory["peak_mib"]
            print(f"\npeak forward memory (MiB; {memory['method']}):\n")
            print("| method | base | merged | unmerged |")
            print("|---|---|---|---|")
            for method in methods:
                print(f"| {method} | {peak['base']:.1f} | {peak[f'{method} merged']:.1f} | "
                      f"{peak[f'{method} unmerged']:.1f} |")
    if args.json:
        times = {name: [x[name] for x in rounds] for name in names}
        write_json(args.json, {
            "args": vars(args), "threads": threads, "machine": machine_info(str(device)),
            "load_before": load_before, "load_after": os.getloadavg(), "max_abs_logit_diff": diffs,
            "times_s": times, "median_ms": {n: 1e3 * statistics.median(t) for n, t in times.items()},
            "ratios": {m: {"merged_over_base": paired_stats(times[f"{m} merged"], times["base"]),
                           "merged_over_unmerged": paired_stats(times[f"{m} merged"], times[f"{m} unmerged"]),
                           "unmerged_over_base": paired_stats(times[f"{m} unmerged"], times["base"])}
                       for m in methods},
            "memory": memory})
    return 0


class _Routed:
    """Calls a wrapped model with its routing keys."""

    def __init__(self, model, routing: dict) -> None:
        self.model, self.routing = model, routing

    def __call__(self, **batch):
        return self.model(**batch, **self.routing)


if __name__ == "__main__":
    sys.exit(main())
