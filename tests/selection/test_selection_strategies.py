"""Each strategy on a tiny llama and a library of four toy tasks: does it pick what it should?"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from peft import PeftModel

from loralab.errors import ConfigError, EmptySplitError, UserInputError
from loralab.training.hparams import LoRAHparams
from loralab.training.trainer import PadCollator, training_features
from loralab.models import build_tiny_model
from loralab.selection import select_experts

from .conftest import TASKS, styled_task

IDS = torch.tensor([[5, 6, 7, 8, 9, 10]])


def picked(chosen):
    return [s.task for s in chosen]


# ---------------------------------------------------------------- random

def test_random_is_reproducible_and_depends_on_the_seed(tiny_library):
    root, tasks = tiny_library
    runs = {seed: picked(select_experts("random", "tiny-llama", root, tasks["parity"], k=3, seed=seed))
            for seed in range(6)}
    assert picked(select_experts("random", "tiny-llama", root, tasks["parity"], k=3, seed=4)) == runs[4]
    assert len({tuple(r) for r in runs.values()}) > 1  # six seeds over three LoRAs: not all the same order
    default = select_experts("random", "tiny-llama", root, tasks["parity"], k=3)
    assert picked(default) == runs[0] and all(0 <= s.score < 1 for s in default)


def test_random_draw_of_a_lora_does_not_change_when_the_own_lora_joins(tiny_library):
    root, tasks = tiny_library
    without = {s.task: s.score for s in select_experts("random", "tiny-llama", root, tasks["succ"], k=3, seed=7)}
    with_own = {s.task: s.score for s in select_experts("random", "tiny-llama", root, tasks["succ"], k=4, seed=7,
                                                        exclude_own=False)}
    assert set(with_own) - set(without) == {"succ"}
    assert all(with_own[t] == without[t] for t in without)


# ---------------------------------------------------------------- ppl

@pytest.mark.parametrize("target", TASKS)
def test_ppl_picks_the_lora_trained_on_the_target(tiny_library, lm, target):
    root, tasks = tiny_library
    chosen = select_experts("ppl", lm, root, tasks[target], k=4, exclude_own=False, progress=False)
    assert chosen[0].task == target and chosen[0].score_name == "perplexity"
    assert [s.score for s in chosen] == sorted(s.score for s in chosen)  # lowest first
    assert chosen[0].score < chosen[1].score


def test_ppl_with_k1_and_leave_one_out(tiny_library, lm):
    root, tasks = tiny_library
    own = select_experts("ppl", lm, root, tasks["colour"], k=1, exclude_own=False, progress=False)
    assert picked(own) == ["colour"] and own[0].own_lora == "included"
    loo = select_experts("ppl", lm, root, tasks["colour"], k=3, progress=False)
    assert "colour" not in picked(loo) and {s.own_lora for s in loo} == {"excluded"}


def test_ppl_score_is_the_answer_token_perplexity_under_plain_peft(tiny_library, lm):
    """Recomputed independently: PEFT loads the adapter on a fresh model, full logits, CE on answer tokens."""
    root, tasks = tiny_library
    task = tasks["echo"]
    chosen = select_experts("ppl", lm, root, task, k=4, exclude_own=False, progress=False, n_examples=5,
                            batch_size=2)
    fresh = build_tiny_model("llama", seed=0)
    model = PeftModel.from_pretrained(fresh.model, str(root / "tiny-llama" / "succ")).eval()
    feats = training_features(task, fresh.tokenizer, LoRAHparams(), task.split("train", 5))
    batch = PadCollator(fresh.tokenizer.pad_token_id)(feats)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                            ignore_index=-100)
    assert {s.task: s.score for s in chosen}["succ"] == pytest.approx(math.exp(nll.item()), rel=1e-4)


def test_ppl_leaves_the_base_model_unwrapped_and_unchanged(tiny_library, lm):
    root, tasks = tiny_library
    with torch.no_grad():
        before = lm.model(input_ids=IDS).logits
    select_experts("ppl", lm, root, tasks["parity"], k=2, progress=False)
    assert not any("lora_" in name for name, _ in lm.model.named_modules())
    with torch.no_grad():
        torch.testing.assert_close(lm.model(input_ids=IDS).logits, before, rtol=0, atol=0)


def test_ppl_reads_train_or_validation_never_test(tiny_library, lm):
    root, tasks = tiny_library
    test_only = dataclasses.replace(styled_task("parity"), name="parity_test_only")
    test_only.examples = [ex.replace(split="test") for ex in test_only.examples]
    with pytest.raises(EmptySplitError, match="no examples in split 'train'"):
        select_experts("ppl", lm, root, test_only, k=1, progress=False)
    with pytest.raises(EmptySplitError, match="no examples in split 'validation'"):
        select_experts("ppl", lm, root, tasks["parity"], k=1, split="validation", progress=False)


def test_ppl_refuses_a_tampered_adapter(tiny_library, lm, tmp_path):
    import shutil

    root, tasks = tiny_library
    copy = tmp_path / "lib"
    shutil.copytree(root, copy)
    weights = copy / "tiny-llama" / "echo" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(UserInputError, match="does not match its recorded SHA-256"):
        select_experts("ppl", lm, copy, tasks["parity"], k=1, progress=False)
    assert not any("lora_" in name for name, _ in lm.model.named_modules())


# ---------------------------------------------------------------- manual

def test_manual_defaults_follow_domain_tags(tiny_library):
    root, tasks = tiny_library
    parity = select_experts("manual", "tiny-llama", root, tasks["parity"], k=3)  # math: succ is math too
    assert [(s.task, s.score) for s in parity] == [("succ", 1.0), ("colour", 0.0), ("echo", 0.0)]
    colour = select_experts("manual", "tiny-llama", root, tasks["colour"], k=3)  # knowledge: no other; by name
    assert [(s.task, s.score) for s in colour] == [("echo", 0.0), ("parity", 0.0), ("succ", 0.0)]
    assert [s.domain for s in parity] == ["math", "knowledge", "language"]


def test_manual_relevance_file_list_and_score_forms(tiny_library, tmp_path):
    root, tasks = tiny_library
    rel = tmp_path / "relevance.yaml"
    rel.write_text("parity: [echo]\nsucc: {colour: 0.2, parity: 0.9, winowhy: 1.0}\n")
    parity = select_experts("manual", "tiny-llama", root, tasks["parity"], k=2, relevance=rel)
    assert picked(parity) == ["echo", "colour"]  # echo listed; then the unlisted (score 0) by name
    succ = select_experts("manual", "tiny-llama", root, tasks["succ"], k=3, relevance=rel)
    assert [(s.task, s.score) for s in succ] == [("parity", 0.9), ("colour", 0.2), ("echo", 0.0)]
    mapping = select_experts("manual", "tiny-llama", root, tasks["succ"], k=1, relevance={"succ": ["echo"]})
    assert picked(mapping) == ["echo"]


@pytest.mark.parametrize("text, needle", [
    ("parity: [eco]\n", r"relevance.yaml: parity: unknown listed task 'eco'.*Did you mean 'echo'"),
    ("parity: [echo]\nparty: [succ]\n", r"unknown target key 'party'.*Did you mean 'parity'"),
    ("parity: echo\n", r"relevance.yaml: parity: wrong type \(got 'echo'; allowed: a list of relevant tasks or a mapping of task to score\)"),
    ("parity: {echo: high}\n", r"relevance.yaml: parity.echo: wrong type \(got 'high'; allowed: a number\)"),
    ("succ: [echo]\n", r"has no entry for the target task 'parity' \(it has: succ\)"),
    ("- parity\n", r"a config must be a mapping"),
    ("parity: [echo\n", r"invalid YAML"),
])
def test_manual_relevance_file_errors(tiny_library, tmp_path, text, needle):
    root, tasks = tiny_library
    rel = tmp_path / "relevance.yaml"
    rel.write_text(text)
    with pytest.raises(ConfigError, match=needle) as info:
        select_experts("manual", "tiny-llama", root, tasks["parity"], k=1, relevance=rel)
    assert "\n" not in str(info.value)


def test_manual_missing_relevance_file(tiny_library, tmp_path):
    root, tasks = tiny_library
    with pytest.raises(ConfigError, match="config file does not exist"):
        select_experts("manual", "tiny-llama", root, tasks["parity"], k=1, relevance=tmp_path / "nope.yaml")


# ---------------------------------------------------------------- embedding

@pytest.mark.parametrize("source", TASKS)
def test_embedding_picks_the_task_with_identical_examples_first(tiny_library, lm, source):
    root, tasks = tiny_library
    copy = dataclasses.replace(tasks[source], name=f"{source}_copy")  # the same examples under another name
    chosen = select_experts("embedding", lm, root, copy, k=4, library_tasks=tasks, progress=False)
    assert chosen[0].task == source and chosen[0].own_lora == "absent"
    assert chosen[0].score == pytest.approx(1.0, abs=1e-9) and chosen[1].score < 0.99
    assert [s.score for s in chosen] == sorted((s.score for s in chosen), reverse=True)


def test_embedding_is_symmetric_and_leaves_out_the_own_lora(tiny_library, lm):
    root, tasks = tiny_library
    a = {s.task: s.score for s in select_experts("embedding", lm, root, tasks["echo"], k=3, library_tasks=tasks,
                                                 progress=False)}
    b = {s.task: s.score for s in select_experts("embedding", lm, root, tasks["succ"], k=3, library_tasks=tasks,
                                                 progress=False)}
    assert "echo" not in a and "succ" not in b
    assert a["succ"] == pytest.approx(b["echo"], abs=1e-9)


def test_embedding_needs_the_library_tasks_examples(tiny_library):
    root, tasks = tiny_library
    with pytest.raises(UserInputError, match="needs examples of library task 'colour', which is not a suite task"):
        select_experts("embedding", "tiny-llama", root, tasks["parity"], k=1)
    with pytest.raises(ConfigError, match="layer must be in -3..2"):
        select_experts("embedding", "tiny-llama", root, tasks["parity"], k=1, library_tasks=tasks, layer=5,
                       progress=False)


def test_embedding_ignores_padding(tiny_library, lm):
    """Prompts of one task differ in length; batching them (with padding) must not change the embedding."""
    root, tasks = tiny_library
    scores = [{s.task: s.score for s in select_experts("embedding", lm, root, tasks["parity"], k=3,
                                                       library_tasks=tasks, batch_size=bs, progress=False)}
              for bs in (1, 16)]  # 16: one- and two-digit numbers padded together
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


@pytest.mark.parametrize("strategy", ["ppl", "embedding"])
def test_long_prompts_are_cut_to_the_model_context(tmp_path, strategy):
    """GPT-2 has learned positions (256 in the tiny model): a 600-token prompt must lose its left part, not crash."""
    from loralab.library import build_library

    gpt2 = build_tiny_model("gpt2", seed=0)
    tasks = {name: styled_task(name, n=8) for name in ("colour", "echo")}
    build_library(gpt2, list(tasks.values()), tmp_path, hparams=LoRAHparams(max_steps=1, batch_size=4), eval_limit=0,
                  progress=False)
    long = dataclasses.replace(tasks["colour"], name="long")
    long.examples = [ex.replace(body="x" * 600 + ex.body) for ex in long.examples]
    chosen = select_experts(strategy, gpt2, tmp_path, long, k=2, library_tasks=tasks, progress=False, n_examples=2)
    assert len(chosen) == 2 and all(math.isfinite(s.score) for s in chosen)
