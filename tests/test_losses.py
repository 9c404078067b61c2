"""Tests for anonymax.losses: privacy losses and their ideal points, reviewer BCE."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import losses

LOG2 = math.log(2.0)


def _sigmoid(x: float) -> float:
  return 1.0 / (1.0 + math.exp(-x))


def _entropy(p: float) -> float:
  return -p * math.log(p) - (1 - p) * math.log(1 - p)


# --- L_Privacy values -----------------------------------------------------------------------------


def test_neg_entropy_values():
  assert float(losses.privacy_loss(jnp.zeros((3, 7)))) == pytest.approx(-LOG2, rel=1e-6)
  # p = σ(log 3) = 3/4: H = −.75 ln .75 − .25 ln .25.
  x = jnp.array([[math.log(3.0), -math.log(3.0)]])
  assert float(losses.privacy_loss(x)) == pytest.approx(-_entropy(0.75), rel=1e-6)
  # Mixed elements: the mean over all of them.
  x = jnp.array([[0.0, 2.0], [-1.0, 0.5]])
  expected = -np.mean([_entropy(_sigmoid(v)) for v in (0.0, 2.0, -1.0, 0.5)])
  assert float(losses.privacy_loss(x, "neg_entropy")) == pytest.approx(expected, rel=1e-6)


def test_bce_to_half_values():
  assert float(losses.privacy_loss(jnp.zeros((2, 3)), "bce_to_half")) == pytest.approx(LOG2)
  # BCE(2, 1/2) = ½(−ln σ(2) − ln σ(−2)).
  expected = 0.5 * (-math.log(_sigmoid(2.0)) - math.log(_sigmoid(-2.0)))
  got = float(losses.privacy_loss(jnp.array([[2.0, -2.0]]), "bce_to_half"))
  assert got == pytest.approx(expected, rel=1e-6)


def test_neg_bce_values_and_cap():
  labels = jnp.array([[1.0, 0.0]])
  got = losses.privacy_loss(jnp.zeros((1, 2)), "neg_bce", labels)
  assert float(got) == pytest.approx(-LOG2, rel=1e-6)
  # x = 1, y = 1: BCE = −ln σ(1); x = 1, y = 0: BCE = −ln σ(−1).
  expected = -0.5 * (-math.log(_sigmoid(1.0)) - math.log(_sigmoid(-1.0)))
  got = losses.privacy_loss(jnp.ones((1, 2)), "neg_bce", labels)
  assert float(got) == pytest.approx(expected, rel=1e-6)
  # Confidently wrong on both: BCE = 100 each, capped at max_bce → the ideal point.
  wrong = jnp.array([[-100.0, 100.0]])
  assert float(losses.privacy_loss(wrong, "neg_bce", labels, max_bce=3.0)) == pytest.approx(-3.0)
  default = losses.privacy_loss(wrong, "neg_bce", labels)
  assert float(default) == pytest.approx(-math.log(100.0), rel=1e-6)
  # Bool labels are accepted.
  got = losses.privacy_loss(jnp.zeros((1, 2)), "neg_bce", jnp.array([[True, False]]))
  assert float(got) == pytest.approx(-LOG2, rel=1e-6)


@pytest.mark.parametrize("kind", losses.PRIVACY_LOSSES)
def test_privacy_loss_at_large_logits_is_finite(kind):
  x = jnp.array([[1e4, -1e4, 80.0, -80.0]], jnp.float32)
  labels = jnp.array([[1.0, 1.0, 0.0, 0.0]])
  value = losses.privacy_loss(x, kind, labels)
  grad = jax.grad(lambda z: losses.privacy_loss(z, kind, labels))(x)
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad)))
  if kind == "neg_entropy":  # a fully confident reviewer has zero entropy
    assert float(value) == pytest.approx(0.0, abs=1e-6)
  if kind == "bce_to_half":  # ½(|x| + 2 ln(1 + e^{−|x|})) ≈ |x|/2 for each element
    assert float(value) == pytest.approx((5e3 + 5e3 + 40.0 + 40.0) / 4, rel=1e-5)


# --- L_Privacy gradients --------------------------------------------------------------------------


def test_neg_entropy_gradient():
  # dH/dx = −x σ(x)(1 − σ(x)), so d(−mean H)/dx_i = x_i σ(x_i)σ(−x_i) / n.
  x = jnp.array([[0.0, 2.0, -1.0]])
  grad = jax.grad(lambda z: losses.privacy_loss(z))(x)
  expected = [v * _sigmoid(v) * _sigmoid(-v) / 3 for v in (0.0, 2.0, -1.0)]
  np.testing.assert_allclose(np.asarray(grad)[0], expected, rtol=1e-5, atol=1e-7)


def test_bce_to_half_gradient():
  # d/dx ½(softplus(x) + softplus(−x)) = ½(σ(x) − σ(−x)) = σ(x) − ½, over n = 2 elements.
  x = jnp.array([[0.0, 3.0]])
  grad = jax.grad(lambda z: losses.privacy_loss(z, "bce_to_half"))(x)
  np.testing.assert_allclose(np.asarray(grad)[0], [0.0, (_sigmoid(3.0) - 0.5) / 2], rtol=1e-5)


def test_neg_bce_gradient_zero_where_capped():
  # d(−BCE)/dx = −(σ(x) − y); capped elements get 0.
  x = jnp.array([[0.0, -50.0]])
  labels = jnp.array([[1.0, 1.0]])
  grad = jax.grad(lambda z: losses.privacy_loss(z, "neg_bce", labels, max_bce=5.0))(x)
  np.testing.assert_allclose(np.asarray(grad)[0], [0.5 / 2, 0.0], atol=1e-7)


# --- Ideal points ---------------------------------------------------------------------------------


def test_privacy_ideal_values():
  assert losses.privacy_ideal("neg_entropy") == pytest.approx(-LOG2)
  assert losses.privacy_ideal() == pytest.approx(-LOG2)
  assert losses.privacy_ideal("bce_to_half") == pytest.approx(LOG2)
  assert losses.privacy_ideal("neg_bce", max_bce=2.5) == -2.5
  assert losses.privacy_ideal("neg_bce") == pytest.approx(-math.log(100.0))
  # The same keywords are accepted for every kind.
  assert losses.privacy_ideal("neg_entropy", max_bce=2.5) == pytest.approx(-LOG2)


@pytest.mark.parametrize("kind", losses.PRIVACY_LOSSES)
def test_privacy_ideal_is_a_lower_bound(kind):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(scale=4.0, size=(16, 7)), jnp.float32)
  labels = jnp.asarray(rng.random((16, 7)) < 0.5, jnp.float32)
  ideal = losses.privacy_ideal(kind, max_bce=3.0)
  assert float(losses.privacy_loss(x, kind, labels, max_bce=3.0)) > ideal
  # ...and it is attained: x = 0 for the uncertainty losses, confidently wrong for neg_bce.
  best = jnp.zeros_like(x) if kind != "neg_bce" else 100.0 * (1.0 - 2.0 * labels)
  attained = float(losses.privacy_loss(best, kind, labels, max_bce=3.0))
  assert attained == pytest.approx(ideal, rel=1e-6)


def test_privacy_loss_under_jit():
  fn = jax.jit(losses.privacy_loss, static_argnames=("kind", "max_bce"))
  x = jnp.array([[0.3, -1.2]])
  labels = jnp.array([[1.0, 0.0]])
  for kind in losses.PRIVACY_LOSSES:
    eager = losses.privacy_loss(x, kind, labels)
    np.testing.assert_allclose(fn(x, kind, labels), eager, rtol=1e-6)


def test_privacy_loss_keeps_bfloat16():
  x = jnp.zeros((2, 3), jnp.bfloat16)
  assert losses.privacy_loss(x).dtype == jnp.bfloat16


# --- L_Privacy errors -----------------------------------------------------------------------------


def test_privacy_loss_bad_inputs():
  x = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="kind"):
    losses.privacy_loss(x, "entropy")
  with pytest.raises(ValueError, match="labels"):
    losses.privacy_loss(x, "neg_bce")
  with pytest.raises(ValueError, match="shape"):
    losses.privacy_loss(x, "neg_bce", jnp.zeros((2, 4)))
  for bad in (0.0, -1.0, math.inf, math.nan, "3"):
    with pytest.raises(ValueError, match="max_bce"):
      losses.privacy_loss(x, "neg_bce", jnp.zeros((2, 3)), max_bce=bad)
  with pytest.raises(ValueError, match="kind"):
    losses.privacy_ideal("bce")
  with pytest.raises(ValueError, match="max_bce"):
    losses.privacy_ideal("neg_bce", max_bce=0.0)


# --- Reviewer BCE ---------------------------------------------------------------------------------


def test_reviewer_bce_values():
  logits = jnp.array([[0.0, 2.0], [-3.0, 1e4]])
  labels = jnp.array([[1, 0], [0, 0]])
  expected = np.mean(
    [LOG2, -math.log(_sigmoid(-2.0)), -math.log(_sigmoid(3.0)), 1e4]  # last: ≈ x for huge x
  )
  assert float(losses.reviewer_bce(logits, labels)) == pytest.approx(expected, rel=1e-5)
  grad = jax.grad(losses.reviewer_bce)(logits, labels.astype(jnp.float32))
  # d BCE/dx = (σ(x) − y) / n.
  expected_grad = [[(0.5 - 1) / 4, _sigmoid(2.0) / 4], [_sigmoid(-3.0) / 4, 1 / 4]]
  np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-5)


def test_reviewer_bce_shape_mismatch():
  with pytest.raises(ValueError, match="shape"):
    losses.reviewer_bce(jnp.zeros((2, 7)), jnp.zeros((7,)))
