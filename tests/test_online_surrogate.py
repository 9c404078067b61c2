"""The online surrogate of the black box: its loss by hand, that it learns a gradient that agrees
with the true one, its config, and its state through a checkpoint."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from anonymax import checkpoint, experiment, online_surrogate
from anonymax.configs import synthetic
from anonymax.oracles import STATUS_FAILED, STATUS_OK
from tests.test_train import SpyOracle, smoke_config


def _surrogate(level_weight=0.5, learning_rate=1e-2, diff_weight=1.0):
  return online_surrogate.OnlineSurrogate(
    online_surrogate.LossSurrogate(width=4), optax.adam(learning_rate), level_weight, diff_weight
  )


def test_the_fit_loss_is_weighted_pair_differences_over_2c_plus_levels_by_hand():
  sur = _surrogate(level_weight=0.5, diff_weight=2.0)
  key = jax.random.key(0)
  q, batch, c = 2, 3, 0.05
  x = jax.random.uniform(key, (2 * q * batch, 8, 8, 3))
  state = sur.init(0, (), x[:1])
  losses = jnp.arange(2 * q * batch, dtype=jnp.float32) / 7.0
  status = jnp.full(2 * q * batch, STATUS_OK).at[4].set(STATUS_FAILED)  # set 1, sample 1 (a plus)
  value = sur.loss(state.surrogate.params, x, losses, status, 2 * q, c)

  pred = np.asarray(sur.predict(state.surrogate.params, x), np.float64).reshape(2, q, batch)
  target = np.asarray(losses, np.float64).reshape(2, q, batch)
  ok = (np.asarray(status) == STATUS_OK).reshape(2, q, batch)
  pair = ok[0] & ok[1]
  diff = ((pred[0] - pred[1]) - (target[0] - target[1])) / (2 * c)
  expected = 2.0 * (diff[pair] ** 2).mean() + 0.5 * ((pred - target)[ok] ** 2).mean()
  assert pair.sum() == q * batch - 1 and ok.sum() == 2 * q * batch - 1
  np.testing.assert_allclose(float(value), expected, rtol=1e-5)


class _Tint(nn.Module):
  """A tiny anonymizer: x ↦ sigmoid(a) x + b per channel (6 parameters)."""

  @nn.compact
  def __call__(self, x):
    a = self.param("a", nn.initializers.zeros, (3,))
    b = self.param("b", nn.initializers.zeros, (3,))
    return jax.nn.sigmoid(a) * x + b


def test_fitted_on_answered_pairs_its_guide_agrees_with_the_true_gradient():
  """A black box that dislikes red, L(x) = mean of x's red channel: after fitting on pairs only
  (as the trainer sees them), ∇_θ mean s_φ(f_A(x; θ)) points where ∇_θ mean L(f_A(x; θ)) does."""
  anonymizer, sur = _Tint(), _surrogate(level_weight=1.0, learning_rate=3e-3)
  x = jax.random.uniform(jax.random.key(1), (8, 8, 8, 3))
  theta = anonymizer.init(jax.random.key(2), x)["params"]
  flat, unravel = ravel_pytree(theta)
  black_box = lambda images: images[..., 0].mean(axis=(1, 2))  # noqa: E731
  zo_state = sur.init(0, (), x[:1])
  fit = jax.jit(sur.fit, static_argnums=4)  # as inside the step (eagerly, each scan recompiles)
  initial = None
  c = 0.3
  for k in range(300):
    key = jax.random.fold_in(jax.random.key(3), k)
    theta_k = flat + 0.5 * jax.random.normal(jax.random.fold_in(key, 1), flat.shape)
    delta = jax.random.rademacher(key, flat.shape, jnp.float32)
    sets = [unravel(theta_k + c * delta), unravel(theta_k - c * delta)]
    anonymized = jnp.concatenate([anonymizer.apply({"params": p}, x) for p in sets])
    losses = black_box(anonymized)
    status = jnp.full(losses.shape, STATUS_OK)
    zo_state, value = fit(zo_state, anonymized, losses, status, 2, c)
    initial = float(value) if initial is None else initial
  assert float(value) < 0.2 * initial
  guide = ravel_pytree(sur.guide(anonymizer, theta, zo_state, x))[0]
  true = jax.grad(lambda t: black_box(anonymizer.apply({"params": t}, x)).mean())(theta)
  true = ravel_pytree(true)[0]
  cosine = float(jnp.vdot(guide, true) / (jnp.linalg.norm(guide) * jnp.linalg.norm(true)))
  assert cosine > 0.8, cosine


def test_only_the_guided_estimator_with_a_guide_source_gets_a_surrogate():
  assert (
    online_surrogate.from_config(synthetic.get_config("smoke")) is online_surrogate.NO_SURROGATE
  )
  history = synthetic.get_config("smoke,zo=guided")
  assert online_surrogate.from_config(history) is online_surrogate.NO_SURROGATE
  guided = synthetic.get_config("smoke,zo=guided_surrogate")
  assert guided.optim.zo_method == "guided" and guided.optim.guided.source == "guide"
  sur = online_surrogate.from_config(guided)
  assert sur.enabled and sur.model.width == guided.online_surrogate.width
  guided.online_surrogate.level_weight = -1.0
  with pytest.raises(ValueError, match="level_weight must be ≥ 0"):
    online_surrogate.from_config(guided)
  guided.online_surrogate = {"widht": 8}
  with pytest.raises(ValueError, match=r"config.online_surrogate: unknown field\(s\) widht"):
    online_surrogate.from_config(guided)


def test_the_surrogate_trains_inside_the_step_and_survives_a_checkpoint(tmp_path):
  dirs = (str(tmp_path / "tfds"), str(tmp_path / "reference"))
  config = smoke_config(dirs, **{"optim.zo_method": "guided", "optim.guided.source": "guide"})
  exp = experiment.build(config, oracle=SpyOracle())
  state = exp.init_state()
  assert isinstance(state.zo_state, online_surrogate.WithSurrogate)
  before = jax.device_get(state.zo_state.surrogate.params)
  step = exp.train_step()
  fits = []
  for k in range(3):
    state, metrics = step(state, *exp.batch(k))
    fits.append(float(metrics["surrogate_fit"]))
  assert all(np.isfinite(fits))
  moved = [np.abs(np.asarray(a) - b).max() for a, b in zip(
    jax.tree.leaves(state.zo_state.surrogate.params), jax.tree.leaves(before))]  # fmt: skip
  assert max(moved) > 0  # φ learned from the answers
  assert int(state.zo_state.estimator.filled) == 3  # three guides entered the subspace
  # α: ½ until both kinds of pair were measured, then within [α_min, 1 − α_min].
  assert 0.02 <= float(metrics["guided_alpha"]) <= 0.98
  assert 0.0 <= float(metrics["guided_agreement"]) <= 1.0  # ρ̂, measured by then
  mgr = checkpoint.manager(str(tmp_path / "w"))
  checkpoint.save(mgr, 3, state, {"step": 3}, {})
  restored, _ = checkpoint.restore(mgr, exp.abstract_state())
  for a, b in zip(jax.tree.leaves(restored.zo_state), jax.tree.leaves(state.zo_state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_fit_pairs_set_i_with_set_q_plus_i_as_the_guided_estimator_asks():
  """The fit reads [S·B] as (2, q, B): pluses then minuses. The guided estimator's sets are
  θ + sε_i (i < q) then θ − sε_i, so set i and set q + i are one pair."""
  from anonymax.optim import guided_estimator

  q = 3
  est = guided_estimator(num_samples=q, source="guide", alpha=0.5)
  params = {"w": jnp.arange(5.0)}
  sets, _ = est.ask(jax.random.key(0), params, est.init(params), scale=0.1, guide=params)
  w = np.asarray(sets["w"])
  np.testing.assert_allclose(w[:q] - params["w"], -(w[q:] - params["w"]), atol=1e-6)
  assert np.abs(w[:q] - params["w"]).max() > 0


def _one_step(key, q=2, batch=3, shape=(8, 8, 3)):
  n = 2 * q * batch
  x = jax.random.uniform(key, (n, *shape))
  losses = jax.random.uniform(jax.random.fold_in(key, 1), (n,))
  return x, losses, jnp.full(n, STATUS_OK)


def _replaying(replay, fit_steps=1, step_size=12):
  return online_surrogate.OnlineSurrogate(
    online_surrogate.LossSurrogate(width=4), optax.adam(1e-2), 0.5, 2.0,
    replay=replay, step_size=step_size, fit_steps=fit_steps,
  )  # fmt: skip


def test_the_loss_of_stacked_steps_pools_their_terms_by_hand():
  """ℓ over T = 2 stacked steps (each with its own c) is the mean over all their pair and level
  terms, not the mean of the two steps' losses (they differ where the counts differ)."""
  sur, q, batch = _replaying(0), 2, 3
  (xa, la, sa), (xb, lb, sb) = _one_step(jax.random.key(4)), _one_step(jax.random.key(5))
  sb = sb.at[0].set(STATUS_FAILED).at[7].set(STATUS_FAILED)  # step b has fewer terms
  params = sur.init(0, (), xa[:1]).surrogate.params
  cs = (0.05, 0.2)
  value = sur.loss(params, jnp.stack([xa, xb]), jnp.stack([la, lb]), jnp.stack([sa, sb]), 4, cs)

  diffs, levels = [], []
  for x, losses, status, c in ((xa, la, sa, cs[0]), (xb, lb, sb, cs[1])):
    pred = np.asarray(sur.predict(params, x), np.float64).reshape(2, q, batch)
    target = np.asarray(losses, np.float64).reshape(2, q, batch)
    ok = (np.asarray(status) == STATUS_OK).reshape(2, q, batch)
    pair = ok[0] & ok[1]
    diffs.append((((pred[0] - pred[1]) - (target[0] - target[1])) / (2 * c))[pair])
    levels.append((pred - target)[ok])
  expected = 2.0 * (np.concatenate(diffs) ** 2).mean() + 0.5 * (np.concatenate(levels) ** 2).mean()
  np.testing.assert_allclose(float(value), expected, rtol=1e-5)
  steps = ((xa, la, sa, cs[0]), (xb, lb, sb, cs[1]))
  separate = [sur.loss(params, x, losses, status, 4, c) for x, losses, status, c in steps]
  assert abs(float(value) - float(np.mean(separate))) > 1e-6


