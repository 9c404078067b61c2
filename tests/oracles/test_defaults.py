"""Every defaulted oracle setting equals the default config's field of the same meaning.

A constructor called without an argument must behave as the default config does: each defaulted
parameter is either mapped to its config field (and equal to it) or listed as one no config sets.
A parameter added on either side without the other fails here.
"""

from __future__ import annotations

import inspect

import pytest

from anonymax import black_boxes
from anonymax.configs import synthetic
from anonymax.oracles.openai import OpenAIOracle
from anonymax.oracles.reference import ReferenceOracle


def _defaults(fn) -> dict:
  return {
    name: p.default
    for name, p in inspect.signature(fn).parameters.items()
    if p.default is not inspect.Parameter.empty
  }


def _field(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


# parameter -> config field (dotted, under the config of that oracle kind); and the parameters no
# config sets (retry pacing, test hooks, training sizes picked per visual kind).
OPENAI = {
  "base_url": "oracle.openai.base_url",
  "loss": "oracle.loss",
  "api_key_env": "oracle.openai.api_key_env",
  "concurrency": "oracle.openai.concurrency",
  "max_retries": "oracle.openai.max_retries",
  "timeout": "oracle.openai.timeout",
  "image_format": "oracle.openai.image_format",
  "jpeg_quality": "oracle.openai.jpeg_quality",
  "detail": "oracle.openai.detail",
  "max_tokens": "oracle.openai.max_tokens",
  "top_logprobs": "oracle.openai.top_logprobs",
  "budget_calls": "oracle.openai.budget_calls",
  "budget_tokens": "oracle.openai.budget_tokens",
  "budget_cost": "oracle.openai.budget_cost",
  "prices": "oracle.openai.prices",
  "prompt_template": "oracle.openai.prompt_template",
  "answer_scoring": "oracle.answer_scoring",
}
OPENAI_UNSET = {"client_max_retries", "backoff", "max_backoff", "floor_logprob", "usage_path"}

HF = {
  "loss": "oracle.loss",
  "device": "oracle.hf.device",
  "dtype": "oracle.hf.dtype",
  "batch_size": "oracle.hf.batch_size",
  "max_new_tokens": "oracle.hf.max_new_tokens",
  "answer_weighting": "oracle.hf.answer_weighting",
  "system_prompt": "oracle.hf.system_prompt",
  "prompt_template": "oracle.hf.prompt_template",
  "answer_scoring": "oracle.answer_scoring",
}
HF_UNSET = {"video", "nll_reduction"}

REFERENCE = {
  "cache_dir": "oracle.reference.cache_dir",
  "image_size": "data.image_size",
  "clip_length": "data.clip_length",
  "loss": "oracle.loss",
  "seed": "data.seed",
  "num_train": "oracle.reference.num_train",
  "steps": "oracle.reference.steps",
  "scenes": "data.scenes",
}
REFERENCE_UNSET = {"batch_size", "num_test", "progress"}


def _hf_init():
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  from anonymax.oracles.hf import HFOracle

  return HFOracle.__init__


@pytest.mark.parametrize(
  "kind, fn, mapping, unset",
  [
    ("openai", lambda: OpenAIOracle.__init__, OPENAI, OPENAI_UNSET),
    ("hf", _hf_init, HF, HF_UNSET),
    ("reference", lambda: ReferenceOracle.load_or_train, REFERENCE, REFERENCE_UNSET),
    ("reference", lambda: black_boxes.reference_oracle, REFERENCE, REFERENCE_UNSET),
  ],
  ids=["OpenAIOracle", "HFOracle", "ReferenceOracle.load_or_train", "reference_oracle"],
)
def test_constructor_defaults_are_the_default_config(kind, fn, mapping, unset):
  defaults = _defaults(fn())
  config = synthetic.get_config(f"oracle={kind}")
  assert config.oracle.kind == kind
  unclassified = set(defaults) - set(mapping) - unset
  assert not unclassified, f"map these to a config field or list them as unset: {unclassified}"
  checked = 0
  for name, value in defaults.items():
    if name in mapping:
      want = _field(config, mapping[name])
      assert value == want and type(value) is type(want), (name, value, want)
      checked += 1
  assert checked >= 4  # the mapping really was exercised (reference_oracle has four defaults)


def test_make_oracle_passes_every_openai_field(monkeypatch):
  """No field falls back to a constructor default: each one set in the config reaches the oracle."""
  monkeypatch.setenv("SOME_KEY", "sk-test")
  config = synthetic.get_config("oracle=openai,loss=vqa,model=m1")
  o = config.oracle.openai
  o.base_url, o.api_key_env, o.concurrency, o.max_retries = (
    "http://127.0.0.1:9/v1",
    "SOME_KEY",
    3,
    7,
  )
  o.timeout, o.image_format, o.jpeg_quality, o.detail = 2.5, "jpeg", 55, "low"
  o.max_tokens, o.top_logprobs, o.budget_calls, o.budget_tokens = 5, 4, 11, 12
  o.budget_cost, o.prices = 1.5, {"input": 1.0, "output": 2.0}
  oracle = black_boxes.make_oracle(config)  # no workdir: no cache, no usage file
  assert isinstance(oracle, OpenAIOracle)
  got = (oracle.name, oracle.loss, oracle.base_url, oracle.api_key_env, oracle.concurrency)
  assert got == ("m1", "vqa", "http://127.0.0.1:9/v1", "SOME_KEY", 3)
  assert (oracle.max_retries, oracle.timeout, oracle.image_format) == (7, 2.5, "jpeg")
  assert (oracle.jpeg_quality, oracle.detail, oracle.max_tokens) == (55, "low", 5)
  assert oracle.top_logprobs == 4 and oracle.usage_path is None
  assert (oracle.budget.calls, oracle.budget.tokens, oracle.budget.cost) == (11, 12, 1.5)
  assert (oracle.prices.input, oracle.prices.output) == (1.0, 2.0)
  oracle.close()


def test_make_oracle_caches_paid_oracles_in_the_workdir(monkeypatch, tmp_path):
  from anonymax.oracles.cache import CachedOracle

  monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
  config = synthetic.get_config("oracle=openai")
  assert config.oracle.cache  # paid oracles are cached by default
  oracle = black_boxes.make_oracle(config, str(tmp_path))
  assert isinstance(oracle, CachedOracle) and isinstance(oracle.oracle, OpenAIOracle)
  assert oracle.oracle.usage_path == str(tmp_path / "oracle_usage.json")
  assert (tmp_path / "oracle_cache.sqlite").exists()
  oracle.close()
  config.oracle.kind = "bard"
  with pytest.raises(ValueError, match="config.oracle.kind='bard'"):
    black_boxes.make_oracle(config)
