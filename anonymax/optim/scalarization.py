"""Scalarizations of two or more objectives into one update direction (Eqs. 4-6, 11).

Each transform takes a TUPLE of per-objective gradient trees (G_1, …, G_n) and the objectives'
current values ``losses=(L_1, …, L_n)`` and returns one tree, Σ_i w_i G_i, with the coefficients

* weighted sum (Eq. 4):            w_i = λ_i;
* Tchebycheff (Eq. 5):             w_i = λ_i·[i = i*],  i* = argmax_i λ_i (L_i − (z*_i − ε));
* augmented Tchebycheff (Eq. 6/11): w_i = λ_i·[i = i*] + σ λ_i;
* smooth Tchebycheff:              w_i = λ_i·softmax(λ(L − z*)/μ)_i, the gradient of
  μ·log Σ_i exp(λ_i (L_i − z*_i)/μ).

They are ``optax.GradientTransformationExtraArgs``, so a schedule can follow them in
``optax.chain``.

References:
  Hui et al., "When Visual Privacy Protection Meets Multimodal Large Language Models",
  IJCV 2026 (Eqs. 4-6 and 11).
  Steuer & Choo, "An interactive weighted Tchebycheff procedure for multiple objective
  programming", Mathematical Programming, 1983.
  Lin et al., "Smooth Tchebycheff Scalarization for Multi-Objective Optimization", ICML 2024.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any


class TchebycheffState(NamedTuple):
  """State of :func:`tchebycheff`."""

  selected: jax.Array  # [] int32: i* of the last update (−1 before the first).
  ideal: jax.Array  # [n] float32: z*, fixed, or the running minimum of each loss.


class SmoothTchebycheffState(NamedTuple):
  """State of :func:`smooth_tchebycheff`."""

  selected: jax.Array  # [] int32: argmax_i of the softmax weights of the last update.
  softmax_weights: jax.Array  # [n] float32: softmax(λ(L − z*)/μ) of the last update.


def _check_weights(weights: Sequence[float]) -> np.ndarray:
  w = np.asarray(weights, dtype=np.float64)
  if w.ndim != 1 or w.size < 1:
    raise ValueError(f"weights must be a non-empty sequence of floats, got {weights!r}")
  if not np.all(np.isfinite(w)) or np.any(w <= 0):
    raise ValueError(f"weights must all be finite and > 0, got {weights!r}")
  if abs(w.sum() - 1.0) > 1e-6:
    raise ValueError(
      f"weights must sum to 1 (the paper's normalisation), got {weights!r} with sum {w.sum()}; "
      "divide them by their sum"
    )
  return w


def _check_ideal(ideal: Sequence[float] | None, n: int, allow_none: bool) -> np.ndarray:
  if ideal is None:
    if not allow_none:
      raise ValueError("ideal must be given (one value per objective)")
    return np.full((n,), np.inf)
  z = np.asarray(ideal, dtype=np.float64)
  if z.shape != (n,):
    raise ValueError(f"ideal must have one value per weight ({n}), got {ideal!r}")
  return z


def _as_tuple(name: str, value, n: int) -> tuple:
  if not isinstance(value, (tuple, list)):
    raise ValueError(f"{name} must be a tuple of {n} entries, got {type(value).__name__}")
  if len(value) != n:
    raise ValueError(f"{name} must have {n} entries (one per weight), got {len(value)}")
  return tuple(value)


def _losses_vector(losses, n: int) -> jax.Array:
  if losses is None:
    raise ValueError("losses=(L_1, ..., L_n) must be passed as a keyword argument")
  losses = _as_tuple("losses", losses, n)
  return jnp.stack([jnp.mean(jnp.asarray(x, jnp.float32)) for x in losses])


def combine(grads: Sequence[PyTree], coefficients: jax.Array) -> PyTree:
  """Σ_i coefficients[i]·grads[i], in float32, cast to the dtypes of ``grads[0]``.

  Args:
    grads: n trees of the same structure.
    coefficients: [n] float32.

  Returns:
    One tree like ``grads[0]``.
  """

  def _leaf(*leaves):
    acc = sum(coefficients[i] * x.astype(jnp.float32) for i, x in enumerate(leaves))
    return acc.astype(leaves[0].dtype)

  return jax.tree.map(_leaf, *grads)


def weighted_sum(weights: Sequence[float]) -> optax.GradientTransformationExtraArgs:
  """Weighted-sum scalarization (Eq. 4): update = Σ_i λ_i G_i.

  Args:
    weights: λ, positive and summing to 1.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update((G_1, …, G_n), state,
    params=None, *, losses=None)`` returns Σ λ_i G_i (``losses`` is accepted and ignored).

  Example:
    >>> tx = weighted_sum((0.25, 0.75))
    >>> out, _ = tx.update((jnp.ones(2), jnp.zeros(2)), tx.init(None))
    >>> out.tolist()
    [0.25, 0.25]

  References:
    Hui et al., IJCV 2026, Eq. 4.
  """
  lam = _check_weights(weights)
  n = lam.size

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, losses=None, **extra_args):
    del params, losses, extra_args
    grads = _as_tuple("updates", updates, n)
    return combine(grads, jnp.asarray(lam, jnp.float32)), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def tchebycheff(
  weights: Sequence[float],
  ideal: Sequence[float] | None,
  eps: float,
  sigma: float = 0.0,
  *,
  track_ideal: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """(Augmented) Tchebycheff scalarization (Eq. 5; with σ > 0, Eq. 6/11).

    i* = argmax_i λ_i (L_i − (z*_i − ε)),
    update = λ_{i*} G_{i*} + σ Σ_i λ_i G_i.

  Ties go to the lowest index. With ``track_ideal=True``, z* is the running minimum of each loss
  (starting from ``ideal``, or from the first losses if ``ideal`` is None) and is updated with
  the current losses before i* is chosen, so every term is ≥ λ_i ε.

  Args:
    weights: λ, positive and summing to 1.
    ideal: z*, one value per objective (may be None only with ``track_ideal``).
    eps: ε > 0, keeps z* − ε strictly unreachable.
    sigma: σ ≥ 0, the augmentation weight; 0 gives the plain Tchebycheff update.
    track_ideal: whether z* follows the running minimum of the observed losses.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update((G_1, …, G_n), state, params=None,
    *, losses=(L_1, …, L_n))`` returns the update tree; ``state.selected`` is i* and
    ``state.ideal`` is z*.

  Example:
    >>> tx = tchebycheff((0.5, 0.5), (0.0, 0.0), eps=1e-3, sigma=0.1)
    >>> out, state = tx.update((jnp.ones(1), -jnp.ones(1)), tx.init(None), losses=(2.0, 1.0))
    >>> int(state.selected), round(float(out[0]), 4)  # 0.5·1 + 0.1·(0.5·1 − 0.5·1)
    (0, 0.5)

  References:
    Hui et al., IJCV 2026, Eqs. 5, 6 and 11; Steuer & Choo 1983.
  """
  lam = _check_weights(weights)
  n = lam.size
  z0 = _check_ideal(ideal, n, allow_none=track_ideal)
  if not eps > 0:
    raise ValueError(f"eps must be > 0, got {eps!r}")
  if not sigma >= 0:
    raise ValueError(f"sigma must be >= 0, got {sigma!r}")

  def init_fn(params):
    del params
    return TchebycheffState(
      selected=jnp.full((), -1, jnp.int32), ideal=jnp.asarray(z0, jnp.float32)
    )

  def update_fn(updates, state, params=None, *, losses=None, **extra_args):
    del params, extra_args
    grads = _as_tuple("updates", updates, n)
    values = _losses_vector(losses, n)
    z = jnp.minimum(state.ideal, values) if track_ideal else state.ideal
    lam_ = jnp.asarray(lam, jnp.float32)
    selected = jnp.argmax(lam_ * (values - (z - eps))).astype(jnp.int32)
    coefficients = lam_ * (jnp.arange(n) == selected) + sigma * lam_
    return combine(grads, coefficients), TchebycheffState(selected=selected, ideal=z)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def smooth_tchebycheff(
  weights: Sequence[float], ideal: Sequence[float], mu: float
) -> optax.GradientTransformationExtraArgs:
  """Smooth Tchebycheff scalarization (Lin et al., ICML 2024).

    L_STch = μ·log Σ_i exp(λ_i (L_i − z*_i)/μ),
    ∇L_STch = Σ_i w_i λ_i G_i,  w = softmax(λ(L − z*)/μ).

  As μ → 0 it tends to the Tchebycheff update; it is differentiable everywhere, so the update
  does not jump between objectives.

  Args:
    weights: λ, positive and summing to 1.
    ideal: z*, one value per objective.
    mu: μ > 0, the smoothing temperature.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update((G_1, …, G_n), state, params=None,
    *, losses=(L_1, …, L_n))`` returns the update tree; ``state.softmax_weights`` is w and
    ``state.selected`` its argmax.

  Example:
    >>> tx = smooth_tchebycheff((0.5, 0.5), (0.0, 0.0), mu=1.0)
    >>> out, state = tx.update((jnp.ones(1), jnp.ones(1)), tx.init(None), losses=(0.0, 0.0))
    >>> state.softmax_weights.tolist(), out.tolist()  # equal terms: w = (½, ½)
    ([0.5, 0.5], [0.5])

  References:
    Lin, Zhang, Yang, Zhang & Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective
    Optimization", ICML 2024.
  """
  lam = _check_weights(weights)
  n = lam.size
  z = _check_ideal(ideal, n, allow_none=False)
  if not mu > 0:
    raise ValueError(f"mu must be > 0, got {mu!r}")

  def init_fn(params):
    del params
    return SmoothTchebycheffState(
      selected=jnp.full((), -1, jnp.int32), softmax_weights=jnp.zeros((n,), jnp.float32)
    )

  def update_fn(updates, state, params=None, *, losses=None, **extra_args):
    del params, state, extra_args
    grads = _as_tuple("updates", updates, n)
    values = _losses_vector(losses, n)
    lam_ = jnp.asarray(lam, jnp.float32)
    w = jax.nn.softmax(lam_ * (values - jnp.asarray(z, jnp.float32)) / mu)
    new_state = SmoothTchebycheffState(selected=jnp.argmax(w).astype(jnp.int32), softmax_weights=w)
    return combine(grads, w * lam_), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
