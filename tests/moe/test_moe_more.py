"""MoRE: rank-prefix experts, STE rank selector, contrastive loss, task sampler, per-task merge and report."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from helpers import run_cli, toy_task
from loralab.data import example_record, write_jsonl
from loralab.library import LoRAHparams
from loralab.training.sampling import TaskBatchSampler, task_sampling_weights
from loralab.models import build_tiny_model
from loralab.moe.layer import MoELoRALinear
from loralab.moe.methods.more import (CONTRASTIVE, NEAREST, VOTES, MoREConfig, RankSelector, chosen_ranks,
                                      contrastive_loss, nearest_task, rank_scales)
from loralab.moe.rank_report import rank_report
from loralab.moe.state import RoutingState
from loralab.recipes.train import build_method, train_method

TASKS = ["toy_a", "toy_b"]


def more_model(arch="llama", **config):
    lm = build_tiny_model(arch, seed=0)
    return lm, build_method("more", lm, TASKS, config={"rank": 4, **config})


def layers(moe):
    return [m for m in moe.model.modules() if isinstance(m, MoELoRALinear)]


def batch(tokenizer, task_ids=(0, 1)):
    enc = tokenizer(["Q: is 3 even?\nA: no", "Q: 10?"], return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {**enc, "labels": labels, "task_ids": torch.tensor(task_ids)}


def randomize_b(moe):
    with torch.no_grad():
        for layer in layers(moe):
            layer.lora_B.normal_(std=0.05)


def force_rank(layer, task_id, rank):
    """Make the gate of `layer` choose `rank` (1..R) for `task_id`, whatever its embedding."""
    with torch.no_grad():
        layer.router.gate.weight.zero_()
        layer.router.gate.bias.fill_(-5.0)
        layer.router.gate.bias[rank - 1] = 5.0


def test_gradient_reaches_gate_and_task_embeddings():
    lm, moe = more_model()
    randomize_b(moe)
    moe.train()
    out = moe(**batch(lm.tokenizer))
    assert out.aux_loss is not None and out.aux_loss > 0
    out.loss.backward()
    for layer in layers(moe):
        for p in (layer.router.gate.weight, layer.router.gate.bias, layer.router.task_embedding.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_without_straight_through_the_gate_gets_no_gradient():
    """The released code's behaviour (straight_through=False): only the contrastive loss trains embeddings."""
    lm, moe = more_model(straight_through=False)
    randomize_b(moe)
    moe.train()
    moe(**batch(lm.tokenizer)).loss.backward()
    layer = layers(moe)[0]
    assert layer.router.gate.weight.grad is None or layer.router.gate.weight.grad.abs().sum() == 0
    assert layer.router.task_embedding.weight.grad.abs().sum() > 0


def test_rank_prefixes_nest():
    lm, moe = more_model()
    randomize_b(moe)
    layer = layers(moe)[0]
    R, s, c2 = 4, 32.0 / 4, rank_scales(4, True)
    deltas = []
    for rank in range(1, R + 1):
        force_rank(layer, 0, rank)
        gates, choice, _ = layer.router.task_gates(torch.tensor([0]))
        assert int(choice) == rank - 1
        deltas.append(layer.expert_delta(gates[0].detach()))
    A, B = layer.lora_A.detach(), layer.lora_B.detach()
    for rank in range(1, R + 1):
        by_hand = sum(s * c2[j] * torch.outer(B[:, j], A[j]) for j in range(rank))
        torch.testing.assert_close(deltas[rank - 1], by_hand, rtol=1e-5, atol=1e-6)
    # each larger rank adds exactly one more component on top of the smaller prefix
    torch.testing.assert_close(deltas[2] - deltas[1], s * c2[2] * torch.outer(B[:, 2], A[2]), rtol=1e-4, atol=1e-6)


def test_rank_scaling_is_linear_squared():
    torch.testing.assert_close(rank_scales(4, True), torch.tensor([1 / 16, 4 / 16, 9 / 16, 1.0]))
    torch.testing.assert_close(rank_scales(3, False), torch.ones(3))


