"""Artifact integrity on every read path (issue 12).

Library entries, method checkpoints, PEFT adapters and model folders are read by `eval --adapter`, `merge`,
`library add`, `train --library`, `ranks` and the Python API. Whatever was done to them (a flipped byte, NaN
weights, another base model, a truncated file, a tensor missing or added, a malformed pickle) and whatever
device was asked for, the answer is one `error:` line and exit code 2 (or the exact exception class from
Python), no traceback, and nothing written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

from helpers import run_cli, toy_task
from loralab.moe.adapters import attach_adapter
from loralab.errors import AdapterError, ModelLoadError, NonFiniteScoreError, UserInputError
from loralab.eval import evaluate
from loralab.library import LoRAHparams, build_library, import_adapter
from loralab.library.store import sha256_file
from loralab.models import build_tiny_model, load_model
from loralab.moe.builder import select_targets
from loralab.recipes.train import build_method, train_method

HP = LoRAHparams(max_steps=2, batch_size=4, rank=4, learning_rate=1e-2)
TASKS = ("alpha", "beta")
PEFT_WEIGHTS = "adapter_model.safetensors"
METHOD_WEIGHTS = "method_model.safetensors"
Q0 = "base_model.model.model.layers.0.self_attn.q_proj"


# ------------------------------------------------------------------------------------------------ artifacts


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Built once: a tiny-llama library (task alpha), a MoRE checkpoint (alpha, beta), the `lora` method's copy
    of the library entry, a plain PEFT adapter, a saved model folder and a task file named alpha."""
    root = tmp_path_factory.mktemp("artifacts")
    build_library(build_tiny_model("llama", seed=0), [toy_task("alpha", n=16)], root / "lib", hparams=HP,
                  eval_limit=0, progress=False)
    train_method("more", build_tiny_model("llama", seed=0), [toy_task(t, n=16) for t in TASKS], root / "more",
                 config={"rank": 4}, hparams=HP, progress=False)
    train_method("lora", build_tiny_model("llama", seed=0), [toy_task("alpha", n=16)], root / "lora",
                 library=root / "lib", hparams=HP, progress=False)
    peft = get_peft_model(build_tiny_model("llama", seed=0).model,
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(str(root / "peft"))
    lm = build_tiny_model("llama", seed=0)
    lm.model.save_pretrained(root / "model")
    lm.tokenizer.save_pretrained(root / "model")
    records = [{"id": f"q{i}", "prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"], "answer_index": i % 2}
               for i in range(12)]
    (root / "alpha.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return root


@pytest.fixture
def work(artifacts, tmp_path) -> Path:
    """A private copy of every artifact, to tamper with."""
    for item in artifacts.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp_path / item.name)
    return tmp_path


def entry_dir(work: Path) -> Path:
    return work / "lib" / "tiny-llama" / "alpha"


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Cut the tensor data short; the header (and its declared sizes) stays intact."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 64])


