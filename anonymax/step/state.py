"""The training state, and θ as the one flat vector the anonymizer's optimizer works on."""

from __future__ import annotations

import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from anonymax.online_surrogate import NO_SURROGATE


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a checkpoint holds exactly this.

  The data position is the step itself: batch k is a function of (seed, k).
  """

  step: jax.Array  # int32 [] — steps done; also the data position
  params: Any  # anonymizer params θ (a tree)
  opt_state: Any  # MultiObjectiveOptimizer state over flat θ (critical-history ring included)
  zo_state: Any  # the zeroth-order estimator's state (empty for SPSA, SPSA-GC and ES), with an
  # online surrogate's φ beside it (online_surrogate.WithSurrogate) when the run has one
  reviewer_vars: Any  # {"params": ..., ["batch_stats": ...]} of f_P
  reviewer_opt_state: Any  # optax state of the reviewer's optimizer
  rng: jax.Array  # uint32 [2] key data; step keys are fold_in(rng, step)
  oracle_samples: jax.Array  # int32 [] — samples sent to the oracle so far
  skipped: jax.Array  # int32 [] — samples the oracle could not score (skipped)


def create_state(
  seed: int,
  anonymizer: nn.Module,
  reviewer: nn.Module,
  optimizer,
  reviewer_optimizer: optax.GradientTransformation,
  visual_shape: tuple[int, ...],
  surrogate=NO_SURROGATE,
) -> TrainState:
  """A fresh state for visuals of shape `visual_shape` (without the batch axis).

  The keys are split from `seed` once: (anonymizer init, reviewer init, the loop's key). With an
  online surrogate of the black box (`anonymax.online_surrogate`) its φ joins `zo_state`.
  """
  k_anon, k_rev, k_loop = jax.random.split(jax.random.key(seed), 3)
  sample = jnp.zeros((1, *visual_shape), jnp.float32)
  params = anonymizer.init(k_anon, sample)["params"]
  reviewer_vars = init_reviewer(reviewer, k_rev, sample)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=optimizer.init(flat_parameters(params)),
    zo_state=surrogate.init(seed, optimizer.estimator.init(params), sample),
    reviewer_vars=reviewer_vars,
    reviewer_opt_state=reviewer_optimizer.init(reviewer_vars["params"]),
    rng=jax.random.key_data(k_loop),
    oracle_samples=jnp.zeros((), jnp.int32),
    skipped=jnp.zeros((), jnp.int32),
  )


def init_reviewer(reviewer: nn.Module, key: jax.Array, sample: jax.Array) -> dict:
  """The reviewer's variables ({"params"} and, with BatchNorm, {"batch_stats"})."""
  return flax.core.unfreeze(reviewer.init(key, sample, train=False))


def step_key(rng: jax.Array, step: jax.Array) -> jax.Array:
  """The perturbation key of step k: split(fold_in(key, k))[0] (the other half is unused)."""
  return jax.random.split(jax.random.fold_in(jax.random.wrap_key_data(rng), step))[0]


def flat_parameters(tree) -> jax.Array:
  """θ (or a tree like it) as the one vector the anonymizer's optimizer works on.

  The optimizer's work is elementwise plus a few norms over the whole tree (Eqs. 8-12), so on one
  vector it is a handful of kernels; per leaf it would be hundreds of tiny ones, and they sit on
  the step's serial path, between the oracle's answer and the next step's oracle call.
  """
  return ravel_pytree(tree)[0]


def parameter_layout(tree):
  """What `unflatten_parameters` needs to rebuild `tree` from its vector: (treedef, shapes)."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((tuple(x.shape), jnp.dtype(x.dtype)) for x in leaves)


def unflatten_parameters(vector: jax.Array, layout) -> Any:
  """The inverse of `flat_parameters` for a tree of `parameter_layout` `layout`."""
  treedef, specs = layout
  sizes = [math.prod(shape) for shape, _ in specs]
  parts = jnp.split(vector, np.cumsum(sizes)[:-1].tolist())
  leaves = [p.reshape(shape).astype(dtype) for p, (shape, dtype) in zip(parts, specs)]
  return jax.tree.unflatten(treedef, leaves)