def test_contrastive_loss_matches_hand_computation():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    selector = RankSelector(2, 2, 2, MoREConfig(rank=2))
    with torch.no_grad():
        selector.task_embedding.weight.copy_(e)
    logits = selector.contrastive_logits(x)
    expected_logits = torch.tensor([[1.0, 0.0], [2**-0.5, 2**-0.5]]) / 0.05
    torch.testing.assert_close(logits, expected_logits)
    ids = torch.tensor([0, 1])
    # sample 0: CE = log(1 + e^-20); sample 1: equal logits, CE = log 2; two identical modules -> same mean
    by_hand = (torch.log1p(torch.exp(torch.tensor(-20.0))) + torch.log(torch.tensor(2.0))) / 2
    torch.testing.assert_close(contrastive_loss([logits, logits], ids), by_hand)
    torch.testing.assert_close(contrastive_loss([logits], ids), F.cross_entropy(expected_logits, ids))


def test_contrastive_pools_only_real_tokens():
    selector = RankSelector(2, 2, 2, MoREConfig(rank=2)).train()
    state = RoutingState(task_ids=torch.tensor([0]), attention_mask=torch.tensor([[1, 0]]))
    with torch.no_grad():
        selector.task_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    selector(torch.tensor([[[3.0, 0.0], [0.0, 100.0]]]), state)  # the padded token points at task 1
    (logits,) = state.extras[CONTRASTIVE]
    assert logits.argmax().item() == 0


def test_nearest_mode_routes_to_the_closest_embedding():
    selector = RankSelector(2, 2, 2, MoREConfig(rank=2)).eval()
    with torch.no_grad():
        selector.task_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    state = RoutingState(attention_mask=torch.ones(2, 1, dtype=torch.long))
    state.extras[NEAREST] = True
    selector(torch.tensor([[[0.1, 2.0]], [[3.0, 0.2]]]), state)
    assert state.extras[VOTES][0].tolist() == [1, 0]


