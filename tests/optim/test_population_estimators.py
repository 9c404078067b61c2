"""Tests for the population estimators: CMA-ES through evosax and REINFORCE with a baseline."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evosax.algorithms import Sep_CMA_ES

from anonymax import optim


def _params():
  return {"dec": jnp.array([0.5, -1.0, 2.0]), "enc": jnp.array([[0.25, -0.5]])}


# --- REINFORCE ---


def test_reinforce_ask_draws_independent_gaussian_sets():
  q, s, key, params = 2, 0.1, jax.random.key(3), _params()
  est = optim.zo_estimator("reinforce", num_samples=q, mask="^dec")
  sets, asked = est.ask(key, params, est.init(params), scale=s)
  assert est.num_evaluations == 4 and sets["dec"].shape == (4, 3)
  for i, k in enumerate(jax.random.split(key, 4)):  # θ + σ ε_i, ε_i = normal_like(split[i])
    eps = optim.normal_like(k, params, mask="^dec")
    np.testing.assert_allclose(sets["dec"][i], params["dec"] + s * eps["dec"], rtol=1e-6)
  np.testing.assert_array_equal(sets["enc"], jnp.broadcast_to(params["enc"], (4, 1, 2)))
  # Not antithetic: no set is the mirror of another.
  assert not np.allclose(sets["dec"][0] - params["dec"], params["dec"] - sets["dec"][2])
  np.testing.assert_allclose(asked.scale, s)


def test_reinforce_tell_by_hand_baseline_and_running_mean():
  q, s, key, params = 2, 0.5, jax.random.key(7), {"w": jnp.zeros(2)}
  est = optim.zo_estimator("reinforce", num_samples=q, baseline_decay=0.75)
  state = est.init(params)
  eps = [np.asarray(optim.normal_like(k, params)["w"]) for k in jax.random.split(key, 4)]
  _, asked = est.ask(key, params, state, scale=s)
  losses = jnp.array([1.0, 3.0, jnp.nan, 2.0])  # the third call failed: left out
  g, state = est.tell(state, losses, asked)
  # Step 1: b = mean of the usable losses = 2; ĝ = 1/(3σ) Σ (L_i − 2) ε_i.
  want = ((1.0 - 2.0) * eps[0] + (3.0 - 2.0) * eps[1] + 0.0 * eps[3]) / (3 * s)
  np.testing.assert_allclose(g["w"], want, rtol=1e-5)
  np.testing.assert_allclose(state.baseline, 2.0)  # 0.75·2 + 0.25·2
  assert int(state.count) == 1
  # Step 2 uses the running baseline (2), then updates it: 0.75·2 + 0.25·mean(4, 6, 5, 5) = 2.75.
  _, asked = est.ask(key, params, state, scale=s)
  g, state = est.tell(state, jnp.array([4.0, 6.0, 5.0, 5.0]), asked)
  want = sum((loss - 2.0) * e for loss, e in zip((4.0, 6.0, 5.0, 5.0), eps)) / (4 * s)
  np.testing.assert_allclose(g["w"], want, rtol=1e-5)
  np.testing.assert_allclose(state.baseline, 2.75, rtol=1e-6)
  assert int(state.count) == 2


def test_reinforce_without_a_finite_loss_keeps_its_state():
  est = optim.zo_estimator("reinforce", num_samples=1)
  params = jnp.zeros(3)
  state = est.init(params)._replace(baseline=jnp.float32(1.5), count=jnp.int32(4))
  _, asked = est.ask(jax.random.key(0), params, state, scale=0.1)
  g, new = est.tell(state, jnp.array([jnp.nan, jnp.inf]), asked)
  np.testing.assert_array_equal(g, 0.0)
  assert float(new.baseline) == 1.5 and int(new.count) == 4


def test_reinforce_is_unbiased_on_a_linear_loss():
  # L(θ) = c·θ + 5: E[ĝ] = c. The baseline (a past mean) only changes the variance.
  c = jnp.array([1.0, -2.0, 0.5, 3.0])
  est = optim.zo_estimator("reinforce", num_samples=4)
  theta = jnp.zeros(4)
  state = est.init(theta)._replace(baseline=jnp.float32(5.0), count=jnp.int32(1))

  @jax.jit
  @jax.vmap
  def estimate(key):
    sets, asked = est.ask(key, theta, state, scale=0.1)
    return est.tell(state, sets @ c + 5.0, asked)[0]

  g = estimate(jax.random.split(jax.random.key(1), 4000))
  np.testing.assert_allclose(jnp.mean(g, axis=0), c, atol=0.1)


@pytest.mark.parametrize("decay", [1.0, -0.1, True])
def test_reinforce_validation(decay):
  with pytest.raises(ValueError, match="baseline_decay must be in"):
    optim.zo_estimator("reinforce", baseline_decay=decay)


# --- CMA-ES ---


def test_sep_cma_first_step_by_hand():
  """Generation 0: C = I, so x_i = θ + s z_i, z = N(key, [N, D]); m' = θ + s Σ_j w_j z_{j:N}."""
  q, s, key = 2, 0.2, jax.random.key(5)
  params = {"w": jnp.array([0.5, -1.0, 2.0])}
  est = optim.zo_estimator("cma_es", num_samples=q)
  state = est.init(params)
  sets, asked = est.ask(key, params, state, scale=s)
  z = np.asarray((sets["w"] - params["w"]) / s)
  np.testing.assert_allclose(z, jax.random.normal(key, (4, 3)), rtol=1e-4, atol=1e-5)
  losses = jnp.array([3.0, 1.0, 4.0, 2.0])  # best: set 1, then set 3
  g, new_state = est.tell(state, losses, asked)
  # CMA-ES's weights for N = 4, μ = 2: w'_j = ln(2.5) − ln j, normalised over the two elites.
  w = np.log(2.5) - np.log([1.0, 2.0])
  w = w / w.sum()
  np.testing.assert_allclose(g["w"], -(w[0] * z[1] + w[1] * z[3]) / s, rtol=1e-4)
  assert int(new_state.generation_counter) == 1
  np.testing.assert_allclose(asked.scale, s)  # the schedule's step size, not an adapted one


