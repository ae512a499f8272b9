"""Baselines: base, lora, multitask_lora and the PEFT merges train through train_method and evaluate with run_eval."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file

from helpers import toy_task
from loralab.moe.adapters import attach_adapter
from loralab.recipes.evaluate import run_eval
from loralab.errors import ConfigError, UserInputError
from loralab.library import Library, LoRAHparams
from loralab.models import build_tiny_model
from loralab.moe.model import MoEModel, is_method_checkpoint
from loralab.recipes.train import train_method

HP = LoRAHparams(max_steps=2, batch_size=4, learning_rate=5e-2)
IDS = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]]


def logits(model):
    with torch.no_grad():
        return model(input_ids=torch.tensor(IDS)).logits


def eval_metrics(arch, task, adapter=None):
    return run_eval(build_tiny_model(arch, seed=0), task, adapter=adapter, progress=False)["metrics"]


def check_plain_peft_adapter(path, arch="llama"):
    """Plain PEFT loads it, loralab's eval path gives the same logits, and merged equals unmerged."""
    files = {p.name for p in path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "loralab_train.json"} <= files
    assert not is_method_checkpoint(path)
    peft_model = PeftModel.from_pretrained(build_tiny_model(arch, seed=0).model, str(path)).eval()
    ours = attach_adapter(build_tiny_model(arch, seed=0).model, path).eval()
    unmerged = logits(peft_model)
    torch.testing.assert_close(logits(ours), unmerged, rtol=0, atol=0)
    assert not torch.allclose(unmerged, logits(build_tiny_model(arch, seed=0).model))  # the adapter does something
    torch.testing.assert_close(logits(peft_model.merge_and_unload()), unmerged, rtol=1e-4, atol=1e-5)
    return json.loads((path / "loralab_train.json").read_text())


def test_base_checkpoint_evaluates_the_plain_base_model(tmp_path):
    task = toy_task("toy_a", n=16)
    lm = build_tiny_model("llama", seed=0)
    info = train_method("base", lm, [task], tmp_path / "base", hparams=HP, progress=False)
    assert info["train"]["steps"] == 0
    assert is_method_checkpoint(tmp_path / "base")
    net = attach_adapter(build_tiny_model("llama", seed=0).model, tmp_path / "base")
    assert isinstance(net, MoEModel) and not net.adapter_state_dict()
    torch.testing.assert_close(logits(net), logits(build_tiny_model("llama", seed=0).model), rtol=0, atol=0)
    merged = net.merge_and_unload()
    torch.testing.assert_close(logits(merged), logits(build_tiny_model("llama", seed=0).model), rtol=0, atol=0)
    assert eval_metrics("llama", task, tmp_path / "base") == eval_metrics("llama", task)
    meta = json.loads((tmp_path / "base" / "loralab_method.json").read_text())
    assert meta["method"] == "base" and meta["train"]["loss"] is None  # NaN (nothing trained) is null in JSON


def test_lora_copies_the_library_adapter_byte_for_byte(tmp_path, tiny_libraries):
    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    task = toy_task(tasks[0], n=16)
    info = train_method("lora", lm, [task], tmp_path / "lora", library=lib, hparams=HP, progress=False)
    assert info["source"] == "library"
    entry = Library(lib).get(lm.name, tasks[0])
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (tmp_path / "lora" / name).read_bytes() == (entry.path / name).read_bytes()
    meta = check_plain_peft_adapter(tmp_path / "lora")
    assert meta["library_entry"]["task"] == tasks[0] and meta["method"] == "lora"
    assert set(eval_metrics("llama", task, tmp_path / "lora")) >= {"acc", "acc_norm"}


def test_lora_trains_when_the_library_lacks_the_task(tmp_path, tiny_libraries):
    lib, _ = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    task = toy_task("fresh", n=16)
    info = train_method("lora", lm, [task], tmp_path / "lora", library=lib, hparams=HP, progress=False)
    assert info["source"].startswith("trained") and info["train"]["steps"] == 2
    check_plain_peft_adapter(tmp_path / "lora")
    assert not (tmp_path / ".lora.work").exists()
    assert set(eval_metrics("llama", task, tmp_path / "lora")) >= {"acc"}


def test_multitask_lora_trains_one_adapter_on_all_tasks(tmp_path):
    tasks = [toy_task("toy_a", n=16), toy_task("toy_b", n=16, kind="generation")]
    lm = build_tiny_model("gpt2", seed=0)
    info = train_method("multitask_lora", lm, tasks, tmp_path / "mt", hparams=HP, progress=False)
    assert info["train"]["examples"] == 24 and info["train"]["steps"] == 2  # 12 train examples per task
    assert not any("lora" in n for n, _ in lm.model.named_modules())
    meta = check_plain_peft_adapter(tmp_path / "mt", arch="gpt2")
    assert meta["tasks"] == ["toy_a", "toy_b"]
    assert "exact_match" in eval_metrics("gpt2", tasks[1], tmp_path / "mt")


