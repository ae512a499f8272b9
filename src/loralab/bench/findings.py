"""Findings written from the results: which method wins on average and by how much, and whether
relevance-based selection (manual task relevance, embedding similarity) beats PPL and random selection.

Every sentence is computed, never templated with a fixed conclusion: each claim carries its spread
over seeds and how often it held, and says so when a difference is inside the seed-to-seed spread, so
a reader of a small run is not told more than the numbers show.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from loralab.bench.tables import Rec, mean_std, overall, pair_diffs, per_seed_diff

# how a finding names a relevance-based strategy (prose only; which strategies are baselines is declared
# on their Selector class)
LABELS = {"manual": "task relevance (manual)", "embedding": "embedding similarity"}


def _selector(name: str):
    from loralab.selection import all_selectors

    return all_selectors().get(name)  # None: a strategy of a plug-in not loaded here


def baseline_strategies(strategies: Sequence[str]) -> list[str]:
    """The comparison points (`Selector.baseline`: PPL-based and random selection in LoRALib), informed ones
    before seeded (chance) ones."""
    base = [s for s in strategies if _selector(s) is not None and _selector(s).baseline]
    return sorted(base, key=lambda s: _selector(s).seeded)


def relevance_strategies(strategies: Sequence[str]) -> list[str]:
    """The strategies the findings test against the baselines: every other known one."""
    return [s for s in strategies if _selector(s) is not None and not _selector(s).baseline]


def baseline_pairs(strategies: Sequence[str]) -> list[tuple[str, str]]:
    """Informed baselines against the seeded (chance) ones: does scoring the LoRAs beat drawing them?"""
    base = baseline_strategies(strategies)
    return [(a, b) for a in base if not _selector(a).seeded for b in base if _selector(b).seeded]


def untrained_methods(methods: Sequence[str]) -> list[str]:
    """Methods that train nothing (`MethodSpec.trains`): the base model, the floor every method is held to."""
    from loralab.moe.registry import all_methods

    specs = all_methods()
    return [m for m in methods if m in specs and not specs[m].trains]


def findings(recs: list[Rec], rows: Sequence[dict[str, Any]], strategies: Sequence[str]) -> list[str]:
    """Bullet points (Markdown) for one model's results."""
    out: list[str] = []
    avg = overall(recs)
    if len(avg) >= 2:
        out.append(_winner(avg, "Best method on average", list(avg)))
    selecting = sorted({r.method for r in recs if r.strategy is not None})
    if len(selecting) >= 2 and _best(avg, list(avg)) not in selecting:
        out.append(_winner(avg, "Among methods that mix selected library LoRAs", selecting))
    refs = untrained_methods(sorted(avg))
    for ref in refs:
        out.append(_versus_base(avg, ref, named=len(refs) > 1))
    out += _selection(recs, strategies)
    out.append(_noise(rows))
    if "loramoe" in avg and selecting:
        out.append(_loralib(avg, selecting, recs, strategies))
    return out


def _best(avg: dict[str, dict[int, float]], methods: list[str]) -> str:
    return max(methods, key=lambda m: statistics.fmean(avg[m].values()))


def _ms(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}")


def _signed(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:+.3f}" + ("" if std is None else f" ± {std:.3f}")