def test_cma_es_matches_evosax_at_the_schedules_step_size():
  q, key, params = 3, jax.random.key(2), {"w": jnp.linspace(-1.0, 1.0, 5)}
  est = optim.zo_estimator("cma_es", num_samples=q)
  loss = lambda p: jnp.sum(p["w"] ** 2)
  ours = est.init(params)
  lib = Sep_CMA_ES(population_size=6, solution=jnp.zeros(5))
  hyper = lib.default_params
  lib_state = lib.init(jax.random.key(0), params["w"], hyper)
  for i, k in enumerate(jax.random.split(key, 4)):
    scale = 0.3 / (i + 1)  # a schedule: the library's state is given the same s each step
    sets, asked = est.ask(k, params, ours, scale=scale)
    pop, lib_state = lib.ask(k, lib_state.replace(std=jnp.float32(scale)), hyper)
    np.testing.assert_allclose(sets["w"], pop, rtol=1e-5, atol=1e-6)
    g, ours = est.tell(ours, jax.vmap(loss)(sets), asked)
    lib_state, _ = lib.tell(k, pop, jax.vmap(jnp.sum)(pop**2), lib_state, hyper)
    # θ − s² ĝ is the library's own mean update; its paths and covariance are ours too.
    np.testing.assert_allclose(params["w"] - scale**2 * g["w"], lib_state.mean, rtol=1e-4)
    np.testing.assert_allclose(ours.C, lib_state.C, rtol=1e-4)
    np.testing.assert_allclose(ours.p_c, lib_state.p_c, rtol=1e-4, atol=1e-6)
    params = {"w": lib_state.mean}


def test_cma_es_estimate_keeps_its_size_when_the_trainer_steps_less_than_s_squared():
  # The trainer steps θ − a ĝ with its own a; sampling with the schedule's s keeps ĝ ∝ 1/s
  # meaningful (an adapted s would grow while θ lags behind m').
  est = optim.zo_estimator("cma_es", num_samples=4)
  target = jnp.linspace(-1.0, 1.0, 50)
  loss = lambda p: jnp.sum((p - target) ** 2)
  theta = jnp.zeros(50)
  state = est.init(theta)
  ask = jax.jit(lambda k, p, st: est.ask(k, p, st, scale=0.01))
  tell = jax.jit(est.tell)
  norms = []
  for k in jax.random.split(jax.random.key(0), 200):
    sets, asked = ask(k, theta, state)
    g, state = tell(state, jax.vmap(loss)(sets), asked)
    norms.append(float(jnp.linalg.norm(g)))
    theta = theta - 1e-5 * g  # a ≪ s² = 1e-4
  assert float(asked.scale) == pytest.approx(0.01)
  assert np.mean(norms[-20:]) > 0.5 * np.mean(norms[:20])
  assert float(loss(theta)) < 0.9 * float(loss(jnp.zeros(50)))


