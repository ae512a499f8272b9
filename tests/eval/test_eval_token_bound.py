"""Token rows the multiple-choice scorer pushes through the model, against the minimum (each prompt once, each
choice once but its last token, no padding): counted exactly, within 1.15x on mixed lengths and choice counts,
and the packed rows score what one question at a time scores."""

from __future__ import annotations

import random

import pytest
import torch

from loralab.data import Example, Task
from loralab.eval import LoglikScorer, evaluate
from loralab.eval.packing import EvalStats, pack_rows, plan_batches, tree_mask_works
from loralab.models import build_tiny_model

# the tiny models' byte tokenizer: one token per ASCII character, no BOS
HAND = [("0123456789", ["abc", "defgh"]),      # prompt 10, choices 3 and 5: packed row 10 + 2 + 4 = 16
        ("abcdefghijklmn", ["x", "y", "zz"]),  # prompt 14, choices 1, 1, 2: packed row 14 + 0 + 0 + 1 = 15
        ("abcd", ["p", "q"])]                  # prompt 4, single-token choices: packed row 4


def mixed_questions(n: int = 60, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Prompts of 8-150 characters, 2-6 choices of 1-40 characters: the spread that made padding expensive."""
    rng = random.Random(seed)
    letters = "abcdefghij klmnopqrstuvwxyz"
    def text(lo: int, hi: int) -> str:
        return "".join(rng.choice(letters) for _ in range(rng.randint(lo, hi)))
    return [(f"\nQ: {text(4, 146)}\nA:", [" " + text(0, 39) for _ in range(rng.randint(2, 6))]) for _ in range(n)]


def test_row_counter_equals_hand_count():
    lm = build_tiny_model("llama", seed=0)
    scorer = LoglikScorer(lm.model, lm.tokenizer)
    assert scorer.packable
    scorer.score_many(HAND, batch_size=8)
    # longest first: 16 and 15 share a forward (32 rows <= 1.05 x 31 real), 4 alone (3 x 16 > 1.05 x 35)
    assert scorer.stats == EvalStats(questions=3, choices=7, forwards=2, rows=2 * 16 + 4, prompt_tokens=28,
                                     choice_tokens=3 + 5 + 1 + 1 + 2 + 1 + 1, choice_inputs=2 + 4 + 1)
    assert scorer.stats.min_rows == 35 and scorer.stats.ratio == pytest.approx(36 / 35)

    cached = LoglikScorer(lm.model, lm.tokenizer, pack=False)
    cached.score_many(HAND, batch_size=8)
    # KV-cache batching: the two 2-choice questions share prompts (2 x 10) and tails (4 rows x longest 4);
    # the 3-choice one runs alone: prompt 14, then 3 tails x longest 1
    assert (cached.stats.forwards, cached.stats.rows) == (4, 2 * 10 + 4 * 4 + 14 + 3 * 1)

    single = LoglikScorer(lm.model, lm.tokenizer)
    single.score(*HAND[0])
    assert (single.stats.forwards, single.stats.rows, single.stats.min_rows) == (2, 10 + 2 * 4, 16)


def test_evaluate_reports_rows_within_bound_on_mixed_lengths():
    lm = build_tiny_model("llama", seed=1)
    questions = mixed_questions()
    assert len({len(c) for _, c in questions}) == 5  # every choice count 2-6 occurs
    task = Task(name="mixed", kind="multiple_choice",
                examples=[Example(id=f"q{i:03d}", body=p, choices=tuple(c), answers=(i % len(c),))
                          for i, (p, c) in enumerate(questions)])
    out = evaluate(lm.model, lm.tokenizer, task, split="test", batch_size=8, progress=False)
    stats = out.scoring
    assert stats is not None and stats.questions == len(questions)
    assert stats.ratio <= 1.15
    assert stats.forwards < len(questions) / 2  # packing did not buy its bound by running questions alone
    cached = LoglikScorer(lm.model, lm.tokenizer, pack=False)
    cached.score_many(questions, batch_size=8)
    assert cached.stats.min_rows == stats.min_rows
    assert cached.stats.ratio > 1.15  # the fixture is one the KV-cache batching does not keep within the bound


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt", "falcon", "gpt_neox", "qwen2"])
def test_packed_scores_equal_one_question_at_a_time(arch):
    lm = build_tiny_model(arch, seed=2)
    scorer = LoglikScorer(lm.model, lm.tokenizer)
    assert scorer.packable
    questions = mixed_questions(24, seed=3) + HAND
    many = scorer.score_many(questions, batch_size=8)
    assert scorer.stats.forwards < len(questions)
    for (context, choices), batched in zip(questions, many):
        single = scorer.score(context, choices)  # prompt, then its choices on the KV cache
        assert batched.n_tokens == single.n_tokens
        assert batched.is_greedy == single.is_greedy
        assert batched.logliks == pytest.approx(single.logliks, abs=1e-4, rel=1e-5)
        assert batched.mean_nlls == pytest.approx(single.mean_nlls, abs=1e-5, rel=1e-5)


def test_packed_metrics_equal_unbatched_and_cache_paths():
    lm = build_tiny_model("gpt2", seed=4)
    questions = mixed_questions(40, seed=5)
    task = Task(name="mixed", kind="multiple_choice",
                examples=[Example(id=f"q{i:03d}", body=p, choices=tuple(c), answers=(i % len(c),))
                          for i, (p, c) in enumerate(questions)])
    packed = evaluate(lm.model, lm.tokenizer, task, split="test", batch_size=8, progress=False, log_samples=True)
    alone = evaluate(lm.model, lm.tokenizer, task, split="test", batch_size=1, progress=False, log_samples=True)
    assert packed.metrics == alone.metrics
    assert [s["predictions"] for s in packed.samples] == [s["predictions"] for s in alone.samples]
    assert alone.scoring.forwards == 2 * len(questions)
    cached = LoglikScorer(lm.model, lm.tokenizer, pack=False).score_many(questions, batch_size=8)
    for sample, scores in zip(packed.samples, cached):
        assert sample["logliks"] == pytest.approx(scores.logliks, abs=1e-4, rel=1e-5)


def test_question_longer_than_token_budget_runs_alone():
    lm = build_tiny_model("llama", seed=0)
    scorer = LoglikScorer(lm.model, lm.tokenizer, max_batch_tokens=15)
    many = scorer.score_many(HAND, batch_size=8)
    # the 16-token row exceeds the budget: prompt and tails on the KV cache (10 + 2 x 4); 15 and 4 packed apart
    # (2 x 15 > 15)
    assert (scorer.stats.forwards, scorer.stats.rows) == (4, 10 + 2 * 4 + 15 + 4)
    for (context, choices), batched in zip(HAND, many):
        assert batched.logliks == pytest.approx(scorer.score(context, choices).logliks, abs=1e-4, rel=1e-5)


def test_mask_probe_rejects_a_model_that_ignores_the_mask():
    lm = build_tiny_model("llama", seed=0)
    vocab = lm.model.config.vocab_size
    honours = lambda ids, mask, pos: lm.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits  # noqa: E731
    ignores = lambda ids, mask, pos: lm.model(input_ids=ids, position_ids=pos).logits  # noqa: E731
    no_positions = lambda ids, mask, pos: lm.model(input_ids=ids, attention_mask=mask).logits  # noqa: E731
    with torch.no_grad():
        assert tree_mask_works(honours, torch.float32, torch.device("cpu"), vocab)
        assert not tree_mask_works(ignores, torch.float32, torch.device("cpu"), vocab)
        assert not tree_mask_works(no_positions, torch.float32, torch.device("cpu"), vocab)
    assert not LoglikScorer(build_tiny_model("mpt").model, lm.tokenizer).packable  # ALiBi, no position ids


def test_tree_mask_layout():
    batch = pack_rows([([7, 8], [[1, 2, 3], [4]]), ([9], [[5, 6]])], pad_id=0, dtype=torch.float32,
                      device=torch.device("cpu"))
    assert batch.input_ids.tolist() == [[7, 8, 1, 2], [9, 5, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 0, 0]]
    allowed = (batch.attention_mask[:, 0] == 0).int().tolist()
    assert allowed[0] == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]  # choice 2 ("4") has no tail
    assert allowed[1] == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 1]]  # padding sees prompt + padding
    # prompt 7 -> 8; choice [1, 2, 3]: 8 -> 1, 1 -> 2, 2 -> 3; choice [4]: 8 -> 4; then 9 -> 5, 5 -> 6
    assert batch.pred_rows.tolist() == [0, 1, 2, 3, 1, 4, 5]
    assert batch.targets.tolist() == [8, 1, 2, 3, 4, 5, 6]
    assert batch.ctx_spans == [(0, 1), (5, 5)] and batch.choice_spans == [[(1, 4), (4, 5)], [(5, 7)]]


def test_plan_batches_keeps_caps_and_padding_bound():
    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(1, 30), rng.randint(100, 900)]) for _ in range(300)]
    batches = plan_batches(lengths, max_questions=8, max_tokens=2048, slack=0.05)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    padded = 0
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 8 and (len(b) == 1 or len(b) * width <= 2048)
        assert len(b) * width <= 1.05 * sum(lengths[i] for i in b)
        padded += len(b) * width
    assert padded <= 1.05 * sum(lengths)
    assert plan_batches([5000, 3], 8, 2048) == [[0], [1]]  # longer than the budget: a forward of its own
