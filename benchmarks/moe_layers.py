#!/usr/bin/env python
"""Cost of loralab's LoRA-MoE methods against plain PEFT, on one random tiny Llama, in one interleaved run.

Table 1: every registered token-routed method (`loralab.moe.registry.all_methods()`, those that are not
mergeable and train through the shared path; new methods show up without touching this file) against ONE
PEFT LoRA of the same total rank (experts x rank) on exactly the modules the method wrapped: forward +
backward of the LM loss, with each side's trainable parameters (the paper's for the method, A/B for LoRA).
Methods that require library LoRAs get E random rank-r LoRAs as experts; the others are built from
scratch with E experts of rank r (`num_experts`, `rank` where their config has them), so E x r is the same
for all and one baseline serves them. `--targets` picks the wrapped linears for methods that have a `targets` setting
("all" by default, so every method and its baseline adapt the same modules; "paper" keeps each method's
default).

Table 2: loralab's X-LoRA against PEFT's `XLoraModel` with the same E adapters (saved PEFT LoRAs loaded by
both) and the same classifier weights: forward (no grad), and forward + backward with only the classifier
trainable. Before timing, the two must give the same logits (eval mode), or the script exits with 1.

Timing: every variant runs once untimed (warm-up), then `--repeats` rounds in which every variant runs
`--steps` steps, the order rotated each round (so load spikes on this shared machine hit all variants).
A variant's time is the median over rounds of its mean step time; a ratio is the median over rounds of the
paired per-round ratio (both ran seconds apart), which is much steadier on a loaded machine than a ratio
of medians. CUDA is synchronised around every step.

Memory: on CUDA, the peak allocated during one step minus what was allocated before it (activations,
gradients, temporaries). On CPU there is no allocator peak to read, so the column is the activation memory
autograd saves for backward during the step (bytes of the distinct tensor storages packed by
`saved_tensors_hooks`, parameters excluded): what decides training memory, and deterministic.
Forward-only memory is shown on CUDA only. With `--json`, every variant also gets its peak step memory
(`peak_mib`): on CUDA the number above; on CPU the peak RSS during one step minus RSS before it, measured in a
fresh subprocess with glibc's mmap threshold pinned (see benchmarks/_bench.py; `--no-peak-memory` skips it).

`--vs-rank-r` adds, for every method, two more baselines on the same modules: ONE PEFT LoRA of rank r (one
expert's rank) and PEFT with E LoRAs of rank r all active at once (`set_adapter([...])`, summed), and prints a
third table of the method's time against them (target 1 of benchmarks/README.md).

CPU threads: torch's default lowered to the cores the 1-minute load average leaves free (at least 1), as in
benchmarks/train_step.py; `--threads` overrides.

    python benchmarks/moe_layers.py              # hidden 512, 4 layers, batch 8 x 128, E=4, r=8
    python benchmarks/moe_layers.py --quick      # hidden 256, 2 layers, batch 4 x 64, 3 rounds
    python benchmarks/moe_layers.py --experts 8 --methods loramoe --vs-rank-r --json out.json   # targets 1, 2
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

QUICK = {"hidden": 256, "intermediate": 688, "layers": 2, "batch": 4, "seq": 64, "repeats": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--intermediate", type=int, default=1376)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=2048, help="small, so the LM head does not dominate")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--experts", type=int, default=4, help="E")
    p.add_argument("--rank", type=int, default=8, help="r of each expert; the PEFT baseline has rank E*r")
    p.add_argument("--targets", default="all", help="all, ffn, attention, or paper (each method's default)")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout of every variant")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds")
    p.add_argument("--steps", type=int, default=1, help="steps per variant per round")
    p.add_argument("--methods", default=None, help="comma-separated subset of the registered methods")
    p.add_argument("--no-xlora-vs-peft", action="store_true", help="skip table 2")
    p.add_argument("--quick", action="store_true", help=f"shrink to {QUICK}")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the raw numbers, ratio statistics and peak memory here")
    p.add_argument("--vs-rank-r", action="store_true",
                   help="also compare every method with one PEFT LoRA of rank r and with E PEFT LoRAs all active")
    p.add_argument("--no-peak-memory", action="store_true", help="skip the CPU peak-RSS subprocess (--json only)")
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)  # internal: CPU peak RSS child
    args = p.parse_args(argv)
    from _bench import apply_quick

    apply_quick(args, p, QUICK)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    for name in ("hidden", "layers", "heads", "batch", "seq", "experts", "rank", "repeats", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.hidden % args.heads:
        p.error("--hidden must be a multiple of --heads")
    return args


def resolve_threads(args: argparse.Namespace) -> int:
    if args.threads is None:
        default = torch.get_num_threads()
        args.threads = default if args.device.startswith("cuda") else max(1, min(default, round(
            (os.cpu_count() or 1) - os.getloadavg()[0])))
    torch.set_num_threads(args.threads)
    return args.threads


# ----------------------------------------------------------------------------------------------- models


def base_model(args: argparse.Namespace):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.heads, vocab_size=args.vocab,
                         max_position_embeddings=max(2048, args.seq), use_cache=False, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = LlamaForCausalLM(config)
    return model.to(args.device).float()


def expert_adapters(args: argparse.Namespace, base, modules: list[str], folder: str) -> list[str]:
    """E PEFT LoRAs (rank r, non-zero A and B) on `modules`, saved as PEFT directories."""
    from peft import LoraConfig, get_peft_model

    paths = []
    for i in range(args.experts):
        torch.manual_seed(args.seed + 100 + i)
        config = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=modules, lora_dropout=args.dropout,
                            init_lora_weights=False)
        peft_model = get_peft_model(copy.deepcopy(base), config)
        path = os.path.join(folder, f"expert{i}")
        peft_model.save_pretrained(path)
        paths.append(path)
    return paths


def build_method(name: str, spec, args, base, loras) -> tuple[Any, list[str]]:
    """The method around a copy of the base (E experts of rank r, `--targets` where it has that setting), and
    the names (in the base model) of the linears it adapted: those now serving as some layer's `base_layer`,
    found by identity, so methods that wrap whole blocks (MixLoRA) are covered too."""
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    overrides: dict[str, Any] = {}
    if "targets" in fields and args.targets != "paper":
        overrides["targets"] = args.targets
    for key, value in (("num_experts", args.experts), ("rank", args.rank), ("alpha", 2.0 * args.rank),
                       ("dropout", args.dropout), ("lora_dropout", args.dropout)):
        if key in fields:
            overrides[key] = value
    cfg = spec.config_cls.from_dict(overrides)
    experts = loras if spec.library == "required" else None  # "optional": E experts of rank r from scratch
    model = copy.deepcopy(base)
    names = {id(m): n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    moe = spec.build(model, cfg, experts, ["bench"])
    adapted = {id(m.base_layer) for m in moe.modules() if isinstance(getattr(m, "base_layer", None), torch.nn.Linear)}
    return moe, [n for i, n in names.items() if i in adapted]


def peft_lora(args, base, modules: list[str], rank: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(args.seed + 7)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=modules, lora_dropout=args.dropout)
    return get_peft_model(copy.deepcopy(base), config)


def peft_multi_lora(args, base, modules: list[str], n: int, rank: int):
    """PEFT with `n` LoRAs of rank `rank` on `modules`, all active at once (their outputs summed, all trainable)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(args.seed + 11)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=modules, lora_dropout=args.dropout)
    model = get_peft_model(copy.deepcopy(base), config, adapter_name="a0")
    for i in range(1, n):
        model.add_adapter(f"a{i}", LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=modules,
                                              lora_dropout=args.dropout))
    model.base_model.set_adapter([f"a{i}" for i in range(n)])  # LoraModel takes a list: every adapter active
    return model


