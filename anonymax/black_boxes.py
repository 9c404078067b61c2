"""Builds the configured black box (`config.oracle`) for training and evaluation.

This is where the two sides meet: the oracles (`anonymax.oracles`) never import a data module and
the data modules never import an oracle, so the reference black box, which learns from the
synthetic benchmark's raw examples, gets them here as a `reference_model.ExampleSource`.

Example:
  >>> oracle = make_oracle(config, workdir)     # whatever config.oracle.kind names
  >>> reference = reference_oracle(image_size=32, num_train=1024, steps=300, progress=False)
"""

from __future__ import annotations

import functools
import os

import numpy as np

from anonymax.data import synthetic
from anonymax.oracles.base import Oracle, check_loss_name
from anonymax.oracles.reference import ReferenceOracle
from anonymax.oracles.reference_model import Examples, ExampleSource


def _examples(data: dict[str, np.ndarray], clip_length: int) -> Examples:
  """Generated examples as `Examples`: each visual's question with its ten answers."""
  return Examples(
    np.asarray(data["clip" if clip_length else "image"]),
    np.arange(len(data["question"]), dtype=np.int32),
    [str(q) for q in data["question"]],
    [tuple(str(a) for a in row) for row in data["answers"]],
    [str(t) for t in data["question_type"]],
  )


def _generate_synthetic(num: int, seed: int, *, image_size: int, clip_length: int) -> Examples:
  """`synthetic.generate` (scenes v1) as examples."""
  data = synthetic.generate(num, seed=seed, image_size=image_size, clip_length=clip_length)
  return _examples(data, clip_length)


def _generate_synthetic_v2(num: int, seed: int, *, image_size: int, clip_length: int) -> Examples:
  """`synthetic.generate_v2` (scenes v2) as examples."""
  data = synthetic.generate_v2(num, seed=seed, image_size=image_size, clip_length=clip_length)
  return _examples(data, clip_length)


def synthetic_examples(image_size: int, clip_length: int = 0, scenes: str = "v1") -> ExampleSource:
  """The synthetic benchmark's raw examples of this size, as the reference black box learns them.

  ``generate(num, seed)`` is `synthetic.generate` (``scenes="v1"``) or `synthetic.generate_v2`
  (``"v2"``) with that seed; the vocabulary is `synthetic.ANSWER_VOCAB` or
  `synthetic.ANSWER_VOCAB_V2` (its order gives the answer ids) and the action classes, in id
  order, are part of the data fingerprint.
  """
  synthetic.check_scenes(scenes)
  generate, vocabulary, actions = {
    "v1": (_generate_synthetic, synthetic.ANSWER_VOCAB, synthetic.ACTIONS),
    "v2": (_generate_synthetic_v2, synthetic.ANSWER_VOCAB_V2, synthetic.ACTIONS_V2),
  }[scenes]
  return ExampleSource(
    generate=functools.partial(generate, image_size=int(image_size), clip_length=int(clip_length)),
    vocabulary=tuple(vocabulary),
    labels=(tuple(actions),),
  )


def reference_oracle(
  *,
  image_size: int = 64,
  clip_length: int = 0,
  scenes: str = "v1",
  loss: str = "nll",
  cache_dir: str | None = None,
  **training,
) -> ReferenceOracle:
  """The synthetic benchmark's reference black box, trained on its raw examples (or cached).

  Args:
    image_size, clip_length: the benchmark's visuals (clip_length 0: still images).
    scenes: which scenes it learns, ``"v1"`` (the default config's; its network and cache file
      are those it always had) or ``"v2"``.
    loss: the utility loss it returns.
    cache_dir: where trained networks live (see `ReferenceOracle.load_or_train`).
    **training: the other arguments of `ReferenceOracle.load_or_train` (seed, num_train, steps,
      batch_size, num_test, progress).

  """
  return ReferenceOracle.load_or_train(
    synthetic_examples(image_size, clip_length, scenes),
    cache_dir=cache_dir,
    image_size=image_size,
    clip_length=clip_length,
    loss=loss,
    **training,
  )


def make_oracle(config, workdir: str | None = None) -> Oracle:
  """Returns the oracle named by `config.oracle.kind`, wrapped in the persistent cache if asked.

  Kinds: ``reference`` (the synthetic benchmark's embedded black box), ``openai`` (any
  OpenAI-compatible server through the official client), ``hf`` (a local transformers model).
  Errors that would only show up later (a missing API key, a missing model path) are raised here,
  before any training.
  """
  oc = config.oracle
  loss = check_loss_name(oc.loss)
  kind = oc.kind
  if kind == "reference":
    if config.data.dataset != "synthetic":
      raise ValueError(
        f"config.oracle.kind='reference' answers the synthetic benchmark only, not "
        f"config.data.dataset={config.data.dataset!r}: use oracle=openai or oracle=hf"
      )
    oracle = reference_oracle(
      image_size=config.data.image_size,
      clip_length=config.data.clip_length,
      # Configs that name no scenes predate v2: their reference learns v1.
      scenes=config.data.get("scenes", "v1"),
      loss=loss,
      cache_dir=oc.reference.cache_dir,
      seed=config.data.seed,
      num_train=oc.reference.num_train,
      steps=oc.reference.steps,
    )
  elif kind == "openai":
    from anonymax.oracles.openai import OpenAIOracle  # noqa: PLC0415 — needs the openai client.

    o = oc.openai
    usage_path = os.path.join(workdir, "oracle_usage.json") if workdir else None
    oracle = OpenAIOracle(
      o.model,
      base_url=o.base_url or None,
      loss=loss,
      api_key_env=o.api_key_env,
      concurrency=o.concurrency,
      max_retries=o.max_retries,
      timeout=o.timeout,
      image_format=o.image_format,
      budget_calls=o.budget_calls,
      budget_cost=o.budget_cost,
      budget_tokens=o.budget_tokens,
      prices=o.prices,
      detail=o.detail,
      jpeg_quality=o.jpeg_quality,
      max_tokens=o.max_tokens,
      top_logprobs=o.top_logprobs,
      usage_path=usage_path,
      # .get: configs written before these fields send bare questions, scored officially.
      prompt_template=o.get("prompt_template", None),
      answer_scoring=oc.get("answer_scoring", "official"),
    )
  elif kind == "hf":
    from anonymax.oracles.hf import HFOracle  # noqa: PLC0415 — needs torch and transformers.

    h = oc.hf
    if not h.model_path:
      raise ValueError(
        "config.oracle.hf.model_path is empty: give a local model directory (model=PATH)"
      )
    oracle = HFOracle(
      h.model_path,
      loss=loss,
      device=h.device,
      batch_size=h.batch_size,
      dtype=h.dtype,
      max_new_tokens=h.max_new_tokens,
      answer_weighting=h.answer_weighting,
      system_prompt=h.system_prompt,
      prompt_template=h.get("prompt_template", None),
      answer_scoring=oc.get("answer_scoring", "official"),
    )
  else:
    raise ValueError(f"config.oracle.kind={kind!r}: must be 'reference', 'openai' or 'hf'")

  if oc.cache and workdir:
    from anonymax.oracles.cache import CachedOracle, OracleCache  # noqa: PLC0415

    # `cache_path` is no field of the shipped configs: a config may add it to share one cache.
    path = oc.get("cache_path", None) or os.path.join(workdir, "oracle_cache.sqlite")
    oracle = CachedOracle(oracle, OracleCache(path))
  return oracle
