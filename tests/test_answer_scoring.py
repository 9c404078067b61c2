"""The free-form VQA scoring rule (anonymax/answer_scoring.py) on hand-written replies.

Every expected value is computed by hand from the rule: the leave-one-out mean over n references
of min(1, matches among the other n − 1 / 3), with the matches counted against the answer the
reply is credited with.
"""

from __future__ import annotations

import numpy as np
import pytest

from anonymax import answer_scoring, evaluate, metrics, utility_losses
from anonymax.data.records import Split
from anonymax.oracles.base import STATUS_FAILED, STATUS_OK, Oracle, OracleOutput, Query

free_form = answer_scoring.free_form_accuracy
TEN_WIMBLEDON = ["wimbledon"] * 10


def test_the_issue_example_scores_as_the_short_answer():
  # The official scorer compares raw strings when all ten references agree: a sentence gets 0.
  assert metrics.vqa_accuracy("The tournament is Wimbledon.", TEN_WIMBLEDON) == 0.0
  assert free_form("The tournament is Wimbledon.", TEN_WIMBLEDON) == 1.0
  assert free_form("wimbledon", TEN_WIMBLEDON) == 1.0
  assert answer_scoring.credited_answer("The tournament is Wimbledon.", TEN_WIMBLEDON) == (
    "wimbledon",
  )


def test_the_papers_correct_free_form_replies_are_credited():
  """The three replies the paper shows as correct OK-VQA answers (Fig. 6), with references in
  OK-VQA's stemmed form ("skiing" → "ski")."""
  refs = ["wimbledon"] * 6 + ["tennis"] * 4
  reply = "The famous English competition for this sport is Wimbledon."
  assert free_form(reply, refs) == 1.0  # 6 "wimbledon": every leave-one-out subset has ≥ 3
  reply = "In the image, people are likely to sleep in bed, possibly in bedroom or sleeping area."
  assert free_form(reply, ["sleep"] * 10) == 1.0
  refs = ["ski and snowmobile"] * 3 + ["ski sled"] * 2 + ["snowboard"] * 2 + ["ski"] * 3
  reply = (
    "Other popular activities in snowy environment could include skiing snowboarding, ice "
    "fishing, and winter camping."
  )
  # "ski" (from "skiing") and "snowboard" are stated, one word each: the first stated wins.
  assert answer_scoring.credited_answer(reply, refs) == ("ski",)
  # 3 of 10 say "ski": leaving out one of them leaves 2 (2/3), leaving out another leaves 3 (1).
  assert free_form(reply, refs) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)


def test_short_replies_score_as_the_official_scorer_after_normalisation():
  refs = ["red"] * 6 + ["blue"] * 3 + ["green shirt"]
  # The references disagree, so the official scorer normalises too: the two agree.
  for reply, want in (("Red.", 1.0), ("blue", 0.9), ("Green shirt!", 0.3), ("yellow", 0.0)):
    assert metrics.vqa_accuracy(reply, refs) == pytest.approx(want), reply
    assert free_form(reply, refs) == pytest.approx(want), reply
  # All ten agree: the official scorer is case- and punctuation-strict, the free-form one is not.
  assert metrics.vqa_accuracy("Red.", ["red"] * 10) == 0.0
  assert free_form("Red.", ["red"] * 10) == 1.0


@pytest.mark.parametrize(
  "reply, answer",
  [
    ("Skiing.", "ski"),  # -ing, as OK-VQA's stemming strips it
    ("They are playing tennis.", "play tennis"),
    ("The man is running.", "run"),
    ("two dogs", "2 dog"),  # number word → digit, plural → singular
    ("The buildings.", "build"),  # plural, then -ing ("buildings" → "building" → "build")
    ("It's the men's room.", "men room"),  # possessive 's
    ("The children.", "child"),  # simplemma's irregular lemma
    ("No, it is Wimbledon.", "wimbledon"),  # "no" before "it", not before the answer
    ("No, there is no dog.", "no"),
  ],
)
def test_lemmatised_and_contained_answers_are_credited(reply, answer):
  assert free_form(reply, [answer] * 10) == 1.0


@pytest.mark.parametrize(
  "reply, answer",
  [
    ("It is not Wimbledon.", "wimbledon"),  # negated
    ("That isn't a dog.", "dog"),  # negated by an n't word (the article is dropped first)
    ("Wimbledonian fans cheer.", "wimbledon"),  # inside a longer word
    ("They go fishing.", "ice fishing"),  # a multi-word answer only in part
    ("12 dogs", "2"),  # a number inside another
    ("It is better.", "good"),  # suppletive lemma dropped: "better" is not "good"
    ("I don't know.", "wimbledon"),
    ("", "wimbledon"),
    ("yes", "no"),
  ],
)
def test_replies_that_must_not_be_credited(reply, answer):
  assert free_form(reply, [answer] * 10) == 0.0
  assert answer_scoring.credited_answer(reply, [answer] * 10) is None


def test_the_known_limit_a_negation_further_back_is_not_seen():
  # Only the word right before the answer is checked: "never any dogs" still states "dog".
  assert free_form("There were never any dogs.", ["dog"] * 10) == 1.0


