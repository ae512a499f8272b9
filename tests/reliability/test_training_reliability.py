"""Training: a NaN/inf stops with TrainingDivergedError and keeps the last good checkpoint; a resumed run equals an
uninterrupted one (same seed, CPU)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import set_seed

from helpers import run_cli, toy_task
from loralab.errors import LoralabError, TrainingDivergedError, UserInputError
from loralab.library import Library, LoRAHparams, build_library, lora_config
from loralab.library import trainer as trainer_mod
from loralab.training.trainer import CHECKPOINT_STATE, RUN_FILE, AnswerOnlyTrainer, train_adapter, training_features
from loralab.models import build_tiny_model
from loralab.moe.model import CONFIG_FILE, WEIGHTS_FILE

# dropout > 0 on purpose: resuming must restore the dropout RNG too
HP = LoRAHparams(max_steps=4, batch_size=4, learning_rate=1e-2, dropout=0.1, checkpoint_steps=2, rank=4)


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def train_once(work, hp=HP, task=None, interrupt_at=None, monkeypatch=None):
    """Train a fresh tiny-llama LoRA (seeded) in `work`; optionally stop with a crash after step `interrupt_at`."""
    lm = build_tiny_model("llama", seed=0)
    set_seed(hp.seed)
    model = get_peft_model(lm.model, lora_config(lm.model, hp))
    features = training_features(task or toy_task("alpha"), lm.tokenizer, hp)
    if interrupt_at is not None:
        real = AnswerOnlyTrainer.end_step

        def crash(self, step):
            real(self, step)
            if step == interrupt_at:
                raise KeyboardInterrupt(f"simulated crash after step {step}")

        monkeypatch.setattr(AnswerOnlyTrainer, "end_step", crash)
        with pytest.raises(KeyboardInterrupt):
            train_adapter(model, lm.tokenizer, features, hp, work, progress=False)
        monkeypatch.undo()
        return None, None
    stats = train_adapter(model, lm.tokenizer, features, hp, work, progress=False)
    return lora_weights(model), stats


def record_steps(monkeypatch) -> list[int]:
    """The optimiser steps run from now on (a resumed run starts after its checkpoint's step)."""
    real = AnswerOnlyTrainer.end_step
    seen: list[int] = []
    monkeypatch.setattr(AnswerOnlyTrainer, "end_step", lambda self, step: seen.append(step) or real(self, step))
    return seen


# ------------------------------------------------------------------------------------------------
# NaN / inf
# ------------------------------------------------------------------------------------------------


def inject_nan_loss(monkeypatch, from_call: int) -> None:
    """Make the answer-only loss NaN from its `from_call`-th call on (one call per step at grad_accum 1)."""
    real = trainer_mod.answer_only_loss
    calls = {"n": 0}

    def poisoned(model, inputs, num_items):
        calls["n"] += 1
        loss, n_tokens, aux = real(model, inputs, num_items)
        return (loss * float("nan") if calls["n"] >= from_call else loss), n_tokens, aux

    monkeypatch.setattr(trainer_mod, "answer_only_loss", poisoned)


def test_nan_loss_stops_the_build_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    lm = build_tiny_model("llama", seed=0)
    lib = tmp_path / "lib"
    hp = HP.replace(max_steps=6)
    inject_nan_loss(monkeypatch, from_call=5)  # steps 1-4 fine (checkpoints 2 and 4), step 5 diverges
    with pytest.raises(TrainingDivergedError) as info:
        build_library(lm, [toy_task("alpha")], lib, hparams=hp, eval_limit=0, progress=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith("training diverged at step 5: the loss is nan")
    assert "checkpoint-4" in message and "learning_rate" in message
    assert info.value.exit_code == 1 and isinstance(info.value, LoralabError)
    assert not isinstance(info.value, UserInputError)
    # no adapter written, not even a hidden temporary one; the manifest does not list it
    assert not (lib / "tiny-llama" / "alpha").exists()
    assert not list(lib.glob("tiny-llama/.*"))
    assert Library(lib).entries() == []
    work = lib / ".work" / "tiny-llama" / "alpha"
    assert sorted(p.name for p in work.glob("checkpoint-*")) == ["checkpoint-4"]
    state = json.loads((work / "checkpoint-4" / CHECKPOINT_STATE).read_text())
    assert state["global_step"] == 4 and len(state["step_losses"]) == 4
    assert all(torch.isfinite(torch.tensor(state["step_losses"])))
    good = load_file(str(work / "checkpoint-4" / "adapter_model.safetensors"))
    assert good and all(torch.isfinite(t).all() for t in good.values())
    assert not any("lora_" in n for n, _ in lm.model.named_parameters())  # the base model is left clean


def test_nan_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """A finite loss whose update made the weights NaN: the checkpoint at that step is refused, the older kept."""
    real = AnswerOnlyTrainer.end_step

    def poison_weights(self, step):
        real(self, step)
        if step == 4:
            with torch.no_grad():
                next(p for n, p in self.model.named_parameters() if "lora_B" in n).fill_(float("inf"))

    monkeypatch.setattr(AnswerOnlyTrainer, "end_step", poison_weights)
    with pytest.raises(TrainingDivergedError, match=r"at step 4: weight .*lora_B.* is NaN/inf") as info:
        train_once(tmp_path / "work", hp=HP.replace(max_steps=6))
    assert "checkpoint-2" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "work").glob("checkpoint-*")) == ["checkpoint-2"]


