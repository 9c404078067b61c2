"""The trainer on the smoke config: one real step, the raw-pixel guarantee, compile-once, faults,
and the pipelined step against the reference step."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from anonymax import anonymizer, experiment, metric_writers, optim, train
from anonymax.compile_counter import CompileCounter
from anonymax.configs import synthetic
from anonymax.oracles import STATUS_FAILED, STATUS_OK, Oracle, OracleOutput
from anonymax.step import flat_parameters, parameter_layout, unflatten_parameters
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


class SpyOracle(Oracle):
  """A black box that scores brightness and records every array it is sent."""

  def __init__(self, fail_every=0):
    super().__init__(name="spy", loss="nll")
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
  # config.json holds the derived fields: the seven synthetic attributes and z*_privacy.
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["oracle"]["kind"] == "reference"
  assert saved["reviewer"]["num_classes"] == 7
  assert saved["optim"]["scalarization"]["ideal"] == [0.5, pytest.approx(-math.log(2))]
  leaves = jax.tree.leaves(state.params)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
  # The checkpoint's standalone anonymizer is the state's.
  restored = anonymizer.restore(str(tmp_path))
  assert restored.step == 1 and restored.description["image_size"] == config.data.image_size
  for a, b in zip(jax.tree.leaves(restored.params), leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_only_anonymizer_outputs_reach_the_oracle(shared_dirs, tmp_path, monkeypatch):
  """A spy oracle sees only arrays carrying the anonymizer's marker, never a raw input."""
  real_build = anonymizer.build

  class Marked(nn.Module):
    inner: nn.Module

    @nn.compact
    def __call__(self, x):
      y = self.inner(x)
      return y.at[..., 0, 0, :].set(jnp.asarray(MARKER, y.dtype) / 255.0)

  monkeypatch.setattr(anonymizer, "build", lambda description: Marked(real_build(description)))
  config = smoke_config(shared_dirs, total_steps=2, checkpoint_every=2)
  spy = SpyOracle()
  train.train_and_evaluate(config, str(tmp_path), oracle=spy)

  raw = experiment.load_split(config, "train").visuals
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


def _experiment(shared_dirs, oracle, **overrides):
  exp = experiment.build(smoke_config(shared_dirs, **overrides), oracle=oracle)
  return exp, exp.init_state()


def test_train_step_compiles_once(shared_dirs):
  exp, state = _experiment(shared_dirs, SpyOracle())
  step_fn = exp.train_step()
  batches = [jax.device_put(exp.batch(k)) for k in range(5)]
  state, _ = step_fn(state, *batches[0], next_visuals=batches[1][0])  # compiles its parts
  counter = CompileCounter().start()
  for k in range(1, 4):  # as the training loop runs it: the last step without a next batch
    next_visuals = batches[k + 1][0] if k < 3 else None
    state, metrics = step_fn(state, *batches[k], next_visuals=next_visuals)
  jax.block_until_ready(metrics)
  compiled_later = counter.stop()
  assert int(state.step) == 4
  # Only `combine` (the last step's, without a next batch) had not run before.
  assert compiled_later == 1


def test_set_losses_average_over_the_pair_or_over_every_set():
  from anonymax.step import parts  # noqa: PLC0415

  # S = 4 sets (q = 2) × B = 3 samples, set-major; sample 2 failed in set 1 only.
  losses = jnp.arange(12, dtype=jnp.float32)
  status = jnp.full(12, STATUS_OK).at[1 * 3 + 2].set(STATUS_FAILED)
  paired = parts.per_set_losses(losses, status, 4)
  # Pair (1, 3) drops sample 2 from both of its sets; pair (0, 2) keeps all three.
  np.testing.assert_allclose(paired.losses, [1.0, 3.5, 7.0, 9.5])
  every = parts.per_set_losses(losses, status, 4, antithetic=False)
  # Sets compared with each other (CMA-ES, REINFORCE): sample 2 is dropped from every set.
  np.testing.assert_allclose(every.losses, [0.5, 3.5, 6.5, 9.5])
  assert int(paired.scored) == int(every.scored) == 11


def test_failed_samples_are_skipped_and_counted(shared_dirs):
  exp, state = _experiment(shared_dirs, SpyOracle(fail_every=4))
  config = exp.config
  state, metrics = exp.train_step()(state, *exp.batch(0))
  n = 2 * config.batch_size
  assert int(state.skipped) == len(range(0, n, 4))
  assert int(metrics["pairs_scored"]) < config.batch_size
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))


