#!/usr/bin/env python
"""Seconds per LoRA optimiser step: plain PEFT + HF Trainer vs loralab's AnswerOnlyTrainer, on the same batches.

Three variants, each with the same base model, the same PEFT LoraConfig (`loralab.library.build.lora_config`),
the same LoRA initialisation, identical TrainingArguments (`loralab.training.trainer.training_arguments`), the
same collator and the same batches in the same order:

  (a) plain  `transformers.Trainer` with its default loss: `model(**batch)` with labels (-100 on the prompt),
             so the LM head produces logits at every position. The loop a user would otherwise write.
  (b) loralab `AnswerOnlyTrainer`: the same loss, but logits only at positions that predict an answer token.
  (c) attribution: `AnswerOnlyTrainer`'s loss (summed CE over answer tokens / number of answer tokens) with
             logits at every position (no `logits_to_keep`). (c)/(b) is the speed-up from computing logits only
             where the loss is taken; (a)/(c) is whatever remains (HF's loss path vs ours, normally ~1).

How a step is timed: each variant trains with the real `Trainer.train()` loop, and a callback takes the time from
`on_step_begin` to `on_step_end` (CUDA-synchronised). That window holds exactly one optimiser step as the Trainer runs
it in production -- `training_step` (input transfer, autocast from accelerate, forward, loss, backward),
gradient clipping, `optimizer.step()`, `lr_scheduler.step()` and `zero_grad()` -- and leaves out what is not a
step: trainer setup, dataloader collation, logging. Calling `training_step` by hand would skip accelerate's
`prepare` (and with it bf16 autocast on CUDA) and the clipping, so it would time a loop nobody runs.

Each repeat runs `--steps` steps of every variant on the same `--steps` batches, interleaved per batch
(a b c on batch 1, a b c on batch 2, ...; `--interleave repeat`: all steps of a, then b, then c), the order rotated
per repeat (abc, bca, cab, ...), so machine noise and ordering effects hit all three alike. For per-batch
interleaving `train()` is entered once per batch; the trainer setup this repeats is outside the timed window, and
the CUDA cache is not emptied between calls (see `_forget_prepared`). The reported time of a variant is the median
of its seconds/step over all timed batches; a ratio such as b/a is the median over batches of the paired per-batch
ratio (both variants ran that batch seconds apart), which on a loaded machine is far more stable than a ratio of
means; its quartiles and per-repeat medians are printed as the spread.

CPU threads: with more torch (OpenMP) threads than free cores, every parallel region waits for a descheduled
thread; on a 2-core machine shared with another job this made a SmolLM2-135M step ~10x slower (and a tiny model's
~70x). So on CPU the default is torch's thread count lowered to the cores the 1-minute load average leaves free.

Before timing, with the three models still bit-identical, the script checks that (a), (b) and (c) give the same
loss and the same LoRA gradients on the first batch (eval mode, so no dropout) -- otherwise the comparison is
not of the same computation.

Memory: on CUDA, `torch.cuda.max_memory_allocated` during each variant's timed steps minus what was allocated
just before (weights, optimiser state), i.e. the step's own activations, logits and gradients. On CPU, each variant
runs two steps on the longest timed batch in a fresh subprocess (glibc's mmap threshold pinned, so freed tensors go
back to the OS and RSS follows live memory), and a thread samples psutil RSS every 2 ms during the second step: peak
RSS minus RSS before that step. The first step is there to fault in the mmapped weights and create the optimiser
state. Without psutil: the child's ru_maxrss high-water mark minus RSS before the second step (coarser).

Exit status: 0; 1 if b/a > --max-ratio (default 1.05, a noise allowance) or if the losses/gradients differ.

    python benchmarks/train_step.py                       # smollm2-135m, social_iqa, batch 8, 5 x 5 steps
    python benchmarks/train_step.py --model tiny-llama --steps 3 --repeats 3   # smoke run, seconds (= --quick)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from _bench import RssSampler  # noqa: E402 (benchmarks/ is on sys.path when run as a script)
from loralab.library.build import lora_config
from loralab.training.hparams import LoRAHparams
from loralab.training.trainer import IGNORE, AnswerOnlyTrainer, PadCollator, training_arguments, training_features

VARIANTS = ("a", "b", "c")
QUICK = {"model": "tiny-llama", "steps": 3, "repeats": 3}
LABELS = {
    "a": "plain PEFT + transformers.Trainer (full logits, HF loss)",
    "b": "loralab AnswerOnlyTrainer (logits only where loss is taken)",
    "c": "AnswerOnlyTrainer loss, full logits (no logits_to_keep)",
}


# ---------------------------------------------------------------- the three trainers

class _Harness:
    """Benchmark plumbing shared by all three variants, no effect on the step itself: batches in the given order,
    so every variant sees the same batches (see also `make_trainer`: no logging/saving, no printer callbacks)."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


