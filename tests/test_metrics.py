"""Tests for anonymax.metrics: VQA accuracy rules, cMAP against sklearn, Top-1, class matching."""

from __future__ import annotations

import numpy as np
import pytest

from anonymax import metrics

# --- VQA accuracy: leave-one-out averaging --------------------------------------------------------


@pytest.mark.parametrize(
  "n_match, expected",
  [
    # k of 10 match: k subsets (a match left out) see k−1 matches, 10−k subsets see k.
    (0, 0.0),
    (1, (1 * 0.0 + 9 * (1 / 3)) / 10),  # 0.3
    (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # 0.6
    (3, (3 * (2 / 3) + 7 * 1.0) / 10),  # 0.9
    (4, 1.0),
    (10, 1.0),
  ],
)
def test_vqa_leave_one_out_averaging(n_match, expected):
  answers = ["cat"] * n_match + ["dog", "bird", "fish", "cow", "pig"] * 2
  answers = answers[:10]
  assert answers.count("cat") == n_match
  assert metrics.vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_vqa_two_of_ten_is_point_six():
  answers = ["red", "red"] + ["blue"] * 8
  assert metrics.vqa_accuracy("red", answers) == pytest.approx(0.6)


def test_vqa_fewer_than_ten_answers():
  # 4 answers, 3 match: leaving out a match → 2/3 (three times), leaving out "dog" → 1.
  assert metrics.vqa_accuracy("cat", ["cat", "cat", "dog", "cat"]) == pytest.approx(0.75)
  # Two identical answers: each leave-one-out subset has one match → 1/3.
  assert metrics.vqa_accuracy("cat", ["cat", "cat"]) == pytest.approx(1 / 3)
  # A single answer is scored as if all ten annotators gave it.
  assert metrics.vqa_accuracy("cat", ["cat"]) == 1.0
  assert metrics.vqa_accuracy("dog", ["cat"]) == 0.0


# --- VQA accuracy: normalisation rules ------------------------------------------------------------

_DISAGREE = ["zebra"] * 7  # padding that makes the ground truths not all identical


@pytest.mark.parametrize(
  "prediction, gt",
  [
    ("Two", "2"),  # number word → digit, lower-case
    ("Two.", "2"),  # trailing period removed
    ("none", "0"),
    ("a dog", "dog"),  # articles removed
    ("The Dog", "dog"),
    ("dont know", "don't know"),  # contractions restored
    ("Yes!", "yes"),  # "!" replaced by a space, then words re-joined
    ("black/white", "black white"),
    ("black / white", "black white"),  # punctuation next to a space is deleted
    ("t-shirt", "t shirt"),
    ("1,000", "1000"),  # comma between digits: punctuation deleted, not spaced
    ("  cat\n", "cat"),  # whitespace stripped
  ],
)
def test_vqa_normalisation_when_answers_disagree(prediction, gt):
  # 3 matching ground truths out of 10 → 0.9 when the prediction normalises to `gt`.
  answers = [gt] * 3 + _DISAGREE
  assert metrics.vqa_accuracy(prediction, answers) == pytest.approx(0.9)


def test_vqa_ground_truths_are_normalised_too():
  # "Two!" and "two" become "2"; the prediction "2" then matches 3 of them.
  answers = ["Two!", "two", "2"] + _DISAGREE
  assert metrics.vqa_accuracy("2", answers) == pytest.approx(0.9)


def test_vqa_decimal_point_kept():
  answers = ["3.5"] * 3 + _DISAGREE
  assert metrics.vqa_accuracy("3.5", answers) == pytest.approx(0.9)
  assert metrics.vqa_accuracy("35", answers) == 0.0


def test_vqa_identical_answers_are_not_normalised():
  answers = ["yes"] * 10
  assert metrics.vqa_accuracy("yes", answers) == 1.0
  assert metrics.vqa_accuracy(" yes\t", answers) == 1.0  # only whitespace is stripped
  # Neither side is normalised: case, punctuation and number words must match verbatim.
  assert metrics.vqa_accuracy("Yes", answers) == 0.0
  assert metrics.vqa_accuracy("yes.", answers) == 0.0
  assert metrics.vqa_accuracy("two", ["2"] * 10) == 0.0
  # ...whereas one disagreeing annotator switches normalisation on for both sides.
  assert metrics.vqa_accuracy("two", ["2"] * 9 + ["3"]) == 1.0


def test_normalize_answer():
  assert metrics.normalize_answer("Two dogs!") == "2 dogs"
  assert metrics.normalize_answer("The cat's toy.") == "cat's toy"
  assert metrics.normalize_answer("isnt it") == "isn't it"


def test_vqa_periods_removed_at_most_32_times():
  # The scorer passes re.UNICODE (32) as `sub`'s count: the 33rd period survives.
  text = ". " * 33 + "x"
  assert metrics.normalize_answer(text) == ". x"


@pytest.mark.parametrize(
  "prediction, answers",
  [("cat", []), ("cat", "cat"), ("cat", ["cat", 3]), (None, ["cat"]), (1, ["1"])],
)
def test_vqa_bad_inputs(prediction, answers):
  with pytest.raises(ValueError):
    metrics.vqa_accuracy(prediction, answers)


# --- Average precision and cMAP -------------------------------------------------------------------


def test_average_precision_by_hand():
  # Thresholds 0.9, 0.8, 0.7, 0.1: (P, R) = (1, .5), (.5, .5), (2/3, 1), (.5, 1).
  # AP = .5·1 + 0·.5 + .5·(2/3) + 0·.5 = 5/6.
  ap = metrics.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
  assert ap == pytest.approx(5 / 6)


def test_average_precision_ties_form_one_threshold():
  # Scores (.5, .5) tie: one threshold with P = 1/2, R = 1/2; then .2 gives P = 2/3, R = 1.
  # AP = .5·.5 + .5·(2/3) = 7/12 whichever order the tied pair is in.
  assert metrics.average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(7 / 12)
  assert metrics.average_precision([0, 1, 1], [0.5, 0.5, 0.2]) == pytest.approx(7 / 12)


def test_cmap_skips_class_without_positive():
  y_true = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 0]])
  y_score = np.array([[0.9, 0.3, 0.95], [0.8, 0.1, 0.9], [0.1, 0.5, 0.4]])
  # Class 0: ranking (.9 +), (.8 −), (.1 +) → 1·.5 + (2/3)·.5 = 5/6.
  # Class 2: ranking (.95 +), (.9 +), (.4 −) → AP = 1.
  # Class 1 has no positive and is left out: cMAP = (5/6 + 1) / 2, not divided by 3.
  assert metrics.cmap(y_true, y_score) == pytest.approx((5 / 6 + 1.0) / 2)


