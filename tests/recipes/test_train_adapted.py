"""train_method records what each method adapted (`info["train"]["adapted"]`), so a comparison's rows show it."""

from __future__ import annotations

from helpers import toy_task
from loralab.library import LoRAHparams
from loralab.models import build_tiny_model
from loralab.recipes.train import adapted_modules, train_method

HP = LoRAHparams(max_steps=1, batch_size=4, learning_rate=1e-2)


def test_adapted_modules_counts_and_kinds():
    names = ["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj", "model.layers.0.self_attn.q_proj"]
    assert adapted_modules(names) == {"n_modules": 3, "kinds": ["q_proj", "up_proj"]}
    assert adapted_modules([]) == {"n_modules": 0, "kinds": []}


def test_moe_and_peft_methods_record_their_modules(tmp_path):
    task = toy_task("toy_a", n=8)
    more = train_method("more", build_tiny_model("llama", seed=0), [task], tmp_path / "more",
                        config={"targets": ["q_proj", "v_proj"]}, hparams=HP, progress=False)
    n_layers = build_tiny_model("llama", seed=0).model.config.num_hidden_layers
    assert more["train"]["adapted"] == {"n_modules": 2 * n_layers, "kinds": ["q_proj", "v_proj"]}
    lora = train_method("multitask_lora", build_tiny_model("llama", seed=0), [task], tmp_path / "lora",
                        hparams=LoRAHparams(max_steps=1, batch_size=4, target_modules=["q_proj"]), progress=False)
    assert lora["train"]["adapted"] == {"n_modules": None, "kinds": ["q_proj"]}
    base = train_method("base", build_tiny_model("llama", seed=0), [task], tmp_path / "base", hparams=HP,
                        progress=False)
    assert base["train"]["adapted"] == {"n_modules": 0, "kinds": []}