def test_cma_es_ties_and_failed_pairs():
  q, s, key = 2, 0.1, jax.random.key(8)
  params = {"w": jnp.array([0.5, -1.0, 2.0])}
  est = optim.zo_estimator("cma_es", num_samples=q)
  state = est.init(params)
  sets, asked = est.ask(key, params, state, scale=s)
  z = np.asarray((sets["w"] - params["w"]) / s)
  w = np.log(2.5) - np.log([1.0, 2.0])
  w = w / w.sum()
  # Equal losses: nothing to rank, no step and the state kept.
  g, new = est.tell(state, jnp.full(4, 1.5), asked)
  np.testing.assert_array_equal(g["w"], 0.0)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  # A tie for the best: broken by index, the weights still sum to one.
  g, _ = est.tell(state, jnp.array([2.0, 1.0, 1.0, 3.0]), asked)
  np.testing.assert_allclose(g["w"], -(w[0] * z[1] + w[1] * z[2]) / s, rtol=1e-4)
  # The trainer's failed pair (sets 0 and q + 0 both NaN): the two answered sets are ranked.
  g, _ = est.tell(state, jnp.array([jnp.nan, 3.0, jnp.nan, 2.0]), asked)
  np.testing.assert_allclose(g["w"], -(w[0] * z[3] + w[1] * z[1]) / s, rtol=1e-4)


def test_cma_es_masked_leaves_and_a_nan_loss():
  q, s, key, params = 2, 0.1, jax.random.key(1), _params()
  est = optim.zo_estimator("cma_es", num_samples=q, mask="^dec")
  state = est.init(params)
  assert state.mean.shape == (3,)  # the search space is the masked leaves only
  sets, asked = est.ask(key, params, state, scale=s)
  np.testing.assert_array_equal(sets["enc"], jnp.broadcast_to(params["enc"], (4, 1, 2)))
  z = np.asarray((sets["dec"] - params["dec"]) / s)
  g, _ = est.tell(state, jnp.array([jnp.nan, 2.0, 1.0, 3.0]), asked)  # NaN ranks last
  w = np.log(2.5) - np.log([1.0, 2.0])
  w = w / w.sum()
  np.testing.assert_allclose(g["dec"], -(w[0] * z[2] + w[1] * z[1]) / s, rtol=1e-4)
  np.testing.assert_array_equal(g["enc"], 0.0)


def test_full_covariance_descends_under_jit_with_stable_types():
  est = optim.zo_estimator("cma_es", num_samples=4, covariance="full")
  target = jnp.array([1.0, -2.0, 0.5, 0.0])
  loss = lambda p: jnp.sum((p - target) ** 2)
  theta = jnp.zeros(4)
  state = est.init(theta)
  assert state.C.shape == (4, 4)
  ask = jax.jit(lambda k, p, st: est.ask(k, p, st, scale=0.5))
  tell = jax.jit(est.tell)
  start = float(loss(theta))
  for k in jax.random.split(jax.random.key(0), 40):
    sets, asked = ask(k, theta, state)
    g, new_state = tell(state, jax.vmap(loss)(sets), asked)
    # The trainer keeps the old state when a step has no answer: both must have one type.
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
      lambda a: (a.shape, a.dtype), state
    )
    theta, state = theta - asked.scale**2 * g, new_state
  assert float(loss(theta)) < 0.05 * start


@pytest.mark.parametrize(
  "build, mask, match",
  [
    (lambda m: optim.zo_estimator("cma_es", covariance="dense"), None, "covariance must be one"),
    (lambda m: optim.zo_estimator("cma_es", mask=m), "^nothing$", "selects no parameter"),
    (
      lambda m: optim.zo_estimator("cma_es", mask=m),
      {"dec": jnp.array([True, False, True]), "enc": False},
      "whole leaves",
    ),
  ],
)
def test_cma_es_validation(build, mask, match):
  with pytest.raises(ValueError, match=match):
    build(mask).init(_params())


# --- Both, through the optimizer factory ---


@pytest.mark.parametrize("zo_method", ["cma_es", "reinforce"])
def test_factory_builds_the_population_methods_from_their_sections(zo_method):
  hyper = {"cma_es": {"covariance": "full"}, "reinforce": {"baseline_decay": 0.5}}[zo_method]
  opt = optim.make_optimizer({"zo_method": zo_method, "num_samples": 2, zo_method: hyper})
  params = {"w": jnp.zeros(3)}
  state = opt.estimator.init(params)
  if zo_method == "cma_es":
    assert state.C.shape == (3, 3)
  sets, asked = opt.estimator.ask(
    jax.random.key(0), params, state, scale=opt.perturbation_scale(opt.init(params))
  )
  g, _ = opt.estimator.tell(state, jax.vmap(lambda p: jnp.sum(p["w"]))(sets), asked)
  assert sets["w"].shape == (4, 3) and math.isfinite(float(jnp.sum(g["w"])))
  with pytest.raises(ValueError, match=f"config.{zo_method}: "):
    bad = {"cma_es": {"covariance": "x"}, "reinforce": {"baseline_decay": 2.0}}[zo_method]
    optim.make_optimizer({"zo_method": zo_method, zo_method: bad})
