"""The trainer on the smoke config: one real step, the raw-pixel guarantee, compile-once, faults."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from anonymax import metric_writers, optim, train
from anonymax.oracles import STATUS_FAILED, STATUS_OK, OracleOutput, OracleStats
from anonymax.oracles.bridge import OracleBridge
from configs import synthetic
from tests.test_metric_writers import read_tensorboard_scalars

MARKER = np.array([255, 0, 255], np.uint8)  # a pixel no synthetic scene has at (0, 0)


@pytest.fixture(scope="module")
def shared_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("shared")
  return str(root / "tfds"), str(root / "reference")


def smoke_config(shared_dirs, **overrides):
  config = synthetic.get_config("smoke")
  config.data.data_dir, config.oracle.reference.cache_dir = shared_dirs
  for key, value in overrides.items():
    node = config
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return config


class SpyOracle:
  """A black box that scores brightness and records every array it is sent."""

  name = "spy"
  loss = "nll"

  def __init__(self, fail_every=0):
    self.stats = OracleStats()
    self.received: list[np.ndarray] = []
    self.fail_every = fail_every

  def query(self, visuals, queries):
    self.received.append(np.array(visuals))
    n = len(queries)
    status = np.full(n, STATUS_OK, np.int32)
    if self.fail_every:
      status[:: self.fail_every] = STATUS_FAILED
    self.stats.calls += n
    losses = visuals.reshape(n, -1).mean(-1).astype(np.float32) / 255.0
    return OracleOutput(losses, status, ["x"] * n)


def test_one_real_step_of_train_and_evaluate(shared_dirs, tmp_path):
  """The real path: synthetic TFDS data, the reference black box, orbax checkpoint, metrics."""
  config = smoke_config(shared_dirs, total_steps=1, checkpoint_every=1, log_every=1)
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 1
  assert int(state.oracle_samples) == 2 * config.optim.num_samples * config.batch_size
  assert os.path.isdir(tmp_path / "checkpoints" / "1")
  row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
  assert row["step"] == 1
  assert np.isfinite(row["l_mllm"]) and row["l_mllm"] > 0  # the reference NLL of real answers
  assert np.isfinite(row["l_privacy"])
  if metric_writers.tensorboard_available():  # the same scalars as TensorBoard events
    tb = read_tensorboard_scalars(str(tmp_path / "tensorboard"))
    assert tb["train/l_mllm"] == [(1, pytest.approx(row["l_mllm"], rel=1e-6))]
    assert tb["train/oracle_samples"] == [(1, row["oracle_samples"])]
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["oracle"]["kind"] == "reference"
  leaves = jax.tree.leaves(state.params)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)


def test_only_anonymizer_outputs_reach_the_oracle(shared_dirs, tmp_path, monkeypatch):
  """A spy oracle sees only arrays carrying the anonymizer's marker, never a raw input."""
  real_build = train.build_models

  class Marked(nn.Module):
    inner: nn.Module

    @nn.compact
    def __call__(self, x):
      y = self.inner(x)
      return y.at[..., 0, 0, :].set(jnp.asarray(MARKER, y.dtype) / 255.0)

  def build_marked(config):
    anonymizer, reviewer = real_build(config)
    return Marked(anonymizer), reviewer

  monkeypatch.setattr(train, "build_models", build_marked)
  config = smoke_config(shared_dirs, total_steps=2, checkpoint_every=2)
  spy = SpyOracle()
  train.train_and_evaluate(config, str(tmp_path), oracle=spy)

  train_split, _ = train.load_data(config)
  raw = train_split.visuals
  assert not np.any(np.all(raw[..., 0, 0, :] == MARKER, axis=-1)), (
    "marker must be absent from raw data"
  )
  assert len(spy.received) == 2  # one oracle call per step
  for batch in spy.received:
    assert batch.shape[0] == 2 * config.batch_size
    assert np.all(batch[..., 0, 0, :] == MARKER), (
      "something other than an anonymizer output was sent"
    )
    for visual in batch:
      assert not np.any(np.all(raw == visual, axis=tuple(range(1, raw.ndim))))


