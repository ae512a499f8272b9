#!/usr/bin/env python
"""Multiple-choice evaluation speed: loralab's evaluator vs lm-evaluation-harness's HF model, same examples and model.

A suite task's split is exported with `loralab.recipes.evaluate.export_task` (what `loralab data export` writes), and both
harnesses read that one file: loralab as a unified JSONL task, lm-eval as a local JSON task (`dataset_path: json`,
`target_delimiter: ""`, exactly as tests/eval/test_eval_lmeval_parity.py runs it). Both score the SAME model
object (loaded once by `loralab.models.load_model`) on the same device.

What is timed, per round (after one untimed warm-up run of each side, which is also the correctness check):

* lm-eval: `HFLM.loglikelihood` on the task's request instances (built once by lm-eval itself from the exported
  docs, `task.build_all_requests`), i.e. only the model work; lm-eval's task loading and metric code are left out,
  which favours lm-eval. `--batch-size` (default 8) is HFLM's batch of (prompt + choice) sequences.
* loralab: `loralab.eval.evaluate(..., batch_size=--batch-size)` on the exported task, everything included
  (prompt rendering, tokenisation, scoring, the three metrics). Each question is one packed row (its prompt,
  then all its choices, a tree attention mask), and up to `--batch-size` rows of similar length share a forward
  (at most 2048 padded tokens and 5 % padding per forward).
* `--with-kvcache`: also loralab with `LoglikScorer(pack=False)`, the KV-cache batching that came before packing
  (`--batch-size` questions with the same number of choices: prompts in one left-padded forward, then all their
  choices in one forward on the repeated cache); `--with-unbatched`: loralab with batch_size=1.

Token rows: every loralab side reports the token rows it pushed through the model (batch x padded length, summed
over forwards) against the minimum for a scorer that runs each prompt once and each choice once (every prompt
token and every choice token but the last, which is only a target; no padding); `EvalOutput.scoring`.

Rounds alternate which side goes first. The reported ratio is the median over rounds of the paired per-round
ratio (lm-eval seconds / loralab seconds = loralab examples/s / lm-eval examples/s), with its spread.

Correctness: `acc` per example must be identical, loralab's `predictions["acc"] in answers` against lm-eval's own
`task.process_results` on its log-likelihoods; otherwise the script prints the differing ids and exits 1.

Peak memory: CUDA: `torch.cuda.max_memory_allocated` during one full run minus what was allocated before (the
model). CPU: each side runs in a fresh subprocess (glibc's mmap threshold pinned so freed tensors go back to the
OS): load the model, one warm-up run, then the peak RSS during one full run minus the RSS before it (VmHWM reset
through /proc/self/clear_refs; see benchmarks/_bench.py). tracemalloc cannot see torch's allocations and
`ru_maxrss` alone is dominated by the model load, so neither is used; `ru_maxrss` is recorded for reference.

Precision (`--precision`, default fp32): both sides run under the same `loralab.utils.precision` autocast (bf16:
`torch.autocast` around loralab's `evaluate` and around lm-eval's `HFLM.loglikelihood`, the same model object in
fp32 weights). fp32 must give identical per-example `acc`. Under bf16 the two harnesses feed the model different
shapes (packed rows vs one sequence per choice), so the bf16 rounding of a matmul's output can fall differently
and a near-tie question can flip: there at most `--bf16-max-acc-differ` (default 2 %) of the examples may differ.
Where bf16 is not native (a CPU without AVX512-BF16/AMX) `--precision bf16` times nothing and writes
`{"status": "n/a", "reason": ...}` (exit 0): emulated bf16 is ~100x slower and not what anyone would run;
`--allow-emulated` runs it anyway (a code-path test; the JSON says `"bf16": "emulated"`).

Exit status: 0; 1 if `acc` differs (beyond the bf16 allowance) or the ratio is below --min-ratio (default 2.0;
`benchmarks/run` applies the noise margin itself).

    python benchmarks/mc_eval.py                               # smollm2-135m, social_iqa, 200 test examples, 3 rounds
    python benchmarks/mc_eval.py --task navigate --limit 100
    python benchmarks/mc_eval.py --quick                       # 24 examples, 2 rounds
    python benchmarks/mc_eval.py --task goal_step_wikihow_step_inference --with-kvcache   # long choices
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (PeakMemory, bf16_status, default_device, machine_info, paired_stats, resolve_threads, run_probe,
                    sync, write_json, write_not_applicable)

QUICK = {"limit": 24, "repeats": 2}
UNBATCHED = "loralab batch_size=1"
KVCACHE = "loralab KV-cache batching"
LMEVAL_TASK = "loralab_bench_export"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="loralab model alias/dir/hub id")
    p.add_argument("--task", default="social_iqa", help="a multiple-choice loralab task (suite name or file)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=200, help="first N examples of the split")
    p.add_argument("--batch-size", type=int, default=8,
                   help="lm-eval HFLM batch size (prompt+choice sequences) and loralab's (questions)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (each: one full run of both sides)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--min-ratio", type=float, default=2.0, help="exit 1 below this examples/s ratio")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="autocast of both sides")
    p.add_argument("--allow-emulated", action="store_true",
                   help="--precision bf16 even where bf16 is emulated (a code-path test; its times mean nothing)")
    p.add_argument("--bf16-max-acc-differ", type=float, default=0.02,
                   help="bf16: the largest fraction of examples whose acc may differ between the two harnesses")
    p.add_argument("--with-unbatched", action="store_true",
                   help="also time loralab with batch_size=1 (one question per forward, as before batching)")
    p.add_argument("--with-kvcache", action="store_true",
                   help="also time loralab with the KV-cache batching (pack=False), the evaluator before packing")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--json", default=None, help="write every number here")
    p.add_argument("--memory-probe", choices=["loralab", "lmeval"], help=argparse.SUPPRESS)  # internal
    p.add_argument("--export-file", default=None, help=argparse.SUPPRESS)  # internal: reuse the parent's export
    args = p.parse_args(argv)
    from _bench import apply_quick

    apply_quick(args, p, QUICK)
    for name in ("limit", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    args.device = args.device or default_device()
    return args


# ------------------------------------------------------------------------------------------------ the two sides


class LoralabSide:
    def __init__(self, lm, export_file: Path, batch_size: int, name: str = "loralab",
                 scorer_options: dict[str, Any] | None = None, precision=None) -> None:
        from loralab.data import load_task
        from loralab.utils.precision import resolve_precision

        self.lm, self.batch_size, self.name, self.scorer_options = lm, batch_size, name, scorer_options
        self.precision = precision if precision is not None else resolve_precision("fp32", lm.model.device)
        self.task = load_task(str(export_file))
        self.n = len(self.task.split("test"))
        self.scoring: dict[str, float] | None = None  # token rows of the last full run

    def run(self, limit: int | None = None) -> dict[str, float]:
        """Per-example acc (by example id)."""
        from loralab.eval import evaluate

        with self.precision.autocast():
            out = evaluate(self.lm.model, self.lm.tokenizer, self.task, split="test", limit=limit, log_samples=True,
                           progress=False, batch_size=self.batch_size, scorer_options=self.scorer_options)
        if limit is None and out.scoring is not None:
            self.scoring = out.scoring.as_dict()
        return {s["id"]: float(s["predictions"]["acc"] in s["answers"]) for s in out.samples}


class LmEvalSide:
    name = "lm-eval"

    def __init__(self, lm, export_file: Path, task_dir: Path, batch_size: int, precision=None) -> None:
        import logging

        from loralab.utils.precision import resolve_precision

        self.precision = precision if precision is not None else resolve_precision("fp32", lm.model.device)
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager, get_task_dict

        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        from loralab.recipes.lmeval import task_yaml

        (task_dir / f"{LMEVAL_TASK}.yaml").write_text(task_yaml(LMEVAL_TASK, export_file), encoding="utf-8")
        self.hflm = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size)
        self.task = get_task_dict([LMEVAL_TASK], TaskManager(include_path=str(task_dir)))[LMEVAL_TASK]
        self.task.build_all_requests(limit=None, rank=0, world_size=1)
        self.docs = {doc_id: doc for doc_id, doc in self.task.doc_iterator(rank=0, limit=None, world_size=1)}
        by_doc = defaultdict(list)
        for inst in self.task.instances:
            by_doc[inst.doc_id].append(inst)
        self.by_doc = {d: sorted(v, key=lambda x: x.idx) for d, v in by_doc.items()}
        self.n = len(self.docs)

    def run(self, limit: int | None = None) -> dict[str, float]:
        """lm-eval's loglikelihood on the (first `limit` docs') requests, then its own per-doc acc."""
        doc_ids = sorted(self.docs)[:limit] if limit else sorted(self.docs)
        instances = [inst for d in doc_ids for inst in self.by_doc[d]]
        for inst in instances:
            inst.resps = []
        with self.precision.autocast():
            resps = self.hflm.loglikelihood(instances, disable_tqdm=True)
        for inst, resp in zip(instances, resps, strict=True):
            inst.resps.append(resp)
            inst.filtered_resps = {"none": resp}  # lm-eval's default filter for multiple choice: take the first
        return {self.docs[d]["id"]: float(self.task.process_results(
            self.docs[d], [inst.filtered_resps["none"] for inst in self.by_doc[d]])["acc"]) for d in doc_ids}


def timed_run(side, device: str) -> tuple[float, dict[str, float]]:
    sync(device)
    start = time.perf_counter()
    accs = side.run()
    sync(device)
    return time.perf_counter() - start, accs


def setup(args: argparse.Namespace, work: Path, export_file: Path | None = None):
    from loralab.recipes.evaluate import export_task
    from loralab.data import load_task
    from loralab.models import load_model

    if export_file is None:
        task = load_task(args.task)
        if task.kind != "multiple_choice":
            raise SystemExit(f"error: {args.task} is a {task.kind} task; this benchmark needs multiple choice")
        export_file = work / "export.jsonl"
        export_task(task, export_file, split=args.split, limit=args.limit)
    lm = load_model(args.model, device=args.device)
    lm.model.eval()
    return lm, export_file


def memory_probe(args: argparse.Namespace) -> None:
    """Child (CPU): one side only; warm-up run, then the peak RSS over one full run."""
    with tempfile.TemporaryDirectory() as tmp:
        lm, export_file = setup(args, Path(tmp), Path(args.export_file) if args.export_file else None)
        side = LoralabSide(lm, export_file, args.batch_size, precision=args.prec) if args.memory_probe == "loralab" \
            else LmEvalSide(lm, export_file, Path(tmp), args.batch_size, precision=args.prec)
        side.run(limit=min(8, side.n))  # warm-up: lazy initialisation, allocator caches
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with PeakMemory(args.device) as pm:
            side.run()
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": pm.mib, "method": pm.method, "ru_maxrss_kib_before_run": maxrss_before,
                      "ru_maxrss_kib_after_run": maxrss_after}))


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    threads = resolve_threads(args.device, args.threads)
    from loralab.utils.precision import resolve_precision

    bf16_mode, bf16_reason = None, ""
    if args.precision == "bf16":
        bf16_mode, bf16_reason = bf16_status(args.device, args.allow_emulated)
        if bf16_mode is None:
            return write_not_applicable(args.json, bf16_reason, args.device,
                                        "multiple-choice eval, loralab vs lm-eval, both bf16 autocast")
    args.prec = resolve_precision(args.precision, args.device)
    if args.memory_probe:
        memory_probe(args)
        return 0
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"# exporting {args.task} ({args.split}, first {args.limit}) and loading {args.model} ...",
              file=sys.stderr, flush=True)
        lm, export_file = setup(args, work)
        sides = [LmEvalSide(lm, export_file, work, args.batch_size, precision=args.prec),
                 LoralabSide(lm, export_file, args.batch_size, precision=args.prec)]
        if sides[0].n != sides[1].n:
            print(f"error: lm-eval sees {sides[0].n} examples, loralab {sides[1].n}", file=sys.stderr)
            return 1
        n = sides[1].n
        if args.with_kvcache:
            sides.append(LoralabSide(lm, export_file, args.batch_size, name=KVCACHE, scorer_options={"pack": False},
                                     precision=args.prec))
        if args.with_unbatched:
            sides.append(LoralabSide(lm, export_file, 1, name=UNBATCHED, precision=args.prec))
        # warm-up + correctness: per-example acc must be identical
        accs = {}
        for side in sides:
            print(f"# warm-up / check: {side.name} ...", file=sys.stderr, flush=True)
            accs[side.name] = timed_run(side, args.device)[1]
        mine, theirs = accs["loralab"], accs["lm-eval"]
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        for extra in (KVCACHE, UNBATCHED):
            if extra in accs:
                differ = sorted(set(differ) | {k for k in set(theirs) if accs[extra].get(k) != theirs.get(k)})
        acc_mine, acc_theirs = sum(mine.values()) / n, sum(theirs.values()) / n
        if differ:
            print(f"per-example acc differs on {len(differ)} of {n} examples (loralab acc {acc_mine:.4f}, "
                  f"lm-eval acc {acc_theirs:.4f}); first ids: {differ[:10]}", file=sys.stderr)
        times: dict[str, list[float]] = {side.name: [] for side in sides}
        for r in range(args.repeats):
            order = sides[r % len(sides):] + sides[:r % len(sides)] if len(sides) > 2 else \
                (sides if r % 2 == 0 else sides[::-1])
            for side in order:
                seconds, _ = timed_run(side, args.device)
                times[side.name].append(seconds)
            print(f"# round {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  file=sys.stderr, flush=True)
        memory: dict[str, Any] = {"method": "skipped (--no-memory)", "peak_mib": {"lm-eval": None, "loralab": None}}
        if not args.no_memory:
            if args.device.startswith("cuda"):
                peaks = {}
                for side in sides:
                    with PeakMemory(args.device) as pm:
                        side.run()
                    peaks[side.name] = pm.mib
                memory = {"method": pm.method + " (one full run)", "peak_mib": peaks}
            else:
                print("# CPU peak memory: one fresh subprocess per side ...", file=sys.stderr, flush=True)
                probes = {}
                for key, label in (("lmeval", "lm-eval"), ("loralab", "loralab")):
                    try:
                        probes[label] = run_probe(__file__, [*argv, "--threads", str(threads), "--memory-probe",
                                                             key, "--export-file", str(export_file)])
                    except (RuntimeError, ValueError) as exc:
                        print(f"# {exc}", file=sys.stderr)
                        probes[label] = {"peak_mib": None, "method": "failed"}
                memory = {"method": probes["loralab"]["method"] + " over one full run, fresh subprocess per side "
                          "after a warm-up run", "peak_mib": {k: v["peak_mib"] for k, v in probes.items()},
                          "probes": probes}

    ratio = paired_stats(times["lm-eval"], times["loralab"])
    eps = {k: n / statistics.median(v) for k, v in times.items()}
    device_name = machine_info(args.device)["device_name"]
    allowed = int(args.bf16_max_acc_differ * n) if args.precision == "bf16" else 0
    ok_acc = len(differ) <= allowed
    passed = ok_acc and ratio["median"] >= args.min_ratio
    print(f"**{args.model} / {args.task}** ({args.split}, {n} examples, "
          f"{sum(len(e.choices) for e in sides[1].task.split('test'))} choices in all), {args.device} ({device_name}), "
          f"{threads} torch thread(s), lm-eval batch size {args.batch_size}, {args.repeats} interleaved rounds\n")
    print("| harness | median s | examples/s | vs lm-eval | acc | peak MiB |")
    print("|---|---:|---:|---:|---:|---:|")

    def mem(k: str) -> str:
        v = memory["peak_mib"].get(k)
        return "n/a" if v is None else f"{v:.0f}"

    print(f"| lm-eval {lm_eval_version()} HFLM (loglikelihood) | {statistics.median(times['lm-eval']):.2f} | "
          f"{eps['lm-eval']:.2f} | 1.00x | {acc_theirs:.4f} | {mem('lm-eval')} |")
    print(f"| loralab evaluate | {statistics.median(times['loralab']):.2f} | {eps['loralab']:.2f} | "
          f"{ratio['median']:.2f}x | {acc_mine:.4f} | {mem('loralab')} |")
    kvcache = None
    if args.with_kvcache:
        kvcache = {"vs_lm_eval": paired_stats(times["lm-eval"], times[KVCACHE]),
                   "packed_speedup": paired_stats(times[KVCACHE], times["loralab"])}
        print(f"| loralab evaluate, KV-cache batching (pack=False; before packing) | "
              f"{statistics.median(times[KVCACHE]):.2f} | {eps[KVCACHE]:.2f} | "
              f"{kvcache['vs_lm_eval']['median']:.2f}x | {sum(accs[KVCACHE].values()) / n:.4f} | n/a |")
    unbatched = None
    if args.with_unbatched:
        unbatched = {"vs_lm_eval": paired_stats(times["lm-eval"], times[UNBATCHED]),
                     "batched_speedup": paired_stats(times[UNBATCHED], times["loralab"])}
        print(f"| loralab evaluate, batch_size=1 (one question per forward) | "
              f"{statistics.median(times[UNBATCHED]):.2f} | {eps[UNBATCHED]:.2f} | "
              f"{unbatched['vs_lm_eval']['median']:.2f}x | {sum(accs[UNBATCHED].values()) / n:.4f} | n/a |")
        print(f"\n- batching questions (batch_size {args.batch_size} vs 1): "
              f"{unbatched['batched_speedup']['median']:.3f}x faster")
    if kvcache is not None:
        print(f"\n- packed rows vs KV-cache batching: {kvcache['packed_speedup']['median']:.3f}x faster")
    token_rows = {side.name: side.scoring for side in sides if isinstance(side, LoralabSide) and side.scoring}
    print_token_rows(token_rows)
    print(f"\n- examples/s ratio loralab / lm-eval = **{ratio['median']:.3f}** (median of paired per-round ratios; "
          f"min-max {ratio['min']:.3f}-{ratio['max']:.3f}); pass if >= {args.min_ratio} -> "
          f"{'PASS' if ratio['median'] >= args.min_ratio else 'FAIL'}")
    print(f"- per-example acc: {'identical' if not differ else f'differs on {len(differ)} examples'} "
          f"(allowed: {allowed}; {int(sum(mine.values()))} correct of {n}) -> {'OK' if ok_acc else 'FAIL'}")
    print(f"- precision: {args.prec.name} ({args.prec.reason})")
    print(f"- memory: {memory['method']}")
    load_after = os.getloadavg()
    print(f"- load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} ({os.cpu_count()} CPUs); "
          f"wall {time.perf_counter() - t0:.0f} s")
    if args.json:
        write_json(args.json, {
            "args": {k: v for k, v in vars(args).items() if k != "prec"}, "threads": threads,
            "machine": machine_info(args.device), "n": n,
            "load_before": load_before, "load_after": load_after, "lm_eval_version": lm_eval_version(),
            "seconds": times, "examples_per_second": eps, "ratio": ratio, "acc": {"loralab": acc_mine,
                                                                                  "lm-eval": acc_theirs},
            "acc_identical": not differ, "acc_ok": ok_acc, "acc_differs_allowed": allowed, "acc_differs_ids": differ,
            "status": "measured", "precision": args.prec.to_dict(), "bf16": bf16_mode, "bf16_reason": bf16_reason,
            "memory": memory, "passed": passed,
            "unbatched": unbatched, "kvcache": kvcache, "token_rows": token_rows,
            "wall_seconds": time.perf_counter() - t0})
    return 0 if passed else 1


def print_token_rows(token_rows: dict[str, dict[str, float]]) -> None:
    """Rows pushed through the model per loralab side, against the minimum (each prompt once, each choice once
    but its last token, no padding)."""
    print("\n| loralab scorer | forwards | token rows | minimum | rows / minimum | rows / all tokens |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, st in token_rows.items():
        print(f"| {name} | {st['forwards']} | {st['rows']} | {st['min_rows']} | {st['ratio']:.3f}x | "
              f"{st['ratio_all_tokens']:.3f}x |")


def lm_eval_version() -> str:
    try:
        import lm_eval

        return str(lm_eval.__version__)
    except (ImportError, AttributeError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