def _zo_overrides(zo_method: str) -> dict:
  """Config overrides of a method name; "guided_surrogate" guides with the online surrogate,
  "guided_replay" with one that refits on a replay memory of past steps."""
  if zo_method == "guided_surrogate":
    return {"optim.zo_method": "guided", "optim.guided.source": "guide"}
  if zo_method == "guided_replay":
    return {
      "optim.zo_method": "guided", "optim.guided.source": "guide",
      "online_surrogate.replay": 2, "online_surrogate.fit_steps": 2,
    }  # fmt: skip
  return {"optim.zo_method": zo_method}


@pytest.mark.parametrize("make_step", ["train_step", "reference_step"])
@pytest.mark.parametrize("zo_method", ["ours", "cma_es", "guided_surrogate"])
def test_a_step_with_no_usable_answer_leaves_the_anonymizer_unchanged(
  shared_dirs, make_step, zo_method
):
  exp, state = _experiment(shared_dirs, SpyOracle(fail_every=1), **_zo_overrides(zo_method))
  before = jax.device_get((state.params, state.opt_state, state.zo_state))
  state, metrics = getattr(exp, make_step)()(state, *exp.batch(0))
  assert int(state.skipped) == 2 * exp.config.batch_size
  assert int(state.step) == 1 and float(metrics["update_norm"]) == 0.0
  after = (state.params, state.opt_state, state.zo_state)
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, np.asarray(b))


# The stateful estimators carry their state from tell to the next ask through both steps.
@pytest.mark.parametrize(
  "zo_method", ["ours", "cma_es", "guided", "reinforce", "guided_surrogate", "guided_replay"]
)
def test_pipelined_step_equals_the_reference_step_bit_for_bit(shared_dirs, zo_method):
  """Several steps from one state: the same pixels sent and the same parameters (bit for bit
  for the paper's estimator, to float32 rounding for the others; with the online surrogate its
  φ too, which rides in zo_state)."""
  runs = {}
  overrides = {"optim.privacy_grad_scale": 3.0, **_zo_overrides(zo_method)}
  for name in ("reference_step", "train_step"):
    spy = SpyOracle()
    exp, state = _experiment(shared_dirs, spy, **overrides)
    step_fn = getattr(exp, name)()
    history = []
    for k in range(4):
      extra = {} if name == "reference_step" else {"next_visuals": exp.batch(k + 1)[0]}
      state, metrics = step_fn(state, *exp.batch(k), **extra)
      history.append(jax.device_get(metrics))
    runs[name] = (jax.device_get(state), spy.received, history)
  (ref, ref_sent, ref_hist), (fast, fast_sent, fast_hist) = (
    runs["reference_step"],
    runs["train_step"],
  )
  assert int(fast.step) == 4
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(fast)):
    if zo_method == "ours":
      np.testing.assert_array_equal(a, b)
    else:  # the estimators' arithmetic fuses differently in the two; CMA-ES's ĝ = (θ − m')/s²
      # amplifies float32 rounding in m' by 1/s (about 1e-5 relative at s = c_k = 0.01)
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  for a, b in zip(ref_sent, fast_sent):
    if zo_method == "ours":
      np.testing.assert_array_equal(a, b)
    else:  # the rounding above can move a pixel by one level
      assert np.abs(a.astype(np.int32) - b.astype(np.int32)).max() <= 1
  for a, b in zip(ref_hist, fast_hist):
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)
  # The run moved: the comparison is not between two unchanged states.
  assert max(float(np.abs(x).max()) for x in jax.tree.leaves(ref_hist[-1]["update_norm"])) > 0


def test_perturbed_anonymizations_are_theta_plus_minus_c_delta_with_a_shared_prefix(shared_dirs):
  """The oracle receives f_A(θ ± c_k Δ) for the Δ of the step's key, with Δ = 0 outside
  `optim.perturb`; the layers below the first perturbed one are computed once for all passes."""
  spy = SpyOracle()
  exp, state = _experiment(shared_dirs, spy)
  config = exp.config
  assert config.optim.perturb  # the smoke config perturbs the last decoder block and the mask
  batch = exp.batch(0)
  c_k = float(exp.optimizer.perturbation_scale(state.opt_state))
  state_before = jax.device_get(state)  # the step donates `state`
  step_fn = exp.train_step()
  step_fn(state, *batch)
  state = state_before
  # The reference computation: every leaf perturbed by c·Δ (zeros where masked), two full passes;
  # Δ is the documented draw from the step key split(fold_in(key, k))[0].
  key = jax.random.split(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step))[0]
  (k1,) = jax.random.split(key, 1)
  delta = optim.rademacher_like(k1, state.params, mask=config.optim.perturb)
  assert any(float(jnp.abs(d).sum()) == 0 for d in jax.tree.leaves(delta))  # some are masked
  x = jnp.asarray(batch[0], jnp.float32) / 255.0
  want = [
    exp.anonymizer.apply(
      {"params": jax.tree.map(lambda p, d, s=s: p + s * c_k * d, state.params, delta)}, x
    )
    for s in (1.0, -1.0)
  ]
  want = np.concatenate([np.clip(np.rint(np.asarray(w) * 255), 0, 255) for w in want])
  got = spy.received[-1].astype(np.float64)
  assert np.abs(got - want).max() <= 1  # equal up to a rounding step at a .5 boundary
  assert (got == want).mean() > 0.999
  # Compiled: fewer convolutions than two independent passes (the shared prefix runs once).
  args = (state.params, state.opt_state, state.zo_state, state.rng, state.step, batch[0])
  hlo = step_fn.perturb.lower(*args).compile().as_text()
  one = jax.jit(lambda p, v: exp.anonymizer.apply({"params": p}, v)).lower(state.params, x)
  assert hlo.count(" convolution(") < 2 * one.compile().as_text().count(" convolution(")


