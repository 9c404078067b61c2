"""Utility losses L_MLLM, computed on the host from what a black box answers (numpy / Python only).

Every oracle scores its answers with these functions, so one loss name means one formula whatever
the model behind it (the names are those of `anonymax.types.UTILITY_LOSSES`):

  * ``"vqa"``:    `vqa_loss`, 1 − VQA accuracy of the generated answer (official scorer, or the
                  free-form rule of `anonymax.answer_scoring`).
  * ``"nll"``:    `expected_nll`, −Σ_a w_a ℓ_a / n_a over the reference answers a, with weights from
                  `answer_weights` (log-probabilities floored by `floored_log_probs` where a model
                  answers over a closed vocabulary); `answer_nll` for teacher-forced token log-probs.
  * ``"choice"``: `choice_nll` (the options' own scores), `floored_choice_nll` (scores floored at
                  `LOG_PROB_FLOOR`) or `first_token_choice_nll` (only the first answer token's
                  `top_logprobs` are known); the correct option is `correct_choice` /
                  `majority_choice`.

Nothing here calls JAX: oracles run inside a host callback, where JAX must not be re-entered. The
minimum of every loss is 0, the utility ideal point of the Tchebycheff scalarization.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np

from anonymax import answer_scoring
from anonymax.types import Query

# The floor of a closed-vocabulary model's log-probabilities (an answer outside the vocabulary
# scores at it), the way an API's top-logprobs bottom out: every loss stays finite and bounded.
LOG_PROB_FLOOR = math.log(1e-6)

ANSWER_WEIGHTINGS = ("frequency", "most_common")


def vqa_loss(prediction: str, answers: list[str], scoring: str = "official") -> float:
  """The "vqa" utility loss of one generated answer: 1 − VQA accuracy.

  L = 1 − acc(â, {a_i}), acc the official VQA accuracy (`anonymax.metrics.vqa_accuracy`) of the
  answer as given (``scoring="official"``) or of a free-form reply ("free_form":
  `answer_scoring.free_form_accuracy`, normalised, lemmatised, credited with the reference it
  states). Python-level (text in, float out); in [0, 1], ideal 0.

  Raises:
    ValueError: as `vqa_accuracy` (e.g. empty `answers`), or naming an unknown `scoring`.
  """
  return 1.0 - answer_scoring.accuracy(prediction, answers, scoring)


def answer_nll(token_logprobs, mask=None, *, reduction: str = "mean") -> np.ndarray:
  """The "nll" utility loss: negative log-likelihood of the teacher-forced reference answer.

  "mean": L_b = −Σ_t m_bt · log p(y_t | y_<t, v) / Σ_t m_bt   (per answer token)
  "sum":  L_b = −Σ_t m_bt · log p(y_t | y_<t, v)              (of the whole answer)

  The per-token mean does not favour short answers over long ones; use "sum" for the exact
  −log p(answer). numpy, for use inside an oracle.

  Args:
    token_logprobs: float [..., T] log-probabilities of the reference tokens.
    mask: [..., T] 1 for answer tokens, 0 for padding; all ones if None.
    reduction: "mean" or "sum" over the last axis.

  Returns:
    float64 [...] losses (a 0-d array for one sequence); +inf where a token has probability 0.

  Raises:
    ValueError: on a bad `reduction`, a shape mismatch, or a sequence with no answer token.
  """
  if reduction not in ("mean", "sum"):
    raise ValueError(f"reduction={reduction!r}: must be 'mean' or 'sum'")
  logp = np.asarray(token_logprobs, dtype=np.float64)
  if logp.ndim == 0:
    raise ValueError("token_logprobs must have a token axis (last), got a scalar")
  weights = np.ones_like(logp) if mask is None else np.asarray(mask, dtype=np.float64)
  if weights.shape != logp.shape:
    raise ValueError(f"mask shape {weights.shape} differs from token_logprobs shape {logp.shape}")
  count = weights.sum(axis=-1)
  if np.any(count <= 0):
    raise ValueError("a sequence has no answer token (mask all zero or T = 0)")
  # where(): a masked-out −inf (a padding token of probability 0) must not turn into 0·inf = nan.
  total = -np.sum(weights * np.where(weights > 0, logp, 0.0), axis=-1)
  return total / count if reduction == "mean" else total


def _neg_log_softmax(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
  """logsumexp_k(s_k) − s_c along the last axis, unchecked (the max is subtracted for stability)."""
  top = np.max(scores, axis=-1, keepdims=True)
  log_norm = np.log(np.sum(np.exp(scores - top), axis=-1)) + top[..., 0]
  chosen = np.take_along_axis(scores, correct[..., None], axis=-1)[..., 0]
  return log_norm - chosen


def choice_nll(option_logprobs, correct) -> np.ndarray:
  """The "choice" utility loss: −log p(correct option), renormalised over the options.

  L = −log softmax(s)_c = logsumexp_k(s_k) − s_c

  where s_k is the (log-)score the MLLM gives option k (e.g. from `top_logprobs` of the first
  answer token; an option absent from them may be given −inf or a floor value) and c the correct
  option. numpy, for use inside an oracle.

  Args:
    option_logprobs: float [..., K] option log-scores, K ≥ 2, at least one finite per row.
    correct: int [...] index of the correct option.

  Returns:
    float64 [...] losses ≥ 0 (+inf if the correct option has score −inf).

  Raises:
    ValueError: on shape mismatch, an out-of-range index or a row with no finite score.
  """
  scores = np.asarray(option_logprobs, dtype=np.float64)
  correct = np.asarray(correct)
  if scores.ndim == 0 or scores.shape[-1] < 2:
    raise ValueError(f"option_logprobs {scores.shape} needs a last axis of K ≥ 2 options")
  if correct.shape != scores.shape[:-1]:
    raise ValueError(
      f"correct shape {correct.shape} must equal option_logprobs batch shape {scores.shape[:-1]}"
    )
  if not np.issubdtype(correct.dtype, np.integer):
    raise ValueError(f"correct must hold integer option indices, got dtype {correct.dtype}")
  k = scores.shape[-1]
  if np.any((correct < 0) | (correct >= k)):
    raise ValueError(f"correct has an index outside [0, {k})")
  if not np.all(np.isfinite(scores) | np.isneginf(scores)):
    raise ValueError("option_logprobs has NaN or +inf (log-scores are < +inf)")
  if np.any(np.all(np.isneginf(scores), axis=-1)):
    raise ValueError("option_logprobs has a row with no finite score")
  return _neg_log_softmax(scores, correct)


def floored_log_probs(
  log_probs: np.ndarray, ids: Iterable[int], floor: float = LOG_PROB_FLOOR
) -> np.ndarray:
  """The log-probabilities of vocabulary entries `ids`, floored: ℓ_i = max(log p[id_i], floor).

  An id below 0 (an answer outside the vocabulary) scores at the floor; NaN stays NaN, so a model
  that answered NaN is seen as such. Returns float64 [len(ids)].
  """
  return np.array(
    [floor if i < 0 else max(float(log_probs[i]), floor) for i in ids], np.float64
  ).reshape(-1)


def expected_nll(
  log_likelihoods: Sequence[float],
  weights: Sequence[float],
  lengths: Sequence[int] | None = None,
) -> float:
  """The "nll" utility loss over several reference answers: L = −Σ_a w_a ℓ_a / n_a.

  ℓ_a is the log-likelihood of reference answer a, w_a its weight (`answer_weights`) and n_a its
  length in tokens (per-token NLL, comparable across answer lengths), or 1 when `lengths` is None
  (the NLL of the whole answer, or of a closed-vocabulary answer). Summed in the given order.

  Raises:
    ValueError: when the sequences differ in length.
  """
  ll = np.asarray(log_likelihoods, np.float64).reshape(-1)
  if lengths is not None:
    ll = ll / np.asarray(lengths, np.float64).reshape(-1)
  w = list(weights)
  if len(w) != len(ll):
    raise ValueError(f"{len(ll)} log-likelihoods but {len(w)} weights")
  total = 0.0
  for weight, value in zip(w, ll, strict=True):
    total -= weight * value
  return float(total)


def floored_choice_nll(log_probs: Sequence[float], correct: int, floor: float = LOG_PROB_FLOOR):
  """The "choice" loss of a model that scores every option: −log softmax(ℓ)_c over the options.

  L = logsumexp_k(ℓ_k) − ℓ_c,  ℓ_k = max(s_k, floor)

  with s_k the log-probability (or sequence log-likelihood) of option k and c the correct option;
  `floor` = −inf leaves the scores as they are. Unlike `choice_nll` it takes one option (L = 0) and
  returns NaN for a NaN score instead of raising, so that one bad sample is only that.

  Args:
    log_probs: float [K] option scores, K ≥ 1.
    correct: index of the correct option.

  Returns:
    The loss, a Python float ≥ 0 (NaN when a score is NaN).
  """
  scores = np.maximum(np.asarray(log_probs, np.float64).reshape(-1), floor)
  return float(_neg_log_softmax(scores, np.asarray(correct)))


def first_token_choice_nll(
  top_logprobs: Sequence[tuple[str, float]],
  choices: Sequence[str],
  correct: str,
  floor_logprob: float = -20.0,
) -> float:
  """The "choice" loss from the first answer token's probability mass alone.

  L = −log( m_c / Σ_o m_o ),  m_o = max( Σ_{t ⊑ o} p_t / |{o' : t ⊑ o'}|, exp(floor_logprob) ),

  where t ranges over the (token, logprob) pairs of `top_logprobs`, p_t = exp(logprob), and t ⊑ o
  means the stripped, lower-cased token is a non-empty prefix of the lower-cased option. With no
  option seen at all every m_o is the floor and L = log(K) for K options (no information). This is
  what a chat API allows: the options cannot be scored as whole sequences.

  Args:
    top_logprobs: the first answer token's alternatives, (token, logprob).
    choices: the K options.
    correct: the correct option, one of `choices`.
    floor_logprob: log-mass given to an option none of whose first tokens was returned.

  Returns:
    The loss (≥ 0).

  Raises:
    ValueError: if `correct` is not among the choices.
  """
  if correct not in choices:
    raise ValueError(f"correct option {correct!r} is not among the choices {tuple(choices)}")
  options = [c.strip().lower() for c in choices]
  mass = np.zeros(len(options), np.float64)
  for token, logprob in top_logprobs:
    t = token.strip().lower()
    if not t:
      continue
    matched = [i for i, o in enumerate(options) if o.startswith(t)]
    for i in matched:
      mass[i] += math.exp(logprob) / len(matched)
  mass = np.maximum(mass, math.exp(floor_logprob))
  return float(-math.log(mass[list(choices).index(correct)] / mass.sum()))


def answer_weights(
  answers: Sequence[str],
  *,
  key: Callable[[str], Hashable | None] | None = None,
  weighting: str = "frequency",
) -> dict:
  """The weights w of the reference answers in the "nll" loss, keyed by `key(answer)`.

  "frequency":   w_k = |{i : key(a_i) = k}| / n, n = |{i : key(a_i) is not None}|
                 (VQA: the expected NLL over the ten annotator answers);
  "most_common": w_k = 1 for the most frequent key (ties: the one met first), 0 for the others.

  `key` merges spellings (e.g. `str.strip`, or a vocabulary id) and returns None for an answer to
  leave out; None means the answer itself. Keys come in the order they are first met, and the
  weights sum to 1 (an empty dict when every answer is left out).

  Raises:
    ValueError: on an unknown `weighting`.
  """
  if weighting not in ANSWER_WEIGHTINGS:
    raise ValueError(f"answer_weighting={weighting!r}: must be one of {ANSWER_WEIGHTINGS}")
  keys = [a if key is None else key(a) for a in answers]
  counts = Counter(k for k in keys if k is not None)
  if not counts:
    return {}
  if weighting == "most_common":
    return {counts.most_common(1)[0][0]: 1.0}
  total = sum(counts.values())
  return {k: c / total for k, c in counts.items()}


def majority_choice(answers: Sequence[str], choices: Sequence[str]) -> int:
  """The index in `choices` of the option scored as correct by the "choice" loss, or -1.

  The correct option is the most frequent reference answer that is one of the choices (ties: the
  one met first among the answers). Annotator answers can be noisy (a wrong answer, a synonym
  such as "2" for "two"), so the majority decides rather than `answers[0]`; with a single
  reference they agree. Answers and choices are compared as given: normalise both first.
  """
  counts = Counter(a for a in answers if a in choices)
  if not counts:
    return -1
  return list(choices).index(counts.most_common(1)[0][0])


def correct_choice(query: Query) -> str | None:
  """The option of `query.choices` scored as correct (`majority_choice`), or None when none is."""
  i = majority_choice(query.answers, query.choices)
  return None if i < 0 else query.choices[i]
