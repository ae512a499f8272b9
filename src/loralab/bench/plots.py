"""Report figures (PNG, matplotlib's Agg backend so they render on a server with no display).

Three views of the same numbers as the tables: the methods' overall averages, methods x selection
strategy (grouped bars), and a method-variant x task heatmap. Error bars are the std over seeds, drawn
only where there are several seeds (the axis label says so when there is one). The claims' forest plot
(`write_forest`) shows each claim's effect with its 95% interval against the zero line.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loralab.bench.tables import Rec, mean_std, overall, per_seed, variant

if TYPE_CHECKING:
    from loralab.bench.claims import ClaimResult

logger = logging.getLogger(__name__)
VERDICT_COLOURS = {"supported": "#2a7d2a", "contradicted": "#b22222", "inconclusive": "#555555"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_plots(recs: list[Rec], strategies: list[str], out: Path, prefix: str = "") -> list[Path]:
    """Write the figures into `out`; return their paths (empty when there is nothing to plot)."""
    if not recs:
        return []
    out.mkdir(parents=True, exist_ok=True)
    paths = [_methods(recs, out / f"{prefix}methods.png")]
    if any(r.strategy for r in recs):
        paths.append(_strategies(recs, strategies, out / f"{prefix}strategies.png"))
    paths.append(_heatmap(recs, out / f"{prefix}tasks.png"))
    return paths


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)  # a reader never sees half a PNG
    _pyplot().close(fig)
    return path


def _methods(recs: list[Rec], path: Path) -> Path:
    plt = _pyplot()
    avg = overall(recs)
    order = sorted(avg, key=lambda m: statistics.fmean(avg[m].values()))
    stats = [mean_std(list(avg[m].values())) for m in order]
    several = any(s is not None for _, s in stats)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(order) + 1.2))
    ax.barh(order, [m for m, _ in stats], xerr=[s or 0.0 for _, s in stats] if several else None, color="#4C72B0",
            capsize=3)
    ax.set_xlabel("mean primary metric (over tasks, strategies, k); "
                  + ("error bar: std over seeds" if several else "one seed: no error bars"))
    ax.set_title("Methods overall")
    return _save(fig, path)


def _strategies(recs: list[Rec], strategies: list[str], path: Path) -> Path:
    plt = _pyplot()
    sel = [r for r in recs if r.strategy is not None]
    methods = sorted({r.method for r in sel})
    groups = per_seed(sel, lambda r: (r.method, r.strategy))
    width = 0.8 / max(1, len(strategies))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(methods) + 2), 4))
    for j, strategy in enumerate(strategies):
        stats = [mean_std(list(groups[m, strategy].values())) if (m, strategy) in groups else (0.0, None)
                 for m in methods]
        xs = [i + (j - (len(strategies) - 1) / 2) * width for i in range(len(methods))]
        ax.bar(xs, [m for m, _ in stats], width, yerr=[s or 0.0 for _, s in stats], label=strategy, capsize=2)
    avg = overall(recs)
    for i, base in enumerate(sorted({r.method for r in recs if r.strategy is None})):
        ax.axhline(statistics.fmean(avg[base].values()), ls=("--", ":", "-.")[i % 3], lw=1, color=f"C{4 + i}",
                   label=f"{base} (no selection)")
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("mean primary metric (over tasks and k)")
    ax.set_title("Method x selection strategy")
    ax.legend(fontsize=7, ncols=min(4, len(strategies)), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    return _save(fig, path)


def _heatmap(recs: list[Rec], path: Path) -> Path:
    plt = _pyplot()
    show_k = len({r.k for r in recs if r.k is not None}) > 1
    targets = sorted({r.target for r in recs})
    rows = sorted({variant(r, show_k) for r in recs})
    groups = per_seed(recs, lambda r: (variant(r, show_k), r.target))
    data = [[statistics.fmean(groups[v, t].values()) if (v, t) in groups else float("nan") for t in targets]
            for v in rows]
    fig, ax = plt.subplots(figsize=(1.3 * len(targets) + 3, 0.35 * len(rows) + 1.5))
    image = ax.imshow(data, aspect="auto", cmap="viridis")
    finite = [v for row in data for v in row if not math.isnan(v)]
    middle = (min(finite) + max(finite)) / 2 if finite else 0.0
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, row in enumerate(data):
        for j, value in enumerate(row):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if value > middle else "white")
    fig.colorbar(image, ax=ax, label="mean over seeds")
    ax.set_title("Method x task")
    return _save(fig, path)


def write_forest(results: Sequence[ClaimResult], path: Path) -> Path | None:
    """One row per tested claim: its effect a - b (point) and 95% interval, a line at 0; None if none was tested."""
    tested = [r for r in results if r.effect is not None and r.verdict is not None]
    if not tested:
        return None
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.0, 0.4 * len(tested) + 1.6))
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
