"""X-LoRA specifics: the scaling pass keeps its own KV cache in step with the model's, also under batching."""

from __future__ import annotations

import pytest
import torch

from loralab.eval import LoglikScorer
from loralab.models import build_tiny_model
from loralab.recipes.train import build_method


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


@pytest.mark.parametrize("enable_softmax, softmax_topk, top_k, temperature, layerwise", [
    (True, True, 2, 1.0, False),  # both softmaxes: the second one is of the kept probabilities, not the logits
    (True, True, 2, 0.5, True),
    (True, True, None, 1.0, False),  # softmax_topk without top-k: over all scalings
    (False, True, 2, 1.0, False),  # raw logits, softmax over the kept ones
    (True, False, 2, 1.0, True),  # top-k without renormalisation
    (True, False, None, 2.0, False),
    (False, False, 1, 1.0, True),
])
def test_scalings_equal_peft_classifier_and_topk(enable_softmax, softmax_topk, top_k, temperature, layerwise):
    """Classifier plus scalings, against PEFT's own XLoraClassifier and XLoraLayer.get_maybe_topk_scalings."""
    import warnings
    from types import SimpleNamespace

    from peft.tuners.xlora.classifier import XLoraClassifier as PeftClassifier
    from peft.tuners.xlora.config import XLoraConfig as PeftXLoraConfig
    from peft.tuners.xlora.layer import XLoraLayer

    from loralab.moe.methods.xlora import XLoRAClassifier, XLoRAConfig, scalings_from_logits

    hidden, experts, layers = 8, 4, 3
    ours = XLoRAConfig(depth=2, size=16, dropout_p=0.0, layerwise=layerwise, enable_softmax=enable_softmax,
                       softmax_topk=softmax_topk, top_k=top_k, temperature=temperature, global_scaling_weight=0.5,
                       num_experts=experts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns about the softmax combinations under test
        theirs = PeftXLoraConfig(hidden_size=hidden, adapters={str(i): str(i) for i in range(experts)},
                                 enable_softmax=enable_softmax, enable_softmax_topk=softmax_topk, top_k_lora=top_k,
                                 softmax_temperature=temperature, layerwise_scalings=layerwise, xlora_depth=2,
                                 xlora_size=16, xlora_dropout_p=0.0, global_scaling_weight=0.5)
    classifier = XLoRAClassifier(hidden, experts, layers, ours).eval()
    peft_classifier = PeftClassifier(torch.nn.Linear(1, 1), theirs, experts, layers, torch.device("cpu")).eval()
    with torch.no_grad():
        for p in classifier.parameters():  # spread the logits so that top-k and both softmaxes matter
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 2)
    peft_classifier.layers.load_state_dict({k.removeprefix("net."): v for k, v in classifier.state_dict().items()})
    hidden_states = torch.randn(2, 5, hidden, generator=torch.Generator().manual_seed(3))
    ids = torch.zeros(2, 5, dtype=torch.long)
    with torch.no_grad():
        got = scalings_from_logits(classifier(hidden_states), ours)
        peft_scalings = peft_classifier(SimpleNamespace(hidden_states=[hidden_states]), input_ids=ids)
    # PEFT multiplies each LoRA's output by global_scaling_weight; loralab folds it into the scalings
    expected = torch.stack([XLoraLayer.get_maybe_topk_scalings(SimpleNamespace(layer_number=i, config=theirs),
                                                               peft_scalings) for i in range(layers)], dim=2)
    torch.testing.assert_close(got, expected * theirs.global_scaling_weight, rtol=1e-6, atol=1e-7)
    if top_k is not None:  # fewer only where a kept probability underflowed to 0 (PEFT then drops it too)
        assert (got != 0).sum(dim=-1).le(top_k).all() and (got != 0).sum(dim=-1).eq(top_k).any()
