"""The benchmark report, rebuilt from the database (or its export) alone: `report.md`, `report.html`, PNG figures.

    loralab report bench-quickstart/bench.sqlite       # -> bench-quickstart/report/
    loralab report quickstart.jsonl.gz --out report    # the same report from `loralab bench export`

The database holds the plan (the cell ids of the config that last ran), so the report covers exactly
that grid, says how many of its cells are done or failed, and ignores rows of earlier configs that
share the database. The findings are the claims (`findings`, `claims`); the tables are means without
ranking words or bold. Both are computed per precision and the tables per model: each section's heading
names the precision its cells ran in, and when rows of several precisions are reported (a database without
a plan, or one whose plan mixes them) each gets its own findings and sections, so fp32 and bf16 scores are
never pooled or paired.

The input is only read (a database is opened read-only). The same input gives the same report.md and
report.html byte for byte: nothing in them depends on the time or place the report is written (the
bootstraps have fixed seeds, every list a fixed order). The report folder must be absent, empty or a
report loralab wrote: a folder holding anything else is refused before anything is written.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loralab.bench import tables as T
from loralab.bench.export import BenchData, from_store, load_bench_data
from loralab.bench.findings import (baseline_pairs, baseline_strategies, claim_results, claim_sentences, claim_table,
                                    noise, relevance_strategies, untrained_methods)
from loralab.bench.plots import write_forest, write_plots
from loralab.bench.store import Store
from loralab.utils.io import atomic_write_text, check_output_dir, mark_output

logger = logging.getLogger(__name__)
OUTPUT_KIND = "bench-report"
TITLE = "# Benchmark report:"


def is_report_dir(folder: Path) -> bool:
    """A report folder from before output markers: its report.md starts with the report's title."""
    report = folder / "report.md"
    if not report.is_file():
        return False
    with open(report, encoding="utf-8") as fh:
        return fh.read(len(TITLE)) == TITLE


def check_report_out(out: str | Path, option: str = "out") -> Path:
    """Fail before any work unless the report folder is absent, empty, or a loralab report."""
    return check_output_dir(out, kind=OUTPUT_KIND, what="benchmark report folder", option=option,
                            recognise=is_report_dir)


def write_report(source: Store | BenchData | str | os.PathLike[str], out: str | Path | None = None) -> Path:
    """Write the report for the current plan of a database or an export into `out` (default: `report/` beside
    it); return report.md."""
    if isinstance(source, (str, os.PathLike)):
        check_report_out(out if out is not None else Path(source).parent / "report")  # before reading anything
        data = load_bench_data(source)
    else:
        data = from_store(source) if isinstance(source, Store) else source
    out_dir = check_report_out(Path(out) if out is not None else data.path.parent / "report")
    meta = data.meta.get("bench") or {}
    plan = set(meta.get("plan") or [])
    rows = [r for r in data.rows if not plan or r["cell_id"] in plan]
    failures = [f for f in data.failures if not plan or f["cell_id"] in plan]
    config = meta.get("config") or {}
    seeds = list(meta.get("seeds") or sorted({r["seed"] for r in rows if r["seed"] is not None}) or [0])
    strategies = [s for s in config.get("strategies") or sorted({r["strategy"] for r in rows if r["strategy"]})]
    blocks: list[Any] = [f"{TITLE} {meta.get('name') or 'bench'}", _summary(rows, failures, plan, config)]
    models = list(dict.fromkeys([*(config.get("models") or []), *sorted({r["model"] for r in rows})]))
    mark_output(out_dir, OUTPUT_KIND)  # before the first figure is written
    precisions = sorted({T.row_precision(r) for r in rows}, key=lambda p: (p != "fp32", p))
    for precision in precisions:
        part = [r for r in rows if T.row_precision(r) == precision]
        suffix = "" if len(precisions) == 1 else f"-{precision}"
        blocks += _findings(config, part, data.outcomes, out_dir, suffix)
    chance = _chance(meta.get("chance"))
    for title, part, prefix in _sections(rows, models):
        blocks += _model_section(title, part, seeds, strategies, out_dir, prefix, chance)
    blocks += _provenance(rows, failures)
    atomic_write_text(out_dir / "report.md", _markdown(blocks))
    atomic_write_text(out_dir / "report.html", _html(blocks, meta.get("name") or "bench"))
    logger.debug("wrote %s and report.html", out_dir / "report.md")  # debug: the CLI prints where it is
    return out_dir / "report.md"


