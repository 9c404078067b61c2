"""The `Oracle` base class: the black-box MLLM, seen only through its inputs and outputs.

An oracle receives *anonymized* visuals (never raw ones: see `bridge.py`) together with one
`Query` per sample, and returns a per-sample utility loss, the answer text and a status code.
It never raises for a bad sample: a sample that cannot be scored gets a non-OK status and the
trainer skips it (and counts it).

Utility losses (chosen by `Oracle.loss`; every reported number records which one produced it;
each is computed by `anonymax.utility_losses`, whatever the model behind the oracle):
  * ``"nll"``    answer negative log-likelihood of the reference answer(s), teacher forced.
  * ``"choice"`` −log p(correct option) among `Query.choices`, from the answer's log-probabilities.
  * ``"vqa"``    1 − VQA accuracy of the generated answer against `Query.answers` (text only).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from anonymax.types import (  # noqa: F401 — re-exported: an oracle speaks these
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  UTILITY_LOSSES,
  OracleOutput,
  OracleStats,
  Query,
  check_loss_name,
  to_uint8,
)


class Oracle(abc.ABC):
  """A black-box MLLM; subclasses implement `query` and keep the defaults they do not change.

  Attributes:
    name: the model's identity (cache keys, reports).
    loss: which utility loss `query` returns, one of `UTILITY_LOSSES`.
    stats: running `OracleStats`, a fresh one per instance.
    exhausted: True once a budget-limited oracle has spent its budget (never, by default).
    cache_signature: the decoding settings besides model, prompt and visual that change an
      answer ("" by default); part of the persistent cache's key.
  """

  name: str
  loss: str

  def __init__(self, *, name: str, loss: str):
    """Sets the identity and the utility loss (validated) and starts fresh counters.

    Raises:
      ValueError: naming `oracle.loss` when `loss` is not one of `UTILITY_LOSSES`.
    """
    self.name = name
    self.loss = check_loss_name(loss)
    self._stats = OracleStats()

  # A property (not a plain attribute) so that a wrapper can report counters it combines from
  # what it wraps (see `cache.CachedOracle`); the setter lets a subclass start new ones.
  @property
  def stats(self) -> OracleStats:
    return self._stats

  @stats.setter
  def stats(self, value: OracleStats) -> None:
    self._stats = value

  @property
  def exhausted(self) -> bool:
    return False

  @property
  def cache_signature(self) -> str:
    return ""

  def close(self) -> None:  # noqa: B027 — deliberately not abstract: most oracles hold nothing.
    """Releases what the oracle holds (connections, threads); it stays usable. A no-op here."""

  @abc.abstractmethod
  def query(self, visuals: np.ndarray, queries: Sequence[Query]) -> OracleOutput:
    """Scores N anonymized visuals.

    Args:
      visuals: uint8 [N, H, W, 3] images or uint8 [N, T, H, W, 3] clips, already anonymized.
      queries: N queries, one per visual.

    Returns:
      An `OracleOutput` with N entries. Never raises for a bad sample.
    """
