"""The evaluation protocol: one function from (model, task, split) to metrics, and the result record."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from loralab.data.schema import Example, Task
from loralab.eval.generate import generate_greedy
from loralab.eval.loglik import LoglikScorer
from loralab.eval.metrics import aggregate, exact_match, extract_answer, mc_predictions, mc_scores
from loralab.utils.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class EvalOutput:
    """Metrics of one task split, and optionally one record per example."""

    metrics: dict[str, float]
    n: int
    samples: list[dict[str, Any]] = field(default_factory=list)


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
) -> EvalOutput:
    """Score `model` on the first `limit` examples (by id) of `task`'s `split`.

    Multiple choice gives `acc`, `acc_norm` and `acc_ppl` in one pass; generation gives `exact_match`
    (and `exact_match_strict` when the task defines a strict extraction). Every metric comes with
    `<metric>_stderr`. `batch_size`: questions per forward pass (multiple choice: their prompts in one pass,
    then all their choices in one more) or prompts per generation batch.
    """
    examples = task.split(split, limit)
    prompts = [task.prompt(ex, task.fewshot_examples(ex, num_fewshot)) for ex in examples]
    model.eval()
    if task.kind == "multiple_choice":
        per_example, samples = _eval_mc(model, tokenizer, examples, prompts, batch_size, progress)
    else:
        per_example, samples = _eval_generation(model, tokenizer, task, examples, prompts, batch_size, progress)
    return EvalOutput(metrics=aggregate(per_example), n=len(examples), samples=samples if log_samples else [])


def _eval_mc(model, tokenizer, examples: Sequence[Example], prompts: Sequence[str], batch_size: int,
             progress: bool):
    scorer = LoglikScorer(model, tokenizer)
    per_example, samples = [], []
    block = max(1, batch_size) * 8  # questions handed to the scorer at once (it batches within a block)
    with progress_bar(len(examples), "scoring choices", progress) as advance:
        for start in range(0, len(examples), block):
            chunk = list(zip(examples[start:start + block], prompts[start:start + block]))
            for (ex, _), scores in zip(chunk, scorer.score_many([(p, ex.choices) for ex, p in chunk], batch_size)):
                preds = mc_predictions(scores.logliks, ex.choices, scores.mean_nlls)
                per_example.append(mc_scores(preds, ex.answers))
                samples.append({"id": ex.id, "answers": list(ex.answers), "predictions": preds,
                                "logliks": scores.logliks, "mean_nlls": scores.mean_nlls})
            advance(len(chunk))
    return per_example, samples


def _eval_generation(model, tokenizer, task: Task, examples: Sequence[Example], prompts: Sequence[str],
                     batch_size: int, progress: bool):
    spec = task.generation
    per_example, samples = [], []
    with progress_bar(len(examples), "generating", progress) as advance:
        for start in range(0, len(examples), batch_size):
            batch = examples[start:start + batch_size]
            outputs = generate_greedy(model, tokenizer, prompts[start:start + batch_size], spec)
            for ex, text in zip(batch, outputs):
                answer = extract_answer(text, spec.answer_regex, spec.answer_pick)
                scores = {"exact_match": exact_match(answer, ex.targets, spec.normalize)}
                if spec.strict_regex is not None:
                    strict = extract_answer(text, spec.strict_regex, "first")
                    scores["exact_match_strict"] = exact_match(strict, ex.targets, spec.normalize)
                per_example.append(scores)
                samples.append({"id": ex.id, "targets": list(ex.targets), "output": text, "answer": answer, **scores})
            advance(len(batch))
    return per_example, samples


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
