"""Scoring against a brute-force reference on tiny models of several architectures."""

import pytest
import torch

from loralab.data import Example, GenerationSpec, Task
from loralab.eval import LoglikScorer, evaluate
from loralab.eval.generate import generate_greedy
from loralab.models import build_tiny_model

ARCHS = ["llama", "gpt2", "opt", "falcon", "bloom", "gpt_neox"]


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request):
    return build_tiny_model(request.param, seed=1)


def brute_force(model, tokenizer, context, choice):
    """Each prompt+choice as one full sequence; lm-eval's token split, HF's own mean loss for perplexity."""
    scorer = LoglikScorer(model, tokenizer)
    ctx, cont = scorer.encode_pair(context, choice)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    logp = torch.log_softmax(out.logits[0].float(), -1)
    loglik = sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))
    return loglik, out.loss.item()


def test_shared_prompt_scores_equal_brute_force(tiny):
    model, tok = tiny.model, tiny.tokenizer
    context = "\nQ: Which colour is the sky on a clear day?\nA: "
    choices = ["blue", "green", "a very long answer that spans many tokens", "x"]
    scores = LoglikScorer(model, tok).score(context, choices)
    for i, choice in enumerate(choices):
        loglik, mean_nll = brute_force(model, tok, context, choice)
        assert scores.logliks[i] == pytest.approx(loglik, abs=1e-3, rel=1e-4)
        assert scores.mean_nlls[i] == pytest.approx(mean_nll, abs=1e-4, rel=1e-4)


def test_encode_pair_moves_trailing_space_to_continuation(tiny):
    scorer = LoglikScorer(tiny.model, tiny.tokenizer)
    ctx, cont = scorer.encode_pair("Answer: ", "yes")
    assert tiny.tokenizer.decode(ctx) == "Answer:"
    assert tiny.tokenizer.decode(cont) == " yes"


def test_evaluate_mc_matches_brute_force_accuracy(tiny):
    model, tok = tiny.model, tiny.tokenizer
    examples = [
        Example(id=f"e{i}", body=f"\nQ: item {i} is\nA: ", choices=("red", "blue", "green"), answers=(i % 3,))
        for i in range(9)
    ]
    task = Task(name="toy", kind="multiple_choice", examples=examples)
    out = evaluate(model, tok, task, split="test", progress=False, log_samples=True)
    expected_acc, expected_ppl, expected_norm = [], [], []
    for ex in sorted(examples, key=lambda e: e.id):
        ref = [brute_force(model, tok, ex.prompt, c) for c in ex.choices]
        lls = [r[0] for r in ref]
        expected_acc.append(float(max(range(3), key=lambda j: (lls[j], -j)) in ex.answers))
        expected_norm.append(float(max(range(3), key=lambda j: (lls[j] / len(ex.choices[j]), -j)) in ex.answers))
        expected_ppl.append(float(min(range(3), key=lambda j: (ref[j][1], j)) in ex.answers))
    assert out.n == 9
    assert out.metrics["acc"] == pytest.approx(sum(expected_acc) / 9)
    assert out.metrics["acc_norm"] == pytest.approx(sum(expected_norm) / 9)
    assert out.metrics["acc_ppl"] == pytest.approx(sum(expected_ppl) / 9)
    # per-example outcomes, in split order: the primary metric as `correct`, and the log-likelihood margin
    assert [o["id"] for o in out.outcomes] == sorted(ex.id for ex in examples)
    assert [o["correct"] for o in out.outcomes] == expected_acc
    assert [o["metrics"]["acc_ppl"] for o in out.outcomes] == expected_ppl
    for o, sample in zip(out.outcomes, out.samples, strict=True):
        right = sample["logliks"][sample["answers"][0]]
        assert o["score"] == pytest.approx(right - max(v for j, v in enumerate(sample["logliks"])
                                                       if j not in sample["answers"]))


def test_batched_generation_equals_one_by_one(tiny):
    model, tok = tiny.model, tiny.tokenizer
    spec = GenerationSpec(max_new_tokens=6, stop=())
    prompts = ["a", "a much longer prompt here", "mid prompt"]
    batched = generate_greedy(model, tok, prompts, spec)
    single = [generate_greedy(model, tok, [p], spec)[0] for p in prompts]
    assert batched == single


def test_generation_task_exact_match_uses_extraction(tiny):
    model, tok = tiny.model, tiny.tokenizer
    spec = GenerationSpec(max_new_tokens=4, stop=(), answer_regex=None)
    prompts = ["1 2 3", "x y z"]
    outputs = generate_greedy(model, tok, prompts, spec)
    # targets equal to the model's own greedy output must score 1, others 0
    examples = [Example(id="a", body=prompts[0], targets=(outputs[0].strip(),)),
                Example(id="b", body=prompts[1], targets=("definitely not generated",))]
    task = Task(name="gen", kind="generation", examples=examples, metric="exact_match", generation=spec)
    out = evaluate(model, tok, task, split="test", progress=False, batch_size=2)
    expected = 0.5 if outputs[0].strip() else 0.0
    assert out.metrics["exact_match"] == expected
    assert [(o["id"], o["correct"], o["score"]) for o in out.outcomes] == [("a", expected * 2, None), ("b", 0.0, None)]
