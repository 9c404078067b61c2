"""Tests for the SPSA-GC baseline (BlackVIP): momentum recursion, gains, perturbations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import optim


def test_momentum_recursion_by_hand():
  tx = optim.spsa_gc(beta=0.9)
  state = tx.init(jnp.zeros(1))
  outs = []
  for g in (1.0, 2.0, -1.0):
    out, state = tx.update(jnp.array([g]), state)
    outs.append(float(out[0]))
  # m1 = 1, u1 = 1 + 0.9; m2 = 0.9 + 2 = 2.9, u2 = 2 + 2.61; m3 = 2.61 − 1 = 1.61,
  # u3 = −1 + 1.449.
  np.testing.assert_allclose(outs, [1.9, 4.61, 0.449], rtol=1e-6)
  np.testing.assert_allclose(state.momentum, [1.61], rtol=1e-6)
  assert int(state.count) == 3


def test_beta_zero_is_plain_spsa():
  tx = optim.spsa_gc(beta=0.0)
  state = tx.init({"w": jnp.zeros(2)})
  for g in ([1.0, -2.0], [3.0, 0.5]):
    out, state = tx.update({"w": jnp.array(g)}, state)
    np.testing.assert_allclose(out["w"], g)


def test_keeps_bf16():
  tx = optim.spsa_gc(0.9)
  params = jnp.zeros(3, jnp.bfloat16)
  out, state = tx.update(jnp.ones(3, jnp.bfloat16), tx.init(params))
  assert out.dtype == jnp.bfloat16 and state.momentum.dtype == jnp.bfloat16


def test_blackvip_gains_by_hand():
  lr = optim.blackvip_learning_rate(1.0, 2.0, 0.5)
  np.testing.assert_allclose([lr(0), lr(1)], [1 / 3**0.5, 1 / 4**0.5], rtol=1e-6)
  c = optim.blackvip_perturbation(0.1, 0.5)
  np.testing.assert_allclose([c(0), c(3)], [0.1, 0.05], rtol=1e-6)


def test_uniform_rademacher_like_range_signs_mask():
  tree = {"a": jnp.zeros((4000,)), "b": jnp.zeros((3,), jnp.bfloat16)}
  delta = optim.uniform_rademacher_like(jax.random.key(0), tree, mask=lambda p, x: p == "a")
  mags = np.abs(np.asarray(delta["a"]))
  assert mags.min() >= 0.5 and mags.max() <= 1.0
  # Magnitudes fill [0.5, 1] (mean 0.75) and the signs are balanced.
  assert abs(mags.mean() - 0.75) < 0.02
  assert abs(float(np.sign(delta["a"]).mean())) < 0.1
  assert delta["b"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(delta["b"], np.float32), 0.0)


def test_uniform_perturbation_estimate_is_unbiased_on_linear_loss():
  # ĝ_i = ⟨w, Δ⟩ / Δ_i: E = w_i because E[Δ_j] = 0 for j ≠ i.
  w = jnp.array([1.0, -2.0, 0.5])
  g, _ = optim.spsa_gradient(
    lambda p: jnp.dot(w, p),
    jnp.zeros(3),
    jax.random.key(1),
    0.1,
    num_samples=4000,
    perturbation=optim.uniform_rademacher_like,
  )
  np.testing.assert_allclose(g, w, atol=0.25)


@pytest.mark.parametrize(
  "build, match",
  [
    (lambda: optim.spsa_gc(1.0), "beta"),
    (lambda: optim.spsa_gc(-0.1), "beta"),
    (lambda: optim.blackvip_learning_rate(0.0, 1.0, 0.5), "a must"),
    (lambda: optim.blackvip_learning_rate(1.0, -1.0, 0.5), "o must"),
    (lambda: optim.blackvip_perturbation(1.0, -0.5), "gamma"),
    (lambda: optim.uniform_rademacher_like(jax.random.key(0), jnp.zeros(2), 0.0), "low"),
    (lambda: optim.uniform_rademacher_like(jax.random.key(0), jnp.zeros(2), 0.9, 0.5), "low"),
    (lambda: optim.uniform_rademacher_like(jax.random.key(0), jnp.zeros(2), "^dec/"), "mask="),
  ],
)
def test_validation(build, match):
  with pytest.raises(ValueError, match=match):
    build()