def test_the_most_specific_stated_answer_is_credited():
  refs = ["ice fishing"] * 2 + ["fish"] * 8
  # Both are stated ("fishing" ~ "fish"); the two-word answer wins, as if the reply were it:
  # 2 matches → leaving out one leaves 1 (1/3), leaving out another leaves 2 (2/3).
  want = (2 * (1 / 3) + 8 * (2 / 3)) / 10
  assert answer_scoring.credited_answer("They love ice fishing here.", refs) == ("ice", "fishing")
  assert free_form("They love ice fishing here.", refs) == pytest.approx(want)
  assert free_form("ice fishing", refs) == pytest.approx(want)
  assert free_form("They fish.", refs) == 1.0  # 8 say "fish"
  # Equally long: the first stated wins (the reply's first answer).
  assert answer_scoring.credited_answer("Red or blue?", ["blue"] * 5 + ["red"] * 5) == ("red",)


def test_a_single_reference_scores_one_or_zero():
  assert free_form("It is a dog.", ["dog"]) == 1.0
  assert free_form("It is a cat.", ["dog"]) == 0.0


def test_bad_inputs_are_one_line_errors():
  with pytest.raises(ValueError, match="answers is empty"):
    free_form("dog", [])
  with pytest.raises(ValueError, match="prediction must be a str"):
    free_form(None, ["dog"])
  with pytest.raises(ValueError, match=r"answers\[1\] must be a str"):
    free_form("dog", ["dog", 3])
  with pytest.raises(ValueError, match="a single str"):
    free_form("dog", "dog")
  with pytest.raises(ValueError, match="answer_scoring='bleu'"):
    answer_scoring.accuracy("dog", ["dog"], "bleu")
  with pytest.raises(ValueError, match="oracle.answer_scoring='exact'"):
    answer_scoring.check_scoring("exact")


def test_accuracy_and_the_vqa_loss_follow_the_scoring():
  reply, refs = "The tournament is Wimbledon.", TEN_WIMBLEDON
  assert answer_scoring.accuracy(reply, refs) == metrics.vqa_accuracy(reply, refs) == 0.0
  assert answer_scoring.accuracy(reply, refs, "free_form") == 1.0
  assert utility_losses.vqa_loss(reply, refs) == 1.0
  assert utility_losses.vqa_loss(reply, refs, "free_form") == 0.0
  assert utility_losses.vqa_loss("blue", ["red"] * 6 + ["blue"] * 3 + ["x"], "free_form") == (
    pytest.approx(0.1)
  )


@pytest.fixture
def no_simplemma(monkeypatch):
  """The scorer as it runs where simplemma is not installed (the suffix rules alone)."""
  answer_scoring.word_forms.cache_clear()
  monkeypatch.setattr(answer_scoring, "_simplemma", None)
  yield
  answer_scoring.word_forms.cache_clear()


def test_simplemma_is_the_lemmatiser_and_its_lemmas_count():
  assert answer_scoring.lemmatizer_name().startswith("simplemma ")
  assert "man" in answer_scoring.word_forms("men")
  assert free_form("Two men.", ["2 man"] * 10) == 1.0


def test_without_simplemma_the_suffix_rules_still_apply(no_simplemma):
  assert answer_scoring.lemmatizer_name().startswith("suffix rules only")
  assert answer_scoring.word_forms("men") == {"men"}  # irregular plurals need the lemmatiser
  assert free_form("Two men.", ["2 man"] * 10) == 0.0
  assert free_form("They are skiing.", ["ski"] * 10) == 1.0
  assert free_form("They are playing tennis.", ["play tennis"] * 10) == 1.0
  assert free_form("The tournament is Wimbledon.", TEN_WIMBLEDON) == 1.0


def test_suffix_forms_never_go_below_three_letters():
  assert answer_scoring.suffix_forms("sitting") == {"sitt", "sitte", "sit"}
  assert answer_scoring.suffix_forms("falling") == {"fall", "falle"}  # no "fal"
  assert answer_scoring.suffix_forms("adding") == {"add", "adde"}  # no "ad"
  assert answer_scoring.suffix_forms("ties") == {"tie"}
  assert answer_scoring.suffix_forms("boxes") == {"box", "boxe"}
  assert answer_scoring.suffix_forms("bus") == set()
  assert answer_scoring.suffix_forms("tennis") == set()
  assert answer_scoring.suffix_forms("king") == set()


class _Replies(Oracle):
  """Answers each query with a fixed reply (the first visual pixel's index into `replies`)."""

  def __init__(self, replies):
    super().__init__(name="replies", loss="vqa")
    self.replies = replies

  def query(self, visuals, queries):
    n = len(queries)
    texts = [self.replies[int(v.reshape(-1)[0])] for v in visuals]
    status = np.array([STATUS_FAILED if t is None else STATUS_OK for t in texts], np.int32)
    return OracleOutput(np.zeros(n, np.float32), status, [t or "" for t in texts])


def test_evaluation_reports_the_configured_scoring():
  replies = ["The tournament is Wimbledon.", "tennis", "It is not Wimbledon.", None]
  visuals = np.zeros((4, 2, 2, 3), np.uint8)
  visuals[:, 0, 0, 0] = np.arange(4)
  split = Split(
    visuals=visuals,
    privacy=np.zeros((4, 0), np.float32),
    queries=[Query("What is this sport's famous English competition?", ("wimbledon",) * 10)] * 4,
    labels=np.full(4, -1, np.int32),
    attribute_names=(),
    class_names=(),
  )
  official = evaluate.utility(_Replies(replies), visuals, split)
  free = evaluate.utility(_Replies(replies), visuals, split, scoring="free_form")
  # Of four: the sentence scores 1 only free-form; "tennis", the negation and the failure 0.
  assert official["accuracy"] == 0.0 and free["accuracy"] == 25.0
  assert free["failed"] == 1 and free["answers"][0] == replies[0]
