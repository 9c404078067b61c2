"""Tests for SPSA perturbations, estimates (Eq. 7), masks and Spall's gains."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import optim


def _tree(dtype=jnp.float32):
  return {"dec": {"kernel": jnp.zeros((4, 3), dtype)}, "enc": {"bias": jnp.zeros((5,), dtype)}}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_rademacher_like_signs_and_dtype(dtype):
  delta = optim.rademacher_like(jax.random.key(0), _tree(dtype))
  for leaf in jax.tree.leaves(delta):
    assert leaf.dtype == dtype
    np.testing.assert_array_equal(np.abs(np.asarray(leaf, np.float32)), 1.0)


def test_rademacher_like_is_balanced():
  delta = optim.rademacher_like(jax.random.key(1), jnp.zeros((20_000,)))
  # Mean of 20k fair ±1 draws: std 0.007, so 0.03 is > 4 sigma.
  assert abs(float(jnp.mean(delta))) < 0.03
  assert set(np.unique(np.asarray(delta)).tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize(
  "mask",
  [
    {"dec": {"kernel": True}, "enc": {"bias": False}},
    lambda path, leaf: path.startswith("dec"),
    "^dec/",
    "kernel",
  ],
  ids=["pytree", "callable", "anchored-regex", "regex-search"],
)
def test_rademacher_like_mask_zeroes_excluded_leaves(mask):
  delta = optim.rademacher_like(jax.random.key(0), _tree(), mask=mask)
  np.testing.assert_array_equal(np.abs(delta["dec"]["kernel"]), 1.0)
  np.testing.assert_array_equal(delta["enc"]["bias"], 0.0)


def test_mask_paths_are_slash_joined():
  seen = []
  optim.resolve_mask(lambda path, leaf: seen.append(path) or True, _tree())
  assert sorted(seen) == ["dec/kernel", "enc/bias"]


def test_elementwise_array_mask():
  mask = {"w": jnp.array([True, False, True])}
  delta = optim.rademacher_like(jax.random.key(0), {"w": jnp.zeros(3)}, mask=mask)
  assert float(delta["w"][1]) == 0.0
  assert abs(float(delta["w"][0])) == 1.0 and abs(float(delta["w"][2])) == 1.0


def test_mask_errors():
  with pytest.raises(ValueError, match="structure"):
    optim.rademacher_like(jax.random.key(0), _tree(), mask={"dec": True})
  with pytest.raises(ValueError, match="regular expression"):
    optim.rademacher_like(jax.random.key(0), _tree(), mask="dec(")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_perturb_values_and_dtype(dtype):
  params = {"w": jnp.array([1.0, 2.0], dtype)}
  delta = {"w": jnp.array([1.0, -1.0], dtype)}
  plus, minus = optim.perturb(params, delta, jnp.float32(0.5))
  assert plus["w"].dtype == dtype and minus["w"].dtype == dtype
  np.testing.assert_allclose(np.asarray(plus["w"], np.float32), [1.5, 1.5])
  np.testing.assert_allclose(np.asarray(minus["w"], np.float32), [0.5, 2.5])


def test_spsa_estimate_eq7_by_hand():
  delta = {"a": jnp.array([1.0, -1.0]), "b": jnp.array([[-1.0]])}
  # (3 - 1) / (2 * 0.25) = 4.
  g = optim.spsa_estimate(3.0, 1.0, delta, 0.25)
  np.testing.assert_allclose(g["a"], [4.0, -4.0])
  np.testing.assert_allclose(g["b"], [[-4.0]])
  # Per-sample losses are averaged first: mean([2, 4]) = 3, mean([0, 2]) = 1.
  g2 = optim.spsa_estimate(jnp.array([2.0, 4.0]), jnp.array([0.0, 2.0]), delta, 0.25)
  np.testing.assert_allclose(g2["a"], [4.0, -4.0])


def test_spsa_estimate_masked_and_non_unit_entries():
  # Δ = 0 (masked) gives 0, not inf; |Δ| ≠ 1 divides by Δ: 4 / 0.5 = 8, 4 / -0.8 = -5.
  g = optim.spsa_estimate(3.0, 1.0, {"w": jnp.array([0.0, 0.5, -0.8])}, 0.25)
  np.testing.assert_allclose(g["w"], [0.0, 8.0, -5.0], rtol=1e-6)


def test_spsa_estimate_keeps_bf16():
  g = optim.spsa_estimate(3.0, 1.0, {"w": jnp.array([1.0, -1.0], jnp.bfloat16)}, 0.25)
  assert g["w"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(g["w"], np.float32), [4.0, -4.0])


def test_spsa_gradient_with_fixed_delta():
  fixed = {"w": jnp.array([1.0, -1.0, 1.0])}
  params = {"w": jnp.array([1.0, 2.0, 3.0])}
  loss_fn = lambda p: jnp.sum(p["w"] ** 2)
  # L(θ+cΔ) − L(θ−cΔ) = 4c⟨θ, Δ⟩ = 8c, so ĝ = 2⟨θ, Δ⟩Δ = [4, −4, 4]; the loss estimate is
  # ((θ+cΔ)² + (θ−cΔ)²)/2 summed = ‖θ‖² + 3c² = 14 + 0.03.
  g, loss = optim.spsa_gradient(
    loss_fn, params, jax.random.key(0), 0.1, num_samples=3, perturbation=lambda k, t, mask: fixed
  )
  np.testing.assert_allclose(g["w"], [4.0, -4.0, 4.0], rtol=1e-5)
  np.testing.assert_allclose(loss, 14.03, rtol=1e-6)


def test_spsa_gradient_averages_samples_from_split_keys():
  params = {"w": jnp.array([0.3, -0.2, 0.5, 1.0])}
  loss_fn = lambda p: jnp.sum(jnp.sin(p["w"]) * jnp.arange(1.0, 5.0))
  key, c = jax.random.key(3), 0.05
  g, _ = optim.spsa_gradient(loss_fn, params, key, c, num_samples=2)
  expected = []
  for k in jax.random.split(key, 2):
    delta = optim.rademacher_like(k, params)
    plus, minus = optim.perturb(params, delta, c)
    expected.append(optim.spsa_estimate(loss_fn(plus), loss_fn(minus), delta, c)["w"])
  np.testing.assert_allclose(g["w"], np.mean(expected, axis=0), rtol=1e-5, atol=1e-6)


def test_spsa_gradient_unbiased_on_linear_loss():
  w = jnp.array([1.0, -2.0, 0.5])
  g, _ = optim.spsa_gradient(
    lambda p: jnp.dot(w, p), jnp.zeros(3), jax.random.key(0), 0.1, num_samples=4000
  )
  # ĝ_i = Σ_j w_j Δ_j Δ_i: mean w_i, std ‖w_{−i}‖/√4000 ≤ 0.035.
  np.testing.assert_allclose(g, w, atol=0.15)


def test_spsa_gradient_mask_and_jit():
  params = _tree()
  loss_fn = lambda p: (
    jnp.sum((p["dec"]["kernel"] - 1.0) ** 2) + jnp.sum((p["enc"]["bias"] - 1) ** 2)
  )
  fn = jax.jit(optim.spsa_gradient, static_argnums=(0, 4), static_argnames=("mask",))
  g, loss = fn(loss_fn, params, jax.random.key(0), 0.01, 1, mask="^enc/")
  np.testing.assert_array_equal(g["dec"]["kernel"], 0.0)
  # Only the 5 bias entries move: L± = 12 + 5 + 5c² ∓ 2cΣΔ, so the loss estimate is 17 + 5c²
  # and ĝ_i = −2(ΣΔ)Δ_i, whose magnitude 2|ΣΔ| is the same odd multiple of 2 for every entry.
  np.testing.assert_allclose(loss, 17.0 + 5e-4, rtol=1e-6)
  magnitudes = np.abs(np.asarray(g["enc"]["bias"]))
  np.testing.assert_allclose(magnitudes, magnitudes[0], rtol=1e-4)
  assert round(float(magnitudes[0])) in (2, 6, 10)


def test_spsa_gradient_rejects_bad_num_samples():
  with pytest.raises(ValueError, match="num_samples"):
    optim.spsa_gradient(lambda p: jnp.sum(p), jnp.zeros(2), jax.random.key(0), 0.1, num_samples=0)
  with pytest.raises(ValueError, match="num_samples"):
    optim.count_evaluations(1.5)


def test_count_evaluations():
  assert optim.count_evaluations(1) == 2
  assert optim.count_evaluations(3) == 6


def test_spall_gains_by_hand():
  lr = optim.spall_learning_rate(1.0, A=1.0, alpha=1.0)
  np.testing.assert_allclose([lr(0), lr(1)], [1 / 2, 1 / 3], rtol=1e-6)
  lr = optim.spall_learning_rate(0.5, A=10.0)  # alpha = 0.602, k = 5 at count 4.
  np.testing.assert_allclose(lr(4), 0.5 / 15**0.602, rtol=1e-6)
  c = optim.spall_perturbation(0.2)  # gamma = 0.101, k = 10 at count 9.
  np.testing.assert_allclose(c(9), 0.2 / 10**0.101, rtol=1e-6)
  np.testing.assert_allclose(c(0), 0.2, rtol=1e-6)
  c = optim.spall_perturbation(0.5, gamma=1.0)
  np.testing.assert_allclose(jax.jit(c)(jnp.int32(3)), 0.5 / 4, rtol=1e-6)
  assert math.isclose(float(optim.spall_learning_rate(2.0, 0.0, 0.5)(3)), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize(
  "factory, kwargs, match",
  [
    (optim.spall_learning_rate, {"a": 0.0}, "a must"),
    (optim.spall_learning_rate, {"a": 1.0, "A": -1.0}, "A must"),
    (optim.spall_learning_rate, {"a": 1.0, "alpha": 0.0}, "alpha must"),
    (optim.spall_perturbation, {"c": -0.1}, "c must"),
    (optim.spall_perturbation, {"c": 0.1, "gamma": -0.1}, "gamma must"),
  ],
)
def test_spall_gains_validation(factory, kwargs, match):
  with pytest.raises(ValueError, match=match):
    factory(**kwargs)
