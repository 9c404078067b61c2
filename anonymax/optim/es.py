"""Antithetic evolution strategies (OpenAI-ES) gradient estimate, a zeroth-order baseline.

  ĝ = 1/(2nσ) Σ_{i=1..n} (L(θ + σε_i) − L(θ − σε_i)) ε_i,   ε_i ~ N(0, I),

an unbiased estimate of the gradient of the Gaussian-smoothed loss E_ε[L(θ + σε)] (for a linear
loss, of ∇L itself). Optional centred-rank fitness shaping replaces the 2n losses by their ranks
mapped to [−0.5, 0.5], which makes the step invariant to monotone transforms of the loss (the
result is then a search direction rather than a gradient estimate). Each call costs 2n
evaluations.

References:
  Salimans, Ho, Chen, Sidor & Sutskever, "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning", arXiv:1703.03864, 2017.
  Hansen, Müller & Koumoutsakos, "Reducing the time complexity of the derandomized evolution
  strategy with covariance matrix adaptation (CMA-ES)", Evolutionary Computation, 2003.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from anonymax.optim.masks import Mask, apply_mask
from anonymax.optim.spsa import perturb

PyTree = Any


def normal_like(key: jax.Array, tree: PyTree, mask: Mask = None) -> PyTree:
  """Draws ε ~ N(0, I) shaped like ``tree`` (each leaf's dtype); masked-out leaves are zeros."""
  keys = optax.tree.split_key_like(key, tree)
  eps = jax.tree.map(
    lambda x, k: jax.random.normal(k, jnp.shape(x), jnp.float32).astype(x.dtype), tree, keys
  )
  return apply_mask(mask, eps)


def centered_ranks(values: jax.Array) -> jax.Array:
  """Maps values to their ranks scaled to [−0.5, 0.5] (the smallest → −0.5, the largest → 0.5).

  Args:
    values: an array of at least 2 elements (any shape).

  Returns:
    An array like ``values`` of float32 centred ranks.
  """
  flat = values.reshape(-1)
  ranks = (
    jnp.zeros(flat.shape, jnp.float32)
    .at[jnp.argsort(flat)]
    .set(jnp.arange(flat.size, dtype=jnp.float32))
  )
  return (ranks / (flat.size - 1) - 0.5).reshape(values.shape)


def es_gradient(
  loss_fn: Callable[[PyTree], jax.typing.ArrayLike],
  params: PyTree,
  key: jax.Array,
  sigma: float,
  num_directions: int,
  *,
  rank_shaping: bool = False,
  mask: Mask = None,
) -> tuple[PyTree, jax.Array]:
  """Antithetic ES estimate of ∇L(θ) from n direction pairs (2n evaluations).

    ĝ = 1/(2nσ) Σ_i (F⁺_i − F⁻_i) ε_i,  F^±_i = L(θ ± σε_i) (or their centred ranks),
    L̂(θ) = 1/(2n) Σ_i (L(θ + σε_i) + L(θ − σε_i)).

  The directions run in a ``lax.scan`` (memory of one direction at a time); with rank shaping
  the directions are drawn again from the same keys in a second pass, after all 2n losses are
  known.

  Args:
    loss_fn: θ ↦ loss, a scalar or an array of per-sample losses (averaged); traceable.
    params: θ.
    key: PRNG key; one key per direction is split from it.
    sigma: σ > 0, the smoothing scale.
    num_directions: n ≥ 1, the number of antithetic pairs.
    rank_shaping: use centred ranks of the 2n losses instead of the losses.
    mask: leaves to estimate (see :mod:`anonymax.optim.masks`); others get a zero gradient.

  Returns:
    ``(g, loss_estimate)``: g like ``params`` (same dtypes) and L̂(θ) (float32 scalar).

  Raises:
    ValueError: if ``sigma`` ≤ 0 or ``num_directions`` < 1.

  Example:
    >>> loss_fn = lambda p: jnp.sum(p["w"] ** 2)
    >>> g, loss = es_gradient(loss_fn, {"w": jnp.ones(2)}, jax.random.key(0), 0.1, 8)
    >>> g["w"].shape
    (2,)

  References:
    Salimans et al., 2017.
  """
  if not isinstance(sigma, jax.Array) and not sigma > 0:
    # An array σ may be traced (e.g. a c_k schedule inside jit): it cannot be checked here.
    raise ValueError(f"sigma must be > 0, got {sigma!r}")
  if int(num_directions) != num_directions or num_directions < 1:
    raise ValueError(f"num_directions must be an integer >= 1, got {num_directions!r}")
  n = int(num_directions)
  keys = jax.random.split(key, n)

  def evaluate(k):
    eps = normal_like(k, params, mask)
    plus, minus = perturb(params, eps, sigma)
    loss_plus = jnp.mean(jnp.asarray(loss_fn(plus), jnp.float32))
    loss_minus = jnp.mean(jnp.asarray(loss_fn(minus), jnp.float32))
    return eps, jnp.stack([loss_plus, loss_minus])

  def accumulate(g_sum, eps, weight):
    return jax.tree.map(lambda s, e: s + weight * e.astype(jnp.float32), g_sum, eps)

  zeros = optax.tree.zeros_like(params, dtype=jnp.float32)
  if rank_shaping:
    _, fitness = jax.lax.scan(lambda c, k: (c, evaluate(k)[1]), None, keys)  # [n, 2]
    shaped = centered_ranks(fitness)

    def second_pass(g_sum, inputs):
      k, f = inputs
      return accumulate(g_sum, normal_like(k, params, mask), f[0] - f[1]), None

    g_sum, _ = jax.lax.scan(second_pass, zeros, (keys, shaped))
  else:

    def one_pass(g_sum, k):
      eps, f = evaluate(k)
      return accumulate(g_sum, eps, f[0] - f[1]), f

    g_sum, fitness = jax.lax.scan(one_pass, zeros, keys)

  g = jax.tree.map(lambda s, p: (s / (2 * n * sigma)).astype(p.dtype), g_sum, params)
  return g, jnp.mean(fitness)
