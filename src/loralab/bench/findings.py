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

RELEVANCE = ("manual", "embedding")
BASELINE_STRATEGIES = ("ppl", "random")


def findings(recs: list[Rec], rows: Sequence[dict[str, Any]], strategies: Sequence[str]) -> list[str]:
    """Bullet points (Markdown) for one model's results."""
    out: list[str] = []
    avg = overall(recs)
    if len(avg) >= 2:
        out.append(_winner(avg, "Best method on average", list(avg)))
    selecting = sorted({r.method for r in recs if r.strategy is not None})
    if len(selecting) >= 2 and _best(avg, list(avg)) not in selecting:
        out.append(_winner(avg, "Among methods that mix selected library LoRAs", selecting))
    if "base" in avg:
        out.append(_versus_base(avg))
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


def _versus_base(avg: dict[str, dict[int, float]]) -> str:
    base = avg["base"]
    gains = {}
    for m, by_seed in avg.items():
        if m != "base":
            gains[m] = [by_seed[s] - base[s] for s in by_seed if s in base]
    above = sorted(m for m, g in gains.items() if g and statistics.fmean(g) > 0)
    detail = ", ".join(f"{m} {_signed(g)}" for m, g in sorted(gains.items(), key=lambda kv: -statistics.fmean(kv[1])))
    return (f"Against the base model ({_ms(list(base.values()))}): {len(above)} of {len(gains)} methods score "
            f"higher on average ({detail}).")


def _selection(recs: list[Rec], strategies: Sequence[str]) -> list[str]:
    score = {(r.model, r.method, r.target, r.k, r.seed, r.strategy): r.score for r in recs if r.strategy}
    out = []
    for rel in (s for s in RELEVANCE if s in strategies):
        parts, verdicts = [], []
        for other in (s for s in BASELINE_STRATEGIES if s in strategies):
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
            kind = "task relevance (manual)" if rel == "manual" else "embedding similarity"
            out.append(f"Selection by {kind}: **{' and '.join(verdicts)}** ({'; '.join(parts)}; paired over the "
                       "same method, task, k and seed, difference averaged within each seed).")
    if "ppl" in strategies and "random" in strategies:
        diffs = pair_diffs(score, "ppl", "random")
        if diffs:
            by_seed = list(per_seed_diff(diffs).values())
            out.append(f"PPL vs random selection: {_signed(by_seed)}{_within(by_seed)} over {len(diffs)} pairs.")
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
        wins = [o for o in BASELINE_STRATEGIES if o in strategies and pair_diffs(score, "manual", o)
                and statistics.fmean(per_seed_diff(pair_diffs(score, "manual", o)).values()) > 0]
        text += f", and manual selection is ahead of {', '.join(wins) if wins else 'neither ppl nor random'}"
    return text + "."
