"""`library add`: importing an existing PEFT LoRA checks it against the base model."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from loralab.errors import AdapterError, UserInputError
from loralab.library import Library, import_adapter
from loralab.models import build_tiny_model

from helpers import toy_task


def save_peft_adapter(arch, path, seed=0, rank=4, targets=("q_proj", "v_proj")):
    lm = build_tiny_model(arch, seed=seed)
    model = get_peft_model(lm.model, LoraConfig(r=rank, target_modules=list(targets), init_lora_weights=False))
    model.save_pretrained(str(path))
    return path


def test_import_a_fitting_adapter(tmp_path):
    src = save_peft_adapter("llama", tmp_path / "downloaded")
    entry = import_adapter(tmp_path / "lib", src, toy_task("alpha"), model="tiny-llama")
    assert entry.origin == "imported" and (entry.path / "adapter_model.safetensors").is_file()
    lib = Library(tmp_path / "lib")
    assert [e.task for e in lib.entries()] == ["alpha"]
    lib.get("tiny-llama", "alpha")  # hashes verify
    # the library's only model is the default for the next import
    src2 = save_peft_adapter("llama", tmp_path / "second", seed=1)
    assert import_adapter(tmp_path / "lib", src2, toy_task("beta")).model == "tiny-llama"


def test_import_with_evaluation(tmp_path):
    src = save_peft_adapter("llama", tmp_path / "downloaded")
    entry = import_adapter(tmp_path / "lib", src, toy_task("alpha"), model="tiny-llama", eval_limit=4)
    assert entry.metrics["eval"]["n"] == 4 and "base" in entry.metrics["eval"]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: _wider_llama_adapter(p), "has shape"),
        (lambda p: save_peft_adapter("gpt2", p, targets=("c_attn",)), "does not have"),
        (lambda p: p.mkdir() or p, "no adapter_config.json"),
        (lambda p: _edit_config(save_peft_adapter("llama", p), peft_type="IA3"), "peft_type must be 'LORA'"),
        (lambda p: _edit_config(save_peft_adapter("llama", p), r=16), "has shape"),
        (lambda p: _to_bin(save_peft_adapter("llama", p)), "adapter_model.bin (a pickle)"),
        (lambda p: _corrupt(save_peft_adapter("llama", p)), "unreadable safetensors"),
    ],
)
def test_import_rejects_adapters_that_do_not_fit(tmp_path, make, needle):
    src = make(tmp_path / "bad")
    with pytest.raises(AdapterError) as info:
        import_adapter(tmp_path / "lib", src, toy_task("alpha"), model="tiny-llama")
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "lib" / "tiny-llama" / "alpha").exists()


def test_pickle_adapter_only_with_flag_and_converted(tmp_path):
    src = _to_bin(save_peft_adapter("llama", tmp_path / "bin"))
    entry = import_adapter(tmp_path / "lib", src, toy_task("alpha"), model="tiny-llama", allow_pickle=True)
    assert (entry.path / "adapter_model.safetensors").is_file() and not (entry.path / "adapter_model.bin").exists()


def test_import_needs_model_when_library_is_empty(tmp_path):
    src = save_peft_adapter("llama", tmp_path / "downloaded")
    with pytest.raises(UserInputError, match="pass --model"):
        import_adapter(tmp_path / "lib", src, toy_task("alpha"))


def test_import_refuses_to_overwrite(tmp_path):
    src = save_peft_adapter("llama", tmp_path / "downloaded")
    import_adapter(tmp_path / "lib", src, toy_task("alpha"), model="tiny-llama")
    with pytest.raises(UserInputError, match="already has an adapter"):
        import_adapter(tmp_path / "lib", src, toy_task("alpha"), model="tiny-llama")


def _wider_llama_adapter(path):
    """An adapter trained on another base: a llama with hidden size 96 instead of 64."""
    from transformers import AutoModelForCausalLM

    from loralab.models import tiny_config

    config = tiny_config("llama")
    config.hidden_size, config.intermediate_size = 96, 160
    model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=4, target_modules=["q_proj"]))
    model.save_pretrained(str(path))
    return path


def _edit_config(path, **changes):
    cfg = json.loads((path / "adapter_config.json").read_text())
    cfg.update(changes)
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    return path


def _to_bin(path):
    from safetensors.torch import load_file

    weights = load_file(str(path / "adapter_model.safetensors"))
    torch.save(weights, path / "adapter_model.bin")
    (path / "adapter_model.safetensors").unlink()
    return path


def _corrupt(path):
    (path / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    return path