def _pieces(config, oracle):
  train_split, _ = train.load_data(config)
  train.finalize_config(config, train_split)
  anonymizer, reviewer = train.build_models(config)
  optimizer = optim.make_optimizer(train.optimizer_config(config))
  state = train.create_state(config, anonymizer, reviewer, optimizer, train_split.visuals.shape[1:])
  bridge = OracleBridge(oracle, train_split.queries)
  step_fn = train.make_train_step(config, anonymizer, reviewer, optimizer, bridge)
  return train_split, state, step_fn


def _batch(split, config, step):
  from anonymax.data import pipeline

  u = pipeline.batch_indices(
    step, num_examples=len(split.queries), batch_size=config.batch_size, seed=0
  )
  p = pipeline.batch_indices(
    step, num_examples=len(split.queries), batch_size=config.privacy_batch_size, seed=1
  )
  return split.visuals[u], u.astype(np.int32), split.visuals[p], split.privacy[p]


def test_train_step_compiles_once(shared_dirs):
  config = smoke_config(shared_dirs)
  split, state, step_fn = _pieces(config, SpyOracle())
  batches = [_batch(split, config, k) for k in range(5)]
  for k in range(4):  # as the training loop runs it: the last step without a next batch
    next_visuals = batches[k + 1][0] if k < 3 else None
    state, metrics = step_fn(state, *batches[k], next_visuals=next_visuals)
  assert int(state.step) == 4
  assert step_fn._cache_size() == 1
  assert all(f._cache_size() == 1 for f in step_fn.parts)  # every part ran, and compiled once


def test_failed_samples_are_skipped_and_counted(shared_dirs):
  config = smoke_config(shared_dirs)
  split, state, step_fn = _pieces(config, SpyOracle(fail_every=4))
  state, metrics = step_fn(state, *_batch(split, config, 0))
  n = 2 * config.batch_size
  assert int(state.skipped) == len(range(0, n, 4))
  assert int(metrics["pairs_scored"]) < config.batch_size
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))


def test_a_step_with_no_usable_answer_leaves_the_anonymizer_unchanged(shared_dirs):
  config = smoke_config(shared_dirs)
  split, state, step_fn = _pieces(config, SpyOracle(fail_every=1))
  before = jax.tree.map(np.array, state.params)
  state, _ = step_fn(state, *_batch(split, config, 0))
  assert int(state.skipped) == 2 * config.batch_size
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, np.asarray(b))


def test_perturbed_anonymizations_are_theta_plus_minus_c_delta_with_a_shared_prefix(shared_dirs):
  """The oracle receives f_A(θ ± c_k Δ) for the Δ of fold_in(key, k), with Δ = 0 outside
  `optim.perturb`; the layers below the first perturbed one are computed once for all passes."""
  config = smoke_config(shared_dirs)
  assert config.optim.perturb  # the smoke config perturbs the last decoder block and the mask
  spy = SpyOracle()
  split, state, step_fn = _pieces(config, spy)
  anonymizer, _ = train.build_models(config)
  batch = _batch(split, config, 0)
  c_k = float(
    optim.make_optimizer(train.optimizer_config(config)).perturbation_scale(state.opt_state)
  )
  state_before = jax.device_get(state)  # the step donates `state`
  step_fn(state, *batch)
  state = state_before
  # The reference computation: every leaf perturbed by c·Δ (zeros where masked), two full passes.
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  k_delta, _ = jax.random.split(key)
  (k1,) = jax.random.split(k_delta, 1)
  delta = optim.rademacher_like(k1, state.params, mask=config.optim.perturb)
  assert any(float(jnp.abs(d).sum()) == 0 for d in jax.tree.leaves(delta))  # some are masked
  x = jnp.asarray(batch[0], jnp.float32) / 255.0
  want = [
    anonymizer.apply(
      {"params": jax.tree.map(lambda p, d, s=s: p + s * c_k * d, state.params, delta)}, x
    )
    for s in (1.0, -1.0)
  ]
  want = np.concatenate([np.clip(np.rint(np.asarray(w) * 255), 0, 255) for w in want])
  got = spy.received[-1].astype(np.float64)
  assert np.abs(got - want).max() <= 1  # equal up to a rounding step at a .5 boundary
  assert (got == want).mean() > 0.999
  # Compiled: fewer convolutions than two independent passes (the shared prefix runs once).
  deltas, c = step_fn.prepare(state.params, state.opt_state, state.rng, state.step)
  layout = train.parameter_layout(state.params)
  hlo = step_fn.perturb.lower(state.params, deltas, c, batch[0], layout).compile().as_text()
  one = jax.jit(lambda p, v: anonymizer.apply({"params": p}, v)).lower(state.params, x)
  assert hlo.count(" convolution(") < 2 * one.compile().as_text().count(" convolution(")