class PlainTrainer(_Harness, Trainer):
    """(a) transformers.Trainer, default compute_loss: the model computes CE over all logits."""


class LoralabTrainer(_Harness, AnswerOnlyTrainer):
    """(b) loralab's AnswerOnlyTrainer, unchanged."""


def full_logits_answer_loss(model, inputs, num_items):
    """`answer_only_loss` without `logits_to_keep`: the same summed CE / num_items, logits at every position."""
    labels = inputs["labels"]
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    logits = out.logits.float()
    # Shift by padding the labels (as HF's ForCausalLMLoss does) rather than slicing the logits: no copy of them.
    targets = F.pad(labels, (0, 1), value=IGNORE)[:, 1:]
    loss_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                               reduction="sum")
    n_tokens = (targets != IGNORE).sum()
    return loss_sum / (num_items if num_items is not None else n_tokens.clamp(min=1)), n_tokens


class FullLogitsAnswerTrainer(LoralabTrainer):
    """(c) AnswerOnlyTrainer.compute_loss with `full_logits_answer_loss` in place of `answer_only_loss`.

    (AnswerOnlyTrainer also adds a LoRA-MoE auxiliary loss and router statistics; a plain PEFT LoRA has neither.)"""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        if num_items_in_batch is None:
            loss, _ = full_logits_answer_loss(model, inputs, None)
            loss = loss / self.current_gradient_accumulation_steps
        else:
            loss, _ = full_logits_answer_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss


TRAINERS = {"a": PlainTrainer, "b": LoralabTrainer, "c": FullLogitsAnswerTrainer}


class StepTimer(TrainerCallback):
    """Seconds of each optimiser step, on_step_begin -> on_step_end (forward, backward, clip, optimizer, zero_grad)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.times: list[float] = []
        self._t0 = 0.0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self._t0)


# ---------------------------------------------------------------- setup

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="loralab model alias/dir/hub id (tiny-llama: smoke run)")
    p.add_argument("--task", default="social_iqa", help="loralab task (its train split); needs LORALAB_DATA_DIR")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed optimiser steps per variant per repeat")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (a, b, c, then b, c, a, ...)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant before the repeats")
    p.add_argument("--interleave", choices=["step", "repeat"], default="step",
                   help="step: a b c for every batch (default); repeat: all --steps of a, then of b, then of c")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (CPU). Default: torch's default, lowered to the cores the 1-min "
                        "load average leaves free (at least 1); oversubscribed OpenMP threads are pathologically slow")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--max-length", type=int, default=LoRAHparams.max_length)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-ratio", type=float, default=1.05, help="fail (exit 1) if b/a exceeds this")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--json", metavar="OUT", help="write every number (and the per-step times) here")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} (unless given explicitly)")
    p.add_argument("--memory-probe", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: CPU memory subprocess
    args = p.parse_args(argv)
    from _bench import apply_quick

    apply_quick(args, p, QUICK)
    for name in ("batch_size", "steps", "repeats", "max_length"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def resolve_threads(args: argparse.Namespace) -> int:
    """--threads, or torch's default reduced to the CPUs not already busy (1-min load average), at least 1."""
    if args.threads is None:
        default = torch.get_num_threads()
        args.threads = default if args.device == "cuda" else max(1, min(default, round(
            (os.cpu_count() or 1) - os.getloadavg()[0])))
    torch.set_num_threads(args.threads)
    return args.threads