def test_an_empty_replay_memory_weighs_nothing_and_fills_newest_first():
  with_memory, without = _replaying(2), _replaying(0)
  steps = [_one_step(jax.random.key(10 + k)) for k in range(3)]
  a, b = with_memory.init(0, (), steps[0][0][:1]), without.init(0, (), steps[0][0][:1])
  assert a.surrogate.replay.visuals.shape == (2, 12, 8, 8, 3) and b.surrogate.replay is None
  # First step: the memory is empty (its slots are not STATUS_OK), so the fit is the plain one.
  a, value_a = with_memory.fit(a, *steps[0], 4, 0.1)
  b, value_b = without.fit(b, *steps[0], 4, 0.1)
  np.testing.assert_allclose(float(value_a), float(value_b), rtol=1e-6)
  for p, r in zip(jax.tree.leaves(a.surrogate.params), jax.tree.leaves(b.surrogate.params)):
    np.testing.assert_allclose(np.asarray(p), np.asarray(r), rtol=1e-6, atol=1e-7)
  a, _ = with_memory.fit(a, *steps[1], 4, 0.2)
  before_third = a.surrogate.params
  a, value = with_memory.fit(a, *steps[2], 4, 0.3)
  memory = a.surrogate.replay
  # After three steps it holds steps 2 and 1 (newest first); step 0 fell out.
  np.testing.assert_array_equal(np.asarray(memory.visuals[0]), np.asarray(steps[2][0]))
  np.testing.assert_array_equal(np.asarray(memory.losses[1]), np.asarray(steps[1][1]))
  np.testing.assert_allclose(np.asarray(memory.c), [0.3, 0.2], rtol=1e-6)
  assert (np.asarray(memory.status) == STATUS_OK).all()
  # The third fit's ℓ was measured on all three steps, pooled.
  stacked = [jnp.stack([s[i] for s in (steps[2], steps[1], steps[0])]) for i in range(3)]
  pooled = with_memory.loss(before_third, *stacked, 4, (0.3, 0.2, 0.1))
  newest = with_memory.loss(before_third, *steps[2], 4, 0.3)
  np.testing.assert_allclose(float(value), float(pooled), rtol=1e-5)
  assert abs(float(value) - float(newest)) > 1e-6