def edit_tensors(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def poison(tensors: dict[str, torch.Tensor]) -> None:
    """One NaN in the first floating tensor."""
    key = next(k for k, v in sorted(tensors.items()) if v.is_floating_point())
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")


def rehash_method(folder: Path) -> None:
    """Record the current hash, as if the checkpoint had been written like this (so the next check is reached)."""
    meta_file = folder / "loralab_method.json"
    meta = json.loads(meta_file.read_text())
    meta["files"] = {METHOD_WEIGHTS: sha256_file(folder / METHOD_WEIGHTS)}
    meta_file.write_text(json.dumps(meta))


def rehash_entry(folder: Path) -> None:
    entry_file = folder / "loralab.json"
    entry = json.loads(entry_file.read_text())
    entry["files"] = {name: sha256_file(folder / name) for name in entry["files"]}
    entry_file.write_text(json.dumps(entry))


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = None if path.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def cli_error(monkeypatch, capsys, root: Path, *args: str) -> str:
    """Run `loralab ARGS`: exit 2, one `error:` line (the last one; log lines may precede it), no traceback,
    and no file under `root` created, changed or removed. Returns the error line."""
    before = snapshot(root)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2, (code, err)
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in out + err
    assert snapshot(root) == before, "a failed command wrote, created or removed files"
    return errors[0]


def eval_args(work: Path, adapter: Path | None, model: str = "tiny-llama", *extra: str) -> list[str]:
    args = ["eval", "--model", model, "--task", str(work / "alpha.jsonl"), "--out", str(work / "result.json")]
    return args + (["--adapter", str(adapter)] if adapter is not None else []) + list(extra)


def one_line(info: pytest.ExceptionInfo, cls: type[Exception]) -> str:
    assert type(info.value) is cls, (type(info.value), info.value)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------ 1. hashes


def test_intact_artifacts_evaluate(work, monkeypatch, capsys):
    """The control: untouched library entry, MoRE checkpoint and `lora` copy all evaluate (exit 0)."""
    for adapter in (entry_dir(work), work / "more", work / "lora"):
        code, _, err = run_cli(monkeypatch, capsys, *eval_args(work, adapter))
        assert code == 0, err
        (work / "result.json").unlink()


def test_library_entry_hash_checked_by_eval_and_merge(work, monkeypatch, capsys):
    flip_last_byte(entry_dir(work) / PEFT_WEIGHTS)
    needle = "adapter_model.safetensors does not match its recorded SHA-256"
    assert needle in cli_error(monkeypatch, capsys, work, *eval_args(work, entry_dir(work)))
    line = cli_error(monkeypatch, capsys, work, "merge", "--adapter", str(entry_dir(work)), "--out",
                     str(work / "merged"))
    assert needle in line


def test_library_entry_file_added_later_is_refused(work, monkeypatch, capsys):
    (entry_dir(work) / "adapter_model.bin").write_bytes(b"anything")
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, entry_dir(work), "tiny-llama", "--allow-pickle"))
    assert "adapter_model.bin not recorded in loralab.json" in line


def test_method_checkpoint_records_its_hash_and_eval_checks_it(work, monkeypatch, capsys):
    meta = json.loads((work / "more" / "loralab_method.json").read_text())
    assert meta["files"] == {METHOD_WEIGHTS: sha256_file(work / "more" / METHOD_WEIGHTS)}
    assert meta["model"] == "tiny-llama" and meta["model_source"] == "random-init:llama:seed=0"
    flip_last_byte(work / "more" / METHOD_WEIGHTS)
    needle = "method_model.safetensors does not match its recorded SHA-256"
    assert needle in cli_error(monkeypatch, capsys, work, *eval_args(work, work / "more"))
    line = cli_error(monkeypatch, capsys, work, "merge", "--adapter", str(work / "more"), "--task", "alpha",
                     "--out", str(work / "merged"))
    assert needle in line
    assert needle in cli_error(monkeypatch, capsys, work, "ranks", str(work / "more"))


def test_lora_method_output_is_checked_against_the_library_hashes_it_copied(work, monkeypatch, capsys):
    flip_last_byte(work / "lora" / PEFT_WEIGHTS)
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, work / "lora"))
    assert "adapter_model.safetensors does not match its recorded SHA-256" in line


def test_trained_peft_format_output_records_and_checks_its_hashes(work, monkeypatch, capsys):
    """Outputs written in PEFT format by a method (here a linear merge of library LoRAs) record their files'
    hashes in loralab_train.json, and eval refuses a flipped byte."""
    out = work / "merged-lora"
    train_method("merge_linear", build_tiny_model("llama", seed=0), [toy_task("alpha", n=16)], out,
                 library=work / "lib", experts=["alpha"], hparams=HP, progress=False)
    meta = json.loads((out / "loralab_train.json").read_text())
    assert meta["files"][PEFT_WEIGHTS] == sha256_file(out / PEFT_WEIGHTS)
    code, _, err = run_cli(monkeypatch, capsys, *eval_args(work, out))
    assert code == 0, err
    (work / "result.json").unlink()
    flip_last_byte(out / PEFT_WEIGHTS)
    assert "adapter_model.safetensors does not match its recorded SHA-256" in cli_error(
        monkeypatch, capsys, work, *eval_args(work, out))


