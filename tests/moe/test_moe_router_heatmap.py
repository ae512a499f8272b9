"""The router heatmap stays readable with many experts: slanted or upright expert labels, a figure that grows with
the number of experts, a fixed 0..1 colour scale with uniform routing (1/E, a router's chance level) marked on the
colour bar. Asserted on the matplotlib objects."""

from __future__ import annotations

import pytest
from helpers import run_cli

from loralab.moe import analysis
from loralab.moe.analysis import FILES, RouterAnalysis, heatmap_figure


def result(n_experts: int, tasks=("navigate", "goal_step_wikihow_step_inference")) -> RouterAnalysis:
    uniform = [[1.0 / n_experts] * n_experts for _ in tasks]
    return RouterAnalysis(method="loramoe", experts=[f"library_task_{i:02d}" for i in range(n_experts)],
                          tasks=list(tasks), mean_weight=uniform, top1_share=uniform, n_examples=[4] * len(tasks),
                          n_tokens=[40] * len(tasks), layers=["l0"], meta={"split": "test"})


def _heatmaps(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_title()]


@pytest.mark.parametrize("n, rotation", [(3, 0), (8, 45), (16, 90), (32, 90)])
def test_expert_labels_turn_with_the_number_of_experts(n, rotation):
    for ax in _heatmaps(heatmap_figure(result(n))):
        labels = ax.get_xticklabels()
        assert len(labels) == n and all(t.get_rotation() == rotation for t in labels)


def test_the_figure_grows_with_the_number_of_experts():
    widths = [heatmap_figure(result(n)).get_size_inches()[0] for n in (3, 8, 16, 32)]
    assert widths == sorted(widths) and widths[-1] > 2 * widths[1]
    short_names = heatmap_figure(result(8, tasks=("a", "b"))).get_size_inches()[0]
    assert short_names < widths[1]  # the width also makes room for the task names


def test_colour_scale_is_fixed_and_the_colour_bar_marks_uniform_routing():
    fig = heatmap_figure(result(8))
    heatmaps = _heatmaps(fig)
    assert len(heatmaps) == 2 and all(ax.images[0].get_clim() == (0.0, 1.0) for ax in heatmaps)
    assert all(ax.images[0].norm(0.25) == pytest.approx(0.5) for ax in heatmaps)  # square-root scale
    bars = [ax for ax in fig.axes if ax not in heatmaps]
    lines = [line for bar in bars for line in bar.get_lines() if line.get_gid() == "chance"]
    assert len(lines) == 2 and all(line.get_ydata()[0] == pytest.approx(1 / 8) for line in lines)
    shown = [[t.get_text() for t in ax.get_yticklabels() if t.get_visible()] for ax in heatmaps]
    assert shown == [["navigate", "goal_step_wikihow_step_inference"], []]  # task names once, on the left


def test_cli_analyze_router_with_nine_experts(tmp_path, monkeypatch, capsys):
    """CLI level: a LoRAMoE checkpoint of 9 experts (trained from scratch; untrained here): a readable heatmap."""
    import json

    from loralab.models import build_tiny_model
    from loralab.recipes.train import build_method

    task = tmp_path / "parity.jsonl"
    task.write_text("".join(json.dumps({"prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"],
                                        "answer_index": i % 2, "split": "test"}) + "\n" for i in range(6)),
                    encoding="utf-8")
    lm = build_tiny_model("llama", seed=0)
    build_method("loramoe", lm, ["parity"], config={"num_experts": 9}).save_pretrained(tmp_path / "ckpt")
    drawn = []
    original = analysis.heatmap_figure
    monkeypatch.setattr(analysis, "heatmap_figure", lambda r: drawn.append(original(r)) or drawn[-1])
    code, stdout, err = run_cli(monkeypatch, capsys, "analyze-router", "--model", "tiny-llama", "--adapter",
                                str(tmp_path / "ckpt"), "--tasks", str(task), "--limit", "2", "--out",
                                str(tmp_path / "router"))
    assert code == 0, err
    assert (tmp_path / "router" / FILES["heatmap"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = drawn
    for ax in _heatmaps(fig):
        assert len(ax.get_xticklabels()) == 9 and all(t.get_rotation() == 45 for t in ax.get_xticklabels())