def test_flat_parameters_round_trip():
  tree = {
    "a": jnp.arange(6.0).reshape(2, 3),
    "b": {"c": jnp.ones(4), "d": jnp.full((1, 1, 2), 7.0)},
  }
  vector = flat_parameters(tree)
  assert vector.shape == (12,)
  back = unflatten_parameters(vector, parameter_layout(tree))
  assert jax.tree.structure(back) == jax.tree.structure(tree)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
    np.testing.assert_array_equal(x, y)


def test_anonymizations_prepared_with_the_update_are_used_only_for_their_state(shared_dirs):
  """Given the next batch, a step computes its perturbed anonymizations with the update and the
  next call sends them without running `perturb`; another state or other visuals get their own,
  and what is sent always equals what the reference step sends for that state."""
  spy = SpyOracle()
  exp, state = _experiment(shared_dirs, spy)
  step_fn = exp.train_step()
  batches = [exp.batch(k) for k in range(3)]
  calls = []
  perturb = step_fn.perturb
  step_fn.perturb = lambda *args: calls.append(args[-1]) or perturb(*args)
  state, _ = step_fn(state, *batches[0], next_visuals=batches[1][0])
  assert len(calls) == 1  # step 0 had nothing prepared
  state_1 = jax.device_get(state)
  state, _ = step_fn(state, *batches[1], next_visuals=batches[2][0])
  assert len(calls) == 1  # step 1 sent what step 0 prepared
  # A copy of step 2's visuals (not the array prepared for) runs `perturb` afresh...
  state, _ = step_fn(state, np.array(batches[2][0]), *batches[2][1:])
  assert len(calls) == 2
  # ... and so does a state other than the one returned, here step 1's with other parameters.
  other = state_1.replace(params=jax.tree.map(lambda p: p * 1.01, state_1.params))
  step_fn(jax.device_put(other), *batches[1])
  assert len(calls) == 3
  # What was sent for each state is what the reference step sends for it.
  ref_spy = SpyOracle()
  ref_exp, _ = _experiment(shared_dirs, ref_spy)
  ref_exp.reference_step()(jax.device_put(state_1), *batches[1])
  ref_exp.reference_step()(jax.device_put(other), *batches[1])
  np.testing.assert_array_equal(spy.received[1], ref_spy.received[0])
  np.testing.assert_array_equal(spy.received[3], ref_spy.received[1])
  assert not np.array_equal(spy.received[1], spy.received[3])


def test_the_reference_anonymizers_train_beside_the_run(shared_dirs, tmp_path):
  """config.references: a constant mask (same objective, same black box) and a privacy-only
  anonymizer (no black box at all), each a run of its own under <workdir>/references/."""
  config = smoke_config(shared_dirs, total_steps=2, checkpoint_every=2)
  config.references = ("constant_mask", "privacy_only")
  spy = SpyOracle()
  train.train_with_references(config, str(tmp_path), oracle=spy)
  per_call = 2 * config.batch_size
  assert [len(v) for v in spy.received] == [per_call] * 4  # two steps of ours, two of the mask
  mask = anonymizer.restore(str(tmp_path / "references" / "constant_mask"))
  assert mask.description["model"]["name"] == "constant_mask"
  assert mask.params["mask_logits"].shape == (config.data.image_size,) * 2 + (1,)
  privacy_only = tmp_path / "references" / "privacy_only"
  saved = json.loads((privacy_only / "config.json").read_text())
  assert saved["objective"] == "privacy_only" and saved["references"] == []
  assert anonymizer.restore(str(privacy_only)).step == 2
  rows = [json.loads(line) for line in (privacy_only / "metrics.jsonl").read_text().splitlines()]
  assert rows[-1]["oracle_samples"] == 0 and "l_mllm" not in rows[-1]
  # The privacy-only anonymizer moved: its parameters are not the initial ones of its seed.
  start = experiment.build(config, oracle=spy).init_state().params
  trained = anonymizer.restore(str(privacy_only)).params
  assert any(
    not np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(trained))
  )
