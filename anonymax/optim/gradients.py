"""One-call zeroth-order gradient estimates of a traceable loss: ask, evaluate, tell.

For a loss that can be evaluated inside the program (a test function, or a black box behind an
``io_callback``), :func:`spsa_gradient` and :func:`es_gradient` run the matching estimator of
:mod:`anonymax.optim.estimators` in one call: ``ask`` for the 2q parameter sets, the loss on each
(a ``lax.map``, one set at a time), ``tell`` for ĝ. Besides ĝ they return

  L̂(θ) = 1/(2|U|) Σ_{i∈U} (L(θ + sΔ_i) + L(θ − sΔ_i)),

the loss at θ that the Tchebycheff selection needs, exact to O(s²) for a smooth loss and
obtained without a third evaluation (U: the pairs with two finite losses; NaN if there is none).

References:
  Spall, "Multivariate stochastic approximation using a simultaneous perturbation gradient
  approximation", IEEE Trans. Automatic Control, 1992.
  Salimans, Ho, Chen, Sidor & Sutskever, "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning", arXiv:1703.03864, 2017.
  Hui et al., "When Visual Privacy Protection Meets Multimodal Large Language Models",
  IJCV 2026 (Eq. 7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from anonymax.optim.estimators import ZOEstimator, es_estimator, spsa_estimator
from anonymax.optim.masks import Mask
from anonymax.optim.spsa import rademacher_like

PyTree = Any


def _ask_evaluate_tell(
  estimator: ZOEstimator,
  loss_fn: Callable[[PyTree], jax.typing.ArrayLike],
  params: PyTree,
  key: jax.Array,
  scale: jax.typing.ArrayLike,
) -> tuple[PyTree, jax.Array]:
  """ĝ and L̂(θ) from one ask → 2q evaluations of ``loss_fn`` → tell."""
  state = estimator.init(params)
  param_sets, asked = estimator.ask(key, params, state, scale=scale)
  losses = jax.lax.map(lambda p: jnp.mean(jnp.asarray(loss_fn(p), jnp.float32)), param_sets)
  g_hat, _ = estimator.tell(state, losses, asked)
  pairs = losses.reshape(2, -1)  # [2, q]: pluses, minuses
  usable = jnp.all(jnp.isfinite(pairs), axis=0)
  n = jnp.sum(usable)
  total = jnp.sum(jnp.where(usable, pairs, 0.0))
  loss_estimate = jnp.where(n > 0, total / (2 * jnp.maximum(n, 1)), jnp.nan)
  return g_hat, loss_estimate.astype(jnp.float32)


def spsa_gradient(
  loss_fn: Callable[[PyTree], jax.typing.ArrayLike],
  params: PyTree,
  key: jax.Array,
  c: jax.typing.ArrayLike,
  num_samples: int = 1,
  mask: Mask = None,
  perturbation: Callable[..., PyTree] = rademacher_like,
) -> tuple[PyTree, jax.Array]:
  """Averages ``num_samples`` independent SPSA estimates of ∇L(θ) (2·q evaluations).

    ĝ = (1/q) Σ_{j=1..q} (L(θ + cΔ_j) − L(θ − cΔ_j)) / (2c) · Δ_j^{-1},
    L̂(θ) = (1/2q) Σ_j (L(θ + cΔ_j) + L(θ − cΔ_j)),

  where L̂(θ) is the loss at θ that the Tchebycheff selection needs, obtained without a third
  evaluation (it is exact to O(c²) for a smooth loss). A pair with a non-finite loss is left out
  of both averages (q is then the number of pairs left; ĝ = 0 if none is).

  This is the ``"spsa"`` estimator of :func:`anonymax.optim.estimators.zo_estimator` (or, with
  ``perturbation=uniform_rademacher_like``, ``"spsa_gc"``) with its 2q losses computed here by a
  ``lax.map`` over the parameter sets, so ``loss_fn`` must be traceable (an ``io_callback``
  oracle is fine); the function itself can be jitted with ``num_samples`` static.

  Args:
    loss_fn: θ ↦ loss, a scalar or an array of per-sample losses (averaged).
    params: θ.
    key: PRNG key; the sample keys are split from it.
    c: perturbation scale c_k.
    num_samples: q ≥ 1, the number of perturbation pairs averaged.
    mask: leaves to estimate (see :mod:`anonymax.optim.masks`); others get a zero gradient.
    perturbation: ``(key, tree, mask=...) -> Δ``; :func:`rademacher_like` by default.

  Returns:
    ``(g_hat, loss_estimate)``: ĝ like ``params`` (same dtypes) and L̂(θ) as a float32 scalar.

  Raises:
    ValueError: if ``num_samples`` < 1.

  Example:
    >>> loss_fn = lambda p: jnp.sum(p["w"] ** 2)
    >>> params = {"w": jnp.ones(3)}
    >>> g_hat, loss = spsa_gradient(loss_fn, params, jax.random.key(0), c=0.01, num_samples=4)
    >>> g_hat["w"].shape, round(float(loss), 3)
    ((3,), 3.0)

  References:
    Spall, 1992; Hui et al., IJCV 2026, Eq. 7.
  """
  estimator = spsa_estimator(num_samples, mask, perturbation=perturbation)
  return _ask_evaluate_tell(estimator, loss_fn, params, key, c)


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
    L̂(θ) = 1/(2n) Σ_i (L(θ + σε_i) + L(θ − σε_i)),

  with ε_i ~ N(0, I) drawn from ``split(key, n)[i]``. A pair with a non-finite loss is left out
  (n is then the number of pairs left; ĝ = 0 if none is).

  This is the ``"es"`` estimator of :func:`anonymax.optim.estimators.zo_estimator` with its 2n
  losses computed here by a ``lax.map`` over the parameter sets (``loss_fn`` must be traceable).

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
  estimator = es_estimator(int(num_directions), mask, rank_shaping=rank_shaping)
  return _ask_evaluate_tell(estimator, loss_fn, params, key, sigma)
