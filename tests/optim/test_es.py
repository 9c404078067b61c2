"""Tests for the antithetic ES estimate (Salimans et al. 2017)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import optim


def test_linear_loss_gradient_in_expectation():
  w = jnp.array([1.0, -2.0, 0.5, 3.0])
  theta = jnp.array([0.2, 0.1, -0.3, 0.0])
  g, loss = optim.es_gradient(lambda p: jnp.dot(w, p), theta, jax.random.key(0), 0.1, 4000)
  # ĝ = (1/n) Σ ⟨w, ε⟩ε: mean w, std per entry ≈ ‖w‖/√n ≈ 0.06.
  np.testing.assert_allclose(g, w, atol=0.3)
  # Antithetic pairs cancel exactly on a linear loss: L̂ = ⟨w, θ⟩ = 0.2 − 0.2 − 0.15.
  np.testing.assert_allclose(loss, -0.15, rtol=1e-4)


def test_quadratic_gradient_and_loss_estimate():
  theta = jnp.array([1.0, -1.0, 2.0])
  sigma = 0.1
  g, loss = optim.es_gradient(lambda p: jnp.sum(p**2), theta, jax.random.key(1), sigma, 4000)
  # L(θ+σε) − L(θ−σε) = 4σ⟨θ, ε⟩, so ĝ = (1/n) Σ 2⟨θ, ε⟩ε → 2θ; L̂ = ‖θ‖² + σ² mean‖ε‖² ≈ 6.03.
  np.testing.assert_allclose(g, 2 * theta, atol=0.3)
  np.testing.assert_allclose(loss, 6.0 + 3 * sigma**2, atol=0.01)


def test_single_direction_by_hand():
  key = jax.random.key(2)
  theta = {"w": jnp.array([0.5, -1.0])}
  loss_fn = lambda p: jnp.sum(p["w"] ** 3)
  g, _ = optim.es_gradient(loss_fn, theta, key, 0.2, 1)
  (k,) = jax.random.split(key, 1)
  eps = optim.normal_like(k, theta)["w"]
  lp = np.sum((np.asarray(theta["w"]) + 0.2 * np.asarray(eps)) ** 3)
  lm = np.sum((np.asarray(theta["w"]) - 0.2 * np.asarray(eps)) ** 3)
  np.testing.assert_allclose(g["w"], (lp - lm) / (2 * 0.2) * np.asarray(eps), rtol=1e-4)


def test_centered_ranks():
  np.testing.assert_allclose(optim.centered_ranks(jnp.array([3.0, 1.0, 2.0])), [0.5, -0.5, 0.0])
  np.testing.assert_allclose(
    optim.centered_ranks(jnp.array([[10.0, -1.0], [0.0, 5.0]])),
    [[0.5, -0.5], [-1 / 6, 1 / 6]],
    rtol=1e-6,
  )


def test_rank_shaping_is_invariant_to_monotone_transforms():
  theta = jnp.array([0.3, -0.7, 1.1])
  base = lambda p: jnp.sum((p - 1.0) ** 2)
  key = jax.random.key(3)
  g1, _ = optim.es_gradient(base, theta, key, 0.1, 16, rank_shaping=True)
  g2, _ = optim.es_gradient(
    lambda p: jnp.exp(base(p)) * 7.0, theta, key, 0.1, 16, rank_shaping=True
  )
  np.testing.assert_allclose(g1, g2, rtol=1e-6)
  # Still a descent direction: aligned with the true gradient 2(θ − 1).
  true = 2 * (theta - 1.0)
  assert float(jnp.dot(g1, true)) / float(jnp.linalg.norm(g1) * jnp.linalg.norm(true)) > 0.5


def test_mask_dtype_and_jit():
  params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2)}
  loss_fn = lambda p: jnp.sum(p["a"].astype(jnp.float32) ** 2) + jnp.sum(p["b"] ** 2)
  fn = jax.jit(optim.es_gradient, static_argnums=(0, 4), static_argnames=("mask", "rank_shaping"))
  g, _ = fn(loss_fn, params, jax.random.key(0), 0.1, 4, mask="^b")
  assert g["a"].dtype == jnp.bfloat16 and g["b"].dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(g["a"], np.float32), 0.0)
  assert float(jnp.abs(g["b"]).sum()) > 0


@pytest.mark.parametrize("sigma, n, match", [(0.0, 4, "sigma"), (0.1, 0, "num_directions")])
def test_validation(sigma, n, match):
  with pytest.raises(ValueError, match=match):
    optim.es_gradient(jnp.sum, jnp.zeros(2), jax.random.key(0), sigma, n)
