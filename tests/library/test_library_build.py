"""Building a library: PEFT format, plain-PEFT parity, manifest, idempotent re-runs, interruption safety."""

import json

import pytest
import torch
from peft import PeftModel

from loralab.data import load_task
from loralab.eval import LoglikScorer
from loralab.library import Library, LoRAHparams, build_library
from loralab.library import trainer as trainer_mod
from loralab.models import build_tiny_model

from helpers import toy_task

HP = LoRAHparams(max_steps=6, batch_size=4, learning_rate=1e-2)


def test_build_writes_peft_adapters_and_manifest(tmp_path):
    lm = build_tiny_model("llama", seed=0)
    tasks = [toy_task("alpha"), toy_task("beta", kind="generation")]
    entries = build_library(lm, tasks, tmp_path / "lib", hparams=HP, eval_limit=4, progress=False)
    assert [e.task for e in entries] == ["alpha", "beta"]
    for e in entries:
        assert (e.path / "adapter_config.json").is_file() and (e.path / "adapter_model.safetensors").is_file()
        assert e.metrics["train_steps"] == 6 and torch.isfinite(torch.tensor(e.metrics["train_loss"]))
        assert set(e.metrics["eval"]) >= {"base", "adapter", "split", "n", "metric"}
        assert e.hparams["rank"] == 8 and e.data_hash and e.versions["torch"] and e.model == "tiny-llama"
        assert set(e.files) >= {"adapter_config.json", "adapter_model.safetensors"}
    manifest = json.loads((tmp_path / "lib" / "manifest.json").read_text())
    assert [a["task"] for a in manifest["adapters"]] == ["alpha", "beta"]
    assert not any((tmp_path / "lib").glob(".*.tmp"))
    # the base model is back to plain after the build (no LoRA layers left in it)
    assert not any("lora_" in name for name, _ in lm.model.named_parameters())


def test_plain_peft_gives_the_same_logits_as_loralab_eval(tmp_path):
    lm = build_tiny_model("llama", seed=0)
    task = toy_task("alpha")
    (entry,) = build_library(lm, [task], tmp_path / "lib", hparams=HP, eval_limit=0, progress=False)
    fresh = build_tiny_model("llama", seed=0)  # same base weights, loaded independently
    peft_model = PeftModel.from_pretrained(fresh.model, str(entry.path))
    peft_model.eval()
    ex = task.split("test")[0]
    ids = torch.tensor([fresh.tokenizer.encode(ex.prompt + ex.choices[0], add_special_tokens=False)])
    with torch.no_grad():
        plain_logits = peft_model(input_ids=ids).logits
    # loralab's evaluation path with that adapter (`loralab eval --adapter`)
    from loralab.moe.adapters import attach_adapter

    ours = attach_adapter(build_tiny_model("llama", seed=0).model, entry.path)
    with torch.no_grad():
        ours_logits = ours(input_ids=ids).logits
    torch.testing.assert_close(ours_logits, plain_logits)
    scores = LoglikScorer(ours, fresh.tokenizer).score(ex.prompt, ex.choices)
    logp = torch.log_softmax(plain_logits[0].float(), -1)
    n_ctx = len(fresh.tokenizer.encode(ex.prompt.rstrip(), add_special_tokens=False))
    cont = ids[0, n_ctx:]
    expected = sum(logp[n_ctx - 1 + j, t].item() for j, t in enumerate(cont.tolist()))
    assert scores.logliks[0] == pytest.approx(expected, abs=1e-4)
    # and the adapter changed the model (training did something)
    with torch.no_grad():
        base_logits = build_tiny_model("llama", seed=0).model(input_ids=ids).logits
    assert not torch.allclose(base_logits, plain_logits)