def test_task_routed_checkpoint_on_an_unseen_task_is_one_line(work, monkeypatch, capsys):
    """MoRE routes by task: evaluating it on a task it was not trained on names the trained tasks, no traceback."""
    records = [{"id": f"g{i}", "prompt": f"Q: is {i} odd?\nA:", "choices": [" yes", " no"], "answer_index": 1 - i % 2}
               for i in range(12)]
    (work / "gamma.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(work / "gamma.jsonl"),
                           "--adapter", str(work / "more"), "--split", "all", "--out", str(work / "result.json"))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "routes by task and was trained on alpha, beta, not 'gamma'" in err
    assert not (work / "result.json").exists()


def test_checkpoint_without_recorded_hashes_still_loads(work, caplog):
    """Checkpoints written before hashes were recorded load, with a warning that nothing was checked."""
    meta_file = work / "more" / "loralab_method.json"
    meta = json.loads(meta_file.read_text())
    del meta["files"]
    meta_file.write_text(json.dumps(meta))
    moe = attach_adapter(build_tiny_model("llama", seed=0).model, work / "more")
    assert moe.method == "more"
    assert "records no SHA-256" in caplog.text


# ------------------------------------------------------------------------------------------------ 2. non-finite


def test_nan_peft_adapter_refused_by_eval_and_library_add(work, monkeypatch, capsys):
    edit_tensors(work / "peft" / PEFT_WEIGHTS, poison)
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, work / "peft"))
    assert "NaN or infinite value(s)" in line
    line = cli_error(monkeypatch, capsys, work, "library", "add", str(work / "lib"), "--adapter", str(work / "peft"),
                     "--task", str(work / "alpha.jsonl"), "--model", "tiny-llama")
    assert "NaN or infinite value(s)" in line


def test_nan_in_a_library_entry_and_a_method_checkpoint(work, monkeypatch, capsys):
    edit_tensors(entry_dir(work) / PEFT_WEIGHTS, poison)
    rehash_entry(entry_dir(work))
    assert "NaN or infinite" in cli_error(monkeypatch, capsys, work, *eval_args(work, entry_dir(work)))
    edit_tensors(work / "more" / METHOD_WEIGHTS, poison)
    rehash_method(work / "more")
    assert "NaN or infinite" in cli_error(monkeypatch, capsys, work, *eval_args(work, work / "more"))
    with pytest.raises(AdapterError) as info:
        attach_adapter(build_tiny_model("llama", seed=0).model, work / "more")
    assert "NaN or infinite" in one_line(info, AdapterError)


def test_nan_expert_refused_by_train_from_the_library(work, monkeypatch, capsys):
    edit_tensors(entry_dir(work) / PEFT_WEIGHTS, poison)
    rehash_entry(entry_dir(work))
    line = cli_error(monkeypatch, capsys, work, "train", "--method", "loramoe", "--model", "tiny-llama", "--task",
                     str(work / "alpha.jsonl"), "--library", str(work / "lib"), "--experts", "alpha", "--out",
                     str(work / "run"), "--max-steps", "1")
    assert "NaN or infinite" in line


@pytest.mark.parametrize("batch_size", [1, 8])
def test_non_finite_scores_are_an_error_not_a_result(batch_size):
    lm = build_tiny_model("llama", seed=0)
    with torch.no_grad():
        lm.model.model.norm.weight.fill_(float("nan"))  # every logit NaN: argmax would still pick a choice
    with pytest.raises(NonFiniteScoreError) as info:
        evaluate(lm.model, lm.tokenizer, toy_task("alpha", n=16), limit=4, batch_size=batch_size, progress=False)
    assert "not a finite log-likelihood" in one_line(info, NonFiniteScoreError)