def _summary(rows: list[dict], failures: list[dict], plan: set[str], config: dict[str, Any]) -> str:
    done = f"{len(rows)} of {len(plan)} cells done" if plan else f"{len(rows)} cells"
    fail = f", {len(failures)} failed (listed at the end)" if failures else ""
    ev = config.get("eval") or {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}

    def joined(key: str) -> str:
        return ", ".join(map(str, config.get(key) or [])) or "none"

    scope = f"the first {ev['limit']} examples" if ev.get("limit") else "all examples"
    hparams = ", ".join(f"{k}={v}" for k, v in (train or {}).items()) or "defaults"
    how = ("trains one model on all targets' train splits jointly (per method and seed)" if config.get("multitask")
           else "trains on the target's train split")
    parts = [f"{done}{fail}.",
             (f"Models: {joined('models')}; methods: {joined('methods')}; "
              + (f"selection strategies: {joined('strategies')}; k: {joined('k')}; " if config.get("experts") is None
                 else "experts: a fixed pool (below); ")
              + f"seeds: {joined('seeds')}."),
             (f"Protocol: every method {how} with the same hyperparameters ({hparams}), "
              f"then is scored on {scope} of the {ev.get('split', 'test')} split (primary metric)."),
             _experts_sentence(config), _precision_sentence(rows, config)]
    return " ".join(p for p in parts if p)


def _precision_sentence(rows: list[dict], config: dict[str, Any]) -> str:
    """The precision the cells ran in (resolved from the config's `precision`), or that several are reported apart."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[T.row_precision(r)] = counts.get(T.row_precision(r), 0) + 1
    requested = f" (requested: {config['precision']})" if config.get("precision") else ""
    if len(counts) <= 1:
        return f"Precision: {next(iter(counts), 'fp32')}{requested}."
    shown = ", ".join(f"{p} ({n} cells)" for p, n in sorted(counts.items(), key=lambda kv: (kv[0] != "fp32", kv[0])))
    return (f"Precisions: {shown}{requested}; each has its own section below, and scores of different precisions "
            "are never averaged together.")


def _experts_sentence(config: dict[str, Any]) -> str:
    """Where experts came from and what the reference methods are, from the config and the methods' specs."""
    from loralab.moe.registry import all_methods

    if config.get("experts") is not None:
        own = "kept in" if config.get("include_own") else "left out of"
        whose = "every target's own LoRA is" if config.get("multitask") else "the target's own LoRA is"
        text = f"Experts: the fixed pool {', '.join(config['experts']) or '(empty)'}; {whose} {own} it."
    else:
        text = "Experts are chosen from the library with the target's own LoRA left out."
    specs = all_methods()
    methods = [m for m in config.get("methods") or [] if m in specs]
    refs = [f"`{m}` is the target's own library LoRA (the upper reference)" for m in methods if specs[m].uses_own_lora]
    refs += [f"`{m}` the base model" for m in untrained_methods(methods)]
    return text + (f" {', '.join(refs)}." if refs else "")


def _findings(config: dict[str, Any], rows: list[dict], outcomes: Any, out_dir: Path,
              suffix: str = "") -> list[Any]:
    """The claims table, one verdict sentence per claim, the forest plot, and how noisy one cell is."""
    results, declared = claim_results(config, rows, outcomes)
    blocks: list[Any] = [f"## Findings (precision {suffix[1:]})" if suffix else "## Findings"]
    if results:
        blocks.append(claim_table(results, declared))
    blocks.append("\n".join(f"- {line}" for line in [*claim_sentences(results), noise(rows)]))
    forest = write_forest(results, out_dir / f"claims{suffix}.png")
    if forest is not None:
        blocks.append(("image", forest.name))
    return blocks


def _sections(rows: list[dict], models: list[str]) -> list[tuple[str, list[dict], str]]:
    """(heading, rows, figure file prefix) per model and precision, fp32 first; prefixes only where needed."""
    names = sorted({T.row_precision(r) for r in rows}, key=lambda p: (p != "fp32", p))
    out = []
    for model in models:
        for precision in names:
            part = [r for r in rows if r["model"] == model and T.row_precision(r) == precision]
            if part:
                prefix = "" if len(models) == 1 else f"{_slug(model)}-"
                prefix += "" if len(names) == 1 else f"{precision}-"
                out.append((f"{model if len(models) > 1 else 'Results'} (precision {precision})", part, prefix))
    return out


