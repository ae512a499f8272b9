#!/usr/bin/env python
"""Inference cost of task-merged methods against the base model and their unmerged form, in one run.

For each mergeable method (MoRE, MOELoRA, MTL-LoRA, MultiLoRA by default; a plain PEFT LoRA stands for
LoraHub and the PEFT merges, whose result is one LoRA), three models share the same base weights:

* base: the plain transformers model;
* unmerged: the method wrapped around it, routed to task 0 (adapter weights perturbed away from their init,
  so nothing is trivially zero);
* merged: `merge_and_unload(task 0)` of a second copy, a plain transformers model again.

Before timing, merged and unmerged must give the same logits (max abs diff <= 1e-4), or the script exits 1.
Timing: forward passes without gradient on a fixed batch; one untimed warm-up each, then `--repeats` rounds
in which every variant runs `--steps` forwards, the order rotated per round. A ratio is the median over
rounds of the paired per-round ratio (steadier on a shared machine than a ratio of medians).

    python benchmarks/merged_inference.py                  # tiny Llama, hidden 512, 4 layers, batch 8 x 128
    python benchmarks/merged_inference.py --model smollm2-135m --batch 4 --seq 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

DEFAULT_METHODS = "more,moelora,mtllora,multilora,lora"
TASKS = ["task_a", "task_b"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="Model alias/dir (default: a random tiny Llama of --hidden).")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="Comma-separated; 'lora' = one plain PEFT LoRA.")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    return p.parse_args(argv)


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


def wrapped(method: str, args):
    """(unmerged model, merged model) for `method`."""
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        def make():
            torch.manual_seed(0)  # both copies get the same adapter init
            peft_model = get_peft_model(base_model(args), LoraConfig(r=8, target_modules="all-linear"))
            perturb(peft_model)
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = base_model(args).eval()
    device = next(base.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, base.config.vocab_size, (args.batch, args.seq), generator=gen).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    variants = {"base": base}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        unmerged, merged = wrapped(method, args)
        routed = {"task_ids": torch.zeros(args.batch, dtype=torch.long, device=device)} if method != "lora" else {}
        with torch.no_grad():
            diff = (unmerged(**batch, **routed).logits - merged(**batch).logits).abs().max().item()
        if diff > 1e-4:
            print(f"FAIL: {method} merged != unmerged (max abs diff {diff:.2e})")
            return 1
        variants[f"{method} unmerged"] = _Routed(unmerged, routed)
        variants[f"{method} merged"] = merged
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
    for method in [n.removesuffix(" merged") for n in names if n.endswith(" merged")]:
        print(f"| {method} | {median('base') * 1e3:.1f} | {median(f'{method} merged') * 1e3:.1f} | "
              f"{median(f'{method} unmerged') * 1e3:.1f} | {ratio(f'{method} merged', 'base'):.3f} | "
              f"{ratio(f'{method} merged', f'{method} unmerged'):.3f} | {ratio(f'{method} unmerged', 'base'):.3f} |")
    return 0


class _Routed:
    """Calls a wrapped model with its routing keys."""

    def __init__(self, model, routing: dict) -> None:
        self.model, self.routing = model, routing

    def __call__(self, **batch):
        return self.model(**batch, **self.routing)


if __name__ == "__main__":
    sys.exit(main())