def test_fit_steps_adam_steps_equal_as_many_successive_fits_on_the_same_answers():
  x, losses, status = _one_step(jax.random.key(20))
  three, one = _replaying(0, fit_steps=3), _replaying(0, fit_steps=1)
  a, first = three.fit(three.init(0, (), x[:1]), x, losses, status, 4, 0.1)
  b = one.init(0, (), x[:1])
  values = []
  for _ in range(3):
    b, v = one.fit(b, x, losses, status, 4, 0.1)
    values.append(float(v))
  np.testing.assert_allclose(float(first), values[0], rtol=1e-6)  # ℓ before the first step
  assert values[2] < values[0]
  for p, r in zip(jax.tree.leaves(a.surrogate), jax.tree.leaves(b.surrogate)):
    np.testing.assert_allclose(np.asarray(p), np.asarray(r), rtol=1e-5, atol=1e-6)


def test_bad_replay_settings_are_refused_with_their_names():
  guided = synthetic.get_config("smoke,zo=guided_surrogate")
  guided.online_surrogate.replay = 3
  guided.online_surrogate.fit_steps = 2
  sur = online_surrogate.from_config(guided)
  assert (sur.replay, sur.fit_steps) == (3, 2)
  assert sur.step_size == 2 * guided.optim.num_samples * guided.batch_size
  guided.online_surrogate.replay = -1
  with pytest.raises(ValueError, match="replay must be ≥ 0"):
    online_surrogate.from_config(guided)
  guided.online_surrogate.replay = 1
  guided.online_surrogate.fit_steps = 0
  with pytest.raises(ValueError, match="fit_steps must be ≥ 1"):
    online_surrogate.from_config(guided)
  with pytest.raises(ValueError, match="step_size ≥ 1"):
    _replaying(2, step_size=0)
  wrong = _replaying(2, step_size=6)  # the memory is sized for 6 anonymizations a step
  x, losses, status = _one_step(jax.random.key(0))
  with pytest.raises(ValueError, match="replay memory holds steps of"):
    wrong.fit(wrong.init(0, (), x[:1]), x, losses, status, 4, 0.1)