def test_cmap_perfect_and_reversed_ranking():
  y_true = np.array([[1], [1], [0], [0]])
  assert metrics.cmap(y_true, np.array([[4.0], [3.0], [2.0], [1.0]])) == 1.0
  # Reversed: positives last → thresholds give P = 1/3 at R = 1/2 and 1/2 at R = 1.
  reversed_ap = 0.5 * (1 / 3) + 0.5 * (2 / 4)
  assert metrics.cmap(y_true, np.array([[1.0], [2.0], [3.0], [4.0]])) == pytest.approx(reversed_ap)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cmap_matches_sklearn_with_ties(seed):
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(seed)
  y_true = (rng.random((60, 7)) < 0.3).astype(np.int64)
  y_true[:, 3] = 0  # a class with no positive
  y_true[0, 5] = 1  # and make sure every other class has one
  y_true[:, 6] = 1  # a class that is all positive (AP = 1)
  y_score = np.round(rng.random((60, 7)), 1)  # one decimal: many ties
  present = [c for c in range(7) if y_true[:, c].any()]
  expected = np.mean(
    [sklearn_metrics.average_precision_score(y_true[:, c], y_score[:, c]) for c in present]
  )
  assert metrics.cmap(y_true, y_score) == pytest.approx(expected, abs=1e-12)
  for c in present:
    assert metrics.average_precision(y_true[:, c], y_score[:, c]) == pytest.approx(
      sklearn_metrics.average_precision_score(y_true[:, c], y_score[:, c]), abs=1e-12
    )