def test_model_folder_with_nan_weights_gives_no_result(work, monkeypatch, capsys):
    edit_tensors(work / "model" / "model.safetensors", lambda t: t["model.norm.weight"].fill_(float("nan")))
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, None, str(work / "model")))
    assert "not a finite log-likelihood" in line


# ------------------------------------------------------------------------------------------------ 3. base model


def test_checkpoint_on_another_architecture_is_one_line(work, monkeypatch, capsys):
    """Was a 56-line traceback: a tiny-llama MoRE checkpoint on tiny-gpt2 (other module names)."""
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, work / "more", "tiny-gpt2"))
    assert "was trained on base model 'tiny-llama'" in line and "not 'tiny-gpt2'" in line
    assert "--allow-base-mismatch" in line
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, work / "more", "tiny-gpt2", "--allow-base-mismatch"))
    assert "checkpoint does not fit this base model" in line
    line = cli_error(monkeypatch, capsys, work,
                     *eval_args(work, entry_dir(work), "tiny-gpt2", "--allow-base-mismatch"))
    assert "adapter does not fit the base model" in line and "which the base model does not have" in line


def test_checkpoint_on_a_model_with_the_same_module_names_needs_the_override(work, monkeypatch, capsys):
    """Was exit 0 without a word: tiny-qwen2 has tiny-llama's module names and shapes."""
    for adapter in (work / "more", entry_dir(work), work / "lora"):
        line = cli_error(monkeypatch, capsys, work, *eval_args(work, adapter, "tiny-qwen2"))
        assert "was trained on base model 'tiny-llama'" in line and "not 'tiny-qwen2'" in line
    code, _, err = run_cli(monkeypatch, capsys, *eval_args(work, work / "more", "tiny-qwen2", "--allow-base-mismatch"))
    assert code == 0, err
    assert (work / "result.json").is_file()


def test_merge_and_library_add_check_the_base_model(work, monkeypatch, capsys):
    line = cli_error(monkeypatch, capsys, work, "merge", "--adapter", str(work / "more"), "--task", "alpha", "--model",
                     "tiny-qwen2", "--out", str(work / "merged"))
    assert "was trained on base model 'tiny-llama'" in line
    line = cli_error(monkeypatch, capsys, work, "library", "add", str(work / "qwen-lib"), "--adapter",
                     str(work / "lora"), "--task", str(work / "alpha.jsonl"), "--model", "tiny-qwen2")
    assert "was trained on base model 'tiny-llama'" in line


def test_python_api_override_and_same_model_by_another_path(work, caplog):
    qwen = build_tiny_model("qwen2", seed=0).model
    with pytest.raises(AdapterError) as info:
        attach_adapter(qwen, work / "more")
    assert "allow_base_mismatch=True" in one_line(info, AdapterError)
    assert attach_adapter(qwen, work / "more", allow_base_mismatch=True).method == "more"
    assert "attaching it anyway" in caplog.text
    # a folder recorded under one spelling and loaded under another is the same model (same resolved source)
    entry_file = entry_dir(work) / "loralab.json"
    entry = json.loads(entry_file.read_text())
    entry.update(model=str(work / "elsewhere" / ".." / "model"), model_source=str((work / "model").resolve()))
    entry_file.write_text(json.dumps(entry))
    attach_adapter(load_model(str(work / "model"), device="cpu").model, entry_dir(work))


def test_model_without_identity_is_checked_by_shape_with_a_warning(work, caplog):
    from transformers import AutoModelForCausalLM

    from loralab.models import tiny_config

    plain = AutoModelForCausalLM.from_config(tiny_config("llama"))  # not loaded by load_model: no identity
    attach_adapter(plain, entry_dir(work))
    assert "only module names and shapes are checked" in caplog.text


