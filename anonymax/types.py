"""The types every layer shares: what is asked of the black box and what it answers.

This module is the bottom layer: data builders produce `Query` objects, oracles answer them with
an `OracleOutput`, and neither imports the other. It imports nothing from anonymax.

Status codes (one per sample of an oracle call):
  * `STATUS_OK`: scored; its loss is finite.
  * `STATUS_FAILED`: the request failed after retries (429/5xx/timeouts); the sample is skipped.
  * `STATUS_INVALID`: an answer came back but could not be scored (malformed, non-finite).

Utility losses (`UTILITY_LOSSES`, chosen by the oracle's `loss`; every reported number records
which one produced it):
  * ``"nll"``    answer negative log-likelihood of the reference answer(s), teacher forced.
  * ``"choice"`` −log p(correct option) among `Query.choices`, from the answer's log-probabilities.
  * ``"vqa"``    1 − VQA accuracy of the generated answer against `Query.answers` (text only).
"""

from __future__ import annotations

import dataclasses

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


def check_loss_name(loss: str) -> str:
  """`loss` if it is one of `UTILITY_LOSSES`; otherwise a ValueError naming `oracle.loss`."""
  if loss not in UTILITY_LOSSES:
    raise ValueError(f"oracle.loss={loss!r}: must be one of {UTILITY_LOSSES}")
  return loss


def to_uint8(visuals: np.ndarray) -> np.ndarray:
  """Float visuals in [0, 1] → uint8 (what an upload would carry); uint8 passes through.

  x ↦ clip(rint(255 x), 0, 255), NaN ↦ 0 (round half to even, as `numpy.rint`).
  """
  visuals = np.asarray(visuals)
  if visuals.dtype == np.uint8:
    return visuals
  return np.clip(np.rint(np.nan_to_num(visuals.astype(np.float32)) * 255.0), 0, 255).astype(
    np.uint8
  )