def load_everything(args: argparse.Namespace):
    """Model loader, tokenizer, the hyperparameters and the batches (lists of features), all deterministic."""
    from loralab.data import load_task
    from loralab.models import load_model

    hp = LoRAHparams(batch_size=args.batch_size, max_steps=args.steps, max_length=args.max_length, seed=args.seed)
    first = load_model(args.model, device=args.device)
    task = load_task(args.task)
    train = list(task.split("train"))
    n_batches = args.warmup + args.steps * args.repeats
    need = n_batches * args.batch_size
    rng = random.Random(args.seed)
    order = []
    while len(order) < need:  # a shuffled pass over the train split, repeated if it is too small
        chunk = list(range(len(train)))
        rng.shuffle(chunk)
        order += chunk
    features = training_features(task, first.tokenizer, hp, [train[i] for i in order[:need]])
    batches = [features[i * args.batch_size:(i + 1) * args.batch_size] for i in range(n_batches)]
    return first, hp, batches


def make_trainer(variant: str, lm, hp: LoRAHparams, args: argparse.Namespace, work_dir: str, cuda: bool,
                 precision=None):
    """A fresh PEFT model (same LoraConfig, same seeded init) and its trainer, with identical TrainingArguments.

    `precision` (a `loralab.utils.precision.Precision`, variants b and c only): the autocast AnswerOnlyTrainer runs
    the forward under (None: its default, fp32); `precision_step.py` and `physical_limit.py` pass bf16."""
    from peft import get_peft_model

    set_seed(hp.seed)
    model = get_peft_model(lm.model, lora_config(lm.model, hp))
    targs = training_arguments(hp, work_dir, args.batch_size * args.steps)
    # The benchmark's own changes, the same for every variant: no logging/saving, and --device cpu on a CUDA box.
    changes: dict[str, Any] = {"logging_strategy": "no", "save_strategy": "no"}
    if not cuda and torch.cuda.is_available():
        changes.update(use_cpu=True, bf16=False)
    targs = dataclasses.replace(targs, **changes)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    timer = StepTimer(cuda)
    extra = {} if precision is None else {"precision": precision}
    if extra and variant == "a":
        raise ValueError("variant a (plain transformers.Trainer) takes no loralab precision")
    trainer = TRAINERS[variant](model=model, args=copy.deepcopy(targs), train_dataset=[],
                                data_collator=PadCollator(pad), callbacks=[timer], **extra)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.accelerator.free_memory = types.MethodType(_forget_prepared, trainer.accelerator)
    return trainer, timer


def _forget_prepared(accelerator, *objects):
    """`Accelerator.free_memory` without gc.collect() and torch.cuda.empty_cache(). Trainer.train() calls it on entry;
    the benchmark calls train() once per timed batch, and emptying the CUDA cache every time would make each step
    re-allocate its activations, unlike a real run where train() is entered once. (Same for every variant.)"""
    accelerator._schedulers, accelerator._optimizers, accelerator._models, accelerator._dataloaders = [], [], [], []
    accelerator.step = 0
    return [None] * len(objects)


def run_steps(trainer, timer: StepTimer, batches: list[list[dict]]) -> list[float]:
    """Train on exactly these batches (one optimiser step each) and return the seconds of each step."""
    trainer.train_dataset = [f for b in batches for f in b]
    trainer.args.max_steps = len(batches)
    start = len(timer.times)
    trainer.train()
    times = timer.times[start:]
    if len(times) != len(batches):
        raise RuntimeError(f"expected {len(batches)} timed steps, got {len(times)}")
    return times


# ---------------------------------------------------------------- checks and memory

def trainable_state(model) -> dict[str, torch.Tensor]:
    return {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}