def _chance(recorded: Any) -> dict[str, float | None]:
    """The targets' chance levels the run recorded (databases from before they were have none: no chance lines)."""
    if not isinstance(recorded, dict):
        return {}
    return {str(t): float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            for t, v in recorded.items()}


def _model_section(title: str, rows: list[dict], seeds: list[int], strategies: list[str], out_dir: Path,
                   prefix: str, chance: dict[str, float | None] | None = None) -> list[Any]:
    """The tables and figures of one model's rows of one precision."""
    recs = T.records(rows, seeds)
    ks = sorted({r.k for r in recs if r.k is not None})
    n = len(seeds)
    blocks: list[Any] = [f"## {title}"]
    blocks.append(T.without_bold(T.overall_table(recs, n)))
    blocks.append(T.without_bold(T.method_task_table(recs, n, show_k=len(ks) > 1)))
    if any(r.strategy for r in recs):
        blocks.append(T.without_bold(T.method_strategy_table(recs, strategies, n)))
        blocks.append(T.without_bold(T.strategy_table(recs, strategies, n)))
        pairs = [(a, b) for a in relevance_strategies(strategies) for b in baseline_strategies(strategies)]
        pairs += baseline_pairs(strategies)
        table = T.strategy_pairs(recs, pairs)
        if table.rows:
            blocks.append(table)
    if len(ks) > 1:
        blocks.append(T.without_bold(T.method_k_table(recs, ks, n)))
    for path in write_plots(recs, strategies, out_dir, prefix, chance=chance):
        blocks.append(("image", path.name))
    return blocks


def _provenance(rows: list[dict], failures: list[dict]) -> list[Any]:
    blocks: list[Any] = ["## Provenance"]
    versions = sorted({", ".join(f"{k} {v}" for k, v in sorted(r["versions"].items()) if v) for r in rows})
    hashes = sorted({r["git_hash"] or "unknown" for r in rows})
    compute = sum(r.get("seconds") or 0 for r in rows)
    hosts = sorted({f"{r.get('executor')} on {r.get('host')} ({r.get('device')})" for r in rows})
    blocks.append("\n".join([f"- git: {', '.join(hashes) or 'n/a'}", *(f"- versions: {v}" for v in versions),
                             (f"- compute: {compute / 60:.1f} min summed over cells; ran with "
                              f"{', '.join(hosts) or 'n/a'}"),
                             ("- every cell's config, metrics, experts, selection scores and timing are in the "
                             "database (table `cells`), its per-example outcomes in table `outcomes`")]))
    if failures:
        blocks.append("## Failed cells")
        blocks.append("\n".join(f"- `{f['cell_id']}` {_cell_text(f['config'])}: {f['error']}" for f in failures))
    return blocks


def _cell_text(config: dict[str, Any]) -> str:
    sel = f" [{config['strategy']}, k={config['k']}]" if config.get("strategy") else ""
    seed = "" if config.get("seed") is None else f", seed {config['seed']}"
    return f"{config['method']}{sel} on {config['target']} ({config['model']}{seed})"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


# ---------------------------------------------------------------- rendering

def _markdown(blocks: Sequence[Any]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, T.Table):
            lines = [f"### {block.title}", "", *T.table_lines(block)]
            parts.append("\n".join(lines) + (f"\n\n{block.note}" if block.note else ""))
        elif isinstance(block, tuple):
            parts.append(f"![{block[1]}]({block[1]})")
        else:
            parts.append(block)
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the report uses: **bold** and `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _html(blocks: Sequence[Any], name: str) -> str:
    body = []
    for block in blocks:
        if isinstance(block, T.Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{'<b>' if best else ''}{_inline(t)}{'</b>' if best else ''}</td>"
                                            for t, best in row) + "</tr>" for row in block.rows)
            note = f"<p class='note'>{_inline(block.note)}</p>" if block.note else ""
            body.append(f"<h3>{_inline(block.title)}</h3><table><tr>{head}</tr>{rows}</table>{note}")
        elif isinstance(block, tuple):
            body.append(f"<p><img src='{html.escape(block[1])}' alt='{html.escape(block[1])}'></p>")
        elif block.startswith("#"):
            level = len(block) - len(block.lstrip("#"))
            body.append(f"<h{level}>{_inline(block.lstrip('#').strip())}</h{level}>")
        elif block.startswith("- "):
            body.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in block.splitlines()) + "</ul>")
        else:
            body.append(f"<p>{_inline(block)}</p>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
             "text-align:right}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9em}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(name)} benchmark</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