def test_nearest_task_votes_over_modules_and_samples():
    lm, moe = more_model()
    b = batch(lm.tokenizer)
    task, votes = nearest_task(moe, [{"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}])
    assert task in TASKS and sum(votes.values()) == 2 * len(layers(moe))


def test_task_batch_sampler_one_task_per_batch_and_size_weights():
    ids = [0] * 30 + [1] * 10
    sampler = TaskBatchSampler(ids, batch_size=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10
    assert all(len({ids[i] for i in b}) == 1 and len(b) == 4 for b in batches)
    assert batches == list(TaskBatchSampler(ids, batch_size=4, seed=3))  # a function of the seed
    sampler.set_epoch(1)
    assert list(sampler) != batches
    w = task_sampling_weights([30, 10])
    torch.testing.assert_close(w, torch.softmax(torch.tensor([0.75, 0.25], dtype=torch.float64), 0))
    many = TaskBatchSampler(ids, batch_size=1, seed=0, num_batches=4000)
    share = sum(ids[b[0]] == 0 for b in many) / 4000
    assert abs(share - float(w[0])) < 0.03


def test_train_save_reload_report_and_merge(tmp_path, monkeypatch, capsys):
    tasks = [toy_task("toy_a", n=24), toy_task("toy_b", n=24)]
    hp = LoRAHparams(max_steps=4, batch_size=4, learning_rate=5e-2)
    info = train_method("more", "tiny-llama", tasks, tmp_path / "more", config={"rank": 4}, hparams=hp,
                        progress=False)
    assert info["train"]["task_batches"] is True and info["train"]["history"]
    assert {"step", "more/mean_rank/toy_a", "more/mean_rank/toy_b"} <= set(info["train"]["history"][0])

    from loralab.moe.model import load_method

    moe = load_method(build_tiny_model("llama", seed=0).model, tmp_path / "more")
    report = rank_report(tmp_path / "more")
    assert report.ranks == chosen_ranks(moe)
    assert sum(report.histogram("toy_a")) == len(layers(moe))

    # one record per step: HF Trainer's end-of-training log at step 4 (a logging step) replaces, not repeats, it
    assert [row["step"] for row in info["train"]["history"]] == [1, 2, 3, 4]
    code, out, _ = run_cli(monkeypatch, capsys, "ranks", str(tmp_path / "more"))
    assert code == 0 and "mean rank" in out and "toy_b" in out
    history = out.split("| step |")[1].splitlines()[2:]
    assert [line.split("|")[1].strip() for line in history if line.startswith("|")] == ["1", "2", "3", "4"]

    code, _, err = run_cli(monkeypatch, capsys, "merge", "--adapter", str(tmp_path / "more"), "--task", "toy_b",
                           "--out", str(tmp_path / "merged"))
    assert code == 0, err
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    b = batch(build_tiny_model("llama").tokenizer, task_ids=(1, 1))
    with torch.no_grad():
        expected = moe(input_ids=b["input_ids"], attention_mask=b["attention_mask"], task_ids=b["task_ids"]).logits
        got = merged(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "merged" / "loralab_merge.json").read_text())["merged_task"] == "toy_b"

    # an existing --out is refused; an unseen task needs --nearest
    code, _, err = run_cli(monkeypatch, capsys, "merge", "--adapter", str(tmp_path / "more"), "--task", "toy_b",
                           "--out", str(tmp_path / "merged"))
    assert code == 2 and "already exists" in err
    unseen = toy_task("toy_c", n=24)
    write_jsonl(tmp_path / "toy_c.jsonl", [example_record(unseen, ex) for ex in unseen.examples])
    code, _, err = run_cli(monkeypatch, capsys, "merge", "--adapter", str(tmp_path / "more"), "--task",
                           str(tmp_path / "toy_c.jsonl"), "--out", str(tmp_path / "merged_c"))
    assert code == 2 and "--nearest" in err and not (tmp_path / "merged_c").exists()
    code, _, err = run_cli(monkeypatch, capsys, "merge", "--adapter", str(tmp_path / "more"), "--task",
                           str(tmp_path / "toy_c.jsonl"), "--out", str(tmp_path / "merged_c"), "--nearest", "8")
    assert code == 0, err
    record = json.loads((tmp_path / "merged_c" / "loralab_merge.json").read_text())
    assert record["nearest_task"] in ("toy_a", "toy_b") and record["merged_task"] == record["nearest_task"]

    # a checkpoint written before the trainer kept one record per step lists the last one twice: shown once
    from loralab.moe.model import CONFIG_FILE

    config = tmp_path / "more" / CONFIG_FILE
    meta = json.loads(config.read_text())
    meta["train"]["history"].append({**meta["train"]["history"][-1], "more/mean_rank/toy_a": 1.0})
    config.write_text(json.dumps(meta))
    report = rank_report(tmp_path / "more")
    assert [row["step"] for row in report.history] == [1, 2, 3, 4]
    assert report.history[-1]["more/mean_rank/toy_a"] == 1.0  # the later record of the step


def test_more_refuses_library_experts(tmp_path):
    from loralab.errors import UserInputError

    lm = build_tiny_model("llama", seed=0)
    with pytest.raises(UserInputError, match="from scratch"):
        build_method("more", lm, TASKS, library=tmp_path, experts=["x"])


@pytest.mark.parametrize("bad", [{"rank": 0}, {"contrastive_temperature": 0.0}, {"dropout": 1.0},
                                 {"contrastive_weight": -1.0}])
def test_bad_config_is_a_config_error(bad):
    from loralab.errors import ConfigError

    with pytest.raises(ConfigError):
        MoREConfig.from_dict(bad)


def test_multilora_starts_as_the_base_model_and_learns_scales():
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("multilora", lm, TASKS, config={"num_modules": 3, "rank": 2})
    fresh = build_tiny_model("llama", seed=0).model
    b = batch(lm.tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(moe(input_ids=b["input_ids"]).logits, fresh(input_ids=b["input_ids"]).logits)
    layer = layers(moe)[0]
    assert layer.lora_B.abs().sum() > 0  # kaiming B, zero scales
    moe.train()
    moe(**b).loss.backward()
    assert layer.router.scale.grad.abs().sum() > 0 and layer.lora_B.grad.abs().sum() == 0
