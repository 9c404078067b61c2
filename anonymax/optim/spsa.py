"""SPSA: simultaneous-perturbation gradient estimates and Spall's gain sequences.

The estimate of a black-box loss gradient at θ_k costs two evaluations per sample
(Eq. 7 of the paper):

  ĝ_k = (L(θ_k + c_k Δ_k) − L(θ_k − c_k Δ_k)) / (2 c_k) · Δ_k^{-1},

with Δ_k a random vector of independent ±1 entries (so Δ_k^{-1} = Δ_k). Spall's gains are
a_k = a / (A + k)^α and c_k = c / k^γ for k = 1, 2, … (α = 0.602, γ = 0.101 by default).

References:
  Spall, "Multivariate stochastic approximation using a simultaneous perturbation gradient
  approximation", IEEE Trans. Automatic Control, 1992.
  Spall, "Implementation of the simultaneous perturbation algorithm for stochastic
  optimization", IEEE Trans. Aerospace and Electronic Systems, 1998 (gain choices).
  Hui et al., "When Visual Privacy Protection Meets Multimodal Large Language Models",
  IJCV 2026 (Eq. 7).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from anonymax.optim.masks import Mask, apply_mask

PyTree = Any


def rademacher_like(key: jax.Array, tree: PyTree, mask: Mask = None) -> PyTree:
  """Draws Δ with independent ±1 entries, in each leaf's dtype; masked-out leaves are zeros.

  Args:
    key: a PRNG key.
    tree: the parameter tree whose structure, shapes and dtypes Δ copies.
    mask: leaves to perturb (see :mod:`anonymax.optim.masks`); None perturbs every leaf.

  Returns:
    A pytree like ``tree`` with entries in {−1, +1} (0 where masked out).

  Example:
    >>> delta = rademacher_like(jax.random.key(0), {"w": jnp.zeros(3)})
    >>> bool(jnp.all(jnp.abs(delta["w"]) == 1))
    True
  """
  keys = optax.tree.split_key_like(key, tree)
  signs = jax.tree.map(
    lambda x, k: jnp.where(jax.random.bernoulli(k, 0.5, jnp.shape(x)), 1, -1).astype(x.dtype),
    tree,
    keys,
  )
  return apply_mask(mask, signs)


def perturb(params: PyTree, delta: PyTree, c: jax.typing.ArrayLike) -> tuple[PyTree, PyTree]:
  """Returns the two probe points θ + cΔ and θ − cΔ, in the dtype of ``params``.

  Args:
    params: θ, a pytree of float arrays.
    delta: Δ, a pytree like ``params``.
    c: the perturbation scale c_k (a scalar, possibly traced).

  Returns:
    ``(params_plus, params_minus)``.
  """
  plus = jax.tree.map(lambda p, d: (p + c * d).astype(p.dtype), params, delta)
  minus = jax.tree.map(lambda p, d: (p - c * d).astype(p.dtype), params, delta)
  return plus, minus


def _safe_reciprocal(x: jax.Array) -> jax.Array:
  # Masked-out entries have Δ = 0 and must give a zero estimate, not inf.
  nonzero = x != 0
  return jnp.where(nonzero, 1 / jnp.where(nonzero, x, 1), 0).astype(x.dtype)


def spsa_estimate(
  loss_plus: jax.typing.ArrayLike,
  loss_minus: jax.typing.ArrayLike,
  delta: PyTree,
  c: jax.typing.ArrayLike,
) -> PyTree:
  """The two-sided SPSA gradient estimate from one pair of evaluations (Eq. 7).

    ĝ = (L⁺ − L⁻) / (2c) · Δ^{-1}   (element-wise; Δ^{-1} = Δ for ±1 entries).

  The element-wise reciprocal is Spall's general form: it equals Δ for Rademacher
  perturbations and makes the same function correct for BlackVIP's ±U[0.5, 1] perturbations
  (see :func:`anonymax.optim.spsa_gc.uniform_rademacher_like`). Entries where Δ = 0 (masked out)
  get a zero estimate.

  Args:
    loss_plus: L(θ + cΔ), a scalar or an array of per-sample losses (averaged first).
    loss_minus: L(θ − cΔ), same form as ``loss_plus``.
    delta: Δ, the perturbation used for both evaluations.
    c: the perturbation scale c_k.

  Returns:
    ĝ, a pytree like ``delta`` in its dtypes.

  Example:
    >>> g = spsa_estimate(3.0, 1.0, {"w": jnp.array([1.0, -1.0])}, 0.5)
    >>> g["w"].tolist()  # (3 - 1) / (2 * 0.5) * [1, -1]
    [2.0, -2.0]
  """
  diff = jnp.mean(jnp.asarray(loss_plus, jnp.float32)) - jnp.mean(
    jnp.asarray(loss_minus, jnp.float32)
  )
  scale = diff / (2 * jnp.asarray(c, jnp.float32))
  return jax.tree.map(
    lambda d: (scale * _safe_reciprocal(d).astype(jnp.float32)).astype(d.dtype), delta
  )


def spall_learning_rate(a: float, A: float = 0.0, alpha: float = 0.602) -> optax.Schedule:
  """Spall's step-size gain a_k = a / (A + k)^α, with k = count + 1.

  Args:
    a: a > 0, the gain numerator.
    A: A ≥ 0, the stability constant (Spall suggests ≈ 10% of the planned iterations).
    alpha: α > 0 (0.602 is Spall's practical value; 1 is the asymptotically optimal one).

  Returns:
    An ``optax.Schedule`` mapping the 0-based step count to a_k (float32).

  Example:
    >>> float(spall_learning_rate(1.0, A=1.0, alpha=1.0)(0))  # 1 / (1 + 1)
    0.5
  """
  _check_positive("a", a)
  if not A >= 0:
    raise ValueError(f"A must be >= 0, got {A!r}")
  _check_positive("alpha", alpha)

  def schedule(count):
    k = jnp.asarray(count, jnp.float32) + 1
    return jnp.asarray(a, jnp.float32) / (A + k) ** alpha

  return schedule


def spall_perturbation(c: float, gamma: float = 0.101) -> optax.Schedule:
  """Spall's perturbation gain c_k = c / k^γ, with k = count + 1.

  Args:
    c: c > 0 (Spall: about the standard deviation of the loss noise).
    gamma: γ ≥ 0 (0.101 is Spall's practical value).

  Returns:
    An ``optax.Schedule`` mapping the 0-based step count to c_k (float32).

  Example:
    >>> float(spall_perturbation(0.5, gamma=1.0)(1))  # 0.5 / 2
    0.25
  """
  _check_positive("c", c)
  if not gamma >= 0:
    raise ValueError(f"gamma must be >= 0, got {gamma!r}")

  def schedule(count):
    k = jnp.asarray(count, jnp.float32) + 1
    return jnp.asarray(c, jnp.float32) / k**gamma

  return schedule


def count_evaluations(num_samples: int) -> int:
  """Black-box evaluations per SPSA step: 2·q (one pair per perturbation sample)."""
  if int(num_samples) != num_samples or num_samples < 1:
    raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
  return 2 * int(num_samples)


def _check_positive(name: str, value: float) -> None:
  if not value > 0:
    raise ValueError(f"{name} must be > 0, got {value!r}")
