"""SPSA-GC: SPSA with Nesterov-style gradient correction, the BlackVIP baseline.

BlackVIP's released trainer writes the method as

  m_k = β m_{k−1} + ĝ_k   (m_0 = 0, so m_1 = ĝ_1),
  update_k = ĝ_k + β m_k,
  θ_{k+1} = θ_k − a_k · update_k,

with a_k = a / (k + o)^α, c_k = c / k^γ (k from 1), and perturbations whose entries are a
random sign times a magnitude drawn from U[0.5, 1]. Because those entries are not ±1, its
estimate divides by Δ: ĝ = (L⁺ − L⁻) / (2c Δ), which is what
:func:`anonymax.optim.spsa.spsa_estimate` computes for any Δ (it uses Δ^{-1} element-wise).

References:
  Oh et al., "BlackVIP: Black-Box Visual Prompting for Robust Transfer Learning", CVPR 2023.
  Spall, "Multivariate stochastic approximation using a simultaneous perturbation gradient
  approximation", IEEE Trans. Automatic Control, 1992.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from anonymax.optim.masks import Mask, apply_mask
from anonymax.optim.spsa import spall_learning_rate, spall_perturbation

PyTree = Any


class SpsaGcState(NamedTuple):
  """State of :func:`spsa_gc`."""

  momentum: PyTree  # like params: m_k.
  count: jax.Array  # [] int32: number of updates so far.


def spsa_gc(beta: float = 0.9) -> optax.GradientTransformation:
  """BlackVIP's gradient correction: m ← βm + ĝ, update = ĝ + βm.

  Args:
    beta: β ∈ [0, 1), the momentum coefficient (β = 0 gives plain SPSA).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` mapping ĝ_k to ĝ_k + β m_k (dtypes kept).

  Example:
    >>> tx = spsa_gc(0.5)
    >>> state = tx.init(jnp.zeros(1))
    >>> u1, state = tx.update(jnp.ones(1), state)  # m = 1, u = 1 + 0.5
    >>> u2, state = tx.update(jnp.ones(1), state)  # m = 1.5, u = 1 + 0.75
    >>> u1.tolist(), u2.tolist()
    ([1.5], [1.75])

  References:
    Oh et al., CVPR 2023 (BlackVIP).
  """
  if not 0 <= beta < 1:
    raise ValueError(f"beta must be in [0, 1), got {beta!r}")

  def init_fn(params):
    return SpsaGcState(momentum=optax.tree.zeros_like(params), count=jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    momentum = jax.tree.map(
      lambda m, g: (beta * m.astype(jnp.float32) + g.astype(jnp.float32)).astype(m.dtype),
      state.momentum,
      updates,
    )
    out = jax.tree.map(
      lambda g, m: (g.astype(jnp.float32) + beta * m.astype(jnp.float32)).astype(g.dtype),
      updates,
      momentum,
    )
    return out, SpsaGcState(momentum=momentum, count=optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def blackvip_learning_rate(a: float, o: float, alpha: float) -> optax.Schedule:
  """BlackVIP's step size a_k = a / (k + o)^α, with k = count + 1.

  Args:
    a: a > 0.
    o: o ≥ 0, the offset (Spall's A).
    alpha: α > 0.

  Returns:
    An ``optax.Schedule`` of the 0-based step count.

  Example:
    >>> float(blackvip_learning_rate(1.0, 1.0, 1.0)(0))  # 1 / (1 + 1)
    0.5
  """
  if not o >= 0:
    raise ValueError(f"o must be >= 0, got {o!r}")
  # The same gain as Spall's a/(A + k)^α with A = o.
  return spall_learning_rate(a, A=o, alpha=alpha)


def blackvip_perturbation(c: float, gamma: float) -> optax.Schedule:
  """BlackVIP's perturbation scale c_k = c / k^γ, with k = count + 1.

  Args:
    c: c > 0.
    gamma: γ ≥ 0.

  Returns:
    An ``optax.Schedule`` of the 0-based step count.
  """
  # The same gain as Spall's perturbation c/k^γ.
  return spall_perturbation(c, gamma)


def uniform_rademacher_like(
  key: jax.Array, tree: PyTree, low: float = 0.5, high: float = 1.0, mask: Mask = None
) -> PyTree:
  """Draws Δ with entries s·u, s = ±1 and u ~ U[low, high] (BlackVIP's "segmented uniform").

  Use it as ``spsa_gradient(..., perturbation=uniform_rademacher_like)``: the estimate then
  divides by Δ element-wise, as BlackVIP's code does.

  Args:
    key: a PRNG key.
    tree: the parameter tree whose structure, shapes and dtypes Δ copies.
    low: 0 < low ≤ high, the smallest magnitude (keeps 1/Δ bounded).
    high: the largest magnitude.
    mask: leaves to perturb (see :mod:`anonymax.optim.masks`); masked-out leaves are zeros.

  Returns:
    A pytree like ``tree`` with |Δ| ∈ [low, high] (0 where masked out).
  """
  if not isinstance(low, numbers.Real) or not isinstance(high, numbers.Real):
    # The third positional argument is `low`, not `mask` (unlike rademacher_like).
    raise ValueError(
      f"low and high must be numbers, got low={low!r}, high={high!r}; pass the mask as mask=..."
    )
  if not 0 < low <= high:
    raise ValueError(f"need 0 < low <= high, got low={low!r}, high={high!r}")
  keys = optax.tree.split_key_like(key, tree)

  def _leaf(x, k):
    k_sign, k_mag = jax.random.split(k)
    shape = jnp.shape(x)
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
    magnitude = jax.random.uniform(k_mag, shape, jnp.float32, low, high)
    return (sign * magnitude).astype(x.dtype)

  return apply_mask(mask, jax.tree.map(_leaf, tree, keys))
