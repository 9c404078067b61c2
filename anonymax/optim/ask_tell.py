"""The ask/tell interface that every zeroth-order estimator of :mod:`anonymax.optim` shares.

An estimator proposes N = ``num_evaluations`` parameter sets around θ (``ask``), the caller has
the black box score them, and the estimator turns the N losses into ĝ (``tell``); its state (empty
for the stateless ones) goes from ``tell`` to the next ``ask``. The antithetic estimators
(:mod:`anonymax.optim.estimators`) order the sets θ + sΔ_1, …, θ + sΔ_q, θ − sΔ_1, …, θ − sΔ_q;
the population methods (:mod:`anonymax.optim.cma_es`, :mod:`anonymax.optim.reinforce`) draw N
independent sets, still scored in pairs (i, q + i) by the trainer, which drops a sample from both
sets of a pair when either call failed.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anonymax.optim.masks import Mask

PyTree = Any


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class ParamsSpec:
  """The structure, shapes and dtypes of θ: a pytree without leaves, so static under ``jit``."""

  treedef: Any  # jax.tree_util.PyTreeDef of θ.
  shapes: tuple[tuple[int, ...], ...]  # each leaf's shape, in leaf order.
  dtypes: tuple[Any, ...]  # each leaf's dtype (np.dtype), in leaf order.

  @classmethod
  def of(cls, tree: PyTree) -> ParamsSpec:
    """The spec of ``tree`` (its leaves may be tracers)."""
    leaves, treedef = jax.tree.flatten(tree)
    shapes = tuple(tuple(jnp.shape(x)) for x in leaves)
    dtypes = tuple(np.dtype(x.dtype if hasattr(x, "dtype") else jnp.result_type(x)) for x in leaves)
    return cls(treedef, shapes, dtypes)

  def zeros(self) -> PyTree:
    """A tree of zeros with this spec (under ``jit``, only its shapes are used: it folds away)."""
    leaves = [jnp.zeros(s, d) for s, d in zip(self.shapes, self.dtypes)]
    return jax.tree.unflatten(self.treedef, leaves)


class ZOAsked(NamedTuple):
  """What ``ask`` hands to ``tell``: two scalar leaves (Δ is drawn again from the key)."""

  key: jax.Array  # [] PRNG key (or its [2] uint32 data) that the q perturbation keys split from.
  scale: jax.Array  # [] float32: s, the perturbation scale (c_k for SPSA, σ for ES).
  params_spec: ParamsSpec  # no leaves: θ's structure, shapes and dtypes, static under jit.


class ZOEstimator(NamedTuple):
  """A zeroth-order gradient estimator in ask/tell form.

  Attributes:
    init: ``params -> state`` (``optax.EmptyState()`` for SPSA, SPSA-GC and ES).
    ask: ``(key, params, state, *, scale, **extra) -> (param_sets, asked)``; every leaf of
      ``param_sets`` has a leading axis of 2q: θ + sΔ_1, …, θ + sΔ_q, θ − sΔ_1, …, θ − sΔ_q for
      the antithetic estimators, 2q independent draws for CMA-ES and REINFORCE.
    tell: ``(state, losses, asked) -> (g_hat, state)``; ``losses`` float [2q] in ``ask``'s order
      (NaN for an unanswered one); ``g_hat`` is like ``params``, in its dtypes.
    num_evaluations: 2q, the losses ``tell`` needs per step.
    antithetic: whether the sets come in pairs (i, q + i) whose losses are only compared with
      each other; if not, a caller that averages each set's loss over samples must use the same
      samples for all 2q sets.
  """

  init: Callable[[PyTree], Any]
  ask: Callable[..., tuple[PyTree, ZOAsked]]
  tell: Callable[..., tuple[PyTree, Any]]
  num_evaluations: int
  antithetic: bool = True


def check_num_samples(num_samples: Any) -> int:
  if (
    isinstance(num_samples, bool)
    or not isinstance(num_samples, numbers.Real)
    or int(num_samples) != num_samples
    or num_samples < 1
  ):
    raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
  return int(num_samples)


def check_scale(scale: Any) -> None:
  """Refuses a concrete perturbation scale ≤ 0 (a traced one, a c_k schedule inside jit, passes)."""
  if not isinstance(scale, jax.Array) and not scale > 0:
    raise ValueError(f"scale must be > 0, got {scale!r}")


def check_mask(mask: Mask) -> Mask:
  # The other forms need the parameter tree and are checked by the first `ask`.
  if isinstance(mask, str):
    try:
      re.compile(mask)
    except re.error as e:
      raise ValueError(f"mask: invalid regular expression {mask!r}: {e}") from e
  return mask


def empty_init(params: PyTree) -> optax.EmptyState:
  del params
  return optax.EmptyState()


def weighted_mean(
  coefficients: jax.Array, directions: PyTree, divisor: jax.Array, spec: ParamsSpec
) -> PyTree:
  """Σ_i coefficients[i]·directions_i / divisor in float32, in θ's dtypes (``spec``)."""
  leaves = jax.tree.leaves(directions)
  out = [
    (jnp.tensordot(coefficients, d.astype(jnp.float32), axes=1) / divisor).astype(dtype)
    for d, dtype in zip(leaves, spec.dtypes)
  ]
  return jax.tree.unflatten(spec.treedef, out)
