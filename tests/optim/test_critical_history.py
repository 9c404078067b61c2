"""Tests for critical-history enhanced optimization (Eqs. 8-10), values worked out by hand."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import optim

I_ALIGNED = math.atan(2 * math.pi) / math.pi  # (b/π)·arctan(2π·1) with b = 1: 0.44976…


def _run(tx, grads, params=None):
  params = jnp.zeros_like(grads[0]) if params is None else params
  state = tx.init(params)
  outs = []
  for g in grads:
    out, state = tx.update(g, state, params)
    outs.append(out)
  return outs, state


def test_first_step_with_empty_history_uses_g_hat():
  tx = optim.critical_history(3, 0.9, 0.5, 1.0)
  g = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}
  state = tx.init(jax.tree.map(jnp.zeros_like, g))
  out, state = tx.update(g, state)
  # g̃_1 = ĝ_1, cos φ = 1, so out = (1 + arctan(2π)/π)·ĝ_1.
  np.testing.assert_allclose(out["a"], [3.0 * (1 + I_ALIGNED), 0.0], rtol=1e-6)
  np.testing.assert_allclose(out["b"], [4.0 * (1 + I_ALIGNED)], rtol=1e-6)
  np.testing.assert_allclose(state.indicator, I_ALIGNED, rtol=1e-6)
  assert int(state.count) == 1 and int(state.step) == 1
  # The norm is over the whole tree: ‖(3, 0, 4)‖ = 5.
  np.testing.assert_allclose(state.norms, [5.0, 0.0, 0.0])
  np.testing.assert_array_equal(state.steps, [1, 0, 0])
  np.testing.assert_allclose(state.history["a"][0], [3.0, 0.0])


def test_second_step_direction_and_angle_by_hand():
  tx = optim.critical_history(3, 0.9, 0.25, 1.5)
  g1, g2 = jnp.array([2.0, 0.0]), jnp.array([0.0, 1.0])
  (_, out2), state = _run(tx, [g1, g2])
  # g̃_2 = 0.25·(0, 1) + 0.75·(2, 0) = (1.5, 0.25); cos φ = 0.25 / (1·‖(1.5, 0.25)‖).
  g_tilde = np.array([1.5, 0.25])
  cos = 0.25 / np.hypot(1.5, 0.25)
  indicator = 1.5 / math.pi * math.atan(2 * math.pi * cos)
  np.testing.assert_allclose(state.indicator, indicator, rtol=1e-6)
  np.testing.assert_allclose(out2, (1 + indicator) * g_tilde, rtol=1e-6)
  assert int(state.count) == 2
  np.testing.assert_array_equal(state.steps, [1, 2, 0])


def test_mean_is_over_entries_present_and_read_before_insert():
  tx = optim.critical_history(4, 1.0, 0.5, 1.0, adjust_step=False)
  g1, g2, g3 = jnp.array([2.0, 0.0]), jnp.array([0.0, 4.0]), jnp.array([1.0, 1.0])
  (_, _, out3), state = _run(tx, [g1, g2, g3])
  # C_g = {g1, g2} when g3 arrives (2 of 4 slots): mean = (1, 2); g̃_3 = 0.5·(1, 1) + 0.5·(1, 2).
  np.testing.assert_allclose(out3, [1.0, 1.5], rtol=1e-6)
  np.testing.assert_allclose(optim.history_mean(state), [1.0, 5.0 / 3.0], rtol=1e-6)


def test_replacement_with_decay_drops_old_large_entry():
  tx = optim.critical_history(2, 0.5, 0.5, 1.0)
  g1, g2, g3 = jnp.array([8.0, 0.0]), jnp.array([0.0, 5.0]), jnp.array([0.0, -3.0])
  _, state = _run(tx, [g1, g2, g3])
  # At k = 3: importance(g1) = 0.5²·8 = 2, importance(g2) = 0.5¹·5 = 2.5; ‖g3‖ = 3 > 2, so g3
  # replaces g1 although g1's raw norm (8) is the largest.
  assert int(state.count) == 2
  np.testing.assert_allclose(state.history[0], [0.0, -3.0])
  np.testing.assert_allclose(state.history[1], [0.0, 5.0])
  np.testing.assert_allclose(state.norms, [3.0, 5.0])
  np.testing.assert_array_equal(state.steps, [3, 2])


def test_no_replacement_when_new_norm_is_smaller():
  tx = optim.critical_history(2, 1.0, 0.5, 1.0)
  g1, g2, g3 = jnp.array([8.0, 0.0]), jnp.array([0.0, 5.0]), jnp.array([0.0, -3.0])
  outs, state = _run(tx, [g1, g2, g3])
  # Without decay the least important entry has importance 5 > ‖g3‖ = 3: nothing changes.
  np.testing.assert_allclose(state.history[0], [8.0, 0.0])
  np.testing.assert_allclose(state.history[1], [0.0, 5.0])
  np.testing.assert_allclose(state.norms, [8.0, 5.0])
  np.testing.assert_array_equal(state.steps, [1, 2])
  assert int(state.step) == 3
  # g3 still used the (full) history: g̃ = 0.5·(0, −3) + 0.5·(4, 2.5) = (2, −0.25).
  cos = 0.75 / (3.0 * np.hypot(2.0, 0.25))
  indicator = math.atan(2 * math.pi * cos) / math.pi
  np.testing.assert_allclose(outs[2], (1 + indicator) * np.array([2.0, -0.25]), rtol=1e-6)


def test_equal_norm_does_not_replace():
  tx = optim.critical_history(1, 1.0, 0.5, 1.0)
  _, state = _run(tx, [jnp.array([3.0]), jnp.array([-3.0])])
  np.testing.assert_allclose(state.history[0], [3.0])


def test_latest_selection_keeps_last_m():
  tx = optim.critical_history(2, 1.0, 0.5, 1.0, selection="latest")
  g1, g2, g3 = jnp.array([8.0, 0.0]), jnp.array([0.0, 5.0]), jnp.array([0.0, -3.0])
  _, state = _run(tx, [g1, g2, g3])
  # The oldest (g1) goes, whatever its norm.
  np.testing.assert_allclose(state.history[0], [0.0, -3.0])
  np.testing.assert_allclose(state.history[1], [0.0, 5.0])
  np.testing.assert_array_equal(state.steps, [3, 2])
  _, state = _run(tx, [g1, g2, g3, jnp.array([1.0, 1.0])])
  np.testing.assert_allclose(state.history[1], [1.0, 1.0])
  np.testing.assert_array_equal(state.steps, [3, 4])


def test_indicator_negative_for_opposite_and_positive_for_aligned():
  tx = optim.critical_history(2, 0.9, 0.5, 1.0)
  # History {(4, 0)}; ĝ = (−1, 0) gives g̃ = (1.5, 0), opposite: cos = −1.
  (_, out), state = _run(tx, [jnp.array([4.0, 0.0]), jnp.array([-1.0, 0.0])])
  np.testing.assert_allclose(state.indicator, -I_ALIGNED, rtol=1e-6)
  np.testing.assert_allclose(out, [(1 - I_ALIGNED) * 1.5, 0.0], rtol=1e-6)
  # ĝ = (2, 0) gives g̃ = (3, 0), aligned: cos = 1.
  (_, out), state = _run(tx, [jnp.array([4.0, 0.0]), jnp.array([2.0, 0.0])])
  np.testing.assert_allclose(state.indicator, I_ALIGNED, rtol=1e-6)
  np.testing.assert_allclose(out, [(1 + I_ALIGNED) * 3.0, 0.0], rtol=1e-6)


def test_cos_is_zero_when_a_norm_is_zero():
  tx = optim.critical_history(2, 0.9, 0.5, 1.0)
  # ĝ = 0 on the first step: both norms 0.
  out, state = tx.update(jnp.zeros(2), tx.init(jnp.zeros(2)))
  assert float(state.indicator) == 0.0
  np.testing.assert_array_equal(out, [0.0, 0.0])
  assert not np.any(np.isnan(out))
  # g̃ = 0.5·(−2, 0) + 0.5·(2, 0) = 0 with ĝ ≠ 0.
  (_, out), state = _run(tx, [jnp.array([2.0, 0.0]), jnp.array([-2.0, 0.0])])
  assert float(state.indicator) == 0.0
  np.testing.assert_allclose(out, [0.0, 0.0], atol=1e-7)


def test_status_indicator_range_and_value():
  b = 1.8
  value = optim.status_indicator({"x": jnp.array([1.0, 0.0])}, {"x": jnp.array([1.0, 1.0])}, b)
  np.testing.assert_allclose(value, b / math.pi * math.atan(2 * math.pi / math.sqrt(2)), rtol=1e-6)
  assert abs(float(value)) < b / 2


def test_ablation_no_history():
  tx = optim.critical_history(2, 0.9, 0.5, 1.0, selection="none")
  outs, state = _run(tx, [jnp.array([4.0, 0.0]), jnp.array([-1.0, 0.0])])
  np.testing.assert_array_equal(outs[1], [-1.0, 0.0])
  assert float(state.indicator) == 0.0 and int(state.count) == 0 and int(state.step) == 2


def test_ablation_no_direction_adjustment():
  tx = optim.critical_history(2, 0.9, 0.5, 1.0, adjust_direction=False)
  (_, out), state = _run(tx, [jnp.array([4.0, 0.0]), jnp.array([-1.0, 0.0])])
  # Direction ĝ, step from I computed with g̃ = (1.5, 0): (1 − 0.4498)·(−1, 0).
  np.testing.assert_allclose(state.indicator, -I_ALIGNED, rtol=1e-6)
  np.testing.assert_allclose(out, [-(1 - I_ALIGNED), 0.0], rtol=1e-6)


def test_ablation_no_step_adjustment():
  tx = optim.critical_history(2, 0.9, 0.5, 1.0, adjust_step=False)
  (_, out), state = _run(tx, [jnp.array([4.0, 0.0]), jnp.array([-1.0, 0.0])])
  np.testing.assert_allclose(out, [1.5, 0.0], rtol=1e-6)
  np.testing.assert_allclose(state.indicator, -I_ALIGNED, rtol=1e-6)


def test_non_finite_estimate_is_not_stored():
  tx = optim.critical_history(2, 0.9, 0.5, 1.0)
  _, state = _run(tx, [jnp.array([1.0, 0.0]), jnp.array([jnp.nan, 0.0])])
  assert int(state.count) == 1
  assert np.all(np.isfinite(state.history))


@pytest.mark.parametrize(
  "args, kwargs, match",
  [
    ((0, 0.9, 0.5, 1.0), {}, "memory_size"),
    ((2.5, 0.9, 0.5, 1.0), {}, "memory_size"),
    ((2, 0.0, 0.5, 1.0), {}, "decay"),
    ((2, 1.1, 0.5, 1.0), {}, "decay"),
    ((2, 0.9, 0.0, 1.0), {}, "gamma"),
    ((2, 0.9, 1.0, 1.0), {}, "gamma"),
    ((2, 0.9, 0.5, 0.0), {}, "b must"),
    ((2, 0.9, 0.5, 2.0), {}, "b must"),
    ((2, 0.9, 0.5, 1.0), {"selection": "best"}, "selection"),
  ],
)
def test_validation(args, kwargs, match):
  with pytest.raises(ValueError, match=match):
    optim.critical_history(*args, **kwargs)