def fairness_check(trainers: dict[str, Any], batch: list[dict], collator: PadCollator) -> dict[str, Any]:
    """Same LoRA init, and the same loss and LoRA gradients on one batch (eval mode: no dropout, fp32)."""
    ref = trainable_state(trainers["a"].model)
    for v in VARIANTS[1:]:
        other = trainable_state(trainers[v].model)
        if other.keys() != ref.keys() or any(not torch.equal(ref[k], other[k]) for k in ref):
            raise RuntimeError(f"variant {v}: LoRA weights differ from variant a before training")
    inputs = collator(batch)
    num_items = (inputs["labels"][:, 1:] != IGNORE).sum()  # what Trainer.train() passes as num_items_in_batch
    losses, grads = {}, {}
    for v in VARIANTS:
        tr = trainers[v]
        tr.model.eval()
        prepared = tr._prepare_inputs(dict(inputs))
        loss = tr.compute_loss(tr.model, prepared, num_items_in_batch=num_items.to(tr.args.device))
        loss.backward()
        losses[v] = loss.item()
        grads[v] = {k: p.grad.detach().clone() for k, p in tr.model.named_parameters() if p.grad is not None}
        tr.model.zero_grad(set_to_none=True)
        tr.model.train()
    result: dict[str, Any] = {"loss": losses, "num_answer_tokens": int(num_items)}
    for v in VARIANTS[1:]:
        scale = max(g.abs().max().item() for g in grads["a"].values())
        diff = max((grads[v][k] - g).abs().max().item() for k, g in grads["a"].items())
        result[f"loss_rel_diff_{v}_vs_a"] = abs(losses[v] - losses["a"]) / max(abs(losses["a"]), 1e-12)
        result[f"grad_rel_diff_{v}_vs_a"] = diff / max(scale, 1e-30)
    result["ok"] = all(result[f"loss_rel_diff_{v}_vs_a"] <= 1e-4 and result[f"grad_rel_diff_{v}_vs_a"] <= 1e-3
                       for v in VARIANTS[1:])
    return result


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_probe(args: argparse.Namespace) -> None:
    """Child process: two steps of one variant on the longest timed batch, the 2nd measured; prints JSON."""
    lm, hp, batches = load_everything(args)
    timed = batches[args.warmup:]
    longest = max(timed, key=lambda b: max(len(f["input_ids"]) for f in b))
    with tempfile.TemporaryDirectory() as work:
        trainer, timer = make_trainer(args.memory_probe, lm, hp, args, work, cuda=False)
        # A warm-up step first: it faults in the (mmapped) weights and creates the optimiser state, which would
        # otherwise count as the step's memory (~0.5 GB for SmolLM2-135M).
        run_steps(trainer, timer, [longest])
        try:
            sampler = RssSampler()
            method = ("CPU RSS (psutil, sampled every 2 ms) in a fresh process per variant, 2nd step on the longest "
                      "batch: peak - RSS before the step")
        except ImportError:
            sampler = None
            method = ("ru_maxrss high-water mark of a fresh process per variant - RSS before its 2nd step "
                      "(psutil not installed; coarse)")
        before = current_rss()
        if sampler is not None:
            sampler.start()
        run_steps(trainer, timer, [longest])
        if sampler is not None:
            peak = sampler.stop()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"peak_bytes": max(0, peak - before), "method": method,
                      "batch_shape": [len(longest), max(len(f["input_ids"]) for f in longest)]}))


def cpu_memory(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")  # freed large tensors are unmapped, RSS tracks live bytes
    out: dict[str, Any] = {}
    for v in VARIANTS:
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--threads", str(args.threads), "--memory-probe", v]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe {v} failed:\n{proc.stderr[-3000:]}")
        out[v] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# ---------------------------------------------------------------- main

