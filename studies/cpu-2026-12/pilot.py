#!/usr/bin/env python
"""Run a study pilot: one bench grid per learning rate, then choose one learning rate per method.

    python studies/cpu-2026-12/pilot.py studies/cpu-2026-12/pilot-loralib.yaml --out OUT

The config is a bench grid plus a `pilot:` section (`learning_rates`, `methods`): the grid is run once
per learning rate (the rate replaces `train.learning_rate`; cell ids differ by it, so every run is one
more set of cells in OUT's database and an interrupted pilot resumes). The rule, fixed in the config's
comments before anything ran:

- per method, the learning rate whose cell has the highest validation score (ties: the smaller rate);
- the budget check: the chosen cell "leaves the base model" when its correctness differs from the base
  model's on at least 10 % of the scored examples (per-example outcomes from the database).

It writes `PILOT-<name>.md` and `pilot-<name>.json` beside the config (what the study's `method_train`
takes) and prints the same table. Reading the database never changes it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any

LEAVES_BASE = 0.10  # the fraction of examples whose correctness must differ from the base model's


def run(config: Path, out: Path) -> dict[str, Any]:
    from loralab.bench import bench_from_mapping, run_grid
    from loralab.utils.config import read_yaml_mapping

    data = dict(read_yaml_mapping(config))
    pilot = data.pop("pilot")
    rates = [float(r) for r in pilot["learning_rates"]]
    for rate in rates:
        grid = copy.deepcopy(data)
        grid["train"] = {**grid.get("train", {}), "learning_rate": rate}
        bench = bench_from_mapping(grid, where=str(config), base_dir=config.parent)
        run_grid(bench, out.resolve(), report=False)
    return choose(out / "bench.sqlite", list(pilot["methods"]), rates)


def choose(db: Path, methods: list[str], rates: list[float]) -> dict[str, Any]:
    """The rule above, on the database's rows."""
    from loralab.bench.store import Store

    with Store(db, create=False) as store:
        rows = store.rows(volatile=False)
        base = [r for r in rows if r["method"] == "base"]
        outcomes = store.outcomes()
    if len(base) != 1:
        raise SystemExit(f"{db}: expected one base-model cell, found {len(base)}")
    base_correct = _correct(outcomes.get(base[0]["cell_id"], []))
    chosen: dict[str, Any] = {"base_score": base[0]["score"], "metric": base[0]["primary_metric"], "methods": {}}
    for method in methods:
        by_rate = {}
        for row in rows:
            rate = row["config"]["protocol"].get("train", {}).get("learning_rate")
            if row["method"] == method and rate in rates:
                by_rate[rate] = row
        missing = [r for r in rates if r not in by_rate]
        if missing:
            raise SystemExit(f"{db}: {method} has no finished cell at learning rate(s) {missing}")
        best = max(rates, key=lambda r: (by_rate[r]["score"], -r))  # ties: the smaller rate
        mine = _correct(outcomes.get(by_rate[best]["cell_id"], []))
        shared = sorted(set(mine) & set(base_correct))
        differ = sum(mine[i] != base_correct[i] for i in shared) / max(len(shared), 1)
        chosen["methods"][method] = {
            "learning_rate": best, "scores": {str(r): by_rate[r]["score"] for r in rates},
            "differs_from_base": round(differ, 4), "n": len(shared), "leaves_base": differ >= LEAVES_BASE}
    return chosen


def _correct(outcomes: list[dict[str, Any]]) -> dict[str, bool]:
    return {o["id"]: bool(o["correct"]) for o in outcomes}


def markdown(name: str, result: dict[str, Any], rates: list[float]) -> str:
    head = "| method | " + " | ".join(f"lr {r:g}" for r in rates) + " | chosen | differs from base | leaves base |"
    lines = [f"# Pilot {name}", "",
             f"Validation {result['metric']}; base model {result['base_score']:.3f}. Rule: the highest "
             f"validation score (ties: the smaller rate); a method leaves the base model when its correctness "
             f"differs from the base model's on >= {LEAVES_BASE:.0%} of the examples.", "",
             head, "|" + "---|" * (len(rates) + 4)]
    for method, m in result["methods"].items():
        scores = " | ".join(f"{m['scores'][str(r)]:.3f}" for r in rates)
        lines.append(f"| {method} | {scores} | {m['learning_rate']:g} | {m['differs_from_base']:.1%} "
                     f"(n={m['n']}) | {'yes' if m['leaves_base'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="bench output folder (shared with the study)")
    parser.add_argument("--summarise-only", action="store_true", help="run nothing; apply the rule to --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from loralab.utils.config import read_yaml_mapping
    from loralab.utils.io import atomic_write_text

    data = read_yaml_mapping(args.config)
    name, pilot = str(data["name"]), data["pilot"]
    rates = [float(r) for r in pilot["learning_rates"]]
    result = (choose(args.out / "bench.sqlite", list(pilot["methods"]), rates) if args.summarise_only
              else run(args.config, args.out))
    text = markdown(name, result, rates)
    atomic_write_text(args.config.parent / f"PILOT-{name}.md", text)
    atomic_write_text(args.config.parent / f"pilot-{name}.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
