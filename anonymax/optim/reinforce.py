"""REINFORCE on the anonymizer's parameters, with a running-mean baseline (the paper's RL row).

The anonymizer is a Gaussian policy over its own perturbed parameters: each step draws N = 2q
independent sets θ̃_i = θ + σ ε_i, ε_i ~ N(0, I) on the masked leaves (no antithetic pairs), and
the black box's loss L_i of each is the negative reward. The score-function (likelihood-ratio)
gradient of J(θ) = E_{θ̃ ~ N(θ, σ²I)}[L(θ̃)] is

  ∇_θ J = E[(L(θ̃) − b) ∇_θ log p(θ̃ | θ)] = E[(L(θ̃) − b)(θ̃ − θ)/σ²]   (any b free of θ̃),

estimated with the finite losses U of the step by

  ĝ = 1/(|U| σ) Σ_{i∈U} (L_i − b_k) ε_i,    b_{k+1} = β b_k + (1 − β) mean_{i∈U} L_i,

b_1 = mean_{i∈U} L_i (the first step has no past; from the second on b_k depends on past steps
only, so ĝ is unbiased). The baseline removes the part of L common to all N sets, which would
otherwise enter ĝ as the noise L̄ · mean(ε) of norm ~ L̄ √(D/N)/σ.

This is Williams's REINFORCE with Gaussian units, used on the parameters rather than on actions
as in PGPE (Sehnke et al.), with σ from the perturbation schedule c_k rather than learned. A
policy over the anonymizer's outputs (per-pixel Gaussian actions) is another RL formulation of
the same problem; it is not built here.

References:
  Williams, "Simple statistical gradient-following algorithms for connectionist reinforcement
  learning", Machine Learning 8, 1992.
  Sehnke et al., "Parameter-exploring policy gradients", Neural Networks 23(4), 2010.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from anonymax.optim.ask_tell import (
  ParamsSpec,
  ZOAsked,
  ZOEstimator,
  check_mask,
  check_num_samples,
  check_scale,
  weighted_mean,
)
from anonymax.optim.es import normal_like
from anonymax.optim.masks import Mask, resolve_mask

PyTree = Any


class ReinforceState(NamedTuple):
  """The running baseline b_k of :func:`reinforce_estimator`."""

  baseline: jax.Array  # [] float32: b_k (meaningless before the first usable step).
  count: jax.Array  # [] int32: steps with at least one finite loss so far.


def reinforce_estimator(
  num_samples: int = 1, mask: Mask = None, *, baseline_decay: float = 0.9
) -> ZOEstimator:
  """REINFORCE with Gaussian parameter noise and a running-mean baseline, as ask/tell.

    ask:  θ̃_i = θ + σ ε_i, i = 1..2q (independent);   tell: ĝ = 1/(|U|σ) Σ_{i∈U} (L_i − b) ε_i

  (b: the running mean of the module docstring; σ: ``ask``'s ``scale``).

  Args:
    num_samples: q ≥ 1; each step draws 2q sets (2q evaluations, as SPSA's q pairs).
    mask: leaves to perturb (see :mod:`anonymax.optim.masks`); None perturbs every leaf.
    baseline_decay: β ∈ [0, 1); 0 uses the previous step's mean loss as the baseline.

  Returns:
    A :class:`~anonymax.optim.ask_tell.ZOEstimator` with a :class:`ReinforceState`.

  Raises:
    ValueError: for a bad ``num_samples``, ``mask`` or ``baseline_decay``.

  Example:
    >>> est = reinforce_estimator(num_samples=8)
    >>> params = jnp.array([1.0, -1.0])
    >>> state = est.init(params)
    >>> sets, asked = est.ask(jax.random.key(0), params, state, scale=0.1)
    >>> g, state = est.tell(state, jax.vmap(jnp.sum)(sets ** 2), asked)
    >>> sets.shape, int(state.count), bool(jnp.vdot(g, 2 * params) > 0)
    ((16, 2), 1, True)
  """
  q = check_num_samples(num_samples)
  mask = check_mask(mask)
  if isinstance(baseline_decay, bool) or not 0.0 <= baseline_decay < 1.0:
    raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay!r}")
  n = 2 * q

  def init(params):
    del params
    return ReinforceState(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))

  def ask(key, params, state, *, scale, **extra):
    del state, extra
    check_scale(scale)
    s = jnp.asarray(scale, jnp.float32)
    covered = resolve_mask(mask, params)
    eps = jax.vmap(lambda k: normal_like(k, params, mask=mask))(jax.random.split(key, n))

    def one_leaf(p, e, m):
      p = jnp.asarray(p)
      if isinstance(m, (bool, np.bool_)) and not m:
        return jnp.broadcast_to(p, (n, *p.shape))  # exactly θ in every set
      return (p + s * e).astype(p.dtype)

    sets = jax.tree.map(one_leaf, params, eps, covered)
    return sets, ZOAsked(key=key, scale=s, params_spec=ParamsSpec.of(params))

  def tell(state, losses, asked):
    losses = jnp.asarray(losses, jnp.float32)
    if losses.shape != (n,):
      raise ValueError(
        f"losses must have shape ({n},), one per parameter set of ask, got {losses.shape}"
      )
    usable = jnp.isfinite(losses)
    count = jnp.sum(usable)
    mean = jnp.sum(jnp.where(usable, losses, 0.0)) / jnp.maximum(count, 1).astype(jnp.float32)
    baseline = jnp.where(state.count > 0, state.baseline, mean)
    advantages = jnp.where(usable, losses - baseline, 0.0)
    like = asked.params_spec.zeros()
    eps = jax.vmap(lambda k: normal_like(k, like, mask=mask))(jax.random.split(asked.key, n))
    divisor = jnp.maximum(count, 1).astype(jnp.float32) * asked.scale
    g_hat = weighted_mean(advantages, eps, divisor, asked.params_spec)
    any_usable = count > 0
    new_state = ReinforceState(
      baseline=jnp.where(
        any_usable, baseline_decay * baseline + (1.0 - baseline_decay) * mean, state.baseline
      ),
      count=state.count + any_usable.astype(jnp.int32),
    )
    return g_hat, new_state

  return ZOEstimator(init, ask, tell, n, antithetic=False)
