"""X-LoRA under multiple-choice scoring batched across questions: the scaling pass follows the padded batch."""

from __future__ import annotations

import pytest
import torch

from loralab.eval import LoglikScorer
from loralab.models import build_tiny_model
from loralab.train import build_method


def test_score_many_equals_whole_sequences(tiny_libraries):
    lib, experts = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("xlora", lm, ["toy"], library=lib, experts=experts, config={"depth": 2, "size": 16}).eval()
    with torch.no_grad():  # a non-trivial classifier, so scalings differ per token
        for p in moe.xlora_classifier.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    scorer = LoglikScorer(moe, lm.tokenizer)
    assert scorer.batchable
    questions = [("\nQ: which one?\nA: ", ["the first", "no", "a longer third answer"]),
                 ("\nQ: a much longer question, with more words in it?\nA: ", ["yes", "maybe not", "x"]),
                 ("\nQ: two?\nA: ", ["a", "bb"])]
    for (context, choices), batched in zip(questions, scorer.score_many(questions, batch_size=4)):
        separate = scorer._score_separately([scorer.encode_pair(context, c) for c in choices])
        assert batched.logliks == pytest.approx(separate.logliks, abs=1e-4)
        assert batched.mean_nlls == pytest.approx(separate.mean_nlls, abs=1e-5)
