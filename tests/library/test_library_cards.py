"""Model cards and `base_model_name_or_path` on everything loralab writes (`loralab.library.cards`).

Library LoRAs (built and imported), method checkpoints (an MoE method and a PEFT-format one) and merged models
each carry a filled `README.md` card (base model and revision, tasks, method, hyperparameters, metrics, loralab
version, library_name) and, for adapters, the base model loralab loaded as `base_model_name_or_path`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import toy_task
from huggingface_hub import ModelCard
from peft import LoraConfig, get_peft_model

from loralab import __version__
from loralab.library import Library, LoRAHparams, build_library, import_adapter
from loralab.library.cards import base_model_ref, read_card_info
from loralab.library.store import sha256_file
from loralab.models import LoadedModel, build_tiny_model, load_model
from loralab.models.smollm2 import SMOLLM2_UPSTREAM
from loralab.recipes.merge import merge_adapter
from loralab.recipes.train import train_method

HP = LoRAHparams(max_steps=2, batch_size=4, learning_rate=1e-2, rank=4)


def card_meta(folder: Path) -> tuple[ModelCard, dict]:
    card = ModelCard.load(folder / "README.md")
    return card, card.data.to_dict()


def adapter_config(folder: Path) -> dict:
    return json.loads((folder / "adapter_config.json").read_text())


def hub_model(revision: str = "0123456789abcdef0123456789abcdef01234567") -> LoadedModel:
    """A tiny model that says it came from the hub repo org/tiny at `revision` (what load_model records)."""
    lm = build_tiny_model("llama", seed=0)
    return LoadedModel(model=lm.model, tokenizer=lm.tokenizer, name="org/tiny", source="org/tiny", revision=revision)


def test_library_lora_card_has_every_field_and_is_hashed_with_the_entry(tmp_path):
    (entry,) = build_library(build_tiny_model("llama", seed=0), [toy_task("alpha", n=16)], tmp_path / "lib",
                             hparams=HP, eval_limit=4, progress=False)
    card, data = card_meta(entry.path)
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "text-generation"
    assert "loralab" in data["tags"] and "base_model" not in data  # tiny-llama has no hub id
    meta = data["loralab"]
    assert meta["version"] == __version__ and meta["kind"] == "library-lora" and meta["method"] == "lora"
    assert meta["tasks"] == ["alpha"]
    assert meta["base_model"] == {"name": "tiny-llama", "name_or_path": "tiny-llama",
                                  "source": "random-init:llama:seed=0"}
    assert meta["hyperparameters"]["rank"] == 4 and meta["hyperparameters"]["max_steps"] == 2
    assert meta["metrics"]["train loss"] == pytest.approx(entry.metrics["train_loss"], abs=1e-4)
    ev = entry.metrics["eval"]
    assert meta["evaluation"] == {"task": "alpha", "metric": "acc", "value": pytest.approx(ev["adapter"]["acc"]),
                                  "split": "test", "n": 4, "base": pytest.approx(ev["base"]["acc"])}
    (result,) = card.data.eval_results
    assert (result.dataset_name, result.metric_type, result.dataset_split) == ("alpha", "acc", "test")
    assert result.metric_value == pytest.approx(ev["adapter"]["acc"])
    assert "## How to use" in card.text and 'loralab.load_model("tiny-llama")' in card.text
    assert adapter_config(entry.path)["base_model_name_or_path"] == "tiny-llama"
    # the card is one of the entry's hashed files, and the hash is of the card on disk
    assert entry.files["README.md"] == sha256_file(entry.path / "README.md")
    Library(tmp_path / "lib").get("tiny-llama", "alpha", verify=True)
    assert read_card_info(entry.path).tasks == ["alpha"]


def test_a_hub_base_model_is_the_cards_base_model_with_its_revision(tmp_path):
    lm = hub_model()
    (entry,) = build_library(lm, [toy_task("alpha", n=16)], tmp_path / "lib", hparams=HP, eval_limit=0,
                             progress=False)
    _, data = card_meta(entry.path)
    assert data["base_model"] == "org/tiny" and data["base_model_relation"] == "adapter"
    assert data["loralab"]["base_model"]["revision"] == lm.revision
    config = adapter_config(entry.path)
    assert config["base_model_name_or_path"] == "org/tiny" and config["revision"] == lm.revision


def test_a_local_base_model_is_named_by_the_folder_it_was_loaded_from(tmp_path):
    tiny = build_tiny_model("llama", seed=0)
    tiny.model.save_pretrained(tmp_path / "model")
    tiny.tokenizer.save_pretrained(tmp_path / "model")
    lm = load_model(str(tmp_path / "model"), device="cpu")
    ref = base_model_ref(lm)
    assert ref.name_or_path == str((tmp_path / "model").resolve()) and ref.hub_id is None
    (entry,) = build_library(lm, [toy_task("alpha", n=16)], tmp_path / "lib", hparams=HP, eval_limit=0,
                             progress=False)
    assert adapter_config(entry.path)["base_model_name_or_path"] == str((tmp_path / "model").resolve())


def test_smollm2_cards_name_the_upstream_hub_repo_and_adapters_the_converted_folder(tmp_path):
    tiny = build_tiny_model("llama", seed=0)  # stands in for the converted SmolLM2 folder: no download here
    lm = LoadedModel(model=tiny.model, tokenizer=tiny.tokenizer, name="smollm2-135m", source=str(tmp_path),
                     revision=None)
    ref = base_model_ref(lm)
    assert ref.hub_id == SMOLLM2_UPSTREAM and ref.name_or_path == str(tmp_path) and ref.name == "smollm2-135m"


def test_imported_lora_card_and_config_name_the_model_it_was_checked_against(tmp_path):
    peft = get_peft_model(build_tiny_model("llama", seed=1).model,
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(str(tmp_path / "downloaded"))
    source_config = (tmp_path / "downloaded" / "adapter_config.json").read_bytes()
    entry = import_adapter(tmp_path / "lib", tmp_path / "downloaded", toy_task("alpha"), model="tiny-llama")
    assert (tmp_path / "downloaded" / "adapter_config.json").read_bytes() == source_config  # input untouched
    assert adapter_config(entry.path)["base_model_name_or_path"] == "tiny-llama"
    _, data = card_meta(entry.path)
    assert data["loralab"]["kind"] == "library-lora" and data["loralab"]["details"]["origin"] == "imported"
    assert data["loralab"]["hyperparameters"]["rank"] == 4
    assert entry.files["README.md"] == sha256_file(entry.path / "README.md")
    Library(tmp_path / "lib").get("tiny-llama", "alpha", verify=True)


def test_method_checkpoint_cards_moe_and_peft_format(tmp_path):
    tasks = [toy_task("alpha", n=16), toy_task("beta", n=16)]
    info = train_method("more", build_tiny_model("llama", seed=0), tasks, tmp_path / "more", config={"rank": 4},
                        hparams=HP, progress=False)
    card, data = card_meta(tmp_path / "more")
    meta = data["loralab"]
    assert data["library_name"] == "loralab" and meta["kind"] == "method-checkpoint" and meta["method"] == "more"
    assert meta["tasks"] == ["alpha", "beta"] and meta["method_config"]["rank"] == 4
    assert meta["hyperparameters"]["max_steps"] == 2 and meta["base_model"]["name"] == "tiny-llama"
    assert meta["metrics"]["train loss"] == pytest.approx(info["train"]["loss"], abs=1e-4)
    assert meta["metrics"]["train steps"] == 2
    assert "MoEModel.from_pretrained" in card.text

    train_method("multitask_lora", build_tiny_model("llama", seed=0), tasks, tmp_path / "mt", hparams=HP,
                 progress=False)
    _, data = card_meta(tmp_path / "mt")
    assert data["library_name"] == "peft" and data["loralab"]["method"] == "multitask_lora"
    assert data["loralab"]["tasks"] == ["alpha", "beta"]
    assert adapter_config(tmp_path / "mt")["base_model_name_or_path"] == "tiny-llama"
    record = json.loads((tmp_path / "mt" / "loralab_train.json").read_text())
    assert record["files"]["README.md"] == sha256_file(tmp_path / "mt" / "README.md")  # hashed like its weights


def test_merged_model_card(tmp_path):
    tasks = [toy_task("alpha", n=16), toy_task("beta", n=16)]
    train_method("more", build_tiny_model("llama", seed=0), tasks, tmp_path / "more", config={"rank": 4},
                 hparams=HP, progress=False)
    merge_adapter(tmp_path / "more", tmp_path / "merged", task="beta", device="cpu")
    card, data = card_meta(tmp_path / "merged")
    meta = data["loralab"]
    assert data["library_name"] == "transformers" and meta["kind"] == "merged-model" and meta["method"] == "more"
    assert meta["tasks"] == ["beta"] and meta["base_model"]["name"] == "tiny-llama"
    assert meta["hyperparameters"]["max_steps"] == 2 and meta["method_config"]["rank"] == 4
    assert "train loss" in meta["metrics"] and meta["version"] == __version__
    assert meta["details"]["merged for task"] == "beta"
    assert "AutoModelForCausalLM.from_pretrained(here)" in card.text
