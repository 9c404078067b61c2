"""Evaluation metrics: VQA accuracy, class-wise mAP (cMAP), action Top-1.

The paper's protocol (Sec. 4): utility is VQA accuracy under the official VQA scorer's rules
(Antol et al., 2015) or action Top-1 with the MLLM's free-text answer matched to a class name;
privacy is the class-wise mean average precision of a privacy-attribute classifier.

Everything here is host-side Python/numpy (no JAX): these run on answers and scores already
brought back from the device or from the black box.

References:
  Antol et al., "VQA: Visual Question Answering", ICCV 2015; the official scorer is
  ``vqaEval.py`` in github.com/GT-Vision-Lab/VQA (PythonEvaluationTools/vqaEvaluation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# --- VQA answer normalisation tables (as in the official scorer) --------------------------------

# Number words the scorer maps to digits ("none" counts as zero).
_NUMBER_WORDS = {
  "none": "0",
  "zero": "0",
  "one": "1",
  "two": "2",
  "three": "3",
  "four": "4",
  "five": "5",
  "six": "6",
  "seven": "7",
  "eight": "8",
  "nine": "9",
  "ten": "10",
}

_ARTICLES = frozenset({"a", "an", "the"})

# Apostrophe-less spellings → the contraction the annotations use. The keys with capitals
# ("Im", "Ive", "Id've", "I'dve") are kept as in the official table: words are lower-cased before
# the look-up, so they never fire there either. "somebody'd" → "somebodyd" is the scorer's own
# (inverted) entry and is kept for the same reason: exact agreement with published numbers.
_CONTRACTIONS = dict(
  pair.split("=")
  for pair in """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll
somebodys=somebody's someoned=someone'd someoned've=someone'd've someone'dve=someone'd've
someonell=someone'll someones=someone's somethingd=something'd somethingd've=something'd've
something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd
theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll
whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
""".split()
)

# Characters the scorer strips. The apostrophe, colon and period are deliberately absent: the
# apostrophe is part of contractions, the period has its own rule below.
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<")
_PUNCTUATION += ("@", "`", ",", "?", "!")
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# The scorer writes this as "(?!<=\d)(\.)(?!\d)": the first group is a negative *lookahead* for
# the two characters "<=" followed by a digit (a typo for a lookbehind), so in effect every period
# that is not followed by a digit is removed ("3.5" keeps its period, "3." and "mr." lose theirs).
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
# The scorer passes `re.UNICODE` (= 32) positionally to `sub`, i.e. as its `count`: at most 32
# periods are removed. Reproduced so that long answers score exactly as there.
_PERIOD_MAX_REMOVALS = int(re.UNICODE)


def _process_punctuation(text: str) -> str:
  """The scorer's `processPunctuation`.

  Each punctuation mark is deleted when it touches a space anywhere in the text (or when the text
  has a comma between digits, "1,000"), and replaced by a space otherwise ("black/white" →
  "black white", "black / white" → "black  white"); then periods not followed by a digit go.
  """
  out = text
  has_digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
  for p in _PUNCTUATION:
    # The tests look at the *original* text, the replacement acts on the running output.
    if (p + " " in text or " " + p in text) or has_digit_comma:
      out = out.replace(p, "")
    else:
      out = out.replace(p, " ")
  return _PERIOD.sub("", out, count=_PERIOD_MAX_REMOVALS)


def _process_digit_article(text: str) -> str:
  """The scorer's `processDigitArticle`: lower-case, number words → digits, drop articles, and
  restore contractions, word by word (whitespace collapsed to single spaces)."""
  words = []
  for word in text.lower().split():
    word = _NUMBER_WORDS.get(word, word)
    if word not in _ARTICLES:
      words.append(word)
  return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def _strip_whitespace(text: str) -> str:
  return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
  """Normalises an answer as the VQA scorer does when the ground truths disagree.

  normalize(s) = processDigitArticle(processPunctuation(strip(s))).

  Args:
    text: a free-text answer.

  Returns:
    The normalised answer, e.g. "Two dogs!" → "2 dogs", "dont know" → "don't know".
  """
  return _process_digit_article(_process_punctuation(_strip_whitespace(text)))


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
  """VQA accuracy of one predicted answer, with the official scorer's rules.

  acc = (1/n) Σ_{j=1..n} min(1, #{i ≠ j : a_i = â} / 3)

  i.e. the mean, over the n leave-one-out subsets of the n ground truths a_i, of min(1, number of
  matches / 3). Before matching, newlines/tabs become spaces and both sides are stripped; **only
  when the ground truths are not all identical** are the ground truths *and the prediction*
  normalised (`normalize_answer`: punctuation, number words → digits, articles removed,
  lower-case, contractions). When all ground truths are identical the match is a plain string
  comparison (case-sensitive), exactly as in the official scorer, which is strict on free text:
  an MLLM answer "Yes." scores 0 against ten "yes" (pass it through `normalize_answer` first if a
  looser convention is wanted, and say so when reporting).

  (An older revision of the scorer, still shipped by some toolkits, normalised the prediction
  always and only the punctuation of the ground truths; this function follows the current one.)

  With fewer than ten ground truths the same leave-one-out mean is taken over those given (so two
  identical answers matched give 1/3). A single ground truth has an empty leave-one-out subset;
  it is scored as if all ten annotators had given it, i.e. 1.0 on a match and 0.0 otherwise.

  Args:
    prediction: the predicted answer.
    answers: the ground-truth answers (ten for VQA v2 / OK-VQA).

  Returns:
    The accuracy, a float in [0, 1].

  Raises:
    ValueError: if `answers` is empty or an element of it or `prediction` is not a string.
  """
  answers = check_vqa_inputs(prediction, answers)
  gts = [_strip_whitespace(a) for a in answers]
  pred = _strip_whitespace(prediction)
  if len(set(gts)) > 1:
    gts = [_process_digit_article(_process_punctuation(a)) for a in gts]
    pred = _process_digit_article(_process_punctuation(pred))

  return leave_one_out_accuracy([a == pred for a in gts])


def check_vqa_inputs(prediction, answers) -> list[str]:
  """`answers` as a list, after checking both arguments as `vqa_accuracy` documents.

  Raises:
    ValueError: if `answers` is empty or a single str, or an element of it or `prediction` is
      not a string.
  """
  if not isinstance(prediction, str):
    raise ValueError(f"prediction must be a str, got {type(prediction).__name__}")
  if isinstance(answers, str):
    raise ValueError("answers must be a list of str, got a single str")
  answers = list(answers)
  if not answers:
    raise ValueError("answers is empty: VQA accuracy needs at least one ground-truth answer")
  for i, a in enumerate(answers):
    if not isinstance(a, str):
      raise ValueError(f"answers[{i}] must be a str, got {type(a).__name__}")
  return answers


def leave_one_out_accuracy(matches: Sequence[bool]) -> float:
  """VQA accuracy from whether each ground truth matched the prediction.

  acc = (1/n) Σ_j min(1, #{i ≠ j : match_i} / 3); a single ground truth scores match_0.
  """
  if len(matches) == 1:
    return float(matches[0])
  total = sum(matches)
  # Leaving out answer j removes one match iff answer j itself matched.
  per_subset = [min(1.0, (total - m) / 3.0) for m in matches]
  return float(sum(per_subset) / len(per_subset))


# --- Class-wise mean average precision ------------------------------------------------------------


def average_precision(y_true, y_score) -> float:
  """Average precision of one binary problem (sklearn's `average_precision_score`).

  AP = Σ_n (R_n − R_{n−1}) P_n

  over the distinct score thresholds taken in decreasing order, with P_n and R_n the precision and
  recall of predicting "positive" for scores ≥ the n-th threshold and R_0 = 0. Tied scores form one
  threshold (no interpolation, no tie-breaking by order).

  Args:
    y_true: [N] binary labels (0/1 or bool), at least one positive.
    y_score: [N] real scores, higher means more likely positive.

  Returns:
    AP in [0, 1].

  Raises:
    ValueError: on shape mismatch, non-binary labels, non-finite scores or no positive.
  """
  y_true = np.asarray(y_true)
  y_score = np.asarray(y_score, dtype=np.float64)
  if y_true.ndim != 1 or y_true.shape != y_score.shape:
    raise ValueError(
      f"y_true {y_true.shape} and y_score {y_score.shape} must be 1-D with the same shape"
    )
  y_true = _as_binary(y_true, "y_true")
  if not np.all(np.isfinite(y_score)):
    raise ValueError("y_score has non-finite values")
  if not y_true.any():
    raise ValueError("y_true has no positive: average precision is undefined")
  order = np.argsort(-y_score, kind="stable")
  score_sorted = y_score[order]
  hits = y_true[order].astype(np.float64)
  # Last index of every run of equal scores: one threshold per distinct score.
  last_of_run = np.r_[np.flatnonzero(np.diff(score_sorted)), score_sorted.size - 1]
  true_pos = np.cumsum(hits)[last_of_run]
  predicted_pos = last_of_run + 1.0
  precision = true_pos / predicted_pos
  recall = true_pos / true_pos[-1]
  recall_gain = np.diff(np.r_[0.0, recall])
  return float(np.sum(recall_gain * precision))


def cmap(y_true, y_score) -> float:
  """Class-wise mean average precision (cMAP) of a multi-label classifier.

  cMAP = (1/|C|) Σ_{c ∈ C} AP(y_true[:, c], y_score[:, c]),  C = {c : Σ_i y_true[i, c] > 0}

  with AP as in `average_precision` (sklearn's step-wise definition). Classes without a positive
  example are left out (their AP is undefined), as in the privacy evaluation of Wu et al. (2020).

  Args:
    y_true: [N, C] binary labels (0/1 or bool).
    y_score: [N, C] real scores (logits or probabilities: AP only uses their order).

  Returns:
    cMAP, a float in [0, 1].

  Raises:
    ValueError: if the arrays are not 2-D of the same shape, labels are not binary, scores are not
      finite, or no class has a positive.
  """
  y_true = np.asarray(y_true)
  y_score = np.asarray(y_score, dtype=np.float64)
  if y_true.ndim != 2 or y_score.ndim != 2:
    raise ValueError(
      f"y_true {y_true.shape} and y_score {y_score.shape} must both be 2-D [examples, classes]"
    )
  if y_true.shape != y_score.shape:
    raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} differ in shape")
  y_true = _as_binary(y_true, "y_true")
  if not np.all(np.isfinite(y_score)):
    raise ValueError("y_score has non-finite values")
  present = np.flatnonzero(y_true.any(axis=0))
  if present.size == 0:
    raise ValueError("y_true has no positive in any class: cMAP is undefined")
  return float(np.mean([average_precision(y_true[:, c], y_score[:, c]) for c in present]))


def _as_binary(y: np.ndarray, name: str) -> np.ndarray:
  if y.dtype == np.bool_:
    return y
  if not np.all(np.isin(y, (0, 1))):
    raise ValueError(f"{name} must be binary (0/1 or bool)")
  return y.astype(np.bool_)


# --- Action recognition Top-1 ---------------------------------------------------------------------


def top1_accuracy(predicted_labels, labels) -> float:
  """Top-1 accuracy: the fraction of examples whose predicted class is the label.

  top1 = (1/N) Σ_i [ŷ_i = y_i]

  A prediction of −1 (no class matched, see `match_class_name`) counts as wrong.

  Args:
    predicted_labels: [N] integer class indices (−1 for none).
    labels: [N] integer class indices.

  Returns:
    The accuracy, a float in [0, 1].

  Raises:
    ValueError: if the arrays are not 1-D of the same non-zero length or not integers.
  """
  pred = np.asarray(predicted_labels)
  true = np.asarray(labels)
  if pred.ndim != 1 or pred.shape != true.shape:
    raise ValueError(
      f"predicted_labels {pred.shape} and labels {true.shape} must be 1-D with the same shape"
    )
  if pred.size == 0:
    raise ValueError("predicted_labels is empty: Top-1 accuracy needs at least one example")
  for name, arr in (("predicted_labels", pred), ("labels", true)):
    if not np.issubdtype(arr.dtype, np.integer):
      raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
  return float(np.mean(pred == true))


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize_class_name(text: str) -> str:
  """Normalises a class name or an answer for matching.

  CamelCase is split ("ApplyEyeMakeup" → "apply eye makeup", UCF101 style), then the text is
  lower-cased and every run of characters other than letters and digits becomes one space
  ("brush_hair" → "brush hair", HMDB51 style; "Brush hair." → "brush hair").
  """
  text = _CAMEL_BOUNDARY.sub(" ", text).lower()
  return _NON_ALNUM.sub(" ", text).strip()


def match_class_name(answer: str, class_names: Sequence[str]) -> int:
  """Maps a free-text answer to a class index ("action Top-1: MLLM answer matched to a class").

  Both sides are normalised with `normalize_class_name`. A class matches when its normalised name
  equals the normalised answer or appears in it as a whole-word phrase: "ride bike" is found in
  "I think: Ride bike." but not in "riding a bike" (no stemming; prompts should list the class
  names so that the answer repeats one). When several classes match, ties are broken by:
    1. the longest normalised name (in characters) wins, so "ride horse" beats "ride", and an exact
       match of the whole answer (necessarily the longest) always wins;
    2. then the name occurring earliest in the answer wins (the MLLM's first guess);
    3. then the lowest class index wins.

  Args:
    answer: the MLLM's answer text.
    class_names: the class names, index = class id.

  Returns:
    The matched class index, or −1 if no class name occurs in the answer.

  Raises:
    ValueError: if `class_names` is empty, or `answer` or a class name is not a string or a class
      name is empty after normalisation.
  """
  if not isinstance(answer, str):
    raise ValueError(f"answer must be a str, got {type(answer).__name__}")
  if isinstance(class_names, str) or len(class_names) == 0:
    raise ValueError("class_names must be a non-empty sequence of str")
  names = []
  for i, name in enumerate(class_names):
    if not isinstance(name, str) or not normalize_class_name(name):
      raise ValueError(f"class_names[{i}]={name!r} is not a usable class name")
    names.append(normalize_class_name(name))

  padded = f" {normalize_class_name(answer)} "
  best_key, best_index = None, -1
  for index, name in enumerate(names):
    position = padded.find(f" {name} ")
    if position < 0:
      continue
    # Smaller key wins: longer name, then earlier position, then lower index.
    key = (-len(name), position, index)
    if best_key is None or key < best_key:
      best_key, best_index = key, index
  return best_index
