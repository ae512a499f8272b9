"""The evaluation protocol: one function from (model, task, split) to metrics, and the result record."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from loralab.data.bigbench import BigBenchRule, BigBenchTask, bigbench_rule
from loralab.data.schema import Example, Task
from loralab.eval.chat import answer_turn, render_chat
from loralab.eval.generate import generate_bigbench, generate_greedy
from loralab.eval.loglik import LoglikScorer
from loralab.eval.metrics import (
    aggregate,
    bigbench_postprocess,
    exact_match,
    exact_str_match,
    extract_answer,
    mc_predictions,
    mc_scores,
)
from loralab.eval.packing import EvalStats
from loralab.utils.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class EvalOutput:
    """Metrics of one task split, optionally one record per example, and (multiple choice) what the scorer
    pushed through the model (`scoring.rows`) against the minimum (`scoring.min_rows`).

    `outcomes` is always filled, one small record per scored example in split order, so that two
    configurations can be compared example by example (paired statistics need per-example outcomes,
    not only the means): `{"id": example id, "correct": the primary metric's value (0/1), "metrics":
    every per-example metric value, "score": a continuous score or None}`. For multiple choice the
    score is the log-likelihood margin of the correct answer: the highest summed log-likelihood among
    the correct choices minus the highest among the wrong ones (> 0 when `acc` is right, bar exact
    ties; None when every choice is correct); generation has no such score (None).
    """

    metrics: dict[str, float]
    n: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    scoring: EvalStats | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)


def evaluate(
    model: torch.nn.Module,
    tokenizer,
    task: Task,
    *,
    split: str = "test",
    limit: int | None = None,
    num_fewshot: int = 0,
    batch_size: int = 8,
    log_samples: bool = False,
    progress: bool = True,
    scorer_options: Mapping[str, Any] | None = None,
    apply_chat_template: bool = False,
) -> EvalOutput:
    """Score `model` on the first `limit` examples (by id) of `task`'s `split`.

    Multiple choice gives `acc`, `acc_norm` and `acc_ppl` in one pass; generation gives `exact_match`
    (and `exact_match_strict` when the task defines a strict extraction; BIG-bench tasks add BIG-bench's
    unstripped `exact_str_match` and are postprocessed as BIG-bench does). Every metric comes with
    `<metric>_stderr`. `batch_size`: multiple choice: questions per forward pass at most (each question's
    prompt and choices packed into one row, rows of similar length together, at most 2048 padded tokens per
    forward; see `loralab.eval.loglik`); generation: prompts per batch. `scorer_options`: keyword arguments of
    `LoglikScorer` (`pack=False`: the KV-cache batching; `max_batch_tokens`). `apply_chat_template`: each prompt
    is a user turn in the tokenizer's chat template, the answer the assistant's (`loralab.eval.chat`; a
    tokenizer without a template is a `UserInputError`). `log_samples`: `EvalOutput.samples` holds, per example,
    the prompt as scored, the choices or targets, and the model's choice scores or output (see `_eval_mc`).
    """
    examples = task.split(split, limit)
    prompts = [task.prompt(ex, task.fewshot_examples(ex, num_fewshot)) for ex in examples]
    if apply_chat_template:
        prompts = render_chat(tokenizer, prompts, f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r}")
        if task.kind == "multiple_choice":  # the answer starts the assistant's turn (as lm-eval's chat scoring)
            examples = [ex.replace(choices=answer_turn(ex.choices)) for ex in examples]
    model.eval()
    scoring = None
    if task.kind == "multiple_choice":
        scorer = LoglikScorer(model, tokenizer, **(scorer_options or {}))
        per_example, samples = _eval_mc(scorer, examples, prompts, batch_size, progress)
        scoring = scorer.stats
        margins = [_margin(s["logliks"], ex.answers) for s, ex in zip(samples, examples, strict=True)]
    else:
        per_example, samples = _eval_generation(model, tokenizer, task, examples, prompts, batch_size, progress)
        margins = [None] * len(examples)
    outcomes = [{"id": ex.id, "correct": scores[task.metric], "metrics": scores, "score": margin}
                for ex, scores, margin in zip(examples, per_example, margins, strict=True)]
    return EvalOutput(metrics=aggregate(per_example), n=len(examples), samples=samples if log_samples else [],
                      scoring=scoring, outcomes=outcomes)


def _margin(logliks: Sequence[float], answers: Sequence[int]) -> float | None:
    """Best correct choice's log-likelihood minus the best wrong one's (None when no choice is wrong)."""
    wrong = [ll for i, ll in enumerate(logliks) if i not in answers]
    if not wrong:
        return None
    return float(max(logliks[i] for i in answers) - max(wrong))


def _eval_mc(scorer: LoglikScorer, examples: Sequence[Example], prompts: Sequence[str], batch_size: int,
             progress: bool):
    per_example, samples = [], []
    # the whole split at once: the scorer groups questions of similar length across all of it (less padding)
    with progress_bar(len(examples), "scoring choices", progress) as advance:
        all_scores = scorer.score_many([(p, ex.choices) for ex, p in zip(examples, prompts)], batch_size, advance)
    for ex, prompt, scores in zip(examples, prompts, all_scores):
        preds = mc_predictions(scores.logliks, ex.choices, scores.mean_nlls)
        per_example.append(mc_scores(preds, ex.answers))
        # as lm-eval's samples: what was scored (prompt, each choice), the target, the model's scores and choice
        samples.append({"id": ex.id, "prompt": prompt, "choices": list(ex.choices), "answers": list(ex.answers),
                        "targets": [ex.choices[i] for i in ex.answers], "predictions": preds,
                        "logliks": scores.logliks, "mean_nlls": scores.mean_nlls, **per_example[-1]})
    return per_example, samples


def _eval_generation(model, tokenizer, task: Task, examples: Sequence[Example], prompts: Sequence[str],
                     batch_size: int, progress: bool):
    spec = task.generation
    # Each example's own rule (a union's subtasks differ), checked before any generation.
    rules = [bigbench_rule(task, ex) for ex in examples]
    with_str_match = isinstance(task, BigBenchTask) or any(rule is not None for rule in rules)
    per_example: list[dict[str, float] | None] = [None] * len(examples)
    samples: list[dict[str, Any] | None] = [None] * len(examples)
    # BIG-bench rows decode with per-row stop strings and GenerationSpec rows with the task's, so the
    # two never share a batch; within each group the order (by id) is kept.
    groups = [[i for i, r in enumerate(rules) if r is not None], [i for i, r in enumerate(rules) if r is None]]
    with progress_bar(len(examples), "generating", progress) as advance:
        for group in groups:
            for start in range(0, len(group), batch_size):
                rows = group[start:start + batch_size]
                batch_prompts = [prompts[i] for i in rows]
                if rules[rows[0]] is not None:
                    stops = [rules[i].stop_string for i in rows]  # type: ignore[union-attr]
                    outputs = generate_bigbench(model, tokenizer, batch_prompts, stops, spec.max_new_tokens)
                else:
                    outputs = generate_greedy(model, tokenizer, batch_prompts, spec)
                for i, text in zip(rows, outputs):
                    scores, answer = _score_generation(task, examples[i], rules[i], text, with_str_match)
                    per_example[i] = scores
                    samples[i] = {"id": examples[i].id, "prompt": prompts[i], "targets": list(examples[i].targets),
                                  "output": text, "answer": answer, **scores}
                advance(len(rows))
    # Every row was filled by its group; the comprehensions only narrow the type.
    return [p for p in per_example if p is not None], [r for r in samples if r is not None]


def _score_generation(task: Task, ex: Example, rule: BigBenchRule | None, text: str,
                      with_str_match: bool) -> tuple[dict[str, float], str]:
    """Per-example generation metrics and the extracted answer."""
    spec = task.generation
    if rule is not None:
        answer = bigbench_postprocess(text, rule.stop_string, rule.output_regex)
        scores = {"exact_match": exact_match(answer, ex.targets, "strip")}
    else:
        answer = extract_answer(text, spec.answer_regex, spec.answer_pick)
        scores = {"exact_match": exact_match(answer, ex.targets, spec.normalize)}
    if with_str_match:
        scores["exact_str_match"] = exact_str_match(answer, ex.targets)
    if spec.strict_regex is not None:
        strict = extract_answer(text, spec.strict_regex, "first")
        scores["exact_match_strict"] = exact_match(strict, ex.targets, spec.normalize)
    return scores, answer


def result_record(
    *,
    model_name: str,
    task: Task,
    split: str,
    output: EvalOutput,
    seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The result JSON: what was scored, the metrics, and the provenance to reproduce it."""
    from loralab.utils.env import git_hash, package_versions

    record: dict[str, Any] = {
        "model": model_name,
        "task": task.name,
        "split": split,
        "n": output.n,
        "metrics": output.metrics,
        "primary_metric": task.metric,
        "task_kind": task.kind,
        "task_source": task.source,
        **(extra or {}),
        "seconds": round(seconds, 3),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "git_hash": git_hash(),
    }
    if output.samples:
        record["samples"] = output.samples
    return record


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
