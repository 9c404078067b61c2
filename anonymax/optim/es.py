"""Antithetic evolution strategies (OpenAI-ES), a zeroth-order baseline: its draws and ranks.

  ĝ = 1/(2nσ) Σ_{i=1..n} (L(θ + σε_i) − L(θ − σε_i)) ε_i,   ε_i ~ N(0, I),

an unbiased estimate of the gradient of the Gaussian-smoothed loss E_ε[L(θ + σε)] (for a linear
loss, of ∇L itself). Optional centred-rank fitness shaping replaces the 2n losses by their ranks
mapped to [−0.5, 0.5], which makes the step invariant to monotone transforms of the loss (the
result is then a search direction rather than a gradient estimate). Each estimate costs 2n
evaluations.

This module holds the Gaussian directions (:func:`normal_like`) and the fitness shaping
(:func:`centered_ranks`); the estimate itself is the ``"es"`` estimator of
:mod:`anonymax.optim.estimators` (ask/tell) and :func:`anonymax.optim.gradients.es_gradient`
(one call, for a traceable loss).

References:
  Salimans, Ho, Chen, Sidor & Sutskever, "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning", arXiv:1703.03864, 2017.
  Hansen, Müller & Koumoutsakos, "Reducing the time complexity of the derandomized evolution
  strategy with covariance matrix adaptation (CMA-ES)", Evolutionary Computation, 2003.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from anonymax.optim.masks import Mask, apply_mask

PyTree = Any


def normal_like(key: jax.Array, tree: PyTree, mask: Mask = None) -> PyTree:
  """Draws ε ~ N(0, I) shaped like ``tree`` (each leaf's dtype); masked-out leaves are zeros.

  Args:
    key: a PRNG key.
    tree: the parameter tree whose structure, shapes and dtypes ε copies.
    mask: leaves to perturb (see :mod:`anonymax.optim.masks`); None perturbs every leaf.

  Returns:
    A pytree like ``tree`` of standard normal entries (0 where masked out).

  Example:
    >>> eps = normal_like(jax.random.key(0), {"a": jnp.zeros(2), "b": jnp.zeros(1)}, mask="^a")
    >>> eps["a"].shape, eps["b"].tolist()
    ((2,), [0.0])
  """
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

  Example:
    >>> centered_ranks(jnp.array([3.0, 1.0, 2.0])).tolist()
    [0.5, -0.5, 0.0]
  """
  flat = values.reshape(-1)
  ranks = (
    jnp.zeros(flat.shape, jnp.float32)
    .at[jnp.argsort(flat)]
    .set(jnp.arange(flat.size, dtype=jnp.float32))
  )
  return (ranks / (flat.size - 1) - 0.5).reshape(values.shape)