def peft_xlora(args, base, adapter_paths: list[str]):
    from peft import XLoraConfig, get_peft_model

    config = XLoraConfig(task_type="CAUSAL_LM", hidden_size=args.hidden, xlora_depth=1,
                         adapters={str(i): p for i, p in enumerate(adapter_paths)})  # PEFT loads them as "0", "1", ...
    model = copy.deepcopy(base)
    model.config.use_cache = False
    return get_peft_model(model, config)


def copy_classifier(ours, peft_model) -> None:
    """Give PEFT's X-LoRA classifier loralab's weights (both depth 1: one Linear(hidden -> E) with bias)."""
    src = ours.xlora_classifier.net[-1]
    dst = peft_model.base_model.internal_xlora_classifier.layers[-1]
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)


# ----------------------------------------------------------------------------------------------- timing


@dataclass
class Variant:
    name: str
    model: Any
    kind: str  # "fwdbwd" or "fwd"
    info: dict[str, Any] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    memory: float | None = None


def make_step(v: Variant, ids: torch.Tensor) -> Callable[[], None]:
    if v.kind == "fwd":
        def step() -> None:
            with torch.no_grad():
                v.model(input_ids=ids)
    else:
        def step() -> None:
            v.model.zero_grad(set_to_none=True)
            v.model(input_ids=ids, labels=ids).loss.backward()
    return step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(step: Callable[[], None], steps: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def measure_memory(v: Variant, step: Callable[[], None], ids: torch.Tensor, device: str) -> float | None:
    """MiB: CUDA peak during one step; CPU: distinct activation storages saved for backward (fwd+bwd only)."""
    if device.startswith("cuda"):
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        sync(device)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    if v.kind == "fwd":
        return None
    params = {p.untyped_storage().data_ptr() for p in v.model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    v.model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = v.model(input_ids=ids, labels=ids).loss
    loss.backward()
    return sum(seen.values()) / 2**20


def run(variants: list[Variant], ids: torch.Tensor, args: argparse.Namespace) -> None:
    steps = {v.name: make_step(v, ids) for v in variants}
    for v in variants:
        v.model.train()
    for i, v in enumerate(variants):
        print(f"# warm-up {i + 1}/{len(variants)}: {v.name}", file=sys.stderr, flush=True)
        steps[v.name]()
    for r in range(args.repeats):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        start = time.perf_counter()
        for v in order:
            v.times.append(timed(steps[v.name], args.steps, args.device))
        print(f"# round {r + 1}/{args.repeats}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    for v in variants:
        v.memory = measure_memory(v, steps[v.name], ids, args.device)


def paired_ratio(a: Variant, b: Variant) -> float:
    return statistics.median(x / y for x, y in zip(a.times, b.times))


def ms(v: Variant) -> str:
    return f"{1000 * statistics.median(v.times):.1f}"


def mib(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


# ----------------------------------------------------------------------------------------------- main


class _Stop(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Built:
    method_variants: list[Variant]
    baselines: dict[tuple, Variant]
    rank_r: dict[tuple, tuple[Variant, Variant]]  # modules -> (PEFT LoRA r, PEFT E x LoRA r all active)
    xlora_variants: list[Variant]
    skipped: dict[str, str]
    xlora_check: float | None

    @property
    def variants(self) -> list[Variant]:
        extra = [v for pair in self.rank_r.values() for v in pair]
        return self.method_variants + list(self.baselines.values()) + extra + self.xlora_variants


def build_variants(args, specs, chosen: list[str], base, ids: torch.Tensor, tmp: str) -> Built:
    from loralab.moe.builder import select_targets
    from loralab.moe.experts import load_lora_dir

    skipped: dict[str, str] = {}
    print("# building variants ...", file=sys.stderr, flush=True)
    all_linears = select_targets(base, "all")
    adapter_paths = expert_adapters(args, base, all_linears, tmp)
    loras = [load_lora_dir(p, task=f"expert{i}") for i, p in enumerate(adapter_paths)]
    method_variants: list[Variant] = []
    baselines: dict[tuple, Variant] = {}
    rank_r: dict[tuple, tuple[Variant, Variant]] = {}
    for name in chosen:
        spec = specs[name]
        if spec.train is not None:
            skipped[name] = "own training path (not a MoEModel)"
            continue
        if spec.mergeable:
            skipped[name] = "task-routed (mergeable), not token-routed"
            continue
        try:
            moe, modules = build_method(name, spec, args, base, loras)
        except Exception as exc:  # noqa: BLE001  (a method this script cannot configure: say so, go on)
            first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            skipped[name] = f"could not build with E={args.experts}, r={args.rank}: {first}"
            continue
        cfg = moe.method_config
        n_exp, rank = int(getattr(cfg, "num_experts", args.experts)), int(getattr(cfg, "rank", args.rank))
        trainable = sum(p.numel() for p in moe.parameters() if p.requires_grad)
        v = Variant(name, moe, "fwdbwd", {"modules": len(modules), "experts": n_exp, "rank": rank,
                                           "total_rank": n_exp * rank, "trainable": trainable})
        key = (tuple(modules), n_exp * rank)
        if key not in baselines:
            lora = peft_lora(args, base, modules, n_exp * rank)
            baselines[key] = Variant(f"PEFT LoRA r={n_exp * rank} ({len(modules)} modules)", lora, "fwdbwd",
                                     {"modules": len(modules), "total_rank": n_exp * rank,
                                      "trainable": sum(p.numel() for p in lora.parameters() if p.requires_grad)})
        v.info["baseline"] = baselines[key].name
        if args.vs_rank_r:
            rkey = (tuple(modules), n_exp, rank)
            if rkey not in rank_r:
                one = peft_lora(args, base, modules, rank)
                multi = peft_multi_lora(args, base, modules, n_exp, rank)
                tag = f"({len(modules)} modules)"
                rank_r[rkey] = (
                    Variant(f"PEFT LoRA r={rank} {tag} [rank r]", one, "fwdbwd",
                            {"modules": len(modules), "experts": 1, "rank": rank, "total_rank": rank,
                             "trainable": sum(p.numel() for p in one.parameters() if p.requires_grad)}),
                    Variant(f"PEFT {n_exp} x LoRA r={rank} all active {tag}", multi, "fwdbwd",
                            {"modules": len(modules), "experts": n_exp, "rank": rank, "total_rank": n_exp * rank,
                             "trainable": sum(p.numel() for p in multi.parameters() if p.requires_grad)}))
            v.info["rank_r_baseline"], v.info["multi_baseline"] = (x.name for x in rank_r[rkey])
        method_variants.append(v)
    xlora_variants: list[Variant] = []
    xlora_check = None
    if not args.no_xlora_vs_peft and "xlora" in specs:
        table1 = next((v for v in method_variants if v.name == "xlora"), None)
        ours = table1.model if table1 is not None else build_method("xlora", specs["xlora"], args, base, loras)[0]
        theirs = peft_xlora(args, base, adapter_paths)
        copy_classifier(ours, theirs)
        ours.eval()
        theirs.eval()
        with torch.no_grad():
            check_ids = ids[:2, : min(32, args.seq)]
            a, b = ours(input_ids=check_ids).logits, theirs(input_ids=check_ids).logits
        xlora_check = float((a - b).abs().max())
        scale = float(b.abs().max())
        if not xlora_check <= 1e-4 * max(scale, 1.0):
            print(f"error: loralab X-LoRA and PEFT X-LoRA logits differ by {xlora_check:.3g}: "
                  "not the same computation", file=sys.stderr)
            raise _Stop(1)
        for label, model in (("loralab X-LoRA", ours), ("PEFT XLoraModel", theirs)):
            xlora_variants.append(Variant(f"{label} fwd", model, "fwd"))
            if model is ours and table1 is not None:
                continue  # its forward + backward is table 1's "xlora" row: timed once, used in both tables
            xlora_variants.append(Variant(f"{label} fwd+bwd", model, "fwdbwd", {
                "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}))
    built = Built(method_variants, baselines, rank_r, xlora_variants, skipped, xlora_check)
    if not built.variants:
        print("error: nothing to time", file=sys.stderr)
        raise _Stop(2)
    return built


def probe_peaks(variants: list[Variant], ids: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """Child process (CPU): peak RSS of one step of every variant, after one untimed step (see _bench)."""
    from _bench import PeakMemory

    peaks: dict[str, float | None] = {}
    method = ""
    for v in variants:
        v.model.train()
        step = make_step(v, ids)
        step()
        with PeakMemory(args.device) as pm:
            step()
        peaks[v.name], method = pm.mib, pm.method
    return {"peak_mib": peaks, "method": method}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.disable(logging.WARNING)  # PEFT/transformers chatter would interleave with the tables
    import warnings

    warnings.filterwarnings("ignore")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    threads = resolve_threads(args)
    load_before = os.getloadavg()
    from loralab.moe.registry import all_methods

    specs = all_methods()
    chosen = [m.strip() for m in args.methods.split(",")] if args.methods else list(specs)
    unknown = sorted(set(chosen) - set(specs))
    if unknown:
        print(f"error: unknown method(s) {unknown}; registered: {sorted(specs)}", file=sys.stderr)
        return 2
    base = base_model(args)
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen).to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            built = build_variants(args, specs, chosen, base, ids, tmp)
        except _Stop as stop:
            return stop.code
        variants = built.variants
        if args.memory_probe:
            print(json.dumps(probe_peaks(variants, ids, args)))
            return 0
        print(f"# timing {len(variants)} variants, {args.repeats} rounds x {args.steps} step(s) ...",
              file=sys.stderr, flush=True)
        run(variants, ids, args)
    method_variants, baselines, xlora_variants = built.method_variants, built.baselines, built.xlora_variants
    skipped, xlora_check = built.skipped, built.xlora_check

    by_name = {v.name: v for v in variants}
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    mem_col = "peak MiB" if args.device.startswith("cuda") else "saved act. MiB"
    print("\n## LoRA-MoE methods vs one PEFT LoRA of the same total rank (forward + backward)\n")
    print(f"tiny Llama: hidden {args.hidden}, intermediate {args.intermediate}, {args.layers} layers, "
          f"vocab {args.vocab}; "
          f"batch {args.batch} x {args.seq}; E={args.experts}, r={args.rank}, targets {args.targets}; "
          f"{args.device} ({device_name}), {threads} thread(s); median of {args.repeats} interleaved rounds\n")
    print(f"| variant | modules | E x r | trainable | fwd+bwd ms | vs LoRA | {mem_col} | vs LoRA |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v in method_variants:
        b = by_name[v.info["baseline"]]
        print(f"| {v.name} | {v.info['modules']} | {v.info['experts']} x {v.info['rank']} | {v.info['trainable']:,} | "
              f"{ms(v)} | {paired_ratio(v, b):.2f}x | {mib(v.memory)} | {ratio(v.memory, b.memory)} |")
    for b in baselines.values():
        print(f"| {b.name} | {b.info['modules']} | 1 x {b.info['total_rank']} | {b.info['trainable']:,} | {ms(b)} | "
              f"1.00x | {mib(b.memory)} | 1.00x |")
    for name, why in skipped.items():
        print(f"| {name} | skipped: {why} | | | | | | |")
    if built.rank_r:
        print(f"\n## LoRA-MoE methods vs ONE PEFT LoRA of rank r={args.rank}, and PEFT with E LoRAs all active "
              "(forward + backward)\n")
        print(f"| variant | modules | E x r | trainable | fwd+bwd ms | vs LoRA r | {mem_col} | vs LoRA r |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        shown: set[str] = set()
        for v in method_variants:
            one = by_name[v.info["rank_r_baseline"]]
            for x in (v, by_name[v.info["multi_baseline"]], one):
                if x.name in shown:
                    continue
                shown.add(x.name)
                print(f"| {x.name} | {x.info['modules']} | {x.info['experts']} x {x.info['rank']} | "
                      f"{x.info['trainable']:,} | {ms(x)} | {paired_ratio(x, one):.2f}x | {mib(x.memory)} | "
                      f"{ratio(x.memory, one.memory)} |")
    if xlora_variants:
        o_fb = by_name.get("loralab X-LoRA fwd+bwd") or by_name["xlora"]
        o_f, p_f, p_fb = (by_name[n] for n in ("loralab X-LoRA fwd", "PEFT XLoraModel fwd", "PEFT XLoraModel fwd+bwd"))
        print(f"\n## X-LoRA: loralab vs PEFT XLoraModel (same {args.experts} adapters, same classifier; "
              f"max |logit diff| {xlora_check:.1e})\n")
        print(f"| implementation | fwd ms | fwd {mem_col} | fwd+bwd (classifier) ms | fwd+bwd {mem_col} |")
        print("|---|---:|---:|---:|---:|")
        print(f"| loralab | {ms(o_f)} | {mib(o_f.memory)} | {ms(o_fb)} | {mib(o_fb.memory)} |")
        print(f"| PEFT | {ms(p_f)} | {mib(p_f.memory)} | {ms(p_fb)} | {mib(p_fb.memory)} |")
        print(f"| loralab / PEFT | {paired_ratio(o_f, p_f):.2f}x | {ratio(o_f.memory, p_f.memory)} | "
              f"{paired_ratio(o_fb, p_fb):.2f}x | {ratio(o_fb.memory, p_fb.memory)} |")
    load_after = os.getloadavg()
    print(f"\n1-min load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} CPUs; "
          f"torch {torch.__version__}")
    if args.json:
        from _bench import paired_stats, run_probe, write_json

        peak: dict[str, Any] = {"method": "skipped (--no-peak-memory)", "peak_mib": {}}
        if args.device.startswith("cuda"):
            peak = {"method": "torch.cuda.max_memory_allocated during one step - allocated before",
                    "peak_mib": {v.name: v.memory for v in variants}}
        elif not args.no_peak_memory:
            print("# CPU peak memory: one step per variant in a fresh subprocess ...", file=sys.stderr, flush=True)
            try:
                peak = run_probe(__file__, [*argv, "--threads", str(threads), "--memory-probe"])
            except (RuntimeError, ValueError) as exc:  # the timings stand without it
                print(f"# {exc}", file=sys.stderr)
                peak = {"method": f"failed: {str(exc)[:200]}", "peak_mib": {}}
        ratios: dict[str, Any] = {"vs_total_rank": {}, "vs_rank_r": {}, "xlora_vs_peft": {}}
        for v in method_variants:
            ratios["vs_total_rank"][v.name] = paired_stats(v.times, by_name[v.info["baseline"]].times)
            if "rank_r_baseline" in v.info:
                one = by_name[v.info["rank_r_baseline"]]
                ratios["vs_rank_r"][v.name] = paired_stats(v.times, one.times)
                ratios["vs_rank_r"][v.info["multi_baseline"]] = paired_stats(by_name[v.info["multi_baseline"]].times,
                                                                            one.times)
        if xlora_variants:
            ratios["xlora_vs_peft"] = {"fwd": paired_stats(o_f.times, p_f.times),
                                       "fwdbwd": paired_stats(o_fb.times, p_fb.times),
                                       "loralab_fwd": o_f.name, "loralab_fwdbwd": o_fb.name,
                                       "peft_fwd": p_f.name, "peft_fwdbwd": p_fb.name}
        record = {"args": vars(args), "threads": threads, "load_before": load_before, "load_after": load_after,
                  "device_name": device_name, "torch": torch.__version__,
                  "xlora_max_logit_diff": xlora_check, "skipped": skipped,
                  "memory_column": mem_col, "peak_memory_method": peak.get("method"), "ratios": ratios,
                  "variants": {v.name: {"kind": v.kind, "times_s": v.times, "median_s": statistics.median(v.times),
                                        "memory_mib": v.memory, "peak_mib": peak.get("peak_mib", {}).get(v.name),
                                        **v.info}
                               for v in variants}}
        write_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
