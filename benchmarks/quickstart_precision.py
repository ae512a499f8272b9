#!/usr/bin/env python
"""End-to-end wall time of `loralab bench` on a cut-down quickstart, `precision: auto` (bf16) vs `precision: fp32`.

Where `auto` resolves to fp32 (`loralab.utils.precision.resolve_precision("auto", device)`: no native bf16), the
two runs would be the same run twice and the ratio 1 by construction, so nothing runs: the JSON says
`{"status": "n/a", "reason": ...}` (exit 0). Where `auto` is bf16, the cut-down config is written twice (once
per precision) and `python -m loralab.cli --threads N bench CONFIG --out DIR` runs each in a fresh output folder
(so each builds its own library in its own precision: the whole pipeline, nothing shared or cached), fp32 first.
The figure is bf16 seconds / fp32 seconds of the whole command (one run each; a report row, no bound). Each run
must exit 0 and its database must record the precision asked for in every cell (`cells.precision`), else the
check fails.

The cut (`CUT`) keeps the quickstart's model, hyperparameters and pipeline (library build, a selection, a
LoRA-MoE method trained and evaluated, the report) and shrinks its size, from 13 cells / ~23 min to 3 cells:
library of 3 multiple-choice tasks (sports_understanding, social_iqa, strategyqa) with 8 steps each instead of
6 tasks x 40; target sports_understanding (not arithmetic_2_digit_addition, whose generations are slower);
methods base, lora, loramoe (not merge_linear, rocket); strategy random only; k 2; seed 0 only; 5 training steps
instead of 20; 20 test questions instead of 195. Results before 2026-12-02 were measured on the cut of the
earlier quickstart (training batch 4 instead of 8).
`--quick` runs the same cut on tiny-llama with 2 steps and 8 questions.

`--allow-emulated` runs where bf16 is not native, with `precision: bf16` instead of `auto` (a code-path test:
the JSON says `"bf16": "emulated"` and `benchmarks/run` does not judge it).

    python benchmarks/quickstart_precision.py            # needs native bf16 (else: n/a, at once)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import bf16_status, default_device, machine_record, ratio_stats, write_json  # noqa: E402
from _bench import write_not_applicable  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CUT: dict[str, Any] = {
    "name": "quickstart-cut",
    "library": {"tasks": ["sports_understanding", "social_iqa", "strategyqa"], "hparams": {"max_steps": 8}},
    "targets": ["sports_understanding"], "methods": ["base", "lora", "loramoe"], "strategies": ["random"],
    "k": [2], "seeds": [0], "train": {"max_steps": 5}, "eval": {"limit": 20},
}
QUICK_CUT: dict[str, Any] = {"models": ["tiny-llama"], "library": {"hparams": {"max_steps": 2}},
                             "train": {"max_steps": 2}, "eval": {"limit": 8}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="the bench config's device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="loralab --threads (default: loralab's)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per `loralab bench` run")
    p.add_argument("--keep", default=None, help="keep both output folders under this folder")
    p.add_argument("--allow-emulated", action="store_true", help="precision bf16 where it is emulated (code path)")
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true", help="the cut on tiny-llama, 2 steps, 8 questions")
    args = p.parse_args(argv)
    args.device = args.device or default_device()
    return args


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def cut_config(quick: bool, precision: str, device: str) -> dict[str, Any]:
    import yaml

    from loralab.bench.grid import shipped_config

    config = yaml.safe_load(shipped_config("quickstart").read_text(encoding="utf-8"))
    config.pop("selection", None)  # options of strategies the cut drops (ppl, embedding) would be refused
    config = merge(config, CUT)
    if quick:
        config = merge(config, QUICK_CUT)
    return {**config, "precision": precision, "device": device}


def run_bench(config: dict[str, Any], work: Path, label: str, args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    cfg, out = work / f"{label}.yaml", work / label
    cfg.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "loralab.cli", *(["--threads", str(args.threads)] if args.threads else []),
           "bench", str(cfg), "--out", str(out)]
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    print(f"# {label}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout, check=False)
    seconds = time.perf_counter() - start
    precisions = cell_precisions(out / "bench.sqlite")
    print(f"# {label}: exit {proc.returncode} after {seconds:.0f} s; cell precisions {precisions}", file=sys.stderr,
          flush=True)
    return {"seconds": seconds, "rc": proc.returncode, "cell_precisions": precisions,
            "output_tail": (proc.stdout + proc.stderr)[-2000:]}


def cell_precisions(db: Path) -> list[str]:
    """The resolved precision name of every finished cell (the `cells.precision` JSON record)."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        values = [row[0] for row in con.execute("SELECT precision FROM cells")]
    finally:
        con.close()
    return sorted(json.loads(v)["name"] if v else "fp32" for v in values)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    from loralab.utils.precision import resolve_precision

    auto = resolve_precision("auto", args.device)
    mode, reason = bf16_status(args.device, args.allow_emulated)
    if auto.name == "fp32" and mode != "emulated":
        return write_not_applicable(args.json, f"precision auto resolves to fp32 here ({reason}), so auto vs fp32 "
                                    "is one run twice and the ratio 1 by construction", args.device,
                                    "quickstart end to end, precision auto vs fp32")
    asked = "auto" if auto.name != "fp32" else "bf16"  # emulated: bf16 explicitly (auto would be fp32)
    load_before, t0 = os.getloadavg(), time.perf_counter()
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for label, precision in (("fp32", "fp32"), ("bf16", asked)):
            runs[label] = run_bench(cut_config(args.quick, precision, args.device), work, label, args)
            runs[label]["precision_asked"] = precision
    ok = all(r["rc"] == 0 and r["cell_precisions"] and set(r["cell_precisions"]) == {label}
             for label, r in runs.items())
    ratio = ratio_stats([runs["bf16"]["seconds"] / runs["fp32"]["seconds"]])
    print(f"- cut-down quickstart: fp32 {runs['fp32']['seconds']:.0f} s, bf16 ({asked}) {runs['bf16']['seconds']:.0f} "
          f"s; bf16/fp32 = **{ratio['median']:.3f}**; check {'OK' if ok else 'FAILED'} (exit codes, cell precisions)")
    if args.json:
        write_json(args.json, {"status": "measured", "bf16": mode, "bf16_reason": reason, "auto": auto.to_dict(),
                               "cut": CUT, "quick_cut": QUICK_CUT if args.quick else None,
                               "config": cut_config(args.quick, asked, args.device), "runs": runs, "ratio": ratio,
                               "ok": ok, "device": args.device, "threads": args.threads,
                               "load_before": load_before, "load_after": os.getloadavg(),
                               "machine": machine_record(args.device, args.threads),
                               "wall_seconds": time.perf_counter() - t0})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
