"""The shared training path for methods: aux loss added once, router statistics logged to TensorBoard."""

from __future__ import annotations

import pytest
import torch
from helpers import toy_task

from loralab.recipes.evaluate import run_eval
from loralab.errors import UserInputError
from loralab.library import LoRAHparams
from loralab.models import build_tiny_model
from loralab.recipes.train import train_method


def test_router_statistics_reach_tensorboard(tmp_path, tiny_libraries):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lib, experts = tiny_libraries("llama")
    hp = LoRAHparams(max_steps=4, batch_size=4, report_to="tensorboard")
    out = tmp_path / "ckpt"
    info = train_method("loramoe", build_tiny_model("llama"), [toy_task("toy_a")], out, library=lib, experts=experts,
                        config={"task_types": {"toy_a": 1}}, hparams=hp, progress=False)
    logs = list((out / "tensorboard").glob("**/events.out.tfevents.*"))
    assert logs, "no TensorBoard event file"
    acc = EventAccumulator(str(logs[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/router/expert_0", "train/router/load_entropy", "train/router/aux_loss"} <= tags, tags
    assert info["train"]["steps"] == 4


def test_aux_loss_is_added_to_the_training_loss(tiny_libraries):
    from loralab.training.trainer import PadCollator, answer_only_loss, training_features
    from loralab.recipes.train import build_method

    lm = build_tiny_model("llama")
    moe = build_method("loramoe", lm, ["toy_a"], config={"task_types": {"toy_a": 1}})
    moe.train()
    feats = [{**f, "task_ids": 0, "task_types": 1} for f in training_features(toy_task("toy_a"), lm.tokenizer,
                                                                               LoRAHparams())[:4]]
    batch = PadCollator(lm.tokenizer.pad_token_id)(feats)
    loss, _, aux = answer_only_loss(moe, batch, None)
    assert aux is not None and aux.item() > 0
    moe.eval()
    _, _, aux_eval = answer_only_loss(moe, batch, None)
    assert aux_eval is None  # the constraint only applies in training


@pytest.mark.parametrize("method, experts, needle", [
    ("rocket", None, "pass --library and --experts"),
    ("xlora", None, "pass --library and --experts"),
])
def test_library_methods_need_experts(tmp_path, method, experts, needle):
    with pytest.raises(UserInputError, match=needle):
        train_method(method, build_tiny_model("llama"), [toy_task()], tmp_path / "x", experts=experts,
                     hparams=LoRAHparams(max_steps=1), progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("method", ["loramoe", "rocket", "xlora"])
def test_train_then_eval_the_checkpoint(tmp_path, tiny_libraries, method):
    lib, experts = tiny_libraries("llama")
    hp = LoRAHparams(max_steps=2, batch_size=4)
    train_method(method, build_tiny_model("llama"), [toy_task("toy_a")], tmp_path / "ckpt", library=lib,
                 experts=experts, hparams=hp, progress=False)
    record = run_eval(build_tiny_model("llama"), toy_task("toy_a"), adapter=tmp_path / "ckpt", progress=False)
    assert record["n"] == 12 and 0.0 <= record["metrics"]["acc"] <= 1.0
    assert torch.isfinite(torch.tensor(record["metrics"]["acc_ppl"]))
