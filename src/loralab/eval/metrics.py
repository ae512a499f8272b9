"""Metrics as pure functions over per-example scores.

Multiple choice (one pass gives all three):
    acc       argmax of the summed log-likelihood of each choice continuation (lm-evaluation-harness `acc`)
    acc_norm  argmax of log-likelihood / len(choice in characters) (lm-evaluation-harness `acc_norm`)
    acc_ppl   argmin of the mean per-token negative log-likelihood of prompt+choice (OpenCompass PPLInferencer)
Ties go to the first choice, as `numpy.argmax` does. An example with several correct choices counts as
correct when the prediction is any of them.

Generation:
    exact_match         extracted answer equals any target after normalisation (whitespace stripped on
                        both sides; GSM8K also drops `$`, `,` and a trailing `.`); the primary metric
    exact_str_match     BIG-bench's own `exact_str_match`: the postprocessed output is one of the
                        targets exactly, nothing stripped (reported for BIG-bench tasks)
    exact_match_strict  same as exact_match with the task's strict extraction (GSM8K "#### N"), when it has one

BIG-bench postprocessing (`bigbench_postprocess`, BIG-bench 1.0.0 `postprocess_output`): keep the text
up to and including the first `stop_string`, unless that string starts the text (then nothing is
cut), then take the first match of `output_regex` ("" if none). Other tasks cut *before* the earliest
stop string (`cut_at_stop`) and extract with the task's `GenerationSpec`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loralab.data import Example

MC_METRICS = ("acc", "acc_norm", "acc_ppl")


def chance_accuracy(examples: Sequence[Example]) -> float | None:
    """The accuracy a uniformly random choice is expected to score on `examples`: the mean over examples of
    correct choices / choices (several correct choices count as the metrics count them: any one is right).

    None when there is no example or one has no choices (generation has no chance level).
    """
    if not examples or any(not ex.choices for ex in examples):
        return None
    return math.fsum(len(set(ex.answers)) / len(ex.choices) for ex in examples) / len(examples)


def argmax_first(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def mc_predictions(logliks: Sequence[float], choices: Sequence[str], mean_nlls: Sequence[float]) -> dict[str, int]:
    """The choice each multiple-choice metric picks."""
    if not (len(logliks) == len(choices) == len(mean_nlls)) or not choices:
        raise ValueError(f"need one score per choice: {len(logliks)} logliks, {len(choices)} choices, {len(mean_nlls)} nlls")
    return {
        "acc": argmax_first(logliks),
        "acc_norm": argmax_first([ll / len(c) for ll, c in zip(logliks, choices)]),
        "acc_ppl": argmax_first([-x for x in mean_nlls]),
    }


def mc_scores(predictions: Mapping[str, int], answers: Sequence[int]) -> dict[str, float]:
    return {metric: float(pred in answers) for metric, pred in predictions.items()}


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]


def bigbench_postprocess(text: str, stop_string: str | None, output_regex: str | None) -> str:
    """BIG-bench's postprocessing of a generated text: keep through the first stop string unless it is at
    index 0, then the first regex match ("" when there is none)."""
    if stop_string:
        i = text.find(stop_string)
        if i > 0:
            text = text[: i + len(stop_string)]
    if output_regex:
        text = extract_answer(text, output_regex, "first")
    return text


def extract_answer(text: str, regex: str | None, pick: str = "first") -> str:
    """The first (or last) regex match in `text`; with groups, the first non-empty group. "" if none."""
    if regex is None:
        return text
    matches = re.findall(regex, text)
    if not matches:
        return ""
    match = matches[0] if pick == "first" else matches[-1]
    if isinstance(match, tuple):
        match = next((m for m in match if m), "")
    return match


def normalize(text: str, mode: str = "strip") -> str:
    text = text.strip()
    if mode == "number":
        text = text.replace(",", "").replace("$", "").strip()
        text = re.sub(r"\.$", "", text).lower()
    return text


def exact_match(prediction: str, targets: Sequence[str], mode: str = "strip") -> float:
    pred = normalize(prediction, mode)
    return float(any(pred == normalize(t, mode) for t in targets))


def exact_str_match(prediction: str, targets: Sequence[str]) -> float:
    """BIG-bench `exact_str_match`: 1.0 when `prediction` is one of `targets` exactly (no stripping)."""
    return float(prediction in targets)


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n), as lm-evaluation-harness)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to aggregate")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def aggregate(per_example: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over examples, plus `<metric>_stderr`."""
    out: dict[str, float] = {}
    for metric in per_example[0]:
        mean, se = mean_stderr([scores[metric] for scores in per_example])
        out[metric] = mean
        out[f"{metric}_stderr"] = se
    return out
