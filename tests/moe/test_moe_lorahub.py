"""LoraHub: the factor-wise composition, the objective, the gradient-free search, and its PEFT checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors.torch import load_file

from helpers import toy_task
from loralab.moe.adapters import attach_adapter
from loralab.recipes.evaluate import run_eval
from loralab.errors import ConfigError, LoralabError, UnknownNameError, UserInputError
from loralab.library import LoRAHparams
from loralab.models import build_tiny_model
from loralab.moe.experts import LibraryLoRA, load_library_loras
from loralab.moe.methods.lorahub import (
    LoRAHubConfig,
    LoRAHubObjective,
    compose,
    fewshot_examples,
    fewshot_features,
    search_weights,
)
from loralab.recipes.train import train_method

HP = LoRAHparams(max_steps=2, batch_size=4)
IDS = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]]


def hand_lora(task: str, scaling: float, weights: dict) -> LibraryLoRA:
    return LibraryLoRA(task, "general", Path(task), rank=2, scaling=scaling, weights=weights, sha256="")


def test_composition_combines_the_factors_not_the_deltas():
    gen = torch.Generator().manual_seed(0)
    a1, a2, b1, b2 = (torch.randn(s, generator=gen) for s in ((2, 5), (2, 5), (4, 2), (4, 2)))
    loras = [hand_lora("x", 2.0, {"m": (a1, b1)}), hand_lora("y", 2.0, {"m": (a2, b2)})]
    a_hat, b_hat = compose(loras, [0.5, -1.0])["m"]
    torch.testing.assert_close(a_hat, 0.5 * a1 - a2)
    torch.testing.assert_close(b_hat, 0.5 * b1 - b2)
    delta = 2.0 * b_hat @ a_hat
    sum_of_deltas = 0.5 * 2.0 * b1 @ a1 - 2.0 * b2 @ a2
    assert not torch.allclose(delta, sum_of_deltas, atol=1e-3)  # cross terms B_i A_j: not sum w_i dW_i
    torch.testing.assert_close(delta, 2.0 * (0.5 * b1 - b2) @ (0.5 * a1 - a2))
    one_a, one_b = compose(loras, [0.0, 1.0])["m"]  # a unit weight gives that expert exactly
    torch.testing.assert_close(2.0 * one_b @ one_a, 2.0 * b2 @ a2)


def test_composition_folds_other_scalings_into_a_and_zero_fills_missing_modules():
    gen = torch.Generator().manual_seed(1)
    a1, a2, b1, b2, a3, b3 = (torch.randn(s, generator=gen) for s in ((2, 5), (2, 5), (4, 2), (4, 2), (2, 3), (3, 2)))
    loras = [hand_lora("x", 2.0, {"m": (a1, b1)}), hand_lora("y", 0.5, {"m": (a2, b2), "n": (a3, b3)})]
    a_hat, b_hat = compose(loras, [0.0, 1.0])["m"]
    torch.testing.assert_close(2.0 * b_hat @ a_hat, 0.5 * b2 @ a2)  # expert y's own update, at the first's scale
    n_a, n_b = compose(loras, [1.0, 0.3])["n"]  # x lacks "n": counts as zero
    torch.testing.assert_close(n_a, 0.3 * a3 * 0.25)
    torch.testing.assert_close(n_b, 0.3 * b3)
    with pytest.raises(ValueError, match="weights"):
        compose(loras, [1.0])


def test_fewshot_examples_are_k_per_task_from_train_and_fixed_by_seed():
    tasks = [toy_task("a", n=40), toy_task("b", n=40)]
    first = fewshot_examples(tasks, 5, seed=0)
    assert [t.name for t, _ in first] == ["a"] * 5 + ["b"] * 5
    assert all(ex.split == "train" for _, ex in first)
    assert [ex.id for _, ex in fewshot_examples(tasks, 5, seed=0)] == [ex.id for _, ex in first]
    assert [ex.id for _, ex in fewshot_examples(tasks, 5, seed=1)] != [ex.id for _, ex in first]
    assert len(fewshot_examples([toy_task("c", n=8)], 50, seed=0)) == 6  # all 6 train examples when fewer


def manual_cross_entropy(model, features) -> float:
    """Mean CE over answer tokens, one example at a time with full logits (independent of the loss helper)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for f in features:
            ids, labels = torch.tensor([f["input_ids"]]), torch.tensor([f["labels"]])
            logits = model(input_ids=ids).logits[0, :-1]
            total += F.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="sum").item()
            count += int((labels[0, 1:] != -100).sum())
    return total / count


def add_delta(model, module: str, delta: torch.Tensor) -> None:
    layer = model.get_submodule(module)
    with torch.no_grad():
        layer.weight += delta.t() if type(layer).__name__ == "Conv1D" else delta  # Conv1D stores (in, out)


def test_objective_at_a_fixed_w_equals_a_hand_computed_one(tiny_libraries):
    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    loras = load_library_loras(lib, lm.name, tasks)
    features, _ = fewshot_features([toy_task("target", n=24)], lm.tokenizer, HP, 5, seed=0)
    objective = LoRAHubObjective(lm.model, loras, features, l1=0.05, batch_size=2, pad_token_id=0)
    w = [0.7, -0.3, 1.1]
    value, ce = objective(w)
    zero_value, zero_ce = objective([0.0, 0.0, 0.0])
    objective.unload()

    reference = build_tiny_model("llama", seed=0).model
    assert zero_value == zero_ce == pytest.approx(manual_cross_entropy(reference, features), rel=1e-5)
    for module, (a_hat, b_hat) in compose(loras, w).items():
        add_delta(reference, module, loras[0].scaling * b_hat @ a_hat)
    assert ce == pytest.approx(manual_cross_entropy(reference, features), rel=1e-5)
    assert value == pytest.approx(ce + 0.05 * (0.7 + 0.3 + 1.1) / 3, rel=1e-9)


