"""One evaluation protocol: multiple choice by log-likelihood and perplexity, generation with extraction."""

from loralab.eval.evaluator import EvalOutput, evaluate, result_record
from loralab.eval.loglik import ChoiceScores, LoglikScorer
from loralab.eval.metrics import aggregate, exact_match, extract_answer, mc_predictions
from loralab.eval.packing import EvalStats

__all__ = ["ChoiceScores", "EvalOutput", "EvalStats", "LoglikScorer", "aggregate", "evaluate", "exact_match",
           "extract_answer", "mc_predictions", "result_record"]
