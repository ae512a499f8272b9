"""The precision setting everywhere a model runs: resolved once, run under autocast (parameters stay fp32),
recorded in every result, library entry, checkpoint and benchmark row and cell id; fp32 is bit for bit
the code path without autocast; a library refuses to mix precisions.

The CPU's bf16 capability is monkeypatched (this project's CPU has none), and bf16 runs are tiny models
for a few steps only: bf16 matmuls are emulated on such a CPU.
"""

from __future__ import annotations

import contextlib
import json
import logging

import pytest
import torch
from helpers import toy_task
from safetensors.torch import load_file

from loralab.errors import ConfigError
from loralab.eval import evaluate
from loralab.library import Library, LoRAHparams, build_library
from loralab.models import build_tiny_model
from loralab.recipes.evaluate import run_eval
from loralab.recipes.train import train_method
from loralab.training.hparams import training_precision
from loralab.training.trainer import AnswerOnlyTrainer
from loralab.utils import precision as P

HP = LoRAHparams(max_steps=2, batch_size=4, rank=4, max_length=64)





def _logit_spy(model) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    return seen


def test_auto_without_bf16_is_fp32_recorded_and_bit_for_bit_the_plain_path(cpu_without_bf16):
    task = toy_task(n=16)
    lm = build_tiny_model("llama", seed=3)
    spy = _logit_spy(lm.model)
    plain = evaluate(lm.model, lm.tokenizer, task, limit=4, progress=False)  # no precision code at all
    plain_logits = list(spy)
    spy.clear()
    record = run_eval(lm, task, limit=4, progress=False)
    assert record["precision"]["name"] == "fp32" and record["precision"]["requested"] == "auto"
    assert "neither AVX512-BF16 nor AMX" in record["precision"]["reason"]
    assert record["metrics"] == plain.metrics
    assert len(spy) == len(plain_logits) and all(torch.equal(a, b) for a, b in zip(spy, plain_logits))


def test_explicit_bf16_without_native_bf16_warns_and_is_recorded(cpu_without_bf16, caplog):
    lm = build_tiny_model("llama", seed=3)
    with caplog.at_level(logging.WARNING):
        record = run_eval(lm, toy_task(n=8), limit=2, precision="bf16", progress=False)
    assert "emulated" in caplog.text
    assert record["precision"]["name"] == "bf16" and record["precision"]["requested"] == "bf16"


def test_fp32_training_is_bit_for_bit_the_path_without_autocast(cpu_without_bf16, tmp_path, monkeypatch):
    """fp32 and auto (here fp32) train the same tensors as a run in which autocast cannot even be entered."""
    task = toy_task(n=24)

    def adapter(name: str, precision: str) -> dict[str, torch.Tensor]:
        entries = build_library(build_tiny_model("llama", seed=1), [task], tmp_path / name, hparams=HP,
                                eval_limit=0, progress=False, precision=precision)
        assert entries[0].precision["name"] == "fp32"
        return load_file(str(entries[0].path / "adapter_model.safetensors"))

    fp32, auto = adapter("fp32", "fp32"), adapter("auto", "auto")

    def no_autocast(*args, **kwargs):
        raise AssertionError("an fp32 run entered torch.autocast")

    monkeypatch.setattr(torch, "autocast", no_autocast)
    monkeypatch.setattr(P.Precision, "autocast", lambda self: contextlib.nullcontext())
    reference = adapter("reference", "fp32")
    assert set(fp32) == set(reference) == set(auto)
    assert all(torch.equal(fp32[k], reference[k]) and torch.equal(auto[k], reference[k]) for k in reference)


