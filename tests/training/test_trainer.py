"""The training loss: answer tokens only, and logits only where loss is taken, equal to HF's full loss."""

import pytest
import torch

from loralab.library import LoRAHparams
from loralab.training.trainer import IGNORE, PadCollator, answer_only_loss, training_features
from loralab.models import build_tiny_model

from helpers import toy_task


@pytest.mark.parametrize("arch", ["llama", "gpt2", "falcon"])
def test_answer_only_loss_equals_full_logits_loss(arch):
    lm = build_tiny_model(arch, seed=4)
    task = toy_task(n=12)
    features = training_features(task, lm.tokenizer, LoRAHparams())
    batch = PadCollator(lm.tokenizer.pad_token_id)(features[:5])
    ours, n_tokens, aux = answer_only_loss(lm.model, batch, None)
    assert aux is None
    with torch.no_grad():
        reference = lm.model(**batch).loss  # HF: full logits, mean CE over labels != -100 (shifted)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    assert n_tokens.item() == (batch["labels"][:, 1:] != IGNORE).sum().item()


def test_features_label_only_the_answer():
    lm = build_tiny_model("llama")
    task = toy_task(n=8)
    hp = LoRAHparams(max_length=64)
    feats = training_features(task, lm.tokenizer, hp)
    ex = task.split("train")[0]
    f = feats[0]
    answer = [t for t in f["labels"] if t != IGNORE]
    assert lm.tokenizer.decode(answer) == ex.choices[ex.answers[0]]
    assert lm.tokenizer.decode(f["input_ids"]) == ex.prompt + ex.choices[ex.answers[0]]


def test_generation_features_end_with_eos_and_respect_max_length():
    lm = build_tiny_model("llama")
    task = toy_task(n=8, kind="generation")
    feats = training_features(task, lm.tokenizer, LoRAHparams(max_length=6))
    assert all(len(f["input_ids"]) <= 6 for f in feats)
    assert all(f["labels"][-1] == lm.tokenizer.eos_token_id for f in feats)


def test_collator_pads_labels_with_ignore():
    batch = PadCollator(0)([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [5], "labels": [IGNORE]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
