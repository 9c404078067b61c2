"""Tests for the scalarizations (Eqs. 4-6, 11 and smooth Tchebycheff), values by hand."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anonymax import optim

G1 = {"w": jnp.array([1.0, 2.0])}
G2 = {"w": jnp.array([4.0, -4.0])}


def _update(tx, losses, state=None, grads=(G1, G2)):
  state = tx.init(None) if state is None else state
  return tx.update(grads, state, None, losses=losses)


def test_weighted_sum_eq4():
  out, _ = _update(optim.weighted_sum((0.25, 0.75)), None)
  # 0.25·(1, 2) + 0.75·(4, −4) = (3.25, −2.5).
  np.testing.assert_allclose(out["w"], [3.25, -2.5], rtol=1e-6)


def test_weighted_sum_three_objectives():
  tx = optim.weighted_sum((0.5, 0.25, 0.25))
  out, _ = tx.update((G1, G2, {"w": jnp.array([0.0, 8.0])}), tx.init(None))
  np.testing.assert_allclose(out["w"], [1.5, 2.0], rtol=1e-6)


def test_tchebycheff_selects_each_branch():
  tx = optim.tchebycheff((0.5, 0.5), (0.0, 0.0), eps=0.1)
  # Terms 0.5·(2 + 0.1) = 1.05 and 0.5·(1 + 0.1) = 0.55: utility (0) is selected.
  out, state = _update(tx, (2.0, 1.0))
  assert int(state.selected) == 0
  np.testing.assert_allclose(out["w"], [0.5, 1.0], rtol=1e-6)
  out, state = _update(tx, (1.0, 2.0))
  assert int(state.selected) == 1
  np.testing.assert_allclose(out["w"], [2.0, -2.0], rtol=1e-6)


def test_tchebycheff_weights_and_ideal_change_the_choice():
  tx = optim.tchebycheff((0.2, 0.8), (0.0, 0.5), eps=0.1)
  # 0.2·(3 + 0.1) = 0.62 > 0.8·(1 − 0.4) = 0.48.
  _, state = _update(tx, (3.0, 1.0))
  assert int(state.selected) == 0
  # 0.2·(2 + 0.1) = 0.42 < 0.48.
  out, state = _update(tx, (2.0, 1.0))
  assert int(state.selected) == 1
  np.testing.assert_allclose(out["w"], [3.2, -3.2], rtol=1e-6)


def test_tchebycheff_tie_goes_to_first():
  _, state = _update(optim.tchebycheff((0.5, 0.5), (0.0, 0.0), eps=0.1), (1.0, 1.0))
  assert int(state.selected) == 0


def test_augmented_tchebycheff_eq11():
  tx = optim.tchebycheff((0.5, 0.5), (0.0, 0.0), eps=1e-3, sigma=0.1)
  out, state = _update(tx, (2.0, 1.0))
  # λ_1 G_1 + σ(λ_1 G_1 + λ_2 G_2) = 0.5·(1, 2) + 0.1·(2.5, −1) = (0.75, 0.9).
  assert int(state.selected) == 0
  np.testing.assert_allclose(out["w"], [0.75, 0.9], rtol=1e-6)
  out, state = _update(tx, (0.5, 1.0))
  # λ_2 G_2 + σ(…) = (2, −2) + (0.25, −0.1).
  assert int(state.selected) == 1
  np.testing.assert_allclose(out["w"], [2.25, -2.1], rtol=1e-6)


def test_smooth_tchebycheff_softmax_weights():
  tx = optim.smooth_tchebycheff((0.5, 0.5), (0.0, 0.0), mu=0.5)
  out, state = _update(tx, (2.0, 1.0))
  # Logits λ(L − z*)/μ = (2, 1): w = (e², e)/(e² + e).
  w1 = math.exp(2) / (math.exp(2) + math.exp(1))
  w2 = 1 - w1
  np.testing.assert_allclose(state.softmax_weights, [w1, w2], rtol=1e-6)
  expected = w1 * 0.5 * np.array([1.0, 2.0]) + w2 * 0.5 * np.array([4.0, -4.0])
  np.testing.assert_allclose(out["w"], expected, rtol=1e-6)
  assert int(state.selected) == 0


def test_smooth_tchebycheff_tends_to_tchebycheff_for_small_mu():
  tx = optim.smooth_tchebycheff((0.5, 0.5), (0.0, 0.0), mu=1e-3)
  out, _ = _update(tx, (1.0, 2.0))
  np.testing.assert_allclose(out["w"], [2.0, -2.0], rtol=1e-5)


def test_track_ideal_running_minimum_changes_selection():
  tracked = optim.tchebycheff((0.5, 0.5), (1.0, 1.0), eps=0.01, track_ideal=True)
  fixed = optim.tchebycheff((0.5, 0.5), (1.0, 1.0), eps=0.01)
  # Step 1: z* = min((1, 1), (2, 0.5)) = (1, 0.5).
  _, s_tracked = _update(tracked, (2.0, 0.5))
  np.testing.assert_allclose(s_tracked.ideal, [1.0, 0.5])
  assert int(s_tracked.selected) == 0
  # Step 2: z* = (0.8, 0.5); terms 0.5·0.01 vs 0.5·(0.1 + 0.01): privacy (1). With z* fixed at
  # (1, 1): 0.5·(−0.2 + 0.01) vs 0.5·(−0.4 + 0.01): utility (0).
  _, s_tracked = _update(tracked, (0.8, 0.6), state=s_tracked)
  np.testing.assert_allclose(s_tracked.ideal, [0.8, 0.5])
  assert int(s_tracked.selected) == 1
  _, s_fixed = _update(fixed, (0.8, 0.6))
  assert int(s_fixed.selected) == 0
  np.testing.assert_allclose(s_fixed.ideal, [1.0, 1.0])


def test_track_ideal_from_first_losses():
  tx = optim.tchebycheff((0.4, 0.6), None, eps=0.01, track_ideal=True)
  _, state = _update(tx, (2.0, 1.0))
  # z* = first losses, so the terms are λ_i ε: the larger weight wins.
  np.testing.assert_allclose(state.ideal, [2.0, 1.0])
  assert int(state.selected) == 1


def test_inside_chain_with_schedule():
  tx = optax.chain(
    optim.tchebycheff((0.5, 0.5), (0.0, 0.0), eps=0.1), optax.scale_by_schedule(lambda k: -0.1)
  )
  params = {"w": jnp.zeros(2)}
  out, _ = tx.update((G1, G2), tx.init(params), params, losses=(2.0, 1.0))
  np.testing.assert_allclose(out["w"], [-0.05, -0.1], rtol=1e-6)


def test_keeps_bf16():
  g1 = {"w": jnp.array([1.0, 2.0], jnp.bfloat16)}
  g2 = {"w": jnp.array([4.0, -4.0], jnp.bfloat16)}
  for tx in (
    optim.weighted_sum((0.5, 0.5)),
    optim.tchebycheff((0.5, 0.5), (0.0, 0.0), 0.1, 0.1),
    optim.smooth_tchebycheff((0.5, 0.5), (0.0, 0.0), 0.1),
  ):
    out, _ = tx.update((g1, g2), tx.init(None), losses=(1.0, 2.0))
    assert out["w"].dtype == jnp.bfloat16


@pytest.mark.parametrize(
  "build, match",
  [
    (lambda: optim.weighted_sum((0.5, 0.6)), "sum to 1"),
    (lambda: optim.weighted_sum((1.5, -0.5)), "> 0"),
    (lambda: optim.weighted_sum(()), "non-empty"),
    (lambda: optim.tchebycheff((0.5, 0.5), (0.0,), 0.1), "ideal"),
    (lambda: optim.tchebycheff((0.5, 0.5), None, 0.1), "ideal"),
    (lambda: optim.tchebycheff((0.5, 0.5), (0.0, 0.0), 0.0), "eps"),
    (lambda: optim.tchebycheff((0.5, 0.5), (0.0, 0.0), 0.1, -0.1), "sigma"),
    (lambda: optim.smooth_tchebycheff((0.5, 0.5), (0.0, 0.0), 0.0), "mu"),
  ],
)
def test_factory_validation(build, match):
  with pytest.raises(ValueError, match=match):
    build()


def test_update_validation():
  tx = optim.tchebycheff((0.5, 0.5), (0.0, 0.0), 0.1)
  with pytest.raises(ValueError, match="losses"):
    tx.update((G1, G2), tx.init(None))
  with pytest.raises(ValueError, match="losses must have 2"):
    tx.update((G1, G2), tx.init(None), losses=(1.0, 2.0, 3.0))
  with pytest.raises(ValueError, match="updates must have 2"):
    tx.update((G1,), tx.init(None), losses=(1.0, 2.0))
  with pytest.raises(ValueError, match="tuple"):
    tx.update(G1, tx.init(None), losses=(1.0, 2.0))