# ------------------------------------------------------------------------------------------------ 4. mutation


def _linears_wrapped(moe) -> int:
    return sum(1 for _, m in moe.model.named_modules() if getattr(m, "is_loralab_layer", False))


def test_readme_sequence_keeps_the_base_model_plain(work):
    """README's Python block in order: attach_adapter, evaluate, then build_method on the same `lm`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    lm = load_model("tiny-llama", device="cpu")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = lm.model(input_ids=ids).logits
    flags = [p.requires_grad for p in lm.model.parameters()]
    peft_model = loralab_attach(lm.model, work / "peft")
    evaluate(peft_model, lm.tokenizer, toy_task("alpha", n=16), limit=4, progress=False)
    assert not any(isinstance(m, BaseTunerLayer) for m in lm.model.modules()), "attach_adapter changed lm.model"
    assert [p.requires_grad for p in lm.model.parameters()] == flags
    with torch.no_grad():
        torch.testing.assert_close(lm.model(input_ids=ids).logits, before)
        assert not torch.allclose(peft_model(input_ids=ids).logits, before)  # the adapter is on the copy
    more = build_method("more", lm, list(TASKS))
    expected = len(select_targets(build_tiny_model("llama", seed=0).model, "all"))
    assert _linears_wrapped(more) == expected == 14  # was 42: PEFT's base_layer, lora_A and lora_B each wrapped


def loralab_attach(model, path):
    import loralab

    return loralab.attach_adapter(model, path)


def test_methods_refuse_a_model_that_already_carries_an_adapter(work):
    from peft import PeftModel

    lm = build_tiny_model("llama", seed=0)
    PeftModel.from_pretrained(lm.model, str(work / "peft"))  # injects into lm.model itself, as PEFT does
    with pytest.raises(UserInputError) as info:
        build_method("more", lm, list(TASKS))
    assert "already carries" in one_line(info, UserInputError)
    assert not any(getattr(m, "is_loralab_layer", False) for m in lm.model.modules())
    with pytest.raises(UserInputError) as info:
        attach_adapter(lm.model, work / "more")
    assert "already carries" in one_line(info, UserInputError)
    fresh = build_tiny_model("llama", seed=0)
    moe = build_method("more", fresh, list(TASKS))
    with pytest.raises(UserInputError) as info:
        build_method("loramoe", fresh, list(TASKS))  # still wrapped by the first method
    assert "already wrapped by a 'more' method model" in one_line(info, UserInputError)
    with pytest.raises(UserInputError):
        attach_adapter(moe, work / "peft")
    moe.unload()
    assert build_method("loramoe", fresh, list(TASKS)).method == "loramoe"  # after unload() it is plain again


# ------------------------------------------------------------------------------------------------ 5. truncated


def test_truncated_peft_adapter_on_eval_merge_and_library_add(work, monkeypatch, capsys):
    truncate(work / "peft" / PEFT_WEIGHTS)
    needle = "unreadable safetensors file"
    assert needle in cli_error(monkeypatch, capsys, work, *eval_args(work, work / "peft"))
    assert needle in cli_error(monkeypatch, capsys, work, "merge", "--adapter", str(work / "peft"), "--model",
                               "tiny-llama", "--out", str(work / "merged"))
    assert needle in cli_error(monkeypatch, capsys, work, "library", "add", str(work / "lib"), "--adapter",
                               str(work / "peft"), "--task", str(work / "alpha.jsonl"), "--model", "tiny-llama")


def test_truncated_library_entry_and_method_checkpoint(work, monkeypatch, capsys):
    truncate(entry_dir(work) / PEFT_WEIGHTS)
    assert "does not match its recorded SHA-256" in cli_error(monkeypatch, capsys, work,
                                                              *eval_args(work, entry_dir(work)))
    rehash_entry(entry_dir(work))  # truncated before its hash was taken: the reader itself must refuse it
    assert "unreadable safetensors file" in cli_error(monkeypatch, capsys, work, *eval_args(work, entry_dir(work)))
    line = cli_error(monkeypatch, capsys, work, "train", "--method", "loramoe", "--model", "tiny-llama", "--task",
                     str(work / "alpha.jsonl"), "--library", str(work / "lib"), "--experts", "alpha", "--out",
                     str(work / "run"), "--max-steps", "1")
    assert "unreadable safetensors file" in line
    truncate(work / "more" / METHOD_WEIGHTS)
    assert "does not match its recorded SHA-256" in cli_error(monkeypatch, capsys, work,
                                                              *eval_args(work, work / "more"))
    rehash_method(work / "more")
    assert "unreadable safetensors file" in cli_error(monkeypatch, capsys, work, *eval_args(work, work / "more"))
    assert "unreadable safetensors file" in cli_error(monkeypatch, capsys, work, "ranks", str(work / "more"))


def test_truncated_model_folder(work, monkeypatch, capsys):
    truncate(work / "model" / "model.safetensors")
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, None, str(work / "model")))
    assert "cannot load model" in line


# ------------------------------------------------------------------------------------------------ 6. tensors


def _drop(*keys: str) -> Callable[[dict[str, torch.Tensor]], None]:
    return lambda tensors: [tensors.pop(k) for k in keys]


def _add_k_proj(tensors: dict[str, torch.Tensor]) -> None:
    """A LoRA pair on k_proj, with the right shapes, that the config (q_proj, v_proj) never injects."""
    k = Q0.replace("q_proj", "k_proj")
    tensors[f"{k}.lora_A.weight"] = torch.zeros(4, 64)
    tensors[f"{k}.lora_B.weight"] = torch.zeros(tensors[f"{k.replace('k_proj', 'v_proj')}.lora_B.weight"].shape[0], 4)


@pytest.mark.parametrize("change, needle", [
    (_drop(f"{Q0}.lora_B.weight"), "missing lora_B of model.layers.0.self_attn.q_proj"),
    (_drop(f"{Q0}.lora_A.weight", f"{Q0}.lora_B.weight"), "missing 2 tensor(s) its config injects"),
    (_add_k_proj, "2 tensor(s) that nothing in its config uses"),
    (lambda t: t.update({f"{Q0}.lora_C.weight": torch.zeros(4, 64)}), "is not a LoRA A/B matrix"),
], ids=["half_a_pair", "whole_module", "extra_module", "extra_key"])
def test_missing_or_extra_tensors_on_the_eval_path(work, monkeypatch, capsys, change, needle):
    edit_tensors(work / "peft" / PEFT_WEIGHTS, change)
    assert needle in cli_error(monkeypatch, capsys, work, *eval_args(work, work / "peft"))


def test_library_add_refuses_a_tensor_peft_would_ignore(work):
    edit_tensors(work / "peft" / PEFT_WEIGHTS, _add_k_proj)
    with pytest.raises(AdapterError) as info:
        import_adapter(work / "lib2", work / "peft", toy_task("alpha"), model="tiny-llama")
    assert "nothing in its config uses" in one_line(info, AdapterError)
    assert not (work / "lib2").exists()


def test_method_checkpoint_missing_a_tensor(work, monkeypatch, capsys):
    edit_tensors(work / "more" / METHOD_WEIGHTS, lambda t: t.pop(sorted(t)[0]))
    rehash_method(work / "more")
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, work / "more"))
    assert "checkpoint does not fit this base model (missing" in line


# ------------------------------------------------------------------------------------------------ 7. pickles


def _to_garbage_pickle(folder: Path, content: bytes = b"this is not a pickle at all") -> None:
    (folder / PEFT_WEIGHTS).unlink()
    (folder / "adapter_model.bin").write_bytes(content)


def test_malformed_pickle_adapter_under_allow_pickle(work, monkeypatch, capsys):
    _to_garbage_pickle(work / "peft")
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, work / "peft", "tiny-llama", "--allow-pickle"))
    assert "adapter_model.bin: unreadable pickle" in line
    line = cli_error(monkeypatch, capsys, work, "library", "add", str(work / "lib"), "--adapter", str(work / "peft"),
                     "--task", str(work / "alpha.jsonl"), "--model", "tiny-llama", "--allow-pickle")
    assert "unreadable pickle" in line


def test_truncated_real_pickle_adapter(work, monkeypatch, capsys):
    torch.save(load_file(str(work / "peft" / PEFT_WEIGHTS)), work / "full.bin")
    data = (work / "full.bin").read_bytes()
    (work / "full.bin").unlink()
    _to_garbage_pickle(work / "peft", data[: len(data) // 2])
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, work / "peft", "tiny-llama", "--allow-pickle"))
    assert "unreadable pickle" in line


def test_malformed_pickle_model_folder_under_allow_pickle(work, monkeypatch, capsys):
    (work / "model" / "model.safetensors").unlink()
    (work / "model" / "pytorch_model.bin").write_bytes(b"garbage")
    line = cli_error(monkeypatch, capsys, work, *eval_args(work, None, str(work / "model"), "--allow-pickle"))
    assert "cannot load model" in line
    with pytest.raises(ModelLoadError):
        load_model(str(work / "model"), allow_pickle=True, device="cpu")


# ------------------------------------------------------------------------------------------------ 8. devices


def _absent_devices() -> list[str]:
    absent = ["foo", "cuda:", "gpu", "cpu:1"]
    if not torch.cuda.is_available():
        absent.append("cuda")
    if torch.cuda.device_count() <= 7:
        absent.append("cuda:7")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        absent.append("mps")
    return absent


@pytest.mark.parametrize("device", _absent_devices())
def test_a_device_that_does_not_exist_fails_before_any_work(work, monkeypatch, capsys, device):
    from loralab.models.loading import available_devices

    args = ["eval", "--model", "tiny-llama", "--task", str(work / "missing.jsonl"), "--device", device,
            "--out", str(work / "r.json")]  # a missing task too: the device is checked first
    line = cli_error(monkeypatch, capsys, work, *args)
    assert f"--device {device!r}" in line and f"available here: {', '.join(available_devices())}" in line


@pytest.mark.parametrize("command", ["merge", "library add"])
def test_device_checked_by_merge_and_library_add(work, monkeypatch, capsys, command):
    if command == "merge":
        args = ["merge", "--adapter", str(work / "more"), "--task", "alpha", "--out", str(work / "m"),
                "--device", "foo"]
    else:
        args = ["library", "add", str(work / "lib"), "--adapter", str(work / "peft"), "--task",
                str(work / "alpha.jsonl"), "--model", "tiny-llama", "--device", "foo"]
    assert "--device 'foo' is not a device" in cli_error(monkeypatch, capsys, work, *args)


# ------------------------------------------------------------------------------------------------ JSON


@pytest.mark.parametrize("target, text, needle", [
    ("peft/adapter_config.json", "[" * 100_000, "adapter_config.json: JSON nested too deeply"),
    ("more/loralab_method.json", '{"format": ' + "[" * 100_000, "loralab_method.json: JSON nested too deeply"),
    ("more/loralab_method.json", '{"format": "loralab-method/1", "files": NaN}', "NaN is not valid JSON"),
    ("lib/tiny-llama/alpha/loralab.json", "[" * 100_000, "unreadable library entry (JSON nested too deeply"),
    ("lora/loralab_train.json", "{bad json", "loralab_train.json: not valid JSON"),
], ids=["adapter_config", "method_config", "method_config_nan", "library_entry", "train_record"])
def test_malformed_json_in_an_artifact(work, monkeypatch, capsys, target, text, needle):
    (work / target).write_text(text, encoding="utf-8")
    adapter = (work / target).parent
    assert needle in cli_error(monkeypatch, capsys, work, *eval_args(work, adapter))
