"""Router analysis (loralab.moe.analysis, `loralab analyze-router`) on tiny models.

* dense softmax and renormalised top-k routers: each task's mean gate weights and top-1 shares sum to 1;
* padding is masked: batching (right padding) gives the same statistics as one sequence at a time;
* the aggregate is the plain mean over (layer, real token) of the recorded gates;
* task-routed methods (MOELoRA) report the gate of the analysed task, once per real token;
* experts are labelled with their library tasks; every output file is written; a checkpoint without a
  router (a plain PEFT adapter) is a one-line error.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from helpers import run_cli, toy_task

from loralab.moe.analysis import FILES, analyze_router, expert_labels, router_statistics, sequences
from loralab.recipes.evaluate import export_task
from loralab.errors import AdapterError, UserInputError
from loralab.library import Library
from loralab.models import build_tiny_model
from loralab.recipes.train import build_method
from loralab.moe.registry import all_methods
from moe.contract import build as contract_build

TASKS = ["toy_a", "toy_b"]


def toy_tasks(n=24):
    return [toy_task(name, n=n) for name in TASKS]


def perturb(moe, scale=0.5):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in moe.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * scale)


def build(method, tiny_libraries=None, arch="llama", **config):
    lm = build_tiny_model(arch, seed=0)
    lib, experts = tiny_libraries(arch) if tiny_libraries is not None else (None, None)
    moe = build_method(method, lm, TASKS, config=config, library=lib, experts=experts)
    perturb(moe)
    return lm, moe


def assert_rows_sum_to(rows, total):
    for row in rows:
        assert sum(row) == pytest.approx(total, abs=1e-6)


@pytest.mark.parametrize(("method", "arch", "config"), [
    ("loramoe", "llama", {"num_experts": 3, "rank": 2, "targets": "all"}),  # dense softmax per linear
    ("loramoe", "gpt2", {"num_experts": 3, "rank": 2, "targets": "all"}),
    ("hydralora", "llama", {"num_experts": 3, "rank": 2, "targets": "all"}),  # dense, shared A
    ("mixlora", "llama", {"num_experts": 3, "top_k": 2, "rank": 2}),  # top-2 renormalised per FFN block
])
def test_rows_sum_to_one_and_padding_is_masked(method, arch, config):
    lm, moe = build(method, arch=arch, **config)
    batched = router_statistics(moe, lm.tokenizer, toy_tasks(), batch_size=4, progress=False)
    single = router_statistics(moe, lm.tokenizer, toy_tasks(), batch_size=1, progress=False)
    assert batched.experts == ["e0", "e1", "e2"] and batched.tasks == TASKS
    assert_rows_sum_to(batched.mean_weight, 1.0)
    assert_rows_sum_to(batched.top1_share, 1.0)
    assert len(batched.layers) == len({r.name for r in _records(moe, lm.tokenizer)})
    assert batched.n_examples == [6, 6]
    # right padding in batches of 4 must not change anything: padded positions are masked out
    assert batched.n_tokens == single.n_tokens
    torch.testing.assert_close(torch.tensor(batched.mean_weight), torch.tensor(single.mean_weight),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(batched.top1_share), torch.tensor(single.top1_share), rtol=0, atol=1e-9)
    # the router is not uniform after perturbation, so these are real statistics
    assert max(max(r) for r in batched.mean_weight) > 0.34


def _records(moe, tokenizer):
    moe.eval()
    with torch.no_grad(), moe.routing(task=TASKS[0], record=True):
        moe(input_ids=torch.tensor([sequences(toy_task("toy_a", n=4), tokenizer)[0]]))
    return moe.state.records


def test_aggregate_is_the_mean_over_layers_and_tokens_of_the_recorded_gates():
    lm, moe = build("loramoe", num_experts=3, rank=2, targets="all")
    task = toy_task("toy_a", n=4)  # one test example
    ids = torch.tensor([sequences(task, lm.tokenizer)[0]])
    moe.eval()  # no LoRA dropout, as in the analysis
    with torch.no_grad(), moe.routing(record=True):
        moe(input_ids=ids)
    weights = torch.stack([r.weights[0].double() for r in moe.state.records])  # (L, T, E)
    top1 = torch.nn.functional.one_hot(weights.argmax(-1), 3).double()
    result = router_statistics(moe, lm.tokenizer, [task], progress=False)
    torch.testing.assert_close(torch.tensor(result.mean_weight[0], dtype=torch.float64), weights.mean((0, 1)))
    torch.testing.assert_close(torch.tensor(result.top1_share[0], dtype=torch.float64), top1.mean((0, 1)))
    per_layer = torch.tensor([result.per_layer[name][0] for name in result.layers], dtype=torch.float64)
    torch.testing.assert_close(per_layer, weights.mean(1))
    assert result.n_tokens == [ids.shape[1]]


def test_task_routed_method_reports_the_gate_of_each_task():
    """MOELoRA: (B, 1, E) task gates count once per real token, and each task's row is that task's gate."""
    from loralab.moe.methods.moelora import task_gate_weights

    lm, moe = build("moelora", num_experts=3, rank=6)
    result = router_statistics(moe, lm.tokenizer, toy_tasks(), batch_size=4, progress=False)
    for task_id, row in enumerate(result.mean_weight):
        with torch.no_grad():
            expected = task_gate_weights(moe, task_id).double()
        torch.testing.assert_close(torch.tensor(row, dtype=torch.float64), expected, rtol=1e-5, atol=1e-6)
        top1 = torch.nn.functional.one_hot(expected.argmax(), 3).double()
        torch.testing.assert_close(torch.tensor(result.top1_share[task_id], dtype=torch.float64), top1)
    assert result.mean_weight[0] != pytest.approx(result.mean_weight[1])
    assert result.n_tokens[0] > result.n_examples[0]  # tokens, not samples, were counted
    with pytest.raises(UserInputError, match="routes by task .* not 'other'"):
        router_statistics(moe, lm.tokenizer, [toy_task("other", n=8)], progress=False)


def test_task_gates_are_weighted_by_real_tokens():
    """A (B, 1, E) record counts once per real token of its sample, padding excluded."""
    from loralab.moe.analysis import _Accumulator
    from loralab.moe.state import RouterRecord

    gates = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])  # 3 and 1 real tokens
    acc = _Accumulator()
    acc.add([RouterRecord("layer", gates, gates)], mask)
    assert acc.weight["layer"].tolist() == [3.0, 1.0] and acc.top1["layer"].tolist() == [3.0, 1.0]
    assert acc.decisions["layer"] == 4 and acc.tokens == 4


def test_rocket_top2_with_library_expert_labels(tiny_libraries):
    lm, moe = build("rocket", tiny_libraries, targets="all")
    _, lib_tasks = tiny_libraries("llama")
    result = router_statistics(moe, lm.tokenizer, toy_tasks(), batch_size=4, progress=False)
    assert result.experts == lib_tasks  # the library tasks the experts came from, in expert order
    assert_rows_sum_to(result.mean_weight, 1.0)  # top-2, renormalised
    assert_rows_sum_to(result.top1_share, 1.0)


def test_xlora_rows_sum_to_the_global_scaling_weight(tiny_libraries):
    lm, moe = build("xlora", tiny_libraries, global_scaling_weight=0.5)
    result = router_statistics(moe, lm.tokenizer, toy_tasks(), batch_size=4, progress=False)
    assert result.experts == tiny_libraries("llama")[1]
    assert_rows_sum_to(result.mean_weight, 0.5)
    assert_rows_sum_to(result.top1_share, 1.0)
    assert len(result.layers) == len(moe.method_config.modules)


def test_expert_labels_fall_back_to_indices():
    from types import SimpleNamespace

    named = SimpleNamespace(experts=[{"task": "a"}, {"task": "b"}])
    assert expert_labels(named, 2) == ["a", "b"]
    assert expert_labels(named, 3) == ["e0", "e1", "e2"]  # provenance does not cover every expert
    assert expert_labels(SimpleNamespace(experts=[{"task": "a"}, {"task": "a"}]), 2) == ["e0", "e1"]  # ambiguous
    assert expert_labels(SimpleNamespace(experts=[]), 2) == ["e0", "e1"]  # trained from scratch


@pytest.fixture
def task_files(tmp_path):
    paths = []
    for task in toy_tasks():
        path = tmp_path / f"{task.name}.jsonl"
        export_task(task, path, split="all")
        paths.append(str(path))
    return paths


def saved_checkpoint(tiny_libraries, tmp_path, method="rocket"):
    _, moe = build(method, tiny_libraries, targets="all") if method == "rocket" else build(method, tiny_libraries)
    moe.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_analyze_router_writes_every_file(tiny_libraries, tmp_path, task_files):
    ckpt = saved_checkpoint(tiny_libraries, tmp_path)
    out = tmp_path / "analysis"
    result = analyze_router("tiny-llama", ckpt, task_files, limit=4, out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())  # and no temporary leftovers
    rows = list(csv.reader((out / FILES["weights_csv"]).open()))
    assert rows[0] == ["task", *result.experts, "n_examples", "n_tokens"]
    assert [r[0] for r in rows[1:]] == result.tasks and all(r[-2] == "4" for r in rows[1:])
    for r in rows[1:]:
        assert sum(float(v) for v in r[1:-2]) == pytest.approx(1.0, abs=1e-5)
    record = json.loads((out / FILES["json"]).read_text())
    assert record["method"] == "rocket" and record["meta"]["adapter"] == str(ckpt) and record["meta"]["limit"] == 4
    assert "| task |" in (out / FILES["markdown"]).read_text()
    assert (out / FILES["heatmap"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_peft_adapter_is_a_one_line_error(tiny_libraries, tmp_path, task_files):
    lib, tasks = tiny_libraries("llama")
    peft_dir = Library(lib).get("tiny-llama", tasks[0]).path
    with pytest.raises(AdapterError, match="plain PEFT adapter: it has no router"):
        analyze_router("tiny-llama", peft_dir, task_files, progress=False)
    with pytest.raises(AdapterError, match="no router"):
        router_statistics(build_tiny_model("llama").model, None, toy_tasks(), progress=False)


def test_cli_analyze_router(tiny_libraries, tmp_path, task_files, monkeypatch, capsys):
    ckpt = saved_checkpoint(tiny_libraries, tmp_path)
    out = tmp_path / "cli-out"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "analyze-router", "--model", "tiny-llama",
                                   "--adapter", str(ckpt), "--task", ",".join(task_files), "--limit", "3",
                                   "--batch-size", "2", "--out", str(out))
    assert code == 0, stderr
    assert "rocket: mean gate weight" in stdout and "toy_a" in stdout
    assert (out / FILES["heatmap"]).is_file() and (out / FILES["top1_csv"]).is_file()


def test_cli_analyze_router_without_router_exits_2_one_line(tiny_libraries, tmp_path, task_files, monkeypatch, capsys):
    lib, tasks = tiny_libraries("llama")
    peft_dir = Library(lib).get("tiny-llama", tasks[0]).path
    out = tmp_path / "never"
    code, _, stderr = run_cli(monkeypatch, capsys, "analyze-router", "--model", "tiny-llama",
                              "--adapter", str(peft_dir), "--task", task_files[0], "--out", str(out))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "no router to analyse" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("method", sorted(m for m, spec in all_methods().items() if spec.contract is not None))
def test_every_contract_method_can_be_analysed(tiny_libraries, method):
    """Every LoRA-MoE method of the contract suite (new ones included) gives per-task statistics."""
    lm, moe = contract_build(method, "llama", tiny_libraries)
    perturb(moe, 0.1)
    result = router_statistics(moe, lm.tokenizer, toy_tasks(n=8), batch_size=2, progress=False)
    assert result.tasks == TASKS and len(result.layers) >= 1
    values = torch.tensor(result.mean_weight)
    assert values.shape == (2, len(result.experts)) and torch.isfinite(values).all() and (values >= 0).all()
    assert_rows_sum_to(result.top1_share, 1.0)
    if all_methods()[method].library == "required":
        assert result.experts == tiny_libraries("llama")[1]