def test_native_bf16_auto_autocasts_forwards_keeps_parameters_fp32_and_records_bf16(cpu_with_bf16, tmp_path,
                                                                                    monkeypatch):
    task = toy_task(n=24)
    lm = build_tiny_model("llama", seed=2)
    matmuls: list[torch.dtype] = []
    # an attention projection: PEFT keeps it as its LoRA layer's base layer, and LoRAMoE leaves it alone
    lm.model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, a, out: matmuls.append(out.dtype))
    after: list[dict] = []  # per training run, what it trained, seen as soon as it has finished
    train = AnswerOnlyTrainer.train

    def spy(self, *args, **kwargs):
        result = train(self, *args, **kwargs)
        moments = [v for state in self.optimizer.state.values() for v in state.values()
                   if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0]
        after.append({"steps": self.state.global_step, "moments": {v.dtype for v in moments},
                      "trained": {p.dtype for p in self.model.parameters() if p.requires_grad}})
        return result

    monkeypatch.setattr(AnswerOnlyTrainer, "train", spy)

    entry = build_library(lm, [task], tmp_path / "lib", hparams=HP, eval_limit=2, progress=False)[0]
    assert matmuls and set(matmuls) == {torch.bfloat16}
    assert entry.precision["name"] == "bf16" and "avx512_bf16" in entry.precision["reason"]
    on_disk = json.loads((entry.path / "loralab.json").read_text())
    assert on_disk["precision"]["name"] == "bf16"

    matmuls.clear()
    info = train_method("loramoe", lm, [task], tmp_path / "moe", hparams=HP, progress=False)
    assert matmuls and set(matmuls) == {torch.bfloat16}
    assert info["precision"]["name"] == "bf16"
    saved = json.loads((tmp_path / "moe" / "loralab_method.json").read_text())
    assert saved["precision"]["name"] == "bf16"

    # what trains stays fp32: the trainable parameters after 2 steps, AdamW's moments, the saved tensors
    assert after == [{"steps": 2, "moments": {torch.float32}, "trained": {torch.float32}}] * 2
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())
    for path in (entry.path / "adapter_model.safetensors", tmp_path / "moe" / "method_model.safetensors"):
        assert {t.dtype for t in load_file(str(path)).values()} == {torch.float32}

    record = run_eval(lm, task, adapter=tmp_path / "moe", limit=2, progress=False)
    assert record["precision"]["name"] == "bf16"


def test_a_library_refuses_to_mix_precisions_and_old_entries_count_as_fp32(cpu_with_bf16, tmp_path):
    lm = build_tiny_model("llama", seed=0)
    lib = tmp_path / "lib"
    one = LoRAHparams(max_steps=1, batch_size=4, rank=4, max_length=64)
    build_library(lm, [toy_task("a", n=12)], lib, hparams=one, eval_limit=0, progress=False, precision="fp32")
    with pytest.raises(ConfigError, match=r"other hyperparameters: precision='fp32' \(asked 'bf16'\); use the same "
                                          r"--precision, or another --out$"):
        build_library(lm, [toy_task("b", n=12)], lib, hparams=one, eval_limit=0, progress=False)  # auto: bf16
    # an entry written before precisions were recorded counts as fp32
    entry_file = Library(lib).get("tiny-llama", "a").path / "loralab.json"
    data = json.loads(entry_file.read_text())
    del data["precision"]
    entry_file.write_text(json.dumps(data))
    assert Library(lib).get("tiny-llama", "a").precision_name() == "fp32"
    with pytest.raises(ConfigError, match=r"precision='fp32' \(asked 'bf16'\)"):
        build_library(lm, [toy_task("b", n=12)], lib, hparams=one, eval_limit=0, progress=False, precision="bf16")
    built = build_library(lm, [toy_task("a", n=12)], lib, hparams=one, eval_limit=0, progress=False,
                          precision="fp32")
    assert [e.task for e in built] == ["a"]


def test_mixed_precision_of_older_configs_decides_under_auto_and_must_agree_otherwise(cpu_without_bf16):
    assert training_precision("auto", LoRAHparams(), "cpu").name == "fp32"
    legacy = training_precision("auto", LoRAHparams(mixed_precision="bf16"), "cpu")
    assert legacy.name == "bf16" and legacy.reason.startswith("mixed_precision 'bf16'")
    assert training_precision("fp32", LoRAHparams(mixed_precision="no"), "cpu").name == "fp32"
    with pytest.raises(ConfigError, match=r"^precision: 'bf16' contradicts mixed_precision 'no'"):
        training_precision("bf16", LoRAHparams(mixed_precision="no"), "cpu")
