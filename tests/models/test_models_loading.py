"""load_model dispatch (alias, local directory, hub id) and its one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from loralab.errors import ModelLoadError, UnknownNameError
from loralab.models import LoadedModel, build_tiny_model, load_model, model_aliases


def _logits(loaded: LoadedModel) -> torch.Tensor:
    batch = loaded.tokenizer(["some text"], return_tensors="pt")
    with torch.no_grad():
        return loaded.model(**batch).logits


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_aliases_have_one_line_descriptions() -> None:
    aliases = model_aliases()
    assert "smollm2-135m" in aliases
    assert all(desc and "\n" not in desc for desc in aliases.values())


def test_alias_loads_in_eval_mode_on_cpu() -> None:
    loaded = load_model("tiny-llama", device="cpu", seed=3)
    assert isinstance(loaded, LoadedModel)
    assert not loaded.model.training
    assert loaded.device.type == "cpu" and loaded.model.dtype == torch.float32
    assert loaded.name == "tiny-llama" and loaded.revision is None
    assert loaded.tokenizer.pad_token is not None and loaded.tokenizer.padding_side == "right"
    assert torch.equal(_logits(loaded), _logits(build_tiny_model("llama", seed=3)))


def test_dtype_by_name() -> None:
    assert load_model("tiny-qwen2", device="cpu", dtype="bf16").model.dtype == torch.bfloat16
    with pytest.raises(UnknownNameError, match="fp8"):
        load_model("tiny-qwen2", device="cpu", dtype="fp8")


def test_unknown_alias_suggests_close_match() -> None:
    with pytest.raises(UnknownNameError) as error:
        load_model("tiny-lamma")
    message = _one_line(error)
    assert "'tiny-lamma'" in message and "Did you mean 'tiny-llama'" in message and "org/name" in message


@pytest.mark.parametrize("spec", ["./nope", "nope/deeper/path", "~/definitely-not-a-model-dir"])
def test_missing_path(spec: str) -> None:
    with pytest.raises(ModelLoadError) as error:
        load_model(spec)
    assert repr(spec) in _one_line(error)


def test_missing_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as error:
        load_model(str(tmp_path / "missing"))
    assert "missing" in _one_line(error)


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json") as error:
        load_model(str(tmp_path))
    _one_line(error)


def test_directory_without_tokenizer(tmp_path: Path) -> None:
    build_tiny_model("llama").model.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="no tokenizer") as error:
        load_model(str(tmp_path))
    _one_line(error)


def test_corrupt_weights(tmp_path: Path) -> None:
    original = build_tiny_model("llama")
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError) as error:
        load_model(str(tmp_path))
    assert str(tmp_path) in _one_line(error)


def test_local_directory_round_trip(tmp_path: Path) -> None:
    original = build_tiny_model("gpt2", seed=5)
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), device="cpu")
    assert loaded.name == str(tmp_path) and loaded.source == str(tmp_path.resolve())
    assert loaded.revision is None
    assert torch.allclose(_logits(loaded), _logits(original))


def test_pickle_only_directory_needs_allow_pickle(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    original = build_tiny_model("llama", seed=7)
    original.model.config.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    torch.save(original.model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelLoadError) as error:
        load_model(str(tmp_path))
    message = _one_line(error)
    assert "pytorch_model.bin" in message and "allow_pickle" in message and "--allow-pickle" in message

    with caplog.at_level(logging.WARNING, logger="loralab"):
        loaded = load_model(str(tmp_path), device="cpu", allow_pickle=True)
    assert any("allow_pickle" in r.message for r in caplog.records)
    assert torch.allclose(_logits(loaded), _logits(original))


def test_hub_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as error:
        load_model("loralab-test-org/no-such-model")
    assert "'loralab-test-org/no-such-model'" in _one_line(error)


def test_bad_device() -> None:
    with pytest.raises(ModelLoadError, match="device"):
        load_model("tiny-llama", device="not-a-device")