def test_search_is_deterministic_starts_at_zero_and_does_not_worsen():
    target = [0.3, -0.7, 1.2]

    def score(w):
        value = sum((x - t) ** 2 for x, t in zip(w, target))
        return value, value

    cfg = LoRAHubConfig(budget=30)
    first, again = search_weights(score, 3, cfg, seed=0), search_weights(score, 3, cfg, seed=0)
    assert first == again
    assert first.trajectory[0]["weights"] == [0.0, 0.0, 0.0]
    assert len(first.trajectory) == 30
    assert first.objective <= first.trajectory[0]["objective"]
    assert first.objective == min([t["objective"] for t in first.trajectory] + [first.recommendation["objective"]])
    assert all(-1.5 <= x <= 1.5 for t in first.trajectory for x in t["weights"])
    with pytest.raises(UnknownNameError, match="nevergrad optimizer"):
        search_weights(score, 3, LoRAHubConfig(optimizer="NGOptt"), seed=0)


def logits(model, **kwargs):
    with torch.no_grad():
        return model(input_ids=torch.tensor(IDS), **kwargs).logits


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_train_lorahub_writes_a_plain_peft_adapter(tmp_path, tiny_libraries, arch):
    lib, tasks = tiny_libraries(arch)
    target = toy_task("target", n=24)
    lm = build_tiny_model(arch, seed=0)
    info = train_method("lorahub", lm, [target], tmp_path / "hub", library=lib, experts=tasks,
                        config={"budget": 8}, hparams=HP, progress=False)
    assert not any("lora" in n for n, _ in lm.model.named_modules())  # the caller's model is given back clean
    meta = json.loads((tmp_path / "hub" / "loralab_train.json").read_text())
    hub = meta["lorahub"]
    assert meta["method"] == "lorahub" and [e["task"] for e in meta["experts"]] == tasks
    assert list(hub["weights"]) == tasks and len(hub["trajectory"]) == 8 and len(hub["fewshot_ids"]) == 5
    assert hub["trajectory"][0]["weights"] == [0.0, 0.0, 0.0]
    assert hub["objective"] <= hub["trajectory"][0]["objective"] == info["lorahub"]["trajectory"][0]["objective"]

    # plain PEFT loads it; loralab's eval path gives the same logits; they equal base + s * B_hat A_hat
    peft_model = PeftModel.from_pretrained(build_tiny_model(arch, seed=0).model, str(tmp_path / "hub")).eval()
    ours = attach_adapter(build_tiny_model(arch, seed=0).model, tmp_path / "hub").eval()
    torch.testing.assert_close(logits(ours), logits(peft_model), rtol=0, atol=0)
    loras = load_library_loras(lib, lm.name, tasks)
    manual = build_tiny_model(arch, seed=0).model
    for module, (a_hat, b_hat) in compose(loras, list(hub["weights"].values())).items():
        add_delta(manual, module, loras[0].scaling * b_hat @ a_hat)
    torch.testing.assert_close(logits(peft_model), logits(manual), rtol=1e-4, atol=1e-5)
    unmerged = logits(peft_model)
    torch.testing.assert_close(logits(peft_model.merge_and_unload()), unmerged, rtol=1e-4, atol=1e-5)

    # the same seed gives the same search and the same adapter
    train_method("lorahub", lm, [target], tmp_path / "again", library=lib, experts=tasks, config={"budget": 8},
                 hparams=HP, progress=False)
    again = json.loads((tmp_path / "again" / "loralab_train.json").read_text())["lorahub"]
    assert again["trajectory"] == hub["trajectory"] and again["weights"] == hub["weights"]
    saved, saved_again = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("hub", "again"))
    assert all(torch.equal(saved[k], saved_again[k]) for k in saved)

    record = run_eval(build_tiny_model(arch, seed=0), target, adapter=tmp_path / "hub", progress=False)
    assert record["n"] == 6 and "acc" in record["metrics"]


def test_lorahub_input_errors(tmp_path, tiny_libraries, monkeypatch):
    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    with pytest.raises(UserInputError, match="pass --library and --experts"):
        train_method("lorahub", lm, [toy_task("target")], tmp_path / "x", library=lib, hparams=HP)
    for bad in ({"budget": 0}, {"lower": 0.5}, {"l1": -1.0}, {"num_examples": 0}, {"budgett": 3}):
        with pytest.raises(ConfigError):
            train_method("lorahub", lm, [toy_task("target")], tmp_path / "x", library=lib, experts=tasks,
                         config=bad, hparams=HP)
    monkeypatch.setitem(sys.modules, "nevergrad", None)  # not installed: a clear error, never a silent fallback
    with pytest.raises(LoralabError, match=r"needs nevergrad, which is not installed: pip install 'loralab\[lorahub"):
        train_method("lorahub", lm, [toy_task("target")], tmp_path / "x", library=lib, experts=tasks, hparams=HP)
    assert not (tmp_path / "x").exists()
    assert not any("lora" in n for n, _ in lm.model.named_modules())
