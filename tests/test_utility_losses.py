"""Tests for anonymax.utility_losses: every utility loss the oracles report, against hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anonymax import utility_losses as ul
from anonymax.types import Query

LOG2 = math.log(2.0)


# --- "vqa" ------------------------------------------------------------------------------------------


def test_vqa_loss():
  # 2 of 10 ground truths match → accuracy 0.6 → loss 0.4.
  assert ul.vqa_loss("red", ["red"] * 2 + ["blue"] * 8) == pytest.approx(0.4)
  assert ul.vqa_loss("red", ["red"] * 10) == 0.0
  with pytest.raises(ValueError, match="empty"):
    ul.vqa_loss("red", [])


# --- "nll" ------------------------------------------------------------------------------------------


def test_answer_nll():
  logp = np.log([[0.5, 0.25, 1.0], [0.5, 0.5, 0.5]])
  mask = np.array([[1, 1, 0], [1, 1, 1]])
  # Row 0: −(ln .5 + ln .25) = 3 ln 2 over 2 tokens; row 1: 3 ln 2 over 3 tokens.
  np.testing.assert_allclose(ul.answer_nll(logp, mask), [1.5 * LOG2, LOG2])
  np.testing.assert_allclose(ul.answer_nll(logp, mask, reduction="sum"), [3 * LOG2] * 2)
  assert float(ul.answer_nll(np.log([0.5, 0.5]))) == pytest.approx(LOG2)
  # A padding token of probability 0 (log p = −inf) is masked out, not turned into nan.
  padded = np.array([[math.log(0.5), -math.inf]])
  np.testing.assert_allclose(ul.answer_nll(padded, [[1, 0]]), [LOG2])


def test_answer_nll_bad_inputs():
  with pytest.raises(ValueError, match="reduction"):
    ul.answer_nll([[0.0]], reduction="max")
  with pytest.raises(ValueError, match="shape"):
    ul.answer_nll([[0.0, 0.0]], [[1]])
  with pytest.raises(ValueError, match="no answer token"):
    ul.answer_nll([[0.0, 0.0]], [[0, 0]])
  with pytest.raises(ValueError, match="scalar"):
    ul.answer_nll(0.0)


def test_floored_log_probs():
  logp = np.log([0.5, 0.25, 1e-9])
  got = ul.floored_log_probs(logp, [1, -1, 2, 0])
  # id -1 (outside the vocabulary) and p = 1e-9 < 1e-6 both score at the floor log 1e-6.
  np.testing.assert_allclose(got, [math.log(0.25), math.log(1e-6), math.log(1e-6), math.log(0.5)])
  assert ul.LOG_PROB_FLOOR == pytest.approx(math.log(1e-6))
  np.testing.assert_array_equal(ul.floored_log_probs(logp, [2], floor=-math.inf), [logp[2]])
  assert math.isnan(ul.floored_log_probs(np.array([math.nan]), [0])[0])  # NaN is not hidden
  assert ul.floored_log_probs(logp, []).shape == (0,)


def test_expected_nll_by_hand():
  # Ten answers: 6 × "red" (p = .5), 4 × "green" (p = .25): −(.6 ln .5 + .4 ln .25) = 1.4 ln 2.
  assert ul.expected_nll(np.log([0.5, 0.25]), [0.6, 0.4]) == pytest.approx(1.4 * LOG2)
  # Per token: ℓ = ln .25 over 2 tokens and ln .5 over 1, halves: −(½ · ln .25 / 2 + ½ · ln .5).
  got = ul.expected_nll(np.log([0.25, 0.5]), [0.5, 0.5], lengths=[2, 1])
  assert got == pytest.approx(LOG2)
  assert ul.expected_nll([], []) == 0.0
  with pytest.raises(ValueError, match="2 log-likelihoods but 1 weights"):
    ul.expected_nll([0.0, 0.0], [1.0])


def test_answer_weights_frequency_most_common_and_keys():
  answers = ["red", "Red", "blue", "red", " ", "green"]
  assert ul.answer_weights(answers) == {
    "red": 2 / 6,
    "Red": 1 / 6,
    "blue": 1 / 6,
    " ": 1 / 6,
    "green": 1 / 6,
  }
  # A key merges spellings and leaves out the answers it maps to None (of the count too).
  norm = ul.answer_weights(answers, key=lambda a: a.strip().lower() or None)
  assert norm == {"red": 3 / 5, "blue": 1 / 5, "green": 1 / 5}
  assert list(norm) == ["red", "blue", "green"]  # in the order first met
  # A vocabulary id per answer, -1 outside it: the reference oracle's weights.
  index = {"a": 0, "b": 1}
  assert ul.answer_weights(["a", "b", "zzz", "a"], key=lambda a: index.get(a, -1)) == {
    0: 0.5,
    1: 0.25,
    -1: 0.25,
  }
  assert ul.answer_weights(["x", "y", "y"], weighting="most_common") == {"y": 1.0}
  assert ul.answer_weights(["x", "y"], weighting="most_common") == {"x": 1.0}  # tie: first met
  assert ul.answer_weights([" "], key=lambda a: a.strip() or None) == {}
  with pytest.raises(ValueError, match="answer_weighting"):
    ul.answer_weights(["x"], weighting="median")


# --- "choice" ---------------------------------------------------------------------------------------


def test_choice_nll():
  # Already normalised scores: −ln p(correct).
  scores = np.log([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
  np.testing.assert_allclose(ul.choice_nll(scores, [2, 0]), [LOG2, -math.log(0.2)])
  # Unnormalised scores are renormalised over the options: two equal scores → ln 2.
  assert float(ul.choice_nll([5.0, 5.0], 1)) == pytest.approx(LOG2)
  # An option missing from the returned log-probs (−inf) takes no mass.
  assert float(ul.choice_nll([-1.0, -math.inf], 0)) == pytest.approx(0.0)
  assert float(ul.choice_nll([-1.0, -math.inf], 1)) == math.inf


@pytest.mark.parametrize(
  "scores, correct",
  [
    ([0.0], 0),  # one option
    ([0.0, 1.0], 2),  # index out of range
    ([0.0, 1.0], -1),
    ([0.0, 1.0], 0.5),  # not an integer
    ([[0.0, 1.0]], [0, 1]),  # batch shape mismatch
    ([-math.inf, -math.inf], 0),  # no finite score
    ([math.nan, 0.0], 0),
    ([math.inf, 0.0], 0),
  ],
)
def test_choice_nll_bad_inputs(scores, correct):
  with pytest.raises(ValueError):
    ul.choice_nll(scores, correct)


def test_floored_choice_nll_by_hand():
  # p = (.25, .125) among the options: −ln(.25 / .375) = ln 1.5.
  assert ul.floored_choice_nll(np.log([0.25, 0.125]), 0) == pytest.approx(math.log(1.5))
  # An option below the floor counts at the floor: −ln(1e-6 / (.5 + 1e-6)).
  got = ul.floored_choice_nll([math.log(1e-12), math.log(0.5)], 0)
  assert got == pytest.approx(-math.log(1e-6 / (0.5 + 1e-6)))
  # Whole-sequence log-likelihoods, no floor: the plain −log softmax.
  ll = [-30.0, -31.0]
  assert ul.floored_choice_nll(ll, 1, floor=-math.inf) == pytest.approx(
    math.log(math.exp(-30.0) + math.exp(-31.0)) + 31.0
  )
  assert ul.floored_choice_nll([-3.0], 0) == 0.0  # one option: all the mass
  assert math.isnan(ul.floored_choice_nll([math.nan, 0.0], 1))  # one bad sample, no exception


def test_first_token_choice_nll_normalises_over_the_options():
  top = [("Yes", math.log(0.6)), ("No", math.log(0.3)), (" maybe", math.log(0.1))]
  # m_yes = 0.6, m_no = 0.3 ("maybe" is no option): −log(0.3 / 0.9) = log 3.
  assert ul.first_token_choice_nll(top, ("yes", "no"), "no") == pytest.approx(math.log(3.0))


def test_first_token_choice_nll_shares_an_ambiguous_token_and_ignores_blank_ones():
  top = [("b", math.log(0.4)), (" bike", math.log(0.2)), (" ", math.log(0.3))]
  # "b" begins both options: 0.2 each; "bike": m_bike = 0.4, m_boat = 0.2 → −log(0.2/0.6).
  assert ul.first_token_choice_nll(top, ("bike", "boat"), "boat") == pytest.approx(math.log(3.0))


def test_first_token_choice_nll_floors_an_absent_option():
  top = [("cat", math.log(0.9))]
  expected = 20.0 + math.log(0.9 + math.exp(-20.0))  # −log(e^-20 / (0.9 + e^-20))
  got = ul.first_token_choice_nll(top, ("dog", "cat"), "dog", floor_logprob=-20.0)
  assert got == pytest.approx(expected)
  # No option seen at all: uniform, log K.
  got = ul.first_token_choice_nll([("zebra", -0.1)], ("a1", "b1", "c1"), "b1")
  assert got == pytest.approx(math.log(3))
  with pytest.raises(ValueError, match="not among the choices"):
    ul.first_token_choice_nll(top, ("dog", "cat"), "cow")


def test_majority_choice_and_correct_choice():
  q = Query("How many?", ("2", "two", "two", "three", "two"), ("one", "two", "three"))
  assert ul.majority_choice(q.answers, q.choices) == 1
  assert ul.correct_choice(q) == "two"  # "2" is not an option; "two" outvotes "three"
  tie = Query("?", ("three", "two"), ("two", "three"))
  assert ul.correct_choice(tie) == "three"  # a tie goes to the answer met first
  assert ul.majority_choice(tie.answers, tie.choices) == 1
  assert ul.correct_choice(Query("?", ("blue",), ("red",))) is None
  assert ul.majority_choice(("blue",), ("red",)) == -1
  assert ul.majority_choice(("a",), ()) == -1  # no choices at all
