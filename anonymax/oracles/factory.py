"""Builds the configured black box (`config.oracle`) for training and evaluation."""

from __future__ import annotations

import os

from anonymax.oracles.base import Oracle, check_loss_name


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
    from anonymax.oracles.reference import ReferenceOracle

    if config.data.dataset != "synthetic":
      raise ValueError(
        f"config.oracle.kind='reference' answers the synthetic benchmark only, not "
        f"config.data.dataset={config.data.dataset!r}: use oracle=openai or oracle=hf"
      )

    oracle = ReferenceOracle.load_or_train(
      cache_dir=oc.reference.cache_dir,
      image_size=config.data.image_size,
      clip_length=config.data.clip_length,
      loss=loss,
      seed=config.data.seed,
      num_train=oc.reference.num_train,
      steps=oc.reference.steps,
    )
  elif kind == "openai":
    from anonymax.oracles.openai import OpenAIOracle

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
      budget_tokens=o.get("budget_tokens"),
      prices=o.get("prices"),
      detail=o.get("detail", "auto"),
      jpeg_quality=o.get("jpeg_quality", 90),
      max_tokens=o.get("max_tokens", 16),
      top_logprobs=o.get("top_logprobs", 10),
      usage_path=usage_path,
    )
  elif kind == "hf":
    from anonymax.oracles.hf import HFOracle

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
      dtype=h.get("dtype", "auto"),
      max_new_tokens=h.get("max_new_tokens", 10),
      answer_weighting=h.get("answer_weighting", "frequency"),
      system_prompt=h.get("system_prompt"),
    )
  else:
    raise ValueError(f"config.oracle.kind={kind!r}: must be 'reference', 'openai' or 'hf'")

  if oc.get("cache", False) and workdir:
    from anonymax.oracles.cache import CachedOracle, OracleCache

    path = oc.get("cache_path", None) or os.path.join(workdir, "oracle_cache.sqlite")
    oracle = CachedOracle(oracle, OracleCache(path))
  return oracle
