"""Metrics as pure functions over per-example scores.

Multiple choice (one pass gives all three):
    acc       argmax of the summed log-likelihood of each choice continuation (lm-evaluation-harness `acc`)
    acc_norm  argmax of log-likelihood / len(choice in characters) (lm-evaluation-harness `acc_norm`)
    acc_ppl   argmin of the mean per-token negative log-likelihood of prompt+choice (OpenCompass PPLInferencer)
Ties go to the first choice, as `numpy.argmax` does. An example with several correct choices counts as
correct when the prediction is any of them.

Generation:
    exact_match         extracted answer equals any target after normalisation
    exact_match_strict  same with the task's strict extraction (GSM8K "#### N"), when it has one
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

MC_METRICS = ("acc", "acc_norm", "acc_ppl")


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
