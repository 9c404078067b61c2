"""CMA-ES from evosax as an ask/tell zeroth-order estimator (the paper's ES baseline, Table 6).

Each step the search distribution N(m, s²C) over the perturbed parameters S (the masked leaves,
flattened in leaf order) is re-centred on the anonymizer's current θ_S, evosax samples the
population of N = 2q sets and ranks their losses, and its ``tell`` moves the mean, adapts s
(cumulative step-size adaptation) and C::

  m      ← θ_S,
  x_i    = θ_S + s z_i,  z_i ~ N(0, C),  i = 1..N               (evosax ``ask``),
  m'     = θ_S + s Σ_j w_j z_{j:N}                              (``tell``; z_{j:N} the j-th best),
  ĝ_S    = (θ_S − m') / s² = −(1/s) Σ_j w_j z_{j:N},   ĝ = 0 outside S.

So θ − a ĝ with a = s² is CMA-ES's own mean update; with another a, the privacy term of Eq. 11
and Adam act on ĝ as on any estimate. Like OpenAI-ES with rank shaping, ĝ depends on the ranks
of the losses only. The first step samples with s = ``scale`` (c_1); later steps use the s that
CMA-ES adapted. A set whose loss is NaN (the black box did not answer) ranks last.

``covariance="diagonal"`` (the default) is Sep-CMA-ES (Ros & Hansen 2008): C diagonal, O(D) per
step. ``"full"`` is CMA-ES with a full C: a D×D matrix in the state and its eigendecomposition
every step, practical for D up to a few thousand.

References:
  Hansen, Müller & Koumoutsakos, "Reducing the time complexity of the derandomized evolution
  strategy with covariance matrix adaptation (CMA-ES)", Evolutionary Computation 11(1), 2003.
  Ros & Hansen, "A simple modification in CMA-ES achieving linear time and space complexity",
  PPSN 2008.
  Lange, "evosax: JAX-based evolution strategies", GECCO 2023 (the implementation used).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from anonymax.optim.ask_tell import (
  ParamsSpec,
  ZOEstimator,
  check_mask,
  check_num_samples,
  check_scale,
)
from anonymax.optim.flat_subset import covered_leaves, flatten, sets_from_rows, tree_from_vector
from anonymax.optim.masks import Mask

PyTree = Any
COVARIANCES = ("diagonal", "full")


class CmaAsked(NamedTuple):
  """What CMA-ES's ``ask`` hands to ``tell``: the key, the s and θ_S it sampled with."""

  key: jax.Array  # [] PRNG key of evosax's ask.
  scale: jax.Array  # [] float32: s, the step size the population was drawn with.
  mean: jax.Array  # [D] float32: θ_S, the centre of the population.
  params_spec: ParamsSpec  # static: θ's structure, shapes and dtypes.