def test_cmap_accepts_bool_labels_and_logits():
  y_true = np.array([[True], [False], [True], [False]])
  logits = np.array([[3.0], [2.0], [1.0], [-5.0]])
  assert metrics.cmap(y_true, logits) == pytest.approx(5 / 6)


@pytest.mark.parametrize(
  "y_true, y_score, message",
  [
    (np.array([1, 0]), np.array([0.5, 0.2]), "2-D"),
    (np.ones((3, 2)), np.ones((3, 3)), "shape"),
    (np.zeros((3, 2)), np.ones((3, 2)), "no positive"),
    (np.full((3, 2), 2), np.ones((3, 2)), "binary"),
    (np.ones((3, 2)), np.array([[0.1, np.nan]] * 3), "non-finite"),
  ],
)
def test_cmap_bad_inputs(y_true, y_score, message):
  with pytest.raises(ValueError, match=message):
    metrics.cmap(y_true, y_score)


def test_average_precision_no_positive():
  with pytest.raises(ValueError, match="no positive"):
    metrics.average_precision([0, 0], [0.1, 0.2])


# --- Top-1 and class-name matching ----------------------------------------------------------------


def test_top1_accuracy():
  # Matches at 0 and 1; the −1 (no class matched) counts as wrong.
  assert metrics.top1_accuracy([0, 1, 2, -1], [0, 1, 1, 3]) == 0.5
  assert metrics.top1_accuracy(np.array([4]), np.array([4])) == 1.0


@pytest.mark.parametrize(
  "pred, labels",
  [([0, 1], [0]), ([], []), ([0.0, 1.0], [0, 1]), ([[0]], [[0]])],
)
def test_top1_bad_inputs(pred, labels):
  with pytest.raises(ValueError):
    metrics.top1_accuracy(pred, labels)


_UCF = ["ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling"]
_HMDB = ["ride_horse", "ride_bike", "run", "walk", "sit", "ride"]


def test_normalize_class_name():
  assert metrics.normalize_class_name("ApplyEyeMakeup") == "apply eye makeup"
  assert metrics.normalize_class_name("brush_hair") == "brush hair"
  assert metrics.normalize_class_name("  Brush hair. ") == "brush hair"
  assert metrics.normalize_class_name("YoYo") == "yo yo"


@pytest.mark.parametrize(
  "answer, names, expected",
  [
    ("Apply lipstick.", _UCF, 1),  # UCF101 CamelCase names
    ("The action is: ARCHERY", _UCF, 2),
    ("baby crawling", _UCF, 3),
    ("The person is applying lipstick", _UCF, -1),  # no stemming
    ("ride_horse", _HMDB, 0),  # exact
    ("I think they ride horse and walk", _HMDB, 0),  # longest name wins over "walk"/"ride"
    ("walk or ride horse", _HMDB, 0),  # length before position
    ("ride", _HMDB, 5),  # exact match of the shorter name
    ("running", _HMDB, -1),  # whole words only: "run" is not in "running"
    ("sit, then run", _HMDB, 4),  # equal lengths: earliest in the answer wins
    ("run or sit", _HMDB, 2),
    ("dance", _HMDB, -1),
    ("", _HMDB, -1),
    ("run", ["Run", "run"], 0),  # same normalised name: lowest index wins
  ],
)
def test_match_class_name(answer, names, expected):
  assert metrics.match_class_name(answer, names) == expected


@pytest.mark.parametrize(
  "answer, names", [("run", []), ("run", "run"), (None, ["run"]), ("run", ["run", "__"])]
)
def test_match_class_name_bad_inputs(answer, names):
  with pytest.raises(ValueError):
    metrics.match_class_name(answer, names)
