"""Report figures (PNG, drawn on matplotlib `Figure`s with the Agg canvas: no pyplot state, no display needed).

Three views of the same numbers as the tables: the methods' overall averages, methods x selection
strategy (grouped bars), and a method-variant x task heatmap. The claims' forest plot (`write_forest`)
shows each claim's effect with its 95% interval against the zero line.

The conventions, the same in every figure so two reports can be read side by side:

* The primary-metric axis is fixed, never fitted to the data: chance..1 where every task plotted has a
  chance level (multiple choice: the mean over the scored examples of correct choices / choices, recorded
  by the run) and no bar falls below it, else 0..1. The heatmap's colour scale is 0..1.
* A dashed "chance" line where the chance level is known (the mean over tasks where the bars average
  over tasks); the heatmap names each task's chance level under its name.
* Error bars (the std over seeds) only where there are several seeds; with one seed, a note on the figure
  says so.

`methods_figure`, `strategies_figure` and `tasks_figure` build the figures (tests read their artists);
`write_plots` saves them.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loralab.bench.tables import Rec, mean_std, overall, per_seed, variant

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from loralab.bench.claims import ClaimResult

logger = logging.getLogger(__name__)
VERDICT_COLOURS = {"supported": "#2a7d2a", "contradicted": "#b22222", "inconclusive": "#555555"}
CHANCE_GID = "chance"  # the artist id of a chance line (and of nothing else)
SEED_NOTE_GID = "one-seed-note"  # the artist id of the "one seed: no error bars" note
ONE_SEED_NOTE = "one seed: no error bars"
CHANCE_PAD = 0.03  # the metric axis starts this share of the chance..1 range below chance
Chance = Mapping[str, "float | None"]  # target task -> its chance level (None: none, e.g. generation)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def write_plots(recs: list[Rec], strategies: list[str], out: Path, prefix: str = "",
                chance: Chance | None = None) -> list[Path]:
    """Write the figures into `out`; return their paths (empty when there is nothing to plot)."""
    if not recs:
        return []
    out.mkdir(parents=True, exist_ok=True)
    chance = chance or {}
    paths = [_save(methods_figure(recs, chance), out / f"{prefix}methods.png")]
    if any(r.strategy for r in recs):
        paths.append(_save(strategies_figure(recs, strategies, chance), out / f"{prefix}strategies.png"))
    paths.append(_save(tasks_figure(recs, chance), out / f"{prefix}tasks.png"))
    return paths


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)  # a reader never sees half a PNG
    return path


def mean_chance(targets: Sequence[str], chance: Chance) -> float | None:
    """The chance level of an average over `targets` (each weighing the same): None unless every one has one."""
    levels = [chance.get(t) for t in targets]
    if not levels or any(level is None for level in levels):
        return None
    return statistics.fmean(float(level) for level in levels)  # type: ignore[arg-type]


def metric_range(lows: Sequence[float], level: float | None) -> tuple[float, float]:
    """The fixed metric axis: from just under chance (`CHANCE_PAD` of the chance..1 range, so the chance line
    shows above the axis' edge) to 1 when the chance level is known and nothing drawn goes below it, else (0, 1).

    `lows` are the lowest points drawn (bar value, or value minus its error bar); a bar below chance stays
    visible on the 0..1 axis instead of vanishing under the axis' edge.
    """
    if level is not None and 0.0 <= level < 1.0 and all(v >= level for v in lows):
        return max(0.0, level - CHANCE_PAD * (1.0 - level)), 1.0
    return 0.0, 1.0


def _one_seed_note(ax) -> None:
    """Above the axes' top right corner (the title is on the left), where no bar, line or legend is."""
    ax.text(1.0, 1.01, ONE_SEED_NOTE, transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
            color="#555555", gid=SEED_NOTE_GID)


def methods_figure(recs: list[Rec], chance: Chance | None = None) -> Figure:
    """Methods overall: one horizontal bar per method (mean over tasks, strategies and k)."""
    avg = overall(recs)
    order = sorted(avg, key=lambda m: statistics.fmean(avg[m].values()))
    stats = [mean_std(list(avg[m].values())) for m in order]
    several = any(s is not None for _, s in stats)
    level = mean_chance(sorted({r.target for r in recs}), chance or {})
    fig = _figure(6.5, 0.45 * len(order) + 1.2)
    ax = fig.subplots()
    ax.barh(order, [m for m, _ in stats], xerr=[s or 0.0 for _, s in stats] if several else None, color="#4C72B0",
            capsize=3)
    ax.set_xlim(*metric_range([m - (s or 0.0) for m, s in stats], level))
    if level is not None:
        ax.axvline(level, ls="--", lw=1, color="#555555", label=f"chance ({level:.2f})", gid=CHANCE_GID)
        ax.legend(fontsize=7, loc="lower right" if several else "upper right")
    ax.set_xlabel("mean primary metric (over tasks, strategies, k)"
                  + ("; error bar: std over seeds" if several else ""))
    if not several:
        _one_seed_note(ax)
    ax.set_title("Methods overall", loc="left")
    return fig


def strategies_figure(recs: list[Rec], strategies: list[str], chance: Chance | None = None) -> Figure:
    """Method x selection strategy: grouped bars, the methods without selection as horizontal lines."""
    sel = [r for r in recs if r.strategy is not None]
    methods = sorted({r.method for r in sel})
    groups = per_seed(sel, lambda r: (r.method, r.strategy))
    width = 0.8 / max(1, len(strategies))
    all_stats = [mean_std(list(v.values())) for v in groups.values()]
    several = any(s is not None for _, s in all_stats)
    level = mean_chance(sorted({r.target for r in recs}), chance or {})
    fig = _figure(max(6.0, 1.6 * len(methods) + 2), 4)
    ax = fig.subplots()
    for j, strategy in enumerate(strategies):
        stats = [mean_std(list(groups[m, strategy].values())) if (m, strategy) in groups else (0.0, None)
                 for m in methods]
        xs = [i + (j - (len(strategies) - 1) / 2) * width for i in range(len(methods))]
        ax.bar(xs, [m for m, _ in stats], width, yerr=[s or 0.0 for _, s in stats] if several else None,
               label=strategy, capsize=2)
    avg = overall(recs)
    lows = [m - (s or 0.0) for m, s in all_stats]
    for i, base in enumerate(sorted({r.method for r in recs if r.strategy is None})):
        value = statistics.fmean(avg[base].values())
        lows.append(value)
        ax.axhline(value, ls=("-.", ":", (0, (5, 1, 1, 1)))[i % 3], lw=1, color=f"C{4 + i}",
                   label=f"{base} (no selection)")
    if level is not None:
        ax.axhline(level, ls="--", lw=1, color="#555555", label=f"chance ({level:.2f})", gid=CHANCE_GID)
    ax.set_ylim(*metric_range(lows, level))
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("mean primary metric (over tasks and k)" + ("; error bar: std over seeds" if several else ""))
    if not several:
        _one_seed_note(ax)
    ax.set_title("Method x selection strategy", loc="left")
    ax.legend(fontsize=7, ncols=min(4, len(strategies) + 1), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    return fig


def tasks_figure(recs: list[Rec], chance: Chance | None = None) -> Figure:
    """Method variant x task heatmap of the mean over seeds, on a fixed 0..1 colour scale."""
    chance = chance or {}
    show_k = len({r.k for r in recs if r.k is not None}) > 1
    targets = sorted({r.target for r in recs})
    rows = sorted({variant(r, show_k) for r in recs})
    groups = per_seed(recs, lambda r: (variant(r, show_k), r.target))
    data = [[statistics.fmean(groups[v, t].values()) if (v, t) in groups else float("nan") for t in targets]
            for v in rows]
    fig = _figure(1.3 * len(targets) + 3, 0.35 * len(rows) + 1.8)
    ax = fig.subplots()
    image = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    labels = [t if chance.get(t) is None else f"{t}\n(chance {chance[t]:.2f})" for t in targets]
    ax.set_xticks(range(len(targets)), labels, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, row in enumerate(data):
        for j, value in enumerate(row):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if value > 0.5 else "white")
    several = any(len(v) > 1 for v in groups.values())
    fig.colorbar(image, ax=ax, label="primary metric, mean over seeds" if several else "primary metric (one seed)")
    ax.set_title("Method x task")
    return fig


def write_forest(results: Sequence[ClaimResult], path: Path) -> Path | None:
    """One row per tested claim: its effect a - b (point) and 95% interval, a line at 0; None if none was tested."""
    tested = [r for r in results if r.effect is not None and r.verdict is not None]
    if not tested:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(7.0, 0.4 * len(tested) + 1.6)
    ax = fig.subplots()
    ys = list(range(len(tested)))[::-1]  # the first claim on top, as in the table
    for y, r in zip(ys, tested, strict=True):
        e, colour = r.effect, VERDICT_COLOURS[r.verdict.label]
        ax.errorbar([e.diff], [y], xerr=[[e.diff - e.ci_low], [e.ci_high - e.diff]], fmt="o", color=colour,
                    capsize=3)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(ys, [f"{r.claim.id} ({r.verdict.label})" for r in tested], fontsize=8)
    sizes = {r.claim.family: r.verdict.family_size for r in tested}
    holm = ", ".join(f"{n} {family}" for family, n in sizes.items())
    ax.set_xlabel(f"a - b, primary metric, with 95% interval (per claim); p Holm-adjusted within families ({holm})",
                  fontsize=8)
    ax.set_title("Claims: effect and 95% interval")
    return _save(fig, path)