def peft_reference_merge(arch, lib, tasks, combination_type, weights, **kwargs):
    """The merge done directly with PEFT, as a user would."""
    entries = [Library(lib).get(build_tiny_model(arch).name, t) for t in tasks]
    model = PeftModel.from_pretrained(build_tiny_model(arch, seed=0).model, str(entries[0].path), adapter_name="a0")
    for i, entry in enumerate(entries[1:], start=1):
        model.load_adapter(str(entry.path), adapter_name=f"a{i}")
    torch.manual_seed(HP.seed)
    model.add_weighted_adapter([f"a{i}" for i in range(len(entries))], weights, "ref",
                               combination_type=combination_type, **kwargs)
    model.set_adapter("ref")
    return model.eval()


MERGES = [
    ("merge_linear", {}, "linear", [1 / 3] * 3, {}),
    ("merge_ties", {}, "ties", [1.0] * 3, {"density": 0.5, "majority_sign_method": "total"}),
    ("merge_dare", {}, "dare_ties", [1.0] * 3, {"density": 0.5, "majority_sign_method": "total"}),
    ("merge_linear", {"weights": [0.2, 0.5, -0.4]}, "linear", [0.2, 0.5, -0.4], {}),
    ("merge_dare", {"combination_type": "dare_linear", "density": 0.7}, "dare_linear", [1 / 3] * 3,
     {"density": 0.7, "majority_sign_method": "total"}),
]


@pytest.mark.parametrize(("method", "config", "combination", "weights", "kwargs"), MERGES)
def test_merges_equal_peft_add_weighted_adapter(tmp_path, tiny_libraries, method, config, combination, weights,
                                                kwargs):
    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    info = train_method(method, lm, [toy_task("toy_a", n=16)], tmp_path / "m", library=lib, experts=tasks,
                        config=config, hparams=HP, progress=False)
    assert info["merge"]["combination_type"] == combination and info["merge"]["weights"] == pytest.approx(weights)
    assert not any("lora" in n for n, _ in lm.model.named_modules())
    meta = check_plain_peft_adapter(tmp_path / "m")
    assert [e["task"] for e in meta["experts"]] == tasks
    reference = peft_reference_merge("llama", lib, tasks, combination, weights, **kwargs)
    expected = get_peft_model_state_dict(reference, adapter_name="ref")
    saved = load_file(str(tmp_path / "m" / "adapter_model.safetensors"))
    assert set(saved) == set(expected)
    for key, tensor in expected.items():
        torch.testing.assert_close(saved[key], tensor, rtol=0, atol=0)
    loaded = PeftModel.from_pretrained(build_tiny_model("llama", seed=0).model, str(tmp_path / "m")).eval()
    torch.testing.assert_close(logits(loaded), logits(reference), rtol=0, atol=0)
    assert set(eval_metrics("llama", toy_task("toy_a", n=16), tmp_path / "m")) >= {"acc"}


def test_baseline_input_errors(tmp_path, tiny_libraries):
    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    task = toy_task("toy_a", n=16)
    for method in ("merge_linear", "merge_ties", "merge_dare"):
        with pytest.raises(UserInputError, match="pass --library and --experts"):
            train_method(method, lm, [task], tmp_path / "x", library=lib, hparams=HP)
    for method in ("base", "multitask_lora"):
        with pytest.raises(UserInputError, match="cannot take --experts"):
            train_method(method, lm, [task], tmp_path / "x", library=lib, experts=tasks, hparams=HP)
    with pytest.raises(UserInputError, match="takes no --experts"):
        train_method("lora", lm, [task], tmp_path / "x", library=lib, experts=tasks[:1], hparams=HP)
    with pytest.raises(UserInputError, match="names a LoRA twice"):
        train_method("merge_ties", lm, [task], tmp_path / "x", library=lib, experts=[tasks[0], tasks[0]], hparams=HP)
    with pytest.raises(UserInputError, match="single-task"):
        train_method("lora", lm, [task, toy_task("toy_b", n=16)], tmp_path / "x", hparams=HP)
    for method, bad in (("merge_linear", {"weights": [1.0]}), ("merge_ties", {"density": 0.0}),
                        ("merge_ties", {"combination_type": "linear"}), ("merge_dare", {"density": 1.5}),
                        ("merge_linear", {"density": 0.5})):
        with pytest.raises(ConfigError):
            train_method(method, lm, [task], tmp_path / "x", library=lib, experts=tasks, config=bad, hparams=HP)
    assert not (tmp_path / "x").exists()
    assert not any("lora" in n for n, _ in lm.model.named_modules())