def test_nan_weights_after_the_last_step_are_not_returned(tmp_path, monkeypatch):
    real = AnswerOnlyTrainer.end_step

    def poison_last(self, step):
        real(self, step)
        if step == 3:
            with torch.no_grad():
                next(p for n, p in self.model.named_parameters() if "lora_A" in n).fill_(float("nan"))

    monkeypatch.setattr(AnswerOnlyTrainer, "end_step", poison_last)
    with pytest.raises(TrainingDivergedError, match="at step 3: weight .*lora_A.* is NaN/inf"):
        train_once(tmp_path / "work", hp=HP.replace(max_steps=3, checkpoint_steps=None))


def test_huge_learning_rate_diverges_without_writing_an_adapter(tmp_path):
    lm = build_tiny_model("llama", seed=0)
    with pytest.raises(TrainingDivergedError, match=r"^training diverged at step \d+: .*learning_rate 1e\+30"):
        build_library(lm, [toy_task("alpha")], tmp_path / "lib", hparams=HP.replace(learning_rate=1e30, max_steps=8),
                      eval_limit=0, progress=False)
    assert not (tmp_path / "lib" / "tiny-llama" / "alpha").exists()


def test_cli_divergence_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    task = tmp_path / "toy.jsonl"
    task.write_text("".join(json.dumps({"prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"],
                                        "answer_index": i % 2}) + "\n" for i in range(24)), encoding="utf-8")
    cfg = tmp_path / "hp.yaml"
    cfg.write_text("learning_rate: 1.0e+30\nbatch_size: 4\nrank: 4\n", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks", str(task),
                           "--out", str(tmp_path / "lib"), "--config", str(cfg), "--max-steps", "8",
                           "--eval-limit", "0")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and "training diverged at step" in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "lib" / "tiny-llama" / "toy").exists()


# ------------------------------------------------------------------------------------------------
# Resume
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hp", "interrupt_at", "n_examples"),
    [
        (HP, 3, 48),
        # 12 train examples, batch 4, grad_accum 2: 2 optimiser steps per epoch; resume at step 3 is mid-epoch 2
        (HP.replace(max_steps=5, grad_accum=2, checkpoint_steps=3), 4, 16),
        (HP.replace(max_steps=4, checkpoint_steps=1, dropout=0.0, scheduler="linear"), 2, 48),
    ],
    ids=["mid_epoch", "grad_accum_epoch_boundary", "every_step"],
)
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, hp, interrupt_at, n_examples):
    task = toy_task("alpha", n=n_examples)
    reference, ref_stats = train_once(tmp_path / "ref", hp=hp, task=task)
    train_once(tmp_path / "work", hp=hp, task=task, interrupt_at=interrupt_at, monkeypatch=monkeypatch)
    # the crash comes after step `interrupt_at`'s update, before that step's checkpoint would be saved
    ckpt_step = (interrupt_at - 1) // hp.checkpoint_steps * hp.checkpoint_steps
    assert [p.name for p in (tmp_path / "work").glob("checkpoint-*")] == [f"checkpoint-{ckpt_step}"]
    seen = record_steps(monkeypatch)
    resumed, stats = train_once(tmp_path / "work", hp=hp, task=task)
    assert seen == list(range(ckpt_step + 1, hp.max_steps + 1))  # really resumed, not started over
    assert set(resumed) == set(reference)
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0, msg=name)
    assert stats.steps == ref_stats.steps == hp.max_steps
    assert stats.train_loss == pytest.approx(ref_stats.train_loss, rel=1e-12)  # all steps, not only the resumed ones