def test_flat_parameters_round_trip():
  tree = {
    "a": jnp.arange(6.0).reshape(2, 3),
    "b": {"c": jnp.ones(4), "d": jnp.full((1, 1, 2), 7.0)},
  }
  vector = train.flat_parameters(tree)
  assert vector.shape == (12,)
  back = train.unflatten_parameters(vector, train.parameter_layout(tree))
  assert jax.tree.structure(back) == jax.tree.structure(tree)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
    np.testing.assert_array_equal(x, y)


def test_perturbations_drawn_ahead_are_those_of_the_next_step(shared_dirs):
  config = smoke_config(shared_dirs)
  split, state, step_fn = _pieces(config, SpyOracle())
  state, _ = step_fn(state, *_batch(split, config, 0))
  # Δ_1 and c_1 were prepared during step 0's oracle wait; they equal a fresh draw for step 1.
  ahead, c_ahead = step_fn._prepared.deltas, step_fn._prepared.c
  fresh, c_fresh = step_fn.prepare(state.params, state.opt_state, state.rng, state.step)
  np.testing.assert_array_equal(ahead, fresh)
  assert float(c_ahead) == float(c_fresh) and step_fn._inputs(state)[0] is ahead
  assert float(jnp.abs(ahead).sum()) > 0 and not np.array_equal(
    ahead, step_fn.prepare(state.params, state.opt_state, state.rng, state.step - 1)[0]
  )
  # A state that is not the one returned (here: the same values, other arrays) gets a fresh draw.
  copy = jax.tree.map(jnp.copy, state)
  assert step_fn._inputs(copy)[0] is not ahead
  np.testing.assert_array_equal(step_fn._inputs(copy)[0], ahead)


def test_anonymizations_prepared_with_the_update_are_those_perturb_computes(shared_dirs):
  """Given the next batch, a step computes its perturbed anonymizations with the update; they
  equal `perturb` on its own (bit for bit: a resumed run's first step runs that), the next step
  sends them, and other visuals or another state get their own."""
  config = smoke_config(shared_dirs)
  spy = SpyOracle()
  split, state, step_fn = _pieces(config, spy)
  batches = [_batch(split, config, k) for k in range(3)]
  calls = []
  perturb = step_fn.perturb
  step_fn.perturb = lambda *args: calls.append(args[3]) or perturb(*args)
  state, _ = step_fn(state, *batches[0], next_visuals=batches[1][0])
  assert len(calls) == 1  # step 0 had nothing prepared
  prepared = step_fn._prepared
  deltas, c = step_fn.prepare(state.params, state.opt_state, state.rng, state.step)
  alone = perturb(state.params, deltas, c, batches[1][0], train.parameter_layout(state.params))
  np.testing.assert_array_equal(np.asarray(prepared.anonymized), np.asarray(alone))
  # Step 1 sends the prepared anonymizations without running `perturb`.
  state_1 = jax.device_get(state)
  state, _ = step_fn(state, *batches[1], next_visuals=batches[2][0])
  assert len(calls) == 1
  want = np.clip(np.rint(np.asarray(alone, np.float64) * 255), 0, 255)
  np.testing.assert_array_equal(spy.received[-1], want.astype(np.uint8))
  # Visuals other than those prepared for (here: a copy of step 2's) run `perturb` afresh, and
  # so does a state other than the one returned.
  state, _ = step_fn(state, np.array(batches[2][0]), *batches[2][1:])
  assert len(calls) == 2
  step_fn(jax.device_put(state_1), *batches[1])
  assert len(calls) == 3