def cma_es_estimator(
  num_samples: int = 1, mask: Mask = None, *, covariance: str = "diagonal"
) -> ZOEstimator:
  """CMA-ES (evosax's ``Sep_CMA_ES`` or ``CMA_ES``) with a population of 2q, as ask/tell.

    ask:  x_i = θ_S + s z_i, z_i ~ N(0, C), i = 1..2q;   tell: ĝ_S = (θ_S − m') / s²

  (the module docstring gives m', the mean evosax moves to after ranking the 2q losses).

  Args:
    num_samples: q ≥ 1; the population has N = 2q members (2q evaluations per step, as SPSA's).
    mask: the leaves to search over (see :mod:`anonymax.optim.masks`), whole leaves only; None
      searches every leaf.
    covariance: ``"diagonal"`` (Sep-CMA-ES) or ``"full"``.

  Returns:
    A :class:`~anonymax.optim.ask_tell.ZOEstimator` whose state is evosax's (mean, s, evolution
    paths, C).

  Raises:
    ValueError: for a bad ``num_samples``, ``mask`` or ``covariance``.

  Example:
    >>> est = cma_es_estimator(num_samples=4)
    >>> params = {"w": jnp.array([1.0, -1.0, 0.5])}
    >>> state = est.init(params)
    >>> sets, asked = est.ask(jax.random.key(0), params, state, scale=0.1)
    >>> g, state = est.tell(state, jax.vmap(lambda p: jnp.sum(p["w"] ** 2))(sets), asked)
    >>> sets["w"].shape, bool(jnp.vdot(g["w"], 2 * params["w"]) > 0)  # a descent direction
    ((8, 3), True)
  """
  q = check_num_samples(num_samples)
  mask = check_mask(mask)
  if covariance not in COVARIANCES:
    raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
  population = 2 * q
  algorithms: dict[int, tuple[Any, Any]] = {}

  def algorithm(dims: int):
    """evosax's strategy for a D-dimensional search and its default parameters (cached)."""
    if dims not in algorithms:
      from evosax.algorithms import CMA_ES, Sep_CMA_ES  # noqa: PLC0415  (an optional import)

      cls = Sep_CMA_ES if covariance == "diagonal" else CMA_ES
      strategy = cls(population_size=population, solution=jnp.zeros(dims, jnp.float32))
      algorithms[dims] = (strategy, strategy.default_params)
    return algorithms[dims]

  def init(params):
    flat = flatten(params, covered_leaves(mask, params, "cma_es"))
    strategy, hyper = algorithm(flat.shape[0])
    state = strategy.init(jax.random.key(0), flat, hyper)  # evosax's init draws nothing
    # Strong dtypes throughout: a Python 0 or inf would change type after the first tell, and
    # the trainer's conditional update needs the kept and the updated state to match.
    return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.asarray(x).dtype), state)

  def ask(key, params, state, *, scale, **extra):
    del extra
    check_scale(scale)
    flags = covered_leaves(mask, params, "cma_es")
    mean = flatten(params, flags)
    strategy, hyper = algorithm(mean.shape[0])
    s = jnp.asarray(scale, jnp.float32)
    xs, _ = strategy.ask(key, state.replace(mean=mean, std=s), hyper)  # [N, D]
    asked = CmaAsked(key=key, scale=s, mean=mean, params_spec=ParamsSpec.of(params))
    return sets_from_rows(xs, params, flags), asked

  def tell(state, losses, asked):
    losses = jnp.asarray(losses, jnp.float32)
    if losses.shape != (population,):
      raise ValueError(
        f"losses must have shape ({population},), one per parameter set of ask, got {losses.shape}"
      )
    spec = asked.params_spec
    strategy, hyper = algorithm(asked.mean.shape[0])
    centred = state.replace(mean=asked.mean, std=asked.scale)
    xs, centred = strategy.ask(asked.key, centred, hyper)  # the same population again
    # evosax averages tied ranks and then truncates them into its weights table: hand it
    # distinct ranks (ties by index, unanswered last) so that the weights are CMA-ES's own.
    order = jnp.argsort(jnp.where(jnp.isfinite(losses), losses, jnp.inf), stable=True)
    ranks = jnp.zeros(population, jnp.float32).at[order].set(jnp.arange(population))
    new_state, _ = strategy.tell(asked.key, xs, ranks, centred, hyper)
    # Without two different finite losses there is nothing to rank: no step, no adaptation.
    finite = jnp.isfinite(losses)
    spread = jnp.max(jnp.where(finite, losses, -jnp.inf)) > jnp.min(
      jnp.where(finite, losses, jnp.inf)
    )
    new_state = jax.tree.map(lambda new, old: jnp.where(spread, new, old), new_state, state)
    g_flat = jnp.where(spread, (asked.mean - new_state.mean) / jnp.square(asked.scale), 0.0)
    flags = covered_leaves(mask, spec.zeros(), "cma_es")
    new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
    return tree_from_vector(g_flat, spec, flags), new_state

  return ZOEstimator(init, ask, tell, population, antithetic=False)
