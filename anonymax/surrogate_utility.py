"""A white-box utility model trained on raw images: the surrogate-model baselines' stand-in.

The surrogate-model family of baselines (VITA, Li et al. 2023; SPAct, Dave et al. 2022) trains the
anonymizer with exact gradients through a utility model of its own instead of asking the black
box. Here that model s_φ is a `ReferenceNet` (the question-conditioned CNN of
`anonymax.oracles.reference_model`), fitted once to the raw images and reference answers of the
utility training split by soft cross-entropy. Its loss on an anonymized visual x' = f_A(x; θ),

  ℓ_s(x', q) = −Σ_a w_a(q) log softmax(s_φ(x', q))_a ,

(w_a: the fraction of the reference answers equal to a) is differentiable in x', hence in θ. The
row that uses it (`reference_anonymizers`, "surrogate_model") is then evaluated with the black box
like every other row: what the surrogate did not see, the black box still judges.

A fit is a pure function of the split and the settings (`reference_model.train` is bit-identical
on CPU), so it is cached on disk under a hash of both and a resumed run reads it back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from anonymax.data.records import Split
from anonymax.oracles import reference_model

CACHE_PREFIX = "surrogate_utility-"


def settings(config) -> reference_model.TrainConfig:
  """The surrogate's training settings: `config.surrogate` (defaults where a field is missing)
  with the run's seed."""
  section = config.get("surrogate") or {}
  fields = dict(section.to_dict() if hasattr(section, "to_dict") else section)
  fields.pop("cache_dir", None)
  if "features" in fields:
    fields["features"] = tuple(fields["features"])
  known = {f.name for f in dataclasses.fields(reference_model.TrainConfig)} - {"seed"}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(
      f"config.surrogate: unknown field(s) {', '.join(unknown)}; known: {sorted(known)}"
    )
  return reference_model.TrainConfig(seed=int(config.seed), **fields)


@dataclasses.dataclass(frozen=True)
class SurrogateUtility:
  """A fitted s_φ and the encoded queries of the split it was fitted on.

  Attributes:
    model: the `ReferenceNet` module.
    params: its fitted parameters φ.
    question_ids: int32 [N], the question index of each example of the split.
    targets: float32 [N, V], each example's answer distribution w(q).
  """

  model: reference_model.ReferenceNet
  params: dict
  question_ids: np.ndarray
  targets: np.ndarray

  def losses(self, visuals: jax.Array, example_ids: jax.Array) -> jax.Array:
    """ℓ_s per sample, float32 [B], of visuals in [0, 1] (or uint8) for split examples
    `example_ids` [B] (traceable, differentiable in `visuals`)."""
    ids = jnp.asarray(example_ids)
    logp = jax.nn.log_softmax(
      self.model.apply({"params": self.params}, visuals, jnp.asarray(self.question_ids)[ids])
    )
    return -jnp.sum(jnp.asarray(self.targets)[ids] * logp, axis=-1)


def _examples(split: Split) -> reference_model.Examples:
  n = len(split.queries)
  return reference_model.Examples(
    visuals=split.visuals,
    visual_ids=np.arange(n, dtype=np.int32),
    prompts=[q.prompt for q in split.queries],
    answers=[tuple(q.answers) for q in split.queries],
    question_types=list(split.question_types or ("all",) * n),
  )


def _encode(split: Split):
  examples = _examples(split)
  # Multiple-choice options count as answers even when no reference answer uses them.
  base = sorted({c for q in split.queries for c in q.choices})
  vocab, prompts = reference_model.vocabulary(examples, base)
  question_ids, targets = reference_model.encode(examples, vocab, prompts)
  return examples, vocab, prompts, question_ids, targets


def cache_key(split: Split, train_config: reference_model.TrainConfig) -> str:
  """sha256 (16 hex digits) of the model version, the settings, the split's visuals and queries."""
  h = hashlib.sha256()
  h.update(repr((reference_model.MODEL_VERSION, dataclasses.astuple(train_config))).encode())
  h.update(np.ascontiguousarray(split.visuals).tobytes())
  h.update(repr([(q.prompt, tuple(q.answers), tuple(q.choices)) for q in split.queries]).encode())
  return h.hexdigest()[:16]


def fit(
  split: Split,
  train_config: reference_model.TrainConfig,
  *,
  cache_dir: str | None = None,
  progress: bool = True,
) -> SurrogateUtility:
  """s_φ fitted to `split`'s raw visuals and answers, read from `cache_dir` when fitted before.

  Args:
    split: the utility training split (raw visuals, one query each).
    train_config: the settings (`settings(config)`).
    cache_dir: where the fitted parameters are kept (None: not kept).
    progress: show a progress bar while fitting.

  Raises:
    ValueError: the split has no query with a known answer.
  """
  examples, vocab, prompts, question_ids, targets = _encode(split)
  if not len(vocab) or not np.any(targets.sum(axis=1) > 0):
    raise ValueError("surrogate utility: the utility split has no reference answers to fit")
  model = reference_model.make_model(
    train_config, num_answers=len(vocab), num_questions=len(prompts)
  )
  path = None
  if cache_dir:
    path = os.path.join(cache_dir, f"{CACHE_PREFIX}{cache_key(split, train_config)}.npz")
    if os.path.exists(path):
      with np.load(path) as f:
        params = reference_model.unflatten_params(dict(f))
      return SurrogateUtility(model, params, question_ids, targets)
  bar = None
  if progress:
    from tqdm.auto import tqdm  # noqa: PLC0415

    bar = tqdm(total=train_config.steps, desc="surrogate utility model", unit="step")

  def report(step, loss):
    bar.n = step + 1
    bar.set_postfix(loss=f"{loss:.3f}")

  params, info = reference_model.train(
    examples.visuals,
    examples.visual_ids,
    question_ids,
    targets,
    num_questions=len(prompts),
    config=train_config,
    progress=report if bar is not None else None,
  )
  if bar is not None:
    bar.close()
  logging.info(
    "surrogate utility model: final loss %.3f, %.0f s", info["final_loss"], info["seconds"]
  )
  if path is not None:
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".surrogate.", suffix=".npz")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **reference_model.flatten_params(params))
    os.replace(tmp, path)  # whole or absent: a kill mid-write leaves no half file
  return SurrogateUtility(model, params, question_ids, targets)
