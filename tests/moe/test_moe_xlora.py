"""X-LoRA specifics: the scaling pass keeps its own KV cache in step with the model's, also under batching."""

from __future__ import annotations

import pytest
import torch

from loralab.eval import LoglikScorer
from loralab.models import build_tiny_model
from loralab.train import build_method


@pytest.fixture
def xlora(tiny_libraries):
    lib, experts = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("xlora", lm, ["toy"], library=lib, experts=experts, config={"depth": 2, "size": 16}).eval()
    with torch.no_grad():  # a non-trivial classifier, so scalings differ per token
        for p in moe.xlora_classifier.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    return lm, moe


def test_generate_with_cache_equals_without(xlora):
    lm, moe = xlora
    ids = lm.tokenizer(["hello there", "a b"], return_tensors="pt", padding=True)
    with torch.no_grad():
        cached = moe.generate(**ids, max_new_tokens=6, do_sample=False, use_cache=True)
        uncached = moe.generate(**ids, max_new_tokens=6, do_sample=False, use_cache=False)
    assert cached.tolist() == uncached.tolist()


def test_shared_prompt_scoring_equals_whole_sequences(xlora):
    lm, moe = xlora
    scorer = LoglikScorer(moe, lm.tokenizer)
    context, choices = "\nQ: which one?\nA: ", ["the first", "no", "a longer third answer"]
    shared = scorer.score(context, choices)
    separate = scorer._score_separately([scorer.encode_pair(context, c) for c in choices])
    assert shared.logliks == pytest.approx(separate.logliks, abs=1e-4)
    assert shared.mean_nlls == pytest.approx(separate.mean_nlls, abs=1e-5)


def test_out_of_step_cache_is_an_error(xlora):
    from transformers import DynamicCache

    lm, moe = xlora
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        out = moe(input_ids=ids, use_cache=True)
        stale = DynamicCache()
        moe(input_ids=torch.tensor([[9, 9, 9, 9]]), past_key_values=stale, use_cache=True)  # new sequence
        with pytest.raises(RuntimeError, match="out of step"):
            moe(input_ids=torch.tensor([[8]]), past_key_values=out.past_key_values, use_cache=True)


def test_score_many_equals_whole_sequences(xlora):
    """Scoring batched across questions: the scaling pass follows the padded batch."""
    lm, moe = xlora
    scorer = LoglikScorer(moe, lm.tokenizer)
    assert scorer.batchable
    questions = [("\nQ: which one?\nA: ", ["the first", "no", "a longer third answer"]),
                 ("\nQ: a much longer question, with more words in it?\nA: ", ["yes", "maybe not", "x"]),
                 ("\nQ: two?\nA: ", ["a", "bb"])]
    for (context, choices), batched in zip(questions, scorer.score_many(questions, batch_size=4)):
        separate = scorer._score_separately([scorer.encode_pair(context, c) for c in choices])
        assert batched.logliks == pytest.approx(separate.logliks, abs=1e-4)
        assert batched.mean_nlls == pytest.approx(separate.mean_nlls, abs=1e-5)
