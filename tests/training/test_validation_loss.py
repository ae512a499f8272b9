"""`val_every`: the answer-only loss on the validation split every N steps and after the last one, recorded
everywhere a train loss is, without changing training (same losses, same weights, same cell ids)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import set_seed

from loralab.data import Example, Task
from loralab.errors import ConfigError
from loralab.library import LoRAHparams, build_library, lora_config
from loralab.models import build_tiny_model
from loralab.moe.model import CONFIG_FILE, WEIGHTS_FILE
from loralab.recipes.train import train_method
from loralab.training.checkpoints import run_fingerprint
from loralab.training.features import PadCollator, training_features, validation_features
from loralab.training.loss import answer_only_loss
from loralab.training.trainer import train_adapter

# dropout > 0 and 8 examples of batch 2 (a new epoch's shuffle after step 4): validation must not move the RNG
HP = LoRAHparams(max_steps=6, batch_size=2, learning_rate=1e-2, dropout=0.1, rank=4, max_train_examples=8,
                 max_length=64)


def val_task(name: str = "parity", n: int = 30, validation: bool = True) -> Task:
    examples = [Example(id=f"{name}{i:03d}", body=f"Q: is {i} even?\nA:", choices=(" yes", " no"), answers=(i % 2,),
                        split="validation" if validation and i % 3 == 0 else "train") for i in range(n)]
    return Task(name=name, kind="multiple_choice", examples=examples, metric="acc")


def train_tiny(tmp_path, hp: LoRAHparams, name: str):
    lm = build_tiny_model("llama", seed=0)
    set_seed(hp.seed)
    model = get_peft_model(lm.model, lora_config(lm.model, hp))
    task = val_task()
    val = validation_features(task, lm.tokenizer, hp) if hp.val_every is not None else None
    stats = train_adapter(model, lm.tokenizer, training_features(task, lm.tokenizer, hp), hp, tmp_path / name,
                          progress=False, val_features=val)
    weights = {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}
    return stats, weights, model, lm, val


def test_validation_every_two_steps_changes_nothing_in_training(tmp_path):
    plain, plain_w, *_ = train_tiny(tmp_path, HP, "plain")
    stats, weights, model, lm, val = train_tiny(tmp_path, HP.replace(val_every=2, val_examples=6), "val")
    assert plain.val_history == []
    # records at steps 2, 4, 6 (the last step is one of them: not measured twice; no step-0 record)
    assert [r["step"] for r in stats.val_history] == [2, 4, 6]
    losses = [r["loss"] for r in stats.val_history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert stats.train_loss == plain.train_loss and stats.steps == plain.steps == 6
    assert all(torch.equal(weights[k], plain_w[k]) for k in plain_w)
    # the last record is the answer-only loss of the final weights over all validation tokens at once
    assert len(val) == 6
    model.eval()
    with torch.no_grad():
        direct, _, _ = answer_only_loss(model, PadCollator(lm.tokenizer.pad_token_id)(val), None)
    assert losses[-1] == pytest.approx(direct.item(), rel=1e-5)


def test_the_last_step_is_always_measured(tmp_path):
    stats, *_ = train_tiny(tmp_path, HP.replace(val_every=4, val_examples=3), "val")
    assert [r["step"] for r in stats.val_history] == [4, 6]


def test_validation_settings_leave_dicts_and_fingerprints_as_they_were():
    assert not {"val_every", "val_examples"} & set(LoRAHparams().to_dict())
    assert not {"val_every", "val_examples"} & set(LoRAHparams(val_examples=3).to_dict())  # meaningless while off
    on = LoRAHparams(val_every=5).to_dict()
    assert on["val_every"] == 5 and on["val_examples"] == 64
    lm = build_tiny_model("llama", seed=0)
    features = training_features(val_task(), lm.tokenizer, HP)
    # validation changes no weight: a checkpoint trained without it is resumed with it
    assert run_fingerprint(lm.model, features, HP) == run_fingerprint(lm.model, features, HP.replace(val_every=2))


def test_val_every_needs_a_validation_split_before_anything_loads(tmp_path):
    hp = HP.replace(val_every=2)
    task = val_task("novalid", validation=False)
    for run in (lambda: train_method("lora", "no-such-model", [val_task(), task], tmp_path / "out", hparams=hp),
                lambda: build_library("no-such-model", [task], tmp_path / "lib", hparams=hp)):
        with pytest.raises(ConfigError) as info:
            run()
        message = str(info.value)
        assert "\n" not in message and "val_every" in message and "'novalid'" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "lib").exists()


def test_validation_data_must_come_with_val_every(tmp_path):
    lm = build_tiny_model("llama", seed=0)
    features = training_features(val_task(), lm.tokenizer, HP)
    with pytest.raises(ConfigError, match="val_every: 2 is set, but this training path was given no validation"):
        train_adapter(lm.model, lm.tokenizer, features, HP.replace(val_every=2), tmp_path / "w", progress=False)


def test_moe_method_records_val_loss_and_trains_the_same(tmp_path):
    """The MoE path: routed validation features of every task; router and method statistics unchanged."""
    tasks = [val_task("parity"), val_task("other")]
    hp = HP.replace(max_train_examples=4)
    ref = train_method("more", build_tiny_model("llama", seed=0), tasks, tmp_path / "ref", hparams=hp, progress=False)
    info = train_method("more", build_tiny_model("llama", seed=0), tasks, tmp_path / "val", progress=False,
                        hparams=hp.replace(val_every=3, val_examples=2))
    assert [r["step"] for r in info["train"]["val_loss"]] == [3, 6]
    assert all(math.isfinite(r["loss"]) for r in info["train"]["val_loss"])
    assert "val_loss" not in ref["train"]
    assert info["train"]["loss"] == ref["train"]["loss"]
    assert info["train"].get("history") == ref["train"].get("history")
    ref_w, val_w = load_file(tmp_path / "ref" / WEIGHTS_FILE), load_file(tmp_path / "val" / WEIGHTS_FILE)
    assert ref_w.keys() == val_w.keys() and all(torch.equal(ref_w[k], val_w[k]) for k in ref_w)
    saved = json.loads((tmp_path / "val" / CONFIG_FILE).read_text(encoding="utf-8"))
    assert json.dumps(saved).count('"val_loss"') == 1 and info["hparams"]["val_every"] == 3


def test_library_entry_and_peft_baseline_record_val_loss(tmp_path):
    hp = HP.replace(max_steps=2, val_every=1, val_examples=2)
    (entry,) = build_library(build_tiny_model("llama", seed=0), [val_task()], tmp_path / "lib", hparams=hp,
                             eval_limit=0, progress=False)
    assert [r["step"] for r in entry.metrics["val_loss"]] == [1, 2]
    on_disk = json.loads((entry.path / "loralab.json").read_text(encoding="utf-8"))
    assert on_disk["metrics"]["val_loss"] == entry.metrics["val_loss"]
    info = train_method("multitask_lora", build_tiny_model("llama", seed=0), [val_task(), val_task("other")],
                        tmp_path / "mt", hparams=hp, progress=False)
    assert [r["step"] for r in info["train"]["val_loss"]] == [1, 2]
    provenance = json.loads((tmp_path / "mt" / "loralab_train.json").read_text(encoding="utf-8"))
    assert provenance["train"]["val_loss"] == info["train"]["val_loss"]


def test_a_resumed_run_keeps_the_records_of_its_checkpoint(tmp_path, monkeypatch):
    from loralab.training.trainer import AnswerOnlyTrainer

    hp = HP.replace(val_every=2, val_examples=3, checkpoint_steps=2)
    reference, ref_w, *_ = train_tiny(tmp_path, hp, "ref")
    real = AnswerOnlyTrainer.end_step

    def crash(self, step):
        real(self, step)
        if step == 5:
            raise KeyboardInterrupt("simulated crash after step 5")

    monkeypatch.setattr(AnswerOnlyTrainer, "end_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tmp_path, hp, "work")
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "work").glob("checkpoint-*")] == ["checkpoint-4"]
    resumed, weights, *_ = train_tiny(tmp_path, hp, "work")
    assert resumed.val_history == reference.val_history  # steps 2 and 4 from the checkpoint, 6 measured after it
    assert resumed.train_loss == pytest.approx(reference.train_loss, rel=1e-12)
    assert all(torch.equal(weights[k], ref_w[k]) for k in ref_w)
