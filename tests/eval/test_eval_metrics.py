"""Every metric on hand-computed cases."""

import math

import pytest

from loralab.eval.metrics import (
    aggregate,
    argmax_first,
    cut_at_stop,
    exact_match,
    extract_answer,
    mc_predictions,
    mc_scores,
    mean_stderr,
    normalize,
)


def test_mc_predictions_three_ways_disagree_by_design():
    # choice 0: loglik -4 over 2 chars (-2/char); choice 1: loglik -3 over 1 char (-3/char)
    # mean NLL of prompt+choice: choice 0 has the lower one
    preds = mc_predictions([-4.0, -3.0], ["ab", "c"], [1.0, 2.0])
    assert preds == {"acc": 1, "acc_norm": 0, "acc_ppl": 0}
    assert mc_scores(preds, [0]) == {"acc": 0.0, "acc_norm": 1.0, "acc_ppl": 1.0}


def test_mc_several_correct_answers_count_any():
    assert mc_scores({"acc": 2}, [1, 2]) == {"acc": 1.0}
    assert mc_scores({"acc": 0}, [1, 2]) == {"acc": 0.0}


def test_ties_go_to_first_choice_like_numpy_argmax():
    assert argmax_first([1.0, 3.0, 3.0]) == 1
    assert mc_predictions([-1.0, -1.0], ["a", "b"], [2.0, 2.0]) == {"acc": 0, "acc_norm": 0, "acc_ppl": 0}


def test_mc_predictions_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        mc_predictions([-1.0], ["a", "b"], [1.0, 1.0])


@pytest.mark.parametrize(
    "text, regex, pick, expected",
    [
        (" 681\nQ: next", r"[-+]?\d+", "first", "681"),
        ("Paris. It is big", r"[^\.\?\!\;\n]+", "first", "Paris"),
        ("no digits", r"\d+", "first", ""),
        ("so 3 + 4 = 7 and then 12", r"(-?[$0-9.,]{2,})|(-?[0-9]+)", "last", "12"),
        ("total $1,234.", r"(-?[$0-9.,]{2,})|(-?[0-9]+)", "last", "$1,234."),
        ("blah #### 42", r"#### (\-?[0-9\.\,]+)", "first", "42"),
        ("keep all", None, "first", "keep all"),
    ],
)
def test_extract_answer(text, regex, pick, expected):
    assert extract_answer(text, regex, pick) == expected


def test_cut_at_stop_takes_earliest():
    assert cut_at_stop("a Question: b\n\nc", ["\n\n", "Question:"]) == "a "
    assert cut_at_stop("abc", []) == "abc"


@pytest.mark.parametrize(
    "pred, targets, mode, expected",
    [
        (" 681 ", ["681"], "strip", 1.0),
        ("681", ["68"], "strip", 0.0),
        ("Paris", ["paris"], "strip", 0.0),
        ("$1,234.", ["1234"], "number", 1.0),
        ("1234", ["1,234"], "number", 1.0),
        ("x", ["a", "x"], "strip", 1.0),
    ],
)
def test_exact_match(pred, targets, mode, expected):
    assert exact_match(pred, targets, mode) == expected


def test_normalize_number():
    assert normalize(" $3,000. ", "number") == "3000"


def test_mean_stderr_hand_computed():
    mean, se = mean_stderr([1.0, 0.0, 1.0, 1.0])
    assert mean == 0.75
    # sample variance = (3 * 0.0625 + 0.5625) / 3 = 0.25; se = sqrt(0.25 / 4)
    assert se == pytest.approx(0.25)
    assert math.isnan(mean_stderr([1.0])[1])


def test_aggregate_adds_stderr_per_metric():
    agg = aggregate([{"acc": 1.0, "acc_norm": 0.0}, {"acc": 0.0, "acc_norm": 0.0}])
    assert agg["acc"] == 0.5 and agg["acc_norm"] == 0.0
    assert agg["acc_stderr"] == pytest.approx(0.5)
    assert agg["acc_norm_stderr"] == 0.0