def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    resolve_threads(args)
    if args.memory_probe:
        memory_probe(args)
        return 0
    cuda = args.device == "cuda"
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    print(f"# loading {args.model} and {args.task} ...", file=sys.stderr)
    from loralab.models import load_model

    first, hp, batches = load_everything(args)
    collator = PadCollator(first.tokenizer.pad_token_id if first.tokenizer.pad_token_id is not None else 0)
    warm, timed = batches[:args.warmup], batches[args.warmup:]
    repeats = [timed[r * args.steps:(r + 1) * args.steps] for r in range(args.repeats)]

    with tempfile.TemporaryDirectory() as work:
        trainers, timers = {}, {}
        for v in VARIANTS:  # a separate copy of the base model per variant, so the three never share state
            lm = first if v == "a" else load_model(args.model, device=args.device)
            trainers[v], timers[v] = make_trainer(v, lm, hp, args, os.path.join(work, v), cuda)

        check = fairness_check(trainers, timed[0], collator)
        print(f"# loss check on batch 1: a={check['loss']['a']:.6f} b={check['loss']['b']:.6f} "
              f"c={check['loss']['c']:.6f} ({'same' if check['ok'] else 'DIFFERENT'})", file=sys.stderr)

        if warm:
            for v in VARIANTS:
                run_steps(trainers[v], timers[v], warm)

        step_times = {v: [] for v in VARIANTS}  # per repeat: list of seconds per step
        peak_cuda = {v: 0 for v in VARIANTS}

        def timed_run(v: str, chunk: list[list[dict]]) -> list[float]:
            if cuda:
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            times = run_steps(trainers[v], timers[v], chunk)
            if cuda:
                peak_cuda[v] = max(peak_cuda[v], torch.cuda.max_memory_allocated() - base)
            return times

        for r, rep in enumerate(repeats):
            order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
            for v in VARIANTS:
                step_times[v].append([])
            if args.interleave == "step":  # a b c on batch 1, a b c on batch 2, ...
                for batch in rep:
                    for v in order:
                        step_times[v][-1] += timed_run(v, [batch])
            else:  # a on all batches, then b, then c
                for v in order:
                    step_times[v][-1] += timed_run(v, rep)
            means = {v: sum(step_times[v][-1]) / len(rep) for v in VARIANTS}
            print(f"# repeat {r + 1}/{args.repeats} ({''.join(order)}): "
                  + "  ".join(f"{v} {means[v]:.3f}s" for v in VARIANTS), file=sys.stderr)

    per_repeat = {v: [sum(ts) / len(ts) for ts in step_times[v]] for v in VARIANTS}
    flat = {v: [t for ts in step_times[v] for t in ts] for v in VARIANTS}  # same batch at the same index
    med = {v: median(flat[v]) for v in VARIANTS}

    def paired(num: str, den: str) -> dict[str, Any]:
        """num/den per batch (the two ran the same batch seconds apart): median, quartiles, per-repeat medians."""
        per_step = [n / d for n, d in zip(flat[num], flat[den])]
        q1, _, q3 = statistics.quantiles(per_step, n=4) if len(per_step) > 1 else (per_step[0],) * 3
        per_rep = [median([n / d for n, d in zip(step_times[num][r], step_times[den][r])])
                   for r in range(len(step_times[num]))]
        return {"median": median(per_step), "q1": q1, "q3": q3, "per_repeat_median": per_rep, "per_step": per_step}

    ratio_ba, ratio_cb, ratio_ac, ratio_ca = paired("b", "a"), paired("c", "b"), paired("a", "c"), paired("c", "a")
    vs_a = {"a": 1.0, "b": ratio_ba["median"], "c": ratio_ca["median"]}

    memory: dict[str, Any] = {}
    if args.no_memory:
        memory = {"method": "skipped (--no-memory)", "peak_bytes": {v: None for v in VARIANTS}}
    elif cuda:
        memory = {"method": "torch.cuda.max_memory_allocated during the timed steps - allocated before them",
                  "peak_bytes": peak_cuda}
    else:
        print("# CPU memory: two steps per variant in a fresh subprocess ...", file=sys.stderr)
        try:
            probes = cpu_memory(args, argv)
            memory = {"method": probes["a"]["method"], "batch_shape": probes["a"]["batch_shape"],
                      "peak_bytes": {v: probes[v]["peak_bytes"] for v in VARIANTS}}
        except RuntimeError as exc:  # the timings stand without it
            print(f"# {exc}", file=sys.stderr)
            memory = {"method": "failed (see stderr)", "peak_bytes": {v: None for v in VARIANTS}}

    # Shape of the work: padded positions per batch vs positions that predict an answer token (the kept logits).
    shapes = []
    for b in timed:
        x = collator(b)
        keep = (x["labels"][:, 1:] != IGNORE).any(dim=0).sum().item()
        shapes.append((x["input_ids"].shape[1], keep))
    mean_len = sum(s[0] for s in shapes) / len(shapes)
    mean_keep = sum(s[1] for s in shapes) / len(shapes)

    passed_speed = ratio_ba["median"] <= args.max_ratio
    passed = passed_speed and check["ok"]
    device_name = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine())
    result = {
        "model": args.model, "task": args.task, "device": args.device, "device_name": device_name,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "interleave": args.interleave,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
        "bf16": bool(trainers["a"].args.bf16), "mean_padded_length": mean_len,
        "mean_answer_positions": mean_keep, "lora": {"rank": hp.rank, "alpha": hp.alpha, "dropout": hp.dropout},
        "seconds_per_step_median": med, "seconds_per_step_per_repeat_mean": per_repeat,
        "seconds_per_step_raw": step_times, "ratio_b_over_a": ratio_ba, "ratio_c_over_b": ratio_cb,
        "ratio_a_over_c": ratio_ac, "ratio_c_over_a": ratio_ca,
        "memory": memory, "loss_check": check, "max_ratio": args.max_ratio, "passed": passed,
        "wall_seconds": time.perf_counter() - t_start,
        "versions": {m.__name__: m.__version__ for m in _modules()},
    }

    mib = {v: (None if memory["peak_bytes"][v] is None else memory["peak_bytes"][v] / 2**20) for v in VARIANTS}
    print(f"**{args.model} / {args.task}**, {args.device} ({device_name}), batch {args.batch_size}, "
          f"{args.repeats} repeats x {args.steps} steps ({args.interleave}-interleaved), "
          f"{args.threads} torch thread(s), mean padded length {mean_len:.0f}, "
          f"logit positions in (b) {mean_keep:.1f} per batch, bf16 {result['bf16']}\n")
    print("| variant | what | median s/step | time / (a) | peak step memory (MiB) | loss on batch 1 |")
    print("|---|---|---:|---:|---:|---:|")
    for v in VARIANTS:
        mem = "n/a" if mib[v] is None else f"{mib[v]:.0f}"
        print(f"| ({v}) | {LABELS[v]} | {med[v]:.3f} | {vs_a[v]:.3f} | {mem} | {check['loss'][v]:.6f} |")
    print()

    def spread(r: dict[str, Any]) -> str:
        reps = r["per_repeat_median"]
        return (f"quartiles {r['q1']:.3f}-{r['q3']:.3f} over {len(r['per_step'])} batches; per-repeat medians "
                f"{min(reps):.3f}-{max(reps):.3f}")

    print(f"- b/a = **{ratio_ba['median']:.3f}** (median over batches of the paired per-batch ratio; "
          f"{spread(ratio_ba)}); pass if <= {args.max_ratio} -> {'PASS' if passed_speed else 'FAIL'}")
    print(f"- c/b = **{ratio_cb['median']:.3f}**: speed-up from computing logits only where the loss is taken "
          f"({spread(ratio_cb)})")
    print(f"- a/c = {ratio_ac['median']:.3f}: HF's default loss path vs ours, both with full logits "
          f"({spread(ratio_ac)})")
    print(f"- same computation: loss rel. diff b vs a {check['loss_rel_diff_b_vs_a']:.1e}, c vs a "
          f"{check['loss_rel_diff_c_vs_a']:.1e}; LoRA grad rel. diff b vs a {check['grad_rel_diff_b_vs_a']:.1e}, "
          f"c vs a {check['grad_rel_diff_c_vs_a']:.1e} -> {'OK' if check['ok'] else 'MISMATCH'}")
    print(f"- memory: {memory['method']}")
    print(f"- load average before/after: {load_before[0]:.2f} / {result['load_average_after'][0]:.2f} "
          f"({os.cpu_count()} CPUs); wall {result['wall_seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if not check["ok"]:
        print("FAIL: (a), (b), (c) do not compute the same loss/gradients; the timing is not a fair comparison",
              file=sys.stderr)
    if not passed_speed:
        print(f"FAIL: b/a = {ratio_ba['median']:.3f} > {args.max_ratio}", file=sys.stderr)
    return 0 if passed else 1


def _modules():
    import accelerate
    import peft
    import transformers

    return [torch, transformers, peft, accelerate]


if __name__ == "__main__":
    sys.exit(main())
