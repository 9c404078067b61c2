"""The perturbed parameters as one flat vector: θ_S, the masked leaves concatenated in leaf order.

Estimators that work with matrices over the search space (CMA-ES's covariance, a guiding
subspace's basis) need θ_S ∈ R^D rather than a tree; these helpers go between the two, for masks
that select whole leaves (a regex, a callable or per-leaf bools).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from anonymax.optim.ask_tell import ParamsSpec
from anonymax.optim.masks import Mask, resolve_mask

PyTree = Any


def covered_leaves(mask: Mask, params: PyTree, who: str) -> tuple[bool, ...]:
  """One bool per leaf of ``params``: is the leaf in S. ``who`` names the estimator in errors.

  Raises:
    ValueError: if the mask selects parts of a leaf, or no leaf at all.
  """
  flags = []
  for m in jax.tree.leaves(resolve_mask(mask, params)):
    if not isinstance(m, (bool, np.bool_)):
      raise ValueError(f"{who}: the mask must select whole leaves (a regex, callable or bools)")
    flags.append(bool(m))
  if not any(flags):
    raise ValueError(f"{who}: the mask {mask!r} selects no parameter")
  return tuple(flags)


def flatten(params: PyTree, flags: tuple[bool, ...]) -> jax.Array:
  """θ_S [D] float32: the covered leaves of ``params``, raveled and concatenated."""
  leaves = jax.tree.leaves(params)
  return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x, f in zip(leaves, flags) if f])


def sets_from_rows(rows: jax.Array, params: PyTree, flags: tuple[bool, ...]) -> PyTree:
  """Parameter sets from rows [N, D] of θ_S values: every leaf [N, ...]; uncovered leaves θ."""
  leaves, treedef = jax.tree.flatten(params)
  out, offset = [], 0
  for x, covered in zip(leaves, flags):
    x = jnp.asarray(x)
    if not covered:
      out.append(jnp.broadcast_to(x, (rows.shape[0], *x.shape)))  # exactly θ in every set
      continue
    size = math.prod(x.shape)
    out.append(rows[:, offset : offset + size].reshape(rows.shape[0], *x.shape).astype(x.dtype))
    offset += size
  return jax.tree.unflatten(treedef, out)


def tree_from_vector(vector: jax.Array, spec: ParamsSpec, flags: tuple[bool, ...]) -> PyTree:
  """A tree with ``spec``'s shapes and dtypes: ``vector`` [D] on the covered leaves, 0 elsewhere."""
  out, offset = [], 0
  for shape, dtype, covered in zip(spec.shapes, spec.dtypes, flags):
    if not covered:
      out.append(jnp.zeros(shape, dtype))
      continue
    size = math.prod(shape)
    out.append(vector[offset : offset + size].reshape(shape).astype(dtype))
    offset += size
  return jax.tree.unflatten(spec.treedef, out)
