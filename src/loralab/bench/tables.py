"""Aggregation of benchmark rows into tables: method x task, method x strategy, method x k, methods overall,
and the `loralab compare` table (`comparison_table`, the method x task table of comparison records).

Spread over seeds is computed the way a user would report it: first average within each seed (over
tasks, strategies, ...), then take mean and sample std (ddof=1) of those per-seed averages. So the
± of an average is the seed-to-seed spread of that average, not a mix of task and seed variation.
Seed-free cells (`base`, the library's own `lora`) count once per seed with the same score. Tables
are data (`Table`) so the Markdown and the HTML report render the same numbers.

Each record carries the precision its cell ran in (`row_precision`). The report gives each precision
its own section, and the comparison table gives a method one row per precision when they differ, so
fp32 and bf16 scores are never averaged together (they are distinct cells, and bf16's numbers differ).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

NA = "n/a"


@dataclass
class Table:
    """A titled table; each cell is (text, best-in-column)."""

    title: str
    header: list[str]
    rows: list[list[tuple[str, bool]]] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Rec:
    """One score of one seed (seed-free cells are repeated per seed)."""

    model: str
    method: str
    strategy: str | None
    k: int | None
    target: str
    seed: int | None  # None only in comparison records from before seeds were recorded
    score: float
    precision: str = "fp32"  # the resolved name its cell ran in


def row_precision(row: dict[str, Any]) -> str:
    """The precision a database row's cell ran in: its protocol names it unless fp32 (`plan.protocol`); rows of
    databases from before precisions were recorded ran fp32."""
    config = row.get("config")
    protocol = config.get("protocol") if isinstance(config, dict) else None
    if isinstance(protocol, dict) and isinstance(protocol.get("precision"), str):
        return protocol["precision"]
    return "fp32"


def records(rows: Iterable[dict[str, Any]], seeds: Sequence[int]) -> list[Rec]:
    out = []
    for r in rows:
        for seed in ([r["seed"]] if r["seed"] is not None else seeds):
            out.append(Rec(r["model"], r["method"], r["strategy"], r["k"], r["target"], seed, float(r["score"]),
                           row_precision(r)))
    return out


def precisions(recs: Iterable[Rec]) -> list[str]:
    """The precisions among `recs`, fp32 first."""
    order = {"fp32": 0, "bf16": 1, "fp16": 2}
    return sorted({r.precision for r in recs}, key=lambda p: (order.get(p, 3), p))


def per_seed(recs: Iterable[Rec], group: Callable[[Rec], Any]) -> dict[Any, dict[int, float]]:
    """{group: {seed: mean score of the group's records of that seed}}."""
    buckets: dict[Any, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in recs:
        buckets[group(r)][r.seed].append(r.score)
    return {g: {s: statistics.fmean(v) for s, v in sorted(by_seed.items())} for g, by_seed in buckets.items()}


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) >= 2 else None)


def fmt(values: Sequence[float], n_seeds: int) -> str:
    mean, std = mean_std(values)
    text = f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"
    return text + (f" ({len(values)}/{n_seeds} seeds)" if len(values) < n_seeds else "")


def variant(r: Rec, show_k: bool) -> str:
    if r.strategy is None:
        return r.method
    return f"{r.method} · {r.strategy}" + (f" · k={r.k}" if show_k else "")


def _grid_table(title: str, groups: dict[Any, dict[int, float]], row_keys: Sequence[str], col_keys: Sequence[Any],
                col_names: Sequence[str], n_seeds: int, first: str, note: str,
                fixed: dict[tuple[str, Any], str] | None = None) -> Table:
    """Rows x columns of `mean ± std over seeds`; the highest mean per column is marked best."""
    means = {key: statistics.fmean(v.values()) for key, v in groups.items()}
    best = {c: max((means[r, c] for r in row_keys if (r, c) in means), default=None) for c in col_keys}
    table = Table(title, [first, *col_names], note=note)
    for r in row_keys:
        row = [(r, False)]
        for c in col_keys:
            if (r, c) in groups:
                row.append((fmt(list(groups[r, c].values()), n_seeds), abs(means[r, c] - best[c]) < 1e-12))
            else:
                row.append(((fixed or {}).get((r, c), ""), False))
        table.rows.append(row)
    return table


def method_task_table(recs: list[Rec], n_seeds: int, show_k: bool) -> Table:
    """Every method variant (method · strategy · k) x target task, with the average over tasks."""
    targets = sorted({r.target for r in recs})
    rows = _ordered({variant(r, show_k) for r in recs})
    groups = per_seed(recs, lambda r: (variant(r, show_k), r.target)) | _task_avg(recs, show_k)
    note = ("Primary metric of each target task; mean ± sample std over seeds; average: mean over tasks within "
            "each seed, then mean ± std over seeds. Best mean per column in bold.")
    return _grid_table("Method x task", groups, rows, [*targets, "__avg__"], [*targets, "average"], n_seeds,
                       "method · strategy", note)


def _task_avg(recs: list[Rec], show_k: bool) -> dict[Any, dict[int, float]]:
    """Average over tasks within a seed (each task weighs the same whatever its number of cells)."""
    per_task = per_seed(recs, lambda r: (variant(r, show_k), r.target))
    out: dict[Any, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (v, _t), by_seed in per_task.items():
        for s, m in by_seed.items():
            out[v, "__avg__"][s].append(m)
    return {key: {s: statistics.fmean(v) for s, v in by_seed.items()} for key, by_seed in out.items()}


def method_strategy_table(recs: list[Rec], strategies: Sequence[str], n_seeds: int) -> Table:
    """Methods x selection strategies (averaged over tasks and k); methods without selection in one column."""
    selecting = _ordered({r.method for r in recs if r.strategy is not None})
    baselines = _ordered({r.method for r in recs if r.strategy is None})
    groups = per_seed(recs, lambda r: (r.method, r.strategy or "__none__"))
    cols = [*strategies, "__none__"] if baselines else list(strategies)
    names = [*strategies, "no selection"] if baselines else list(strategies)
    fixed = {(m, s): NA for m in baselines for s in strategies} | {(m, "__none__"): NA for m in selecting}
    note = ("Mean over target tasks (and k) within each seed, then mean ± std over seeds; methods that take no "
            "library experts are shown once, under 'no selection'.")
    return _grid_table("Method x selection strategy", groups, [*selecting, *baselines], cols, names, n_seeds,
                       "method", note, fixed)


def method_k_table(recs: list[Rec], ks: Sequence[int], n_seeds: int) -> Table:
    sel = [r for r in recs if r.strategy is not None]
    groups = per_seed(sel, lambda r: (r.method, r.k))
    return _grid_table("Method x k (experts per MoE)", groups, _ordered({r.method for r in sel}), list(ks),
                       [f"k={k}" for k in ks], n_seeds, "method", "Mean over target tasks and strategies.")


def overall(recs: list[Rec]) -> dict[str, dict[int, float]]:
    """Per method and seed: the mean over its task averages (each task weighs the same)."""
    per_task = per_seed(recs, lambda r: (r.method, r.target))
    out: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (m, _t), by_seed in per_task.items():
        for s, v in by_seed.items():
            out[m][s].append(v)
    return {m: {s: statistics.fmean(v) for s, v in sorted(by_seed.items())} for m, by_seed in out.items()}


def overall_table(recs: list[Rec], n_seeds: int) -> Table:
    avg = overall(recs)
    order = sorted(avg, key=lambda m: -statistics.fmean(avg[m].values()))
    groups = {(m, "avg"): v for m, v in avg.items()}
    table = _grid_table("Methods overall", groups, order, ["avg"], ["average over tasks, strategies and k"],
                        n_seeds, "method", "Sorted by mean; ± is the std over seeds of the per-seed average.")
    return table


def strategy_pairs(recs: list[Rec], pairs: Sequence[tuple[str, str]]) -> Table:
    """Paired comparison of strategies on the same (model, method, task, k, seed): mean difference, W/T/L."""
    score = {(r.model, r.method, r.target, r.k, r.seed, r.strategy): r.score for r in recs if r.strategy}
    table = Table("Selection strategies, paired", ["comparison", "mean difference ± std over seeds",
                                                   "wins / ties / losses", "pairs"],
                  note="Each pair: the same method, target task, k and seed with the two strategies. The "
                       "difference is averaged within each seed first.")
    for a, b in pairs:
        diffs = pair_diffs(score, a, b)
        if not diffs:
            continue
        by_seed = per_seed_diff(diffs)
        w = sum(d > 1e-12 for _s, d in diffs)
        l_ = sum(d < -1e-12 for _s, d in diffs)
        table.rows.append([(f"{a} vs {b}", False), (fmt_signed(list(by_seed.values())), False),
                           (f"{w} / {len(diffs) - w - l_} / {l_}", False), (str(len(diffs)), False)])
    return table


def pair_diffs(score: dict[tuple, float], a: str, b: str) -> list[tuple[int, float]]:
    return [(key[4], v - score[(*key[:5], b)]) for key, v in score.items() if key[5] == a and (*key[:5], b) in score]


def per_seed_diff(diffs: list[tuple[int, float]]) -> dict[int, float]:
    by: dict[int, list[float]] = defaultdict(list)
    for s, d in diffs:
        by[s].append(d)
    return {s: statistics.fmean(v) for s, v in sorted(by.items())}


def fmt_signed(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:+.3f}" + ("" if std is None else f" ± {std:.3f}")


def without_bold(table: Table) -> Table:
    """The table with no cell marked best: the report ranks nothing on means alone (its claims carry intervals)."""
    return Table(table.title, table.header, [[(text, False) for text, _ in row] for row in table.rows],
                 table.note.replace(" Best mean per column in bold.", ""))


def table_lines(table: Table) -> list[str]:
    """The Markdown rows of a table (header, rule, rows; best cells in bold), without title or note."""
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    return lines + ["| " + " | ".join(f"**{t}**" if best else t for t, best in row) + " |" for row in table.rows]


def comparison_table(records: Sequence[dict[str, Any]]) -> str:
    """The comparison table (`results.md`): method x task, primary metric, average column, best per column in bold.

    It is `method_task_table` of the records: with one seed a cell is the score itself; with several,
    `mean ± std` over seeds (sample std, ddof=1), and the average column averages over tasks within
    each seed first, then takes mean ± std over seeds (the seed-to-seed spread of what a user would
    report, not a mix of task and seed variation). The note names the precision (records without one ran
    fp32); records of several precisions get one row per (method, precision), `method · bf16`.
    """
    recs = [Rec(r.get("model", ""), r["method"], None, None, r["task"], r.get("seed"),
                float(r["metrics"][r["primary_metric"]]), str(r.get("precision") or "fp32")) for r in records]
    names = precisions(recs)
    if len(names) > 1:
        recs = [dataclasses.replace(r, method=f"{r.method} · {r.precision}") for r in recs]
        precision = (f"precisions {', '.join(names)}: each row names its own, and rows of different precisions are "
                     "never averaged together")
    else:
        precision = f"precision {names[0] if names else 'fp32'}"
    seeds = sorted({r.seed for r in recs}, key=lambda s: (s is None, s or 0))
    table = method_task_table(recs, len(seeds), show_k=False)
    table.header[0] = "method"
    split = records[0]["split"] if records else "test"
    tasks = sorted({r.target for r in recs})
    if len(seeds) > 1:
        note = (f"Primary metric per task on the {split} split ({_n_per_task(records, tasks)}); mean ± sample std "
                f"(ddof=1) over {len(seeds)} seeds ({', '.join(map(str, seeds))}); average: mean over tasks within "
                f"each seed, then mean ± std over seeds; {precision}; best mean per column in bold.")
    else:
        n = ", ".join(map(str, sorted({r["n"] for r in records})))
        note = f"Primary metric per task on the {split} split (n={n}); {precision}; best per column in bold."
    return "\n".join([*table_lines(table), "", note]) + "\n"


def _n_per_task(records: Sequence[dict[str, Any]], tasks: Sequence[str]) -> str:
    """`n=200 per task`, or each task's n when they differ (a task with a smaller test split)."""
    n = {t: sorted({r["n"] for r in records if r["task"] == t}) for t in tasks}
    if len({tuple(v) for v in n.values()}) == 1:
        return f"n={'/'.join(map(str, next(iter(n.values()))))} per task"
    return "n per task: " + ", ".join(f"{t} {'/'.join(map(str, v))}" for t, v in n.items())


def _ordered(names: set[str]) -> list[str]:
    return sorted(names)


def strategy_table(recs: list[Rec], strategies: Sequence[str], n_seeds: int) -> Table:
    """Selection strategies x methods that use them (the transpose view), with the average over methods."""
    sel = [r for r in recs if r.strategy is not None]
    methods = _ordered({r.method for r in sel})
    groups = per_seed(sel, lambda r: (r.strategy, r.method))
    groups |= {(s, "__avg__"): v for s, v in per_seed(sel, lambda r: r.strategy).items()}
    used = [s for s in strategies if any(r.strategy == s for r in sel)]
    return _grid_table("Selection strategy x method", groups, used, [*methods, "__avg__"], [*methods, "average"],
                       n_seeds, "strategy",
                       "Mean over target tasks and k within each seed, then mean ± std over seeds.")