def _within(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    if std is None:
        return " (one seed: no spread to judge it by)"
    return " (within the seed-to-seed spread)" if abs(mean) <= std else ""


def _winner(avg: dict[str, dict[int, float]], lead: str, methods: list[str]) -> str:
    ranked = sorted(methods, key=lambda m: -statistics.fmean(avg[m].values()))
    top, second = ranked[0], ranked[1]
    seeds = sorted(set(avg[top]) & set(avg[second]))
    diffs = [avg[top][s] - avg[second][s] for s in seeds]
    ahead = sum(d > 1e-12 for d in diffs)
    tied = [m for m in ranked if all(abs(avg[m].get(s, -1.0) - avg[top][s]) <= 1e-12 for s in avg[top])]
    if len(tied) > 1 and all(abs(d) <= 1e-12 for d in diffs):
        return (f"{lead}: no single winner, {', '.join(tied)} tie ({_ms(list(avg[top].values()))} over seeds). "
                f"Full order: {', '.join(ranked)}.")
    return (f"{lead}: **{top}** ({_ms(list(avg[top].values()))} over seeds), ahead of {second} "
            f"({_ms(list(avg[second].values()))}) by {_signed(diffs)}{_within(diffs)}; ahead on {ahead} of "
            f"{len(diffs)} seed(s). Full order: {', '.join(ranked)}.")


def _versus_base(avg: dict[str, dict[int, float]], ref: str, named: bool) -> str:
    base = avg[ref]
    gains = {}
    for m, by_seed in avg.items():
        if m != ref:
            gains[m] = [by_seed[s] - base[s] for s in by_seed if s in base]
    above = sorted(m for m, g in gains.items() if g and statistics.fmean(g) > 0)
    detail = ", ".join(f"{m} {_signed(g)}" for m, g in sorted(gains.items(), key=lambda kv: -statistics.fmean(kv[1])))
    return (f"Against the base model{f' ({ref})' if named else ''} ({_ms(list(base.values()))}): {len(above)} of "
            f"{len(gains)} methods score "
            f"higher on average ({detail}).")


def _selection(recs: list[Rec], strategies: Sequence[str]) -> list[str]:
    score = {(r.model, r.method, r.target, r.k, r.seed, r.strategy): r.score for r in recs if r.strategy}
    out = []
    for rel in relevance_strategies(strategies):
        parts, verdicts = [], []
        for other in baseline_strategies(strategies):
            diffs = pair_diffs(score, rel, other)
            if not diffs:
                continue
            by_seed = list(per_seed_diff(diffs).values())
            wins = sum(d > 1e-12 for _s, d in diffs)
            losses = sum(d < -1e-12 for _s, d in diffs)
            mean = statistics.fmean(by_seed)
            beats = mean > 0 and wins > losses
            verdicts.append(f"{'beats' if beats else 'does not beat'} {other}")
            parts.append(f"vs {other} {_signed(by_seed)}{_within(by_seed)}, wins/ties/losses "
                         f"{wins}/{len(diffs) - wins - losses}/{losses}")
        if parts:
            kind = LABELS.get(rel) or f"{rel} ({_selector(rel).score_name})"
            out.append(f"Selection by {kind}: **{' and '.join(verdicts)}** ({'; '.join(parts)}; paired over the "
                       "same method, task, k and seed, difference averaged within each seed).")
    for informed, chance in baseline_pairs(strategies):
        diffs = pair_diffs(score, informed, chance)
        if diffs:
            by_seed = list(per_seed_diff(diffs).values())
            out.append(f"{informed.upper()} vs {chance} selection: {_signed(by_seed)}{_within(by_seed)} over "
                       f"{len(diffs)} pairs.")
    return out


def _noise(rows: Sequence[dict[str, Any]]) -> str:
    errs = [r["metrics"].get(f"{r['primary_metric']}_stderr") for r in rows]
    errs = [e for e in errs if isinstance(e, (int, float))]
    n = sorted({r["n"] for r in rows})
    if not errs:
        return f"Evaluation size: n={', '.join(map(str, n))} examples per cell."
    return (f"Evaluation noise: n={', '.join(map(str, n))} examples per cell, mean standard error of one cell's "
            f"score {statistics.fmean(errs):.3f}; differences of a few hundredths between single cells are noise.")


def _loralib(avg: dict[str, dict[int, float]], selecting: list[str], recs: list[Rec],
             strategies: Sequence[str]) -> str:
    order = sorted(selecting, key=lambda m: -statistics.fmean(avg[m].values()))
    rank = order.index("loramoe") + 1 if "loramoe" in order else None
    text = ("LoRALib (arXiv 2509.18137) reports LoRAMoE as the best of its LoRA-MoE methods and that prioritising "
            "relevant LoRAs helps. Here LoRAMoE ranks "
            f"{rank} of {len(order)} among the methods that mix selected LoRAs")
    if "manual" in strategies:
        score = {(r.model, r.method, r.target, r.k, r.seed, r.strategy): r.score for r in recs if r.strategy}
        baselines = baseline_strategies(strategies)
        wins = [o for o in baselines if pair_diffs(score, "manual", o)
                and statistics.fmean(per_seed_diff(pair_diffs(score, "manual", o)).values()) > 0]
        if wins:
            ahead = ", ".join(wins)
        else:
            ahead = f"none of {', '.join(baselines)}" if baselines else "no baseline"
        text += f", and manual selection is ahead of {ahead}"
    return text + "."
