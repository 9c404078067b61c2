"""The reference black box of the synthetic benchmark, seen only through the `Oracle` interface.

A small `ReferenceNet` is trained once on *raw* images (or clips) of an `ExampleSource` that its
builder hands over (`anonymax.black_boxes` builds the synthetic benchmark's) and cached on disk;
afterwards it is reachable only through text: a prompt is parsed back to one of the known
questions, and the network answers with a log-probability for every entry of the answer vocabulary.
From those log-probabilities all three utility losses of `base.UTILITY_LOSSES` follow, computed by
`anonymax.utility_losses` (texts compared after `normalize_text`):

  * ``"nll"``:    −Σ_a w_a log p(a | x, q), w_a = (count of a in `Query.answers`) / len(answers)
                  (VQA: the expected NLL over the ten annotator answers; actions: −log p(class));
                  `expected_nll` with `answer_weights`;
  * ``"choice"``: −log [ p(c*) / Σ_{c ∈ choices} p(c) ], c* the most frequent reference answer
                  among the choices (answers[0] when there is one reference); `floored_choice_nll`
                  with `majority_choice`;
  * ``"vqa"``:    1 − vqa_accuracy(argmax_a p(a), answers); `vqa_loss`.

Log-probabilities are floored at `utility_losses.LOG_PROB_FLOOR` (an answer outside the vocabulary
gets the floor), the way an API's top-logprobs bottom out, which keeps every loss finite and
bounded.

Example:
  >>> oracle = black_boxes.reference_oracle(image_size=64, loss="nll")
  >>> out = oracle.query(anonymized_uint8, split.queries[:8])
  >>> oracle.answer(anonymized_uint8[:1], ["What is the person doing?"], top_k=3)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from anonymax import utility_losses
from anonymax.oracles import reference_model
from anonymax.oracles.base import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  Oracle,
  OracleOutput,
  Query,
  check_loss_name,
)
from anonymax.oracles.reference_model import (
  MODEL_VERSION,
  ExampleSource,
  TrainConfig,
  answer_weights,
  flatten_params,
  make_model,
  make_predict_fn,
  normalize_text,
  unflatten_params,
)

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "anonymax", "reference")
CACHE_DIR_ENV = "ANONYMAX_REFERENCE_CACHE"
_META_KEY = "__meta__"
# Training sizes when the caller gives none: a few minutes at most on 2 CPU cores.
DEFAULTS = {
  "images": {"num_train": 8192, "steps": 1500, "batch_size": 64},
  "clips": {"num_train": 1024, "steps": 300, "batch_size": 16},
}


@dataclasses.dataclass
class _Parsed:
  """One query, resolved against the vocabulary and the known prompts."""

  question: int  # -1: unknown prompt
  weights: dict[int, float]
  choice_ids: list[int]
  correct: int  # position of the correct option (the majority answer) in choice_ids, -1 if none


class ReferenceOracle(Oracle):
  """A trained `ReferenceNet` behind the `Oracle` interface (answers as text + log-probabilities).

  Attributes:
    name: "reference-synthetic-<hash of hyperparameters and data version>".
    loss: the utility loss `query` returns, one of `base.UTILITY_LOSSES`.
    stats: `OracleStats`; `calls` counts samples scored by the network, `failures` non-OK samples.
    vocab: the answer vocabulary (the texts the oracle can answer).
    prompts: the known questions (normalised with `normalize_text`).
    metadata: training facts (hyperparameters, raw-test accuracy, training seconds).
  """

  def __init__(
    self,
    params: dict,
    *,
    vocab: Sequence[str],
    prompts: Sequence[str],
    image_size: int,
    clip_length: int = 0,
    config: TrainConfig | None = None,
    loss: str = "nll",
    name: str = "reference-synthetic",
    metadata: dict | None = None,
    max_batch: int = 256,
  ):
    super().__init__(name=name, loss=loss)
    self.vocab = tuple(vocab)
    self.prompts = tuple(normalize_text(p) for p in prompts)
    if not self.vocab or not self.prompts:
      raise ValueError("ReferenceOracle: vocab and prompts must be non-empty")
    self.image_size = int(image_size)
    self.clip_length = int(clip_length)
    self.config = config = config or TrainConfig()
    self.metadata = dict(metadata or {})
    self.max_batch = int(max_batch)
    self._vocab_index = {normalize_text(a): i for i, a in reversed(list(enumerate(self.vocab)))}
    self._prompt_index = {p: i for i, p in reversed(list(enumerate(self.prompts)))}
    self._model = make_model(config, num_answers=len(self.vocab), num_questions=len(self.prompts))
    self._predict = make_predict_fn(self._model)
    self.params = jax.device_put(params)

  # --- the text interface ----------------------------------------------------------------------

  def parse_prompt(self, prompt: str) -> int:
    """The id of the known question in `prompt`, or -1.

    Exact match after `normalize_text`; otherwise the longest known question contained in the
    prompt on word boundaries (so "Answer briefly. What colour is the ball?" still parses).
    """
    text = normalize_text(prompt)
    if text in self._prompt_index:
      return self._prompt_index[text]
    padded = f" {text} "
    found = [p for p in self.prompts if p and f" {p} " in padded]
    return self._prompt_index[max(found, key=len)] if found else -1

  def visual_problem(self, visuals, n: int) -> str | None:
    """Why `visuals` cannot be scored as `n` samples (None when they can)."""
    if not hasattr(visuals, "dtype") or not hasattr(visuals, "shape"):
      return f"visuals: expected an array, got {type(visuals).__name__}"
    if visuals.dtype != np.uint8:
      return f"visuals: dtype {visuals.dtype}, expected uint8"
    s = self.image_size
    want = (n, self.clip_length, s, s, 3) if self.clip_length else (n, s, s, 3)
    if tuple(visuals.shape) != want:
      return f"visuals: shape {tuple(visuals.shape)}, expected {want}"
    return None

  def log_probs(self, visuals: np.ndarray, question_ids: np.ndarray) -> np.ndarray:
    """log p(a | x, q) for every vocabulary entry: float64 [N, V].

    Batches are padded to a power of two (at most `max_batch`), so the forward pass compiles once
    per bucket, not once per batch size.
    """
    n = len(question_ids)
    out = np.zeros((n, len(self.vocab)), np.float64)
    for lo in range(0, n, self.max_batch):
      x, q = visuals[lo : lo + self.max_batch], question_ids[lo : lo + self.max_batch]
      m = len(q)
      bucket = min(self.max_batch, 1 << (m - 1).bit_length())
      if bucket > m:
        x = np.concatenate([x, np.zeros((bucket - m,) + x.shape[1:], x.dtype)])
        q = np.concatenate([q, np.zeros(bucket - m, q.dtype)])
      out[lo : lo + m] = np.asarray(self._predict(self.params, x, q), np.float64)[:m]
    return out

  def answer(
    self, visuals: np.ndarray, prompts: Sequence[str], top_k: int = 5
  ) -> list[list[tuple[str, float]]]:
    """The top-k answers with their log-probabilities, per sample (best first).

    Args:
      visuals: uint8 [N, S, S, 3] (or [N, T, S, S, 3] for a clip oracle).
      prompts: N question texts.
      top_k: how many answers per sample.

    Returns:
      N lists of (answer text, log-probability); an empty list for a prompt that is not one of
      the known questions.

    Raises:
      ValueError: naming the bad argument (visuals' dtype/shape, top_k).
    """
    prompts = list(prompts)
    problem = self.visual_problem(visuals, len(prompts))
    if problem:
      raise ValueError(problem)
    if top_k < 1:
      raise ValueError(f"top_k={top_k}: must be >= 1")
    qids = np.array([self.parse_prompt(p) for p in prompts], np.int32)
    lp = self.log_probs(np.asarray(visuals), np.maximum(qids, 0))
    result = []
    for row, qid in zip(lp, qids, strict=True):
      order = np.argsort(-row, kind="stable")[:top_k]
      result.append([] if qid < 0 else [(self.vocab[j], float(row[j])) for j in order])
    return result

  def differentiable_nll(self, queries: Sequence[Query]):
    """The "nll" loss as a JAX function `nll(visuals, rows)` of float visuals in [0, 1] [N, ...]
    asked `queries[rows]` (rows: int [N], traceable):

      L_i(x) = −Σ_a w_ia log p(a | x_i, q_i)      (without `query`'s floor on log p),

    differentiable in x, for diagnostics only (e.g. how well a surrogate's gradient agrees with
    the true one: benchmarks/guide_quality.py). A real black box has nothing like it, and
    training never uses it. Raises ValueError for a query whose prompt is not known.
    """
    parsed = [self._parse(q) for q in queries]
    if any(p.question < 0 for p in parsed):
      bad = next(q.prompt for q, p in zip(queries, parsed) if p.question < 0)
      raise ValueError(f"differentiable_nll: unknown question {bad!r}")
    qids = jnp.asarray([p.question for p in parsed], jnp.int32)
    weights = np.zeros((len(parsed), len(self.vocab)), np.float32)
    for i, p in enumerate(parsed):
      for j, w in p.weights.items():
        if j >= 0:
          weights[i, j] += w
    weights = jnp.asarray(weights)
    model, params = self._model, self.params

    def nll(visuals: jax.Array, rows: jax.Array) -> jax.Array:
      logp = jax.nn.log_softmax(model.apply({"params": params}, visuals, qids[rows]))
      return -jnp.sum(weights[rows] * logp, axis=-1)

    return nll

  # --- the Oracle interface --------------------------------------------------------------------

  def _parse(self, query: Query) -> _Parsed:
    choice_ids, correct = [], -1
    if query.choices:
      seen = list(dict.fromkeys(map(normalize_text, query.choices)))
      choice_ids = [self._vocab_index.get(c, -1) for c in seen]
      correct = utility_losses.majority_choice([normalize_text(a) for a in query.answers], seen)
    return _Parsed(
      self.parse_prompt(query.prompt),
      answer_weights(query.answers, self._vocab_index),
      choice_ids,
      correct,
    )

  def _loss(self, log_probs: np.ndarray, answer: str, query: Query, parsed: _Parsed) -> float:
    """The configured utility loss of one sample (NaN when it cannot be scored)."""
    if self.loss == "nll":
      lp = utility_losses.floored_log_probs(log_probs, parsed.weights.keys())
      return utility_losses.expected_nll(lp, list(parsed.weights.values()))
    if self.loss == "choice":
      if parsed.correct < 0:  # no choices, or the reference answer is not among them
        return math.nan
      lp = utility_losses.floored_log_probs(log_probs, parsed.choice_ids)
      return utility_losses.floored_choice_nll(lp, parsed.correct)
    return float(utility_losses.vqa_loss(answer, list(query.answers)))

  def query(self, visuals: np.ndarray, queries: Sequence[Query]) -> OracleOutput:
    """Scores N visuals; a sample that cannot be scored gets STATUS_INVALID. Never raises."""
    start = time.perf_counter()
    queries = list(queries)
    n = len(queries)
    try:
      out = self._query(visuals, queries)
    except Exception as e:  # noqa: BLE001 — an oracle's contract is "never raise".
      logging.warning("reference oracle failed on %d samples: %s: %s", n, type(e).__name__, e)
      out = OracleOutput.failed(n, STATUS_FAILED)
    self.stats.failures += int(np.sum(out.status != STATUS_OK))
    self.stats.seconds += time.perf_counter() - start
    return out

  def _query(self, visuals, queries: list[Query]) -> OracleOutput:
    n = len(queries)
    problem = self.visual_problem(visuals, n)
    if problem:
      logging.warning("reference oracle: %s; all %d samples invalid", problem, n)
      return OracleOutput.failed(n, STATUS_INVALID)
    parsed = [self._parse(q) for q in queries]
    qids = np.array([p.question for p in parsed], np.int32)
    lp = self.log_probs(np.asarray(visuals), np.maximum(qids, 0))
    self.stats.calls += n
    losses = np.zeros(n, np.float32)
    status = np.full(n, STATUS_INVALID, np.int32)
    answers = [""] * n
    for i, (q, p) in enumerate(zip(queries, parsed, strict=True)):
      if p.question < 0:
        continue
      answers[i] = self.vocab[int(np.argmax(lp[i]))]
      loss = self._loss(lp[i], answers[i], q, p)
      if math.isfinite(loss):
        losses[i], status[i] = loss, STATUS_OK
    return OracleOutput(losses, status, answers)

  # --- cache -----------------------------------------------------------------------------------

  def save(self, path: str) -> None:
    """Writes parameters + metadata to one .npz, atomically (temporary file, then rename)."""
    meta = {
      "name": self.name,
      "vocab": list(self.vocab),
      "prompts": list(self.prompts),
      "image_size": self.image_size,
      "clip_length": self.clip_length,
      "config": dataclasses.asdict(self.config),
      "metadata": self.metadata,
    }
    arrays = flatten_params(jax.device_get(self.params))
    arrays[_META_KEY] = np.array(json.dumps(meta))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
    try:
      with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise

  @classmethod
  def load(cls, path: str, *, loss: str = "nll") -> ReferenceOracle:
    """Reads an oracle written by `save`.

    Raises:
      ValueError: naming `path` when it is missing, damaged or not such a file.
    """
    check_loss_name(loss)
    try:
      with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f[_META_KEY]))
        flat = {k: f[k] for k in f.files if k != _META_KEY}
      config = TrainConfig(**{**meta["config"], "features": tuple(meta["config"]["features"])})
      fields = {k: meta[k] for k in ("vocab", "prompts", "image_size", "clip_length", "name")}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
      raise ValueError(f"{path}: not a readable reference oracle file ({e})") from e
    return cls(
      unflatten_params(flat), config=config, loss=loss, metadata=meta.get("metadata"), **fields
    )

  @classmethod
  def load_or_train(
    cls,
    examples: ExampleSource,
    *,
    cache_dir: str | None = None,
    image_size: int = 64,
    clip_length: int = 0,
    loss: str = "nll",
    seed: int = 0,
    num_train: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    num_test: int = 512,
    progress: bool = True,
  ) -> ReferenceOracle:
    """The cached oracle for these hyperparameters; trains (and caches) it when missing.

    The cache file is `<cache_dir>/<key>.npz`, key = sha256 of the hyperparameters, the model
    version and `reference_model.data_fingerprint` of `examples` (so a changed generator
    retrains).

    Args:
      examples: where the raw training and test examples come from, with the base vocabulary
        (e.g. `black_boxes.synthetic_examples(image_size, clip_length)`).
      cache_dir: where trained oracles live; default $ANONYMAX_REFERENCE_CACHE, else
        ~/.cache/anonymax/reference.
      image_size: side of the (square) images or frames; the examples' visuals must have it.
      clip_length: frames per clip; 0 for still images.
      loss: the utility loss `query` returns.
      seed: initialisation and batch-order seed (the oracle's data seeds derive from it).
      num_train, steps, batch_size: training size; None picks the defaults of `DEFAULTS`
        (images or clips).
      num_test: raw held-out examples measured after training (metadata only, not in the key).
      progress: show a progress bar while training.

    Raises:
      ValueError: a bad `loss` or `num_train`, or examples of another size.
    """
    check_loss_name(loss)
    defaults = DEFAULTS["clips" if clip_length else "images"]
    num_train = defaults["num_train"] if num_train is None else int(num_train)
    steps = defaults["steps"] if steps is None else int(steps)
    batch_size = defaults["batch_size"] if batch_size is None else int(batch_size)
    if num_train <= 0:
      raise ValueError(f"num_train={num_train}: must be positive")
    config = TrainConfig(steps=steps, batch_size=batch_size, seed=seed)
    key = cache_key(
      config,
      image_size=image_size,
      clip_length=clip_length,
      num_train=num_train,
      data_version=reference_model.data_fingerprint(
        examples, image_size=image_size, clip_length=clip_length
      ),
    )
    cache_dir = os.path.expanduser(cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)
    path = os.path.join(cache_dir, f"{key[:20]}.npz")
    if os.path.exists(path):
      try:
        return cls.load(path, loss=loss)
      except ValueError as e:  # unreadable (e.g. written by hand or damaged): train it again
        logging.warning("%s; training the reference oracle again", e)
    params, vocab, prompts, metadata = reference_model.fit(
      config,
      examples,
      image_size=image_size,
      clip_length=clip_length,
      num_train=num_train,
      num_test=num_test,
      progress=progress,
    )
    oracle = cls(
      params,
      vocab=vocab,
      prompts=prompts,
      image_size=image_size,
      clip_length=clip_length,
      config=config,
      loss=loss,
      name=f"reference-synthetic-{key[:12]}",
      metadata=metadata,
    )
    oracle.save(path)
    return oracle


def cache_key(config: TrainConfig, **hyper) -> str:
  """sha256 hex of every training hyperparameter, the model version and the data version."""
  blob = {"model_version": MODEL_VERSION, "config": dataclasses.asdict(config), **hyper}
  return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()
