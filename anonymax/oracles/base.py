"""The Oracle protocol: the black-box MLLM, seen only through its inputs and outputs.

An oracle receives *anonymized* visuals (never raw ones: see `bridge.py`) together with one
`Query` per sample, and returns a per-sample utility loss, the answer text and a status code.
It never raises for a bad sample: a sample that cannot be scored gets a non-OK status and the
trainer skips it (and counts it).

Utility losses (chosen by `Oracle.loss`; every reported number records which one produced it):
  * ``"nll"``    answer negative log-likelihood of the reference answer(s), teacher forced.
  * ``"choice"`` −log p(correct option) among `Query.choices`, from the answer's log-probabilities.
  * ``"vqa"``    1 − VQA accuracy of the generated answer against `Query.answers` (text only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

STATUS_OK = 0
STATUS_FAILED = 1  # the request failed after retries (429/5xx/timeouts): skip the sample
STATUS_INVALID = 2  # an answer came back but could not be scored (malformed, non-finite)

UTILITY_LOSSES = ("nll", "choice", "vqa")


@dataclasses.dataclass(frozen=True)
class Query:
  """What is asked about one visual.

  Attributes:
    prompt: the question put to the MLLM (the user's text; no system prompt).
    answers: reference answers. VQA: the ten annotator answers; action recognition: the class
      name alone.
    choices: the options of a multiple-choice question (e.g. all action class names); needed by the
      ``"choice"`` loss, optional otherwise.
  """

  prompt: str
  answers: tuple[str, ...]
  choices: tuple[str, ...] = ()

  def __post_init__(self):
    if not self.answers:
      raise ValueError(f"Query {self.prompt!r} has no reference answers")


@dataclasses.dataclass
class OracleOutput:
  """Per-sample results of one oracle call.

  Attributes:
    losses: float32 [N]; finite where `status == STATUS_OK`, 0 elsewhere.
    status: int32 [N]; STATUS_OK, STATUS_FAILED or STATUS_INVALID.
    answers: the answer text per sample ("" when none came back).
  """

  losses: np.ndarray
  status: np.ndarray
  answers: list[str]

  @classmethod
  def failed(cls, n: int, status: int = STATUS_FAILED) -> OracleOutput:
    return cls(np.zeros(n, np.float32), np.full(n, status, np.int32), [""] * n)


@dataclasses.dataclass
class OracleStats:
  """Running counters an oracle keeps (reported in logs and eval.json)."""

  calls: int = 0  # requests actually paid for (cache hits excluded)
  cache_hits: int = 0  # requests answered from the cache
  failures: int = 0  # samples returned with a non-OK status
  seconds: float = 0.0  # wall time spent inside `query`
  prompt_tokens: int = 0
  completion_tokens: int = 0
  cost: float = 0.0  # in the currency of the configured prices

  def as_dict(self) -> dict[str, float]:
    return dataclasses.asdict(self)


@runtime_checkable
class Oracle(Protocol):
  """A black-box MLLM.

  Attributes:
    name: the model's identity (cache keys, reports).
    loss: which utility loss `query` returns, one of `UTILITY_LOSSES`.
    stats: running `OracleStats`.
  """

  name: str
  loss: str
  stats: OracleStats

  def query(self, visuals: np.ndarray, queries: Sequence[Query]) -> OracleOutput:
    """Scores N anonymized visuals.

    Args:
      visuals: uint8 [N, H, W, 3] images or uint8 [N, T, H, W, 3] clips, already anonymized.
      queries: N queries, one per visual.

    Returns:
      An `OracleOutput` with N entries. Never raises for a bad sample.
    """
    ...


def to_uint8(visuals: np.ndarray) -> np.ndarray:
  """Float visuals in [0, 1] → uint8 (what an upload would carry); uint8 passes through."""
  visuals = np.asarray(visuals)
  if visuals.dtype == np.uint8:
    return visuals
  return np.clip(np.rint(np.nan_to_num(visuals.astype(np.float32)) * 255.0), 0, 255).astype(
    np.uint8
  )


def check_loss_name(loss: str) -> str:
  if loss not in UTILITY_LOSSES:
    raise ValueError(f"oracle.loss={loss!r}: must be one of {UTILITY_LOSSES}")
  return loss


def correct_choice(query: Query) -> str | None:
  """The option scored as correct by the ``"choice"`` loss: the most frequent reference answer
  that is among `query.choices` (ties: the first listed), or None when none is.

  Annotator answers can be noisy (a wrong answer, a synonym such as "2" for "two"), so the
  majority is used rather than `answers[0]`; with a single reference they agree.
  """
  counts: dict[str, int] = {}
  for a in query.answers:
    if a in query.choices:
      counts[a] = counts.get(a, 0) + 1
  if not counts:
    return None
  return max(counts, key=lambda a: (counts[a], -query.answers.index(a)))
