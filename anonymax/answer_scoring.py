"""VQA accuracy of a free-form reply: normalisation, lemmatisation and a containment rule.

An MLLM asked an OK-VQA question may reply "The tournament is Wimbledon." where the annotators
wrote "wimbledon"; the official scorer (`metrics.vqa_accuracy`) gives that 0. OK-VQA's reference
answers are also stemmed ("skiing" → "ski", "dogs" → "dog"), so even a short reply must be
lemmatised to match them. Two scorings, chosen by ``config.oracle.answer_scoring``:

  * ``"official"``: `metrics.vqa_accuracy` of the reply as given (the synthetic default).
  * ``"free_form"``: `free_form_accuracy`, the rule below (the real-data configs).

The free-form rule, step by step:
  1. Words. n(s) = `metrics.normalize_answer`(s).split() (the official normalisation:
     punctuation, number words → digits, articles removed, contractions, lower case), on the reply
     and on every reference alike, whatever the references' agreement.
  2. Word forms. F(w) = {w} ∪ {lemma(w)} ∪ suffix_forms(w). lemma is simplemma's English
     lemma, kept only when it starts with w's first letter (suppletive lemmas such as
     "better" → "good" or "is" → "be" change or drop the meaning of an answer); without simplemma
     it is left out (`lemmatizer_name` says which). suffix_forms strips what OK-VQA's own stemming
     strips: a possessive 's or the plural -s / -es / -ies (→ -y), then -ing (stem, stem + e, and
     the undoubled stem: "running" → "run", "riding" → "ride", "paintings" → "paint"), never below
     3 letters. Two words match when F(w) ∩ F(v) ≠ ∅.
  3. Stating an answer. The reply r states reference a (k ≥ 1 words) when a matches r word for
     word at some position s (r[s..s+k) ~ a) and the word before, r[s−1], is not a negation
     ("no", "not", "never", "neither", "nor", "without", or ending in n't): "It is not Wimbledon."
     states nothing.
  4. The credited answer c. If the reply matches a reference as a whole (same length, word by
     word), c = the reply. Otherwise c is the stated reference with the most words (the most
     specific: "ice fishing" over "fishing"), then the one stated first; no stated reference: 0.
  5. The score, as the official leave-one-out mean over the n references a_i:
       acc = (1/n) Σ_j min(1, #{i ≠ j : a_i ≡ c} / 3),
     a_i ≡ c when they match as wholes (step 4). A single reference scores 1 on a match, else 0.

So a short reply scores as the official scorer scores its normalised, lemmatised form, and a
sentence scores as the most specific reference answer it states; the three sentence replies that
"When Visual Privacy Protection Meets Multimodal Large Language Models" shows as correct OK-VQA
answers (its Fig. 6) are credited (tests/test_answer_scoring.py). What it does
not credit: a reference inside a longer word ("wimbledonian"), a multi-word answer only in part
("fishing" for "ice fishing"), a number inside another ("12" for "2"), a negated answer. Known
limits: a negation two words before ("not at Wimbledon") is not seen, and a reply listing several
candidates is credited with its most specific one.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence

from anonymax import metrics

try:  # ships its dictionaries in the wheel: nothing to download
  import simplemma
except ImportError:  # pragma: no cover — the fallback is tested by monkeypatching `_simplemma`
  simplemma = None

_simplemma = simplemma  # the lemmatiser in use; None: the suffix rules alone

ANSWER_SCORINGS = ("official", "free_form")
NEGATIONS = frozenset({"no", "not", "never", "neither", "nor", "without"})
_MIN_STEM = 3


def check_scoring(scoring: str, field: str = "oracle.answer_scoring") -> str:
  """`scoring` if it is one of `ANSWER_SCORINGS`; otherwise a ValueError naming `field`."""
  if scoring not in ANSWER_SCORINGS:
    raise ValueError(f"{field}={scoring!r}: must be one of {ANSWER_SCORINGS}")
  return scoring


def lemmatizer_name() -> str:
  """Which lemmatiser step 2 uses, e.g. "simplemma 2.0.0" or "suffix rules only"."""
  if _simplemma is None:
    return "suffix rules only (simplemma not installed)"
  try:
    return f"simplemma {importlib.metadata.version('simplemma')}"
  except importlib.metadata.PackageNotFoundError:
    return "simplemma"


def _plural_forms(word: str) -> set[str]:
  out = set()
  if word.endswith("'s") and len(word) - 2 >= _MIN_STEM:
    out.add(word[:-2])
  if word.endswith("ies") and len(word) - 3 >= _MIN_STEM:
    out.add(word[:-3] + "y")
  elif word.endswith(("ses", "xes", "zes", "ches", "shes")) and len(word) - 2 >= _MIN_STEM:
    out.add(word[:-2])
  if word.endswith("s") and not word.endswith(("ss", "us", "is", "'s")) and len(word) > _MIN_STEM:
    out.add(word[:-1])
  return out


def _ing_forms(word: str) -> set[str]:
  stem = word[:-3]
  if not word.endswith("ing") or len(stem) < _MIN_STEM:
    return set()
  out = {stem, stem + "e"}
  # running → run; not falling → fal, passing → pas (English doubles no vowel, s or l there).
  if stem[-1] == stem[-2] and stem[-1] not in "aeiousl" and len(stem) > _MIN_STEM:
    out.add(stem[:-1])
  return out


def suffix_forms(word: str) -> set[str]:
  """The forms OK-VQA's stemming reaches by stripping suffixes (step 2 of the module rule):
  plural or possessive first, then -ing ("paintings" → "painting" → "paint")."""
  plural = _plural_forms(word)
  out = set(plural)
  for w in (word, *plural):
    out |= _ing_forms(w)
  return out


@functools.lru_cache(maxsize=65536)
def word_forms(word: str) -> frozenset[str]:
  """F(w) of the module rule: the word, its lemma (same first letter) and its suffix forms."""
  forms = {word} | suffix_forms(word)
  if _simplemma is not None and word.isalpha():
    lemma = _simplemma.lemmatize(word, lang="en").lower()
    if lemma[:1] == word[:1]:
      forms.add(lemma)
  return frozenset(forms)


def words(text: str) -> tuple[str, ...]:
  """n(s): the officially normalised words of `text`."""
  return tuple(metrics.normalize_answer(text).split())


def _same_word(a: str, b: str) -> bool:
  return a == b or not word_forms(a).isdisjoint(word_forms(b))


def same_answer(a: Sequence[str], b: Sequence[str]) -> bool:
  """a ≡ b: equal length and matching word by word (steps 2 and 4)."""
  return len(a) == len(b) and all(_same_word(x, y) for x, y in zip(a, b))


def _is_negation(word: str) -> bool:
  return word in NEGATIONS or word.endswith("n't")


def stated_at(answer: Sequence[str], reply: Sequence[str]) -> int:
  """The first position where `reply` states `answer` (step 3), or −1."""
  k = len(answer)
  if k == 0:
    return -1
  for s in range(len(reply) - k + 1):
    if same_answer(answer, reply[s : s + k]) and not (s > 0 and _is_negation(reply[s - 1])):
      return s
  return -1


def credited_answer(reply: str, answers: Sequence[str]) -> tuple[str, ...] | None:
  """The words the reply is credited with (step 4), or None when it states no reference."""
  r = words(reply)
  refs = list(dict.fromkeys(words(a) for a in answers))
  if any(same_answer(a, r) for a in refs):
    return r
  best_key, best = None, None
  for a in refs:
    position = stated_at(a, r)
    if position >= 0 and (best_key is None or (-len(a), position) < best_key):
      best_key, best = (-len(a), position), a
  return best


def free_form_accuracy(reply: str, answers: Sequence[str]) -> float:
  """VQA accuracy of a free-form reply under the module's rule (steps 1–5), in [0, 1].

  Example:
    >>> free_form_accuracy("The tournament is Wimbledon.", ["wimbledon"] * 10)
    1.0

  Raises:
    ValueError: as `metrics.vqa_accuracy` (empty `answers`, a non-string).
  """
  answers = metrics.check_vqa_inputs(reply, answers)
  credited = credited_answer(reply, answers)
  if credited is None:
    return 0.0
  return metrics.leave_one_out_accuracy([same_answer(words(a), credited) for a in answers])


def accuracy(reply: str, answers: Sequence[str], scoring: str = "official") -> float:
  """The VQA accuracy of `reply` under `scoring` ("official" or "free_form"), in [0, 1]."""
  if check_scoring(scoring, "answer_scoring") == "official":
    return metrics.vqa_accuracy(reply, list(answers))
  return free_form_accuracy(reply, answers)
