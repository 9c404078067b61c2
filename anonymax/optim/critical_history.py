"""Critical-history enhanced optimization (Eqs. 8-10 of Hui et al., IJCV 2026).

A zeroth-order estimate ĝ_k is noisy; the estimates of past steps are not arbitrary, so a small
set C_g of the most informative ones (the *critical* history) corrects both the direction and
the size of the current step:

* Collection (Eq. 8): each entry keeps its raw norm ‖ĝ_t‖₂ and its step t; at step k its
  importance is d^(k−t)·‖ĝ_t‖₂, d ∈ (0, 1]. While C_g has fewer than m entries ĝ_k is always
  added; once full, ĝ_k replaces the least important entry only if ‖ĝ_k‖₂ is larger than that
  entry's importance.
* Direction (Eq. 9): g̃_k = γ ĝ_k + (1 − γ)·mean(C_g), with C_g read *before* ĝ_k is considered
  for insertion and the mean over the entries present; g̃_k = ĝ_k while C_g is empty.
* Step size (Eq. 10): I_k = (b/π)·arctan(2π cos φ_k), φ_k the angle between ĝ_k and g̃_k over
  the whole tree (cos φ_k = 0 if either norm is 0); the output is (1 + I_k)·g̃_k, so that a
  downstream −a_k scaling gives the paper's step a'_k = (1 + I_k)·a_k.

C_g is a fixed ring of m slots plus a count, so shapes are static and the update never
recompiles.

References:
  Hui et al., "When Visual Privacy Protection Meets Multimodal Large Language Models",
  IJCV 2026 (Sec. 3.4, Eqs. 8-10; Table 7 for the ablations exposed as options here).
  Spall, "Multivariate stochastic approximation using a simultaneous perturbation gradient
  approximation", IEEE Trans. Automatic Control, 1992.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any
SELECTIONS = ("critical", "latest", "none")


class CriticalHistoryState(NamedTuple):
  """State of :func:`critical_history`."""

  history: PyTree  # like params (their dtypes), each leaf with a leading axis [m]: stored ĝ_t.
  norms: jax.Array  # [m] float32: raw ‖ĝ_t‖₂ of each slot (0 in empty slots).
  steps: jax.Array  # [m] int32: the step t each slot was stored at (0 in empty slots).
  count: jax.Array  # [] int32: number of filled slots, 0 ≤ count ≤ m.
  step: jax.Array  # [] int32: k of the last update (0 before the first update).
  indicator: jax.Array  # [] float32: I_k of the last update.


def _f32(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def history_mean(state: CriticalHistoryState) -> PyTree:
  """mean(C_g): the float32 average of the filled slots (zeros when C_g is empty)."""
  m = state.norms.shape[0]
  valid = jnp.arange(m) < state.count
  denom = jnp.maximum(state.count, 1).astype(jnp.float32)

  def _mean(h):
    keep = valid.reshape((m,) + (1,) * (h.ndim - 1))
    return jnp.sum(jnp.where(keep, h.astype(jnp.float32), 0), axis=0) / denom

  return jax.tree.map(_mean, state.history)


def status_indicator(g_hat: PyTree, g_tilde: PyTree, b: float) -> jax.Array:
  """I = (b/π)·arctan(2π cos φ), φ the angle between two trees (Eq. 10); cos φ = 0 if a norm is 0.

  Args:
    g_hat: ĝ_k.
    g_tilde: g̃_k, same structure.
    b: b ∈ (0, 2), so that I ∈ (−b/2, b/2).

  Returns:
    I as a float32 scalar.
  """
  g_hat, g_tilde = _f32(g_hat), _f32(g_tilde)
  norm_prod = optax.tree.norm(g_hat) * optax.tree.norm(g_tilde)
  ok = norm_prod > 0
  cos = jnp.where(ok, optax.tree.vdot(g_hat, g_tilde) / jnp.where(ok, norm_prod, 1.0), 0.0)
  # Rounding can push |cos| a hair above 1 for parallel trees.
  cos = jnp.clip(cos, -1.0, 1.0)
  return (b / math.pi) * jnp.arctan(2 * math.pi * cos)


def critical_history(
  memory_size: int,
  decay: float,
  gamma: float,
  b: float,
  *,
  selection: str = "critical",
  adjust_direction: bool = True,
  adjust_step: bool = True,
) -> optax.GradientTransformationExtraArgs:
  """Critical-history enhanced direction and step size for a zeroth-order estimate (Eqs. 8-10).

  With C_g the history before step k (n_k entries):

    g̃_k = γ ĝ_k + (1 − γ)/n_k · Σ_{g ∈ C_g} g      (g̃_k = ĝ_k if n_k = 0),
    I_k  = (b/π)·arctan(2π ⟨ĝ_k, g̃_k⟩ / (‖ĝ_k‖ ‖g̃_k‖)),
    out  = (1 + I_k)·g̃_k;

  then ĝ_k enters C_g if n_k < m, or, once full, replaces argmin_t d^(k−t)‖ĝ_t‖ if
  ‖ĝ_k‖ > min_t d^(k−t)‖ĝ_t‖. A non-finite ĝ_k is never stored, so one faulty estimate cannot
  poison later steps.

  Args:
    memory_size: m ≥ 1, the number of history slots.
    decay: d ∈ (0, 1], the per-step decay of a stored entry's importance.
    gamma: γ ∈ (0, 1), the weight of the current estimate in g̃_k.
    b: b ∈ (0, 2), the magnitude of the status indicator, I_k ∈ (−b/2, b/2).
    selection: ``"critical"`` (Eq. 8), ``"latest"`` (a ring of the latest m estimates, the
      "w/o critical gradient collection" ablation) or ``"none"`` (no history: the output is ĝ_k
      and I_k = 0, the "w/o history gradient" ablation).
    adjust_direction: False gives direction ĝ_k, with I_k still computed from g̃_k
      ("w/o gradient direction adjustment").
    adjust_step: False replaces (1 + I_k) by 1 ("w/o step size adjustment").

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update(g_hat, state, params=None, **extra)``
    returns ``((1 + I_k)·g̃_k, state)`` in the dtypes of ``g_hat``; ``state.indicator`` is I_k.

  Raises:
    ValueError: for a hyperparameter out of its range or an unknown ``selection``.

  Example:
    >>> tx = optax.chain(critical_history(5, 0.9, 0.5, 1.0), optax.scale(-0.01))
    >>> params = {"w": jnp.zeros(3)}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    >>> round(float(state[0].indicator), 4)  # empty history: g̃ = ĝ, cos φ = 1
    0.4498

  References:
    Hui et al., IJCV 2026, Eqs. 8-10 and Table 7.
  """
  if int(memory_size) != memory_size or memory_size < 1:
    raise ValueError(f"memory_size must be an integer >= 1, got {memory_size!r}")
  m = int(memory_size)
  if not 0 < decay <= 1:
    raise ValueError(f"decay must be in (0, 1], got {decay!r}")
  if not 0 < gamma < 1:
    raise ValueError(f"gamma must be in (0, 1), got {gamma!r}")
  if not 0 < b < 2:
    raise ValueError(f"b must be in (0, 2), got {b!r}")
  if selection not in SELECTIONS:
    raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")

  def init_fn(params):
    return CriticalHistoryState(
      history=jax.tree.map(lambda p: jnp.zeros((m,) + jnp.shape(p), jnp.asarray(p).dtype), params),
      norms=jnp.zeros((m,), jnp.float32),
      steps=jnp.zeros((m,), jnp.int32),
      count=jnp.zeros((), jnp.int32),
      step=jnp.zeros((), jnp.int32),
      indicator=jnp.zeros((), jnp.float32),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    g_hat = updates
    k = optax.safe_increment(state.step)
    if selection == "none":
      return g_hat, state._replace(step=k, indicator=jnp.zeros((), jnp.float32))

    # Eq. 9, with C_g as it was before this step.
    mean = history_mean(state)
    g_tilde = jax.tree.map(
      lambda g, h: jnp.where(state.count > 0, gamma * g.astype(jnp.float32) + (1 - gamma) * h, g),
      g_hat,
      mean,
    )
    # Eq. 10.
    indicator = status_indicator(g_hat, g_tilde, b)
    direction = g_tilde if adjust_direction else _f32(g_hat)
    scale = 1 + indicator if adjust_step else jnp.ones((), jnp.float32)
    out = jax.tree.map(lambda d, g: (scale * d).astype(g.dtype), direction, g_hat)

    # Eq. 8: choose the slot ĝ_k would take and whether it takes it.
    g_norm = optax.tree.norm(_f32(g_hat))
    valid = jnp.arange(m) < state.count
    full = state.count >= m
    if selection == "critical":
      age = (k - state.steps).astype(jnp.float32)
      importance = jnp.where(valid, jnp.power(jnp.float32(decay), age) * state.norms, jnp.inf)
      victim = jnp.argmin(importance)
      wins = g_norm > importance[victim]
    else:  # "latest": the oldest slot goes.
      victim = jnp.argmin(jnp.where(valid, state.steps, jnp.iinfo(jnp.int32).max))
      wins = jnp.array(True)
    slot = jnp.where(full, victim, state.count)
    insert = jnp.where(full, wins, True) & jnp.isfinite(g_norm)

    def _store(h, g):
      new = jnp.where(insert, g.astype(h.dtype), h[slot])
      return jax.lax.dynamic_update_index_in_dim(h, new, slot, axis=0)

    new_state = CriticalHistoryState(
      history=jax.tree.map(_store, state.history, g_hat),
      norms=state.norms.at[slot].set(jnp.where(insert, g_norm, state.norms[slot])),
      steps=state.steps.at[slot].set(jnp.where(insert, k, state.steps[slot])),
      count=jnp.where(insert & ~full, state.count + 1, state.count).astype(jnp.int32),
      step=k,
      indicator=indicator.astype(jnp.float32),
    )
    return out, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
