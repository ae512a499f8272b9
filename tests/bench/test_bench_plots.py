"""The report's figures follow fixed conventions: metric axes chance..1 (else 0..1), a chance line where the chance
level is known, error bars only with several seeds (a note on the figure with one). Asserted on the matplotlib
objects, not on pixels."""

from __future__ import annotations

import pytest
from helpers import run_cli

from loralab.bench import plots
from loralab.bench.tables import Rec

from .synthetic import outcomes, synthetic_db


def recs(seeds=(0,), below=False) -> list[Rec]:
    """base and moe (and moe with a strategy) on two targets; `below`: base scores under chance on 'a'."""
    out = []
    for seed in seeds:
        for target, base, moe in (("a", 0.2 if below else 0.6, 0.7), ("b", 0.5, 0.55)):
            out += [Rec("m", "base", None, None, target, seed, base),
                    Rec("m", "moe", None, None, target, seed, moe + 0.01 * seed),
                    Rec("m", "loramoe", "ppl", 2, target, seed, moe - 0.05 + 0.02 * seed)]
    return out


CHANCE = {"a": 0.5, "b": 0.25}


def _chance_lines(ax):
    return [line for line in ax.get_lines() if line.get_gid() == plots.CHANCE_GID]


def _bars(ax):
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)]


def _seed_notes(ax):
    return [text for text in ax.texts if text.get_gid() == plots.SEED_NOTE_GID]


def test_methods_axis_runs_from_chance_to_one_with_a_chance_line():
    ax = plots.methods_figure(recs(), CHANCE).axes[0]
    # the mean of the targets' chance levels, with a pad below it so the chance line shows
    assert ax.get_xlim() == pytest.approx((0.375 - plots.CHANCE_PAD * 0.625, 1.0))
    (line,) = _chance_lines(ax)
    assert line.get_xdata()[0] == pytest.approx(0.375) and "chance" in line.get_label()


def test_a_bar_below_chance_keeps_the_axis_at_zero_to_one():
    ax = plots.methods_figure(recs(below=True), CHANCE).axes[0]
    assert ax.get_xlim() == (0.0, 1.0) and len(_chance_lines(ax)) == 1


def test_without_a_chance_level_the_axis_is_zero_to_one_and_has_no_chance_line():
    ax = plots.methods_figure(recs(), {"a": 0.5, "b": None}).axes[0]  # b: a generation task
    assert ax.get_xlim() == (0.0, 1.0) and _chance_lines(ax) == []
    ax = plots.strategies_figure(recs(), ["ppl"], {}).axes[0]
    assert ax.get_ylim() == (0.0, 1.0) and _chance_lines(ax) == []


@pytest.mark.parametrize("build", [lambda r: plots.methods_figure(r, CHANCE),
                                   lambda r: plots.strategies_figure(r, ["ppl"], CHANCE)])
def test_error_bars_only_with_several_seeds_and_a_note_with_one(build):
    one = build(recs(seeds=(0,))).axes[0]
    assert _bars(one) and all(c.errorbar is None for c in _bars(one)) and len(_seed_notes(one)) == 1
    assert _seed_notes(one)[0].get_text() == plots.ONE_SEED_NOTE
    several = build(recs(seeds=(0, 1))).axes[0]
    assert all(c.errorbar is not None for c in _bars(several)) and _seed_notes(several) == []


def test_strategies_axis_and_chance_line():
    ax = plots.strategies_figure(recs(), ["ppl"], CHANCE).axes[0]
    assert ax.get_ylim() == pytest.approx((0.375 - plots.CHANCE_PAD * 0.625, 1.0))
    (line,) = _chance_lines(ax)
    assert line.get_ydata()[0] == pytest.approx(0.375)


def test_heatmap_colour_scale_is_fixed_and_names_each_tasks_chance_level():
    fig = plots.tasks_figure(recs(), {"a": 0.5, "b": None})
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (0.0, 1.0)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["a\n(chance 0.50)", "b"]
    assert all(t.get_rotation() == 30 for t in ax.get_xticklabels())


def test_loralab_report_draws_the_chance_levels_the_run_recorded(tmp_path, monkeypatch, capsys):
    """CLI level: `loralab report` reads the chance levels from the database and passes them to every figure."""
    from loralab.bench import Store

    drawn = []
    for name in ("methods_figure", "strategies_figure", "tasks_figure"):
        original = getattr(plots, name)

        def capture(*args, _original=original, **kwargs):
            fig = _original(*args, **kwargs)
            drawn.append(fig)
            return fig

        monkeypatch.setattr(plots, name, capture)
    rows = []
    for target in ("a", "b"):
        for method, correct in (("base", [1, 0, 1, 1]), ("moe", [1, 1, 1, 0])):
            rows.append({"cell_id": f"{method}-{target}", "bench": "synthetic", "model": "m", "method": method,
                         "strategy": None, "k": None, "target": target, "seed": 0, "config": {"id": method},
                         "primary_metric": "acc", "score": sum(correct) / 4, "n": 4, "split": "test",
                         "metrics": {"acc": sum(correct) / 4}, "experts": [], "selection": None, "own_lora": None,
                         "train": None, "versions": {"loralab": "0"}, "git_hash": "abc", "seconds": 1.0,
                         "outcomes": outcomes(correct)})
    db = synthetic_db(tmp_path / "bench.sqlite", rows)
    with Store(db) as store:
        meta = store.get_meta("bench")
        store.set_meta("bench", {**meta, "chance": CHANCE})
    code, out, err = run_cli(monkeypatch, capsys, "report", str(db), "--out", str(tmp_path / "report"))
    assert code == 0, err
    assert (tmp_path / "report" / "methods.png").is_file() and (tmp_path / "report" / "tasks.png").is_file()
    methods, tasks = drawn[0].axes[0], drawn[-1].axes[0]
    assert methods.get_xlim()[0] < 0.375 < methods.get_xlim()[0] + 0.05 and len(_chance_lines(methods)) == 1
    assert "(chance 0.25)" in tasks.get_xticklabels()[1].get_text()


def test_a_database_without_chance_levels_reports_on_zero_to_one(tmp_path, monkeypatch, capsys):
    drawn = []
    original = plots.methods_figure
    monkeypatch.setattr(plots, "methods_figure", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    rows = [{"cell_id": f"base-{t}", "bench": "synthetic", "model": "m", "method": "base", "strategy": None, "k": None,
             "target": t, "seed": 0, "config": {"id": t}, "primary_metric": "acc", "score": 0.5, "n": 2,
             "split": "test", "metrics": {"acc": 0.5}, "experts": [], "selection": None, "own_lora": None,
             "train": None, "versions": {"loralab": "0"}, "git_hash": "abc", "seconds": 1.0,
             "outcomes": outcomes([1, 0])} for t in ("a", "b")]
    db = synthetic_db(tmp_path / "bench.sqlite", rows)
    code, _, err = run_cli(monkeypatch, capsys, "report", str(db), "--out", str(tmp_path / "report"))
    assert code == 0, err
    ax = drawn[0].axes[0]
    assert ax.get_xlim() == (0.0, 1.0) and _chance_lines(ax) == []