def test_incomplete_checkpoint_is_skipped(tmp_path, monkeypatch):
    """A checkpoint folder without its completion record (killed while saving) is removed, the older one resumed."""
    reference, _ = train_once(tmp_path / "ref")
    work = tmp_path / "work"
    train_once(work, interrupt_at=3, monkeypatch=monkeypatch)
    half = work / "checkpoint-4"  # what a kill in the middle of saving step 4 leaves: files, no completion record
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    seen = record_steps(monkeypatch)
    resumed, _ = train_once(work)
    assert seen == [3, 4] and not half.exists()  # the fake was removed (and the last step is never checkpointed)
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path, monkeypatch, caplog):
    other = HP.replace(learning_rate=5e-3)
    reference, _ = train_once(tmp_path / "ref", hp=other)
    work = tmp_path / "work"
    train_once(work, interrupt_at=3, monkeypatch=monkeypatch)  # checkpoint-2 trained with learning_rate 1e-2
    assert json.loads((work / RUN_FILE).read_text())["hparams"]["learning_rate"] == 1e-2
    seen = record_steps(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="loralab"):
        resumed, _ = train_once(work, hp=other)
    assert any("other settings or data" in r.message for r in caplog.records)
    assert seen == [1, 2, 3, 4]  # started over
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0)


def test_logging_fields_do_not_block_resume(tmp_path, monkeypatch):
    """checkpoint_steps and report_to do not change the weights: a checkpoint is resumed across a change of them."""
    reference, _ = train_once(tmp_path / "ref")
    work = tmp_path / "work"
    train_once(work, interrupt_at=3, monkeypatch=monkeypatch)
    fingerprint = json.loads((work / RUN_FILE).read_text())
    assert "checkpoint_steps" not in fingerprint["hparams"] and "report_to" not in fingerprint["hparams"]
    seen = record_steps(monkeypatch)
    resumed, _ = train_once(work, hp=HP.replace(checkpoint_steps=3))
    assert seen == [3, 4]  # resumed from checkpoint-2, not started over
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0)


@pytest.mark.parametrize("method", ["moelora", "more"])
def test_method_training_resumes_to_the_same_checkpoint(tmp_path, monkeypatch, method):
    """`loralab train` through the shared path (MoRE: one-task batches from TaskBatchSampler) resumes exactly."""
    from loralab.recipes.train import train_method

    tasks = [toy_task("t0", n=24), toy_task("t1", n=16)]
    hp = HP.replace(max_steps=5, checkpoint_steps=2)
    train_method(method, build_tiny_model("llama", seed=0), tasks, tmp_path / "ref", hparams=hp, progress=False)
    real = AnswerOnlyTrainer.end_step

    def crash(self, step):
        real(self, step)
        if step == 3:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(AnswerOnlyTrainer, "end_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train_method(method, build_tiny_model("llama", seed=0), tasks, tmp_path / "run", hparams=hp, progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "run").exists()
    assert (tmp_path / ".run.work" / "checkpoint-2" / CHECKPOINT_STATE).is_file()
    seen = record_steps(monkeypatch)
    info = train_method(method, build_tiny_model("llama", seed=0), tasks, tmp_path / "run", hparams=hp, progress=False)
    assert seen == [3, 4, 5]
    ref = load_file(str(tmp_path / "ref" / WEIGHTS_FILE))
    got = load_file(str(tmp_path / "run" / WEIGHTS_FILE))
    assert set(got) == set(ref)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=0, msg=name)
    ref_info = json.loads((tmp_path / "ref" / CONFIG_FILE).read_text())
    assert info["train"]["loss"] == pytest.approx(ref_info["train"]["loss"], rel=1e-12)
    assert info["train"].get("history") == ref_info["train"].get("history")
    assert not (tmp_path / ".run.work").exists()


def test_rerun_after_finished_training_does_not_overtrain(tmp_path, monkeypatch):
    """Killed after training but before the adapter was published: the re-run ends at max_steps too.

    (HF Trainer resumed from a checkpoint of the last step runs one step more; with a constant learning rate
    that step changes the weights. No checkpoint is kept of the last step, so the re-run retrains from the one
    before.)
    """
    hp = HP.replace(scheduler="constant", max_steps=4)
    work = tmp_path / "work"
    reference, ref_stats = train_once(work, hp=hp)
    assert [p.name for p in work.glob("checkpoint-*")] == ["checkpoint-2"]
    seen = record_steps(monkeypatch)
    again, stats = train_once(work, hp=hp)
    assert seen == [3, 4] and stats.steps == 4
    for name in reference:
        torch.testing.assert_close(again[name], reference[name], rtol=0, atol=0)
    assert stats.train_loss == pytest.approx(ref_stats.train_loss, rel=1e-12)
