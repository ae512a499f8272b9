"""Multiple-choice scoring batched across questions (`LoglikScorer.score_many`) equals one question at a time."""

from __future__ import annotations

import pytest

from loralab.data import Example, Task
from loralab.eval import LoglikScorer, evaluate
from loralab.models import build_tiny_model

# bloom and mpt take no position_ids: scored one question at a time (the fallback path)
ARCHS = ["llama", "gpt2", "opt", "falcon", "gpt_neox", "qwen2", "bloom", "mpt"]

QUESTIONS = [
    (f"\nQ: item {i} is{' very' * (i % 5)} what?\nA: ",
     ["red", "blue", "green and a much longer tail"] if i % 3 else ["x", "a few more tokens"])
    for i in range(11)
] + [("", ["abc", "d"]), ("\nQ: one choice only\nA: ", ["yes"])]


@pytest.mark.parametrize("arch", ARCHS)
def test_score_many_equals_score(arch):
    lm = build_tiny_model(arch, seed=1)
    scorer = LoglikScorer(lm.model.eval(), lm.tokenizer)
    assert scorer.batchable == (arch not in ("bloom", "mpt"))
    many = scorer.score_many(QUESTIONS, batch_size=4)
    assert len(many) == len(QUESTIONS)
    for (context, choices), batched in zip(QUESTIONS, many):
        single = scorer.score(context, choices)
        assert batched.n_tokens == single.n_tokens
        assert batched.is_greedy == single.is_greedy
        assert batched.logliks == pytest.approx(single.logliks, abs=1e-4, rel=1e-5)
        assert batched.mean_nlls == pytest.approx(single.mean_nlls, abs=1e-5, rel=1e-5)


def test_evaluate_batch_size_does_not_change_metrics():
    lm = build_tiny_model("llama", seed=2)
    examples = [Example(id=f"e{i:02d}", body=context, choices=tuple(choices), answers=(i % len(choices),))
                for i, (context, choices) in enumerate(QUESTIONS) if context and len(choices) > 1]
    task = Task(name="toy", kind="multiple_choice", examples=examples)
    one = evaluate(lm.model, lm.tokenizer, task, split="test", batch_size=1, progress=False, log_samples=True)
    eight = evaluate(lm.model, lm.tokenizer, task, split="test", batch_size=8, progress=False, log_samples=True)
    assert one.metrics == eight.metrics
    assert [s["id"] for s in one.samples] == [s["id"] for s in eight.samples]
    assert [s["predictions"] for s in one.samples] == [s["predictions"] for s in eight.samples]