def test_rebuild_skips_finished_adapters(tmp_path, monkeypatch):
    lm = build_tiny_model("llama", seed=0)
    build_library(lm, [toy_task("alpha")], tmp_path / "lib", hparams=HP, eval_limit=0, progress=False)
    before = (tmp_path / "lib" / "tiny-llama" / "alpha" / "adapter_model.safetensors").stat().st_mtime_ns
    calls = []
    real = trainer_mod.train_adapter
    monkeypatch.setattr("loralab.training.trainer.train_adapter", lambda *a, **k: calls.append(a) or real(*a, **k))
    entries = build_library(lm, [toy_task("alpha"), toy_task("beta")], tmp_path / "lib", hparams=HP, eval_limit=0,
                            progress=False)
    assert len(calls) == 1  # only beta trained
    assert [e.task for e in entries] == ["alpha", "beta"]
    assert (tmp_path / "lib" / "tiny-llama" / "alpha" / "adapter_model.safetensors").stat().st_mtime_ns == before


def test_interrupted_build_leaves_no_half_written_adapter(tmp_path, monkeypatch):
    lm = build_tiny_model("llama", seed=0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill during training")

    monkeypatch.setattr("loralab.training.trainer.train_adapter", crash)
    with pytest.raises(KeyboardInterrupt):
        build_library(lm, [toy_task("alpha")], tmp_path / "lib", hparams=HP, eval_limit=0, progress=False)
    assert not (tmp_path / "lib" / "tiny-llama" / "alpha").exists()
    assert Library(tmp_path / "lib").entries() == []
    assert not any("lora_" in name for name, _ in lm.model.named_parameters())
    monkeypatch.undo()
    (entry,) = build_library(lm, [toy_task("alpha")], tmp_path / "lib", hparams=HP, eval_limit=0, progress=False)
    assert entry.path.is_dir()


def test_tampered_adapter_is_detected(tmp_path):
    from loralab.errors import AdapterError

    lm = build_tiny_model("llama", seed=0)
    (entry,) = build_library(lm, [toy_task("alpha")], tmp_path / "lib", hparams=HP, eval_limit=0, progress=False)
    weights = entry.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(AdapterError, match="does not match its recorded SHA-256"):
        Library(tmp_path / "lib").get("tiny-llama", "alpha")


def test_task_names_cannot_escape_the_library(tmp_path):
    from loralab.errors import UserInputError

    lm = build_tiny_model("llama", seed=0)
    with pytest.raises(UserInputError, match="cannot name a library folder"):
        build_library(lm, [toy_task("../evil")], tmp_path / "lib", hparams=HP, eval_limit=0, progress=False)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "lib").exists()


@pytest.mark.data
def test_suite_task_builds(tmp_path, data_dir):
    lm = build_tiny_model("qwen2", seed=0)
    task = load_task("sports_understanding")
    (entry,) = build_library(lm, [task], tmp_path / "lib", hparams=LoRAHparams(max_steps=2, batch_size=2),
                             eval_limit=3, progress=False)
    assert entry.domain == "commonsense" and entry.metrics["eval"]["n"] == 3


def test_one_hyperparameter_set_per_library(tmp_path):
    from loralab.errors import ConfigError

    lm = build_tiny_model("llama", seed=0)
    build_library(lm, [toy_task("alpha")], tmp_path / "lib", hparams=HP, eval_limit=0, progress=False)
    with pytest.raises(ConfigError, match="other hyperparameters: max_steps=6"):
        build_library(lm, [toy_task("beta")], tmp_path / "lib", hparams=HP.replace(max_steps=7), eval_limit=0,
                      progress=False)
    assert not (tmp_path / "lib" / "tiny-llama" / "beta").exists()
    # logging and checkpoint cadence do not change the weights: such adapters share the library
    build_library(lm, [toy_task("gamma")], tmp_path / "lib", hparams=HP.replace(report_to="tensorboard",
                  checkpoint_steps=1), eval_limit=0, progress=False)
    assert (tmp_path / "lib" / "tiny-llama" / "gamma" / "adapter_model.safetensors").is_file()
