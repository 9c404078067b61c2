"""Zeroth-order gradient estimators in ask/tell form: SPSA, SPSA-GC and ES, and the registry.

The registry (:func:`zo_estimator`) also names the population methods CMA-ES
(:mod:`anonymax.optim.cma_es`) and REINFORCE (:mod:`anonymax.optim.reinforce`); the interface
itself is in :mod:`anonymax.optim.ask_tell`.

An estimator proposes 2q parameter sets around θ, the caller has the black box score them, and
the estimator turns the 2q losses into ĝ::

  est = zo_estimator("spsa", num_samples=q)
  state = est.init(params)
  param_sets, asked = est.ask(key, params, state, scale=c_k)   # every leaf [2q, ...]
  g_hat, state = est.tell(state, losses, asked)                # losses [2q]

The sets are [θ + sΔ_1, …, θ + sΔ_q, θ − sΔ_1, …, θ − sΔ_q] with keys = split(key, q) and
Δ_i = draw(keys[i], θ, mask). ``asked`` holds the key and the scale (and θ's shapes, static):
``tell`` draws Δ again from the key, so nothing of size q·D crosses from ``ask`` to ``tell``.
With L^±_i the losses of θ ± sΔ_i and U the usable pairs (both losses finite; a black box that
did not answer reports NaN),

  SPSA, SPSA-GC:  ĝ = 1/|U| Σ_{i∈U} (L⁺_i − L⁻_i)/(2s) · Δ_i^{-1}     (Eq. 7, Δ^{-1} element-wise),
  ES:             ĝ = 1/|U| Σ_{i∈U} (F⁺_i − F⁻_i)/(2σ) · ε_i          (F = L or its centred ranks),

and ĝ = 0 when U is empty. Δ is Rademacher for SPSA, BlackVIP's ±U[0.5, 1] for SPSA-GC and
ε ~ N(0, I) for ES. Leaves outside the mask are not perturbed: in every set they are θ itself
(a broadcast, no arithmetic), so a program computing the 2q losses can share the work that only
depends on them.

References:
  Spall, "Multivariate stochastic approximation using a simultaneous perturbation gradient
  approximation", IEEE Trans. Automatic Control, 1992.
  Oh et al., "BlackVIP: Black-Box Visual Prompting for Robust Transfer Learning", CVPR 2023.
  Salimans, Ho, Chen, Sidor & Sutskever, "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning", arXiv:1703.03864, 2017.
  Hui et al., "When Visual Privacy Protection Meets Multimodal Large Language Models",
  IJCV 2026 (Eq. 7).
"""

from __future__ import annotations

from collections.abc import Callable
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
  empty_init,
  weighted_mean,
)
from anonymax.optim.cma_es import cma_es_estimator
from anonymax.optim.es import normal_like
from anonymax.optim.guided import guided_estimator
from anonymax.optim.masks import Mask, resolve_mask
from anonymax.optim.reinforce import reinforce_estimator
from anonymax.optim.spsa import rademacher_like, spsa_estimate
from anonymax.optim.spsa_gc import uniform_rademacher_like

PyTree = Any
Draw = Callable[..., PyTree]  # (key, tree, mask=...) -> a perturbation like tree


def _antithetic_ask(draw: Draw, q: int, mask: Mask) -> Callable[..., tuple[PyTree, ZOAsked]]:
  """``ask`` for all three estimators: the 2q sets θ ± sΔ_i, masked-out leaves broadcast."""

  def ask(key, params, state, *, scale, **extra):
    del state, extra
    check_scale(scale)
    s = jnp.asarray(scale, jnp.float32)
    covered = resolve_mask(mask, params)
    deltas = jax.vmap(lambda k: draw(k, params, mask=mask))(jax.random.split(key, q))

    def one_leaf(p, d, m):
      p = jnp.asarray(p)
      if isinstance(m, (bool, np.bool_)) and not m:
        return jnp.broadcast_to(p, (2 * q, *p.shape))  # exactly θ in every set
      return jnp.concatenate([p + s * d, p - s * d]).astype(p.dtype)

    param_sets = jax.tree.map(one_leaf, params, deltas, covered)
    return param_sets, ZOAsked(key=key, scale=s, params_spec=ParamsSpec.of(params))

  return ask


def _redraw(draw: Draw, q: int, mask: Mask, asked: ZOAsked) -> PyTree:
  """The q perturbations of ``ask``, leaves [q, ...], drawn again from ``asked.key``."""
  like = asked.params_spec.zeros()
  return jax.vmap(lambda k: draw(k, like, mask=mask))(jax.random.split(asked.key, q))


def _pairs(losses: jax.typing.ArrayLike, q: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Splits the 2q losses into (L⁺ [q], L⁻ [q], usable [q] bool), usable = both finite."""
  losses = jnp.asarray(losses, jnp.float32)
  if losses.shape != (2 * q,):
    raise ValueError(
      f"losses must have shape ({2 * q},), one per parameter set of ask, got {losses.shape}"
    )
  plus, minus = losses[:q], losses[q:]
  return plus, minus, jnp.isfinite(plus) & jnp.isfinite(minus)


def spsa_estimator(
  num_samples: int = 1, mask: Mask = None, *, perturbation: Draw = rademacher_like
) -> ZOEstimator:
  """SPSA (Eq. 7) averaged over q perturbation pairs, as an ask/tell estimator.

    θ^±_i = θ ± sΔ_i,  Δ_i = perturbation(split(key, q)[i], θ, mask),
    ĝ = 1/|U| Σ_{i∈U} (L(θ⁺_i) − L(θ⁻_i))/(2s) · Δ_i^{-1}   (ĝ = 0 if U = ∅),

  U the pairs whose two losses are finite; Δ^{-1} is element-wise and 0 where Δ = 0
  (:func:`anonymax.optim.spsa.spsa_estimate` for each pair).

  Args:
    num_samples: q ≥ 1, the number of perturbation pairs.
    mask: leaves to perturb (see :mod:`anonymax.optim.masks`); None perturbs every leaf.
    perturbation: ``(key, tree, mask=...) -> Δ``; :func:`rademacher_like` by default (±1).

  Returns:
    A :class:`ZOEstimator` with 2q evaluations per step.

  Raises:
    ValueError: if ``num_samples`` is not an integer ≥ 1 or ``mask`` is an invalid regex.

  Example:
    >>> est = spsa_estimator(num_samples=2)
    >>> params = {"w": jnp.ones(3)}
    >>> sets, asked = est.ask(jax.random.key(0), params, est.init(params), scale=0.1)
    >>> losses = jax.vmap(lambda p: jnp.sum(p["w"] ** 2))(sets)  # the black box, 2q calls
    >>> g_hat, _ = est.tell(est.init(params), losses, asked)
    >>> sets["w"].shape, g_hat["w"].shape
    ((4, 3), (3,))

  References:
    Spall, IEEE Trans. Automatic Control, 1992; Hui et al., IJCV 2026, Eq. 7.
  """
  q = check_num_samples(num_samples)
  mask = check_mask(mask)

  def tell(state, losses, asked):
    plus, minus, usable = _pairs(losses, q)
    deltas = _redraw(perturbation, q, mask, asked)
    plus, minus = jnp.where(usable, plus, 0.0), jnp.where(usable, minus, 0.0)
    estimates = jax.vmap(spsa_estimate, in_axes=(0, 0, 0, None))(plus, minus, deltas, asked.scale)
    n = jnp.maximum(jnp.sum(usable), 1).astype(jnp.float32)
    return weighted_mean(usable.astype(jnp.float32), estimates, n, asked.params_spec), state

  return ZOEstimator(empty_init, _antithetic_ask(perturbation, q, mask), tell, 2 * q)


def spsa_gc_estimator(num_samples: int = 1, mask: Mask = None) -> ZOEstimator:
  """SPSA with BlackVIP's ±U[0.5, 1] perturbations, the estimate of the SPSA-GC baseline.

    Δ_i = s_i ⊙ u_i,  s_i = ±1,  u_i ~ U[0.5, 1],
    ĝ = 1/|U| Σ_{i∈U} (L(θ + cΔ_i) − L(θ − cΔ_i))/(2c) · Δ_i^{-1},

  which is :func:`spsa_estimator` with :func:`uniform_rademacher_like`; the momentum of SPSA-GC is
  the separate transform :func:`anonymax.optim.spsa_gc.spsa_gc`.

  Args:
    num_samples: q ≥ 1, the number of perturbation pairs.
    mask: leaves to perturb (see :mod:`anonymax.optim.masks`); None perturbs every leaf.

  Returns:
    A :class:`ZOEstimator` with 2q evaluations per step.

  Example:
    >>> est = spsa_gc_estimator()
    >>> params = {"w": jnp.zeros(4)}
    >>> sets, asked = est.ask(jax.random.key(0), params, est.init(params), scale=1.0)
    >>> magnitudes = jnp.abs(sets["w"])  # θ = 0: the sets are ±Δ
    >>> bool(jnp.all((magnitudes >= 0.5) & (magnitudes <= 1.0)))
    True

  References:
    Oh et al., CVPR 2023 (BlackVIP).
  """
  return spsa_estimator(num_samples, mask, perturbation=uniform_rademacher_like)


def _masked_centered_ranks(pairs: jax.Array, usable: jax.Array) -> jax.Array:
  """Centred ranks in [−0.5, 0.5] of the usable rows of ``pairs`` [q, 2]; 0 in the others.

  With every row usable this is :func:`anonymax.optim.es.centered_ranks` (ties included: both
  rank the row-major order [F⁺_1, F⁻_1, F⁺_2, …] with a stable sort).
  """
  flat = jnp.where(usable[:, None], pairs, jnp.inf).reshape(-1)  # unusable ones sort last
  ranks = (
    jnp.zeros(flat.shape, jnp.float32)
    .at[jnp.argsort(flat)]
    .set(jnp.arange(flat.size, dtype=jnp.float32))
  )
  count = jnp.maximum(2 * jnp.sum(usable) - 1, 1).astype(jnp.float32)
  return jnp.where(usable[:, None], ranks.reshape(pairs.shape) / count - 0.5, 0.0)


def es_estimator(
  num_samples: int = 1, mask: Mask = None, *, rank_shaping: bool = False
) -> ZOEstimator:
  """Antithetic evolution strategies (OpenAI-ES) over n = q direction pairs, as ask/tell.

    θ^±_i = θ ± σε_i,  ε_i = normal_like(split(key, n)[i], θ, mask) ~ N(0, I),
    ĝ = 1/(2σ|U|) Σ_{i∈U} (F⁺_i − F⁻_i) ε_i                  (ĝ = 0 if U = ∅),

  with F^±_i = L(θ^±_i), or, with ``rank_shaping``, the centred ranks in [−0.5, 0.5] of the
  2|U| usable losses (then a search direction invariant to monotone transforms of L rather than
  a gradient estimate). U: the pairs whose two losses are finite.

  Args:
    num_samples: n ≥ 1, the number of antithetic pairs.
    mask: leaves to perturb (see :mod:`anonymax.optim.masks`); None perturbs every leaf.
    rank_shaping: use centred ranks of the losses instead of the losses.

  Returns:
    A :class:`ZOEstimator` with 2n evaluations per step; ``ask``'s ``scale`` is σ.

  Raises:
    ValueError: for a bad ``num_samples``, ``mask`` or a non-bool ``rank_shaping``.

  Example:
    >>> est = es_estimator(num_samples=8, rank_shaping=True)
    >>> params = jnp.array([1.0, -1.0])
    >>> sets, asked = est.ask(jax.random.key(0), params, est.init(params), scale=0.1)
    >>> g, _ = est.tell(est.init(params), jax.vmap(jnp.sum)(sets ** 2), asked)
    >>> est.num_evaluations, bool(jnp.vdot(g, 2 * params) > 0)  # a descent direction of ‖θ‖²
    (16, True)

  References:
    Salimans et al., arXiv:1703.03864, 2017.
  """
  n = check_num_samples(num_samples)
  mask = check_mask(mask)
  if not isinstance(rank_shaping, (bool, np.bool_)):
    raise ValueError(f"rank_shaping must be a bool, got {rank_shaping!r}")

  def tell(state, losses, asked):
    plus, minus, usable = _pairs(losses, n)
    fitness = jnp.stack([plus, minus], axis=1)  # [n, 2]
    if rank_shaping:
      fitness = _masked_centered_ranks(fitness, usable)
    diff = jnp.where(usable, fitness[:, 0] - fitness[:, 1], 0.0)
    eps = _redraw(normal_like, n, mask, asked)
    divisor = 2 * jnp.maximum(jnp.sum(usable), 1).astype(jnp.float32) * asked.scale
    return weighted_mean(diff, eps, divisor, asked.params_spec), state

  return ZOEstimator(empty_init, _antithetic_ask(normal_like, n, mask), tell, 2 * n)


class _Entry(NamedTuple):
  build: Callable[..., ZOEstimator]  # (num_samples, mask, **hyperparameters) -> ZOEstimator.
  hyperparameters: tuple[str, ...]  # the keywords accepted besides num_samples and mask.


_REGISTRY: dict[str, _Entry] = {
  "spsa": _Entry(lambda num_samples, mask: spsa_estimator(num_samples, mask), ()),
  "spsa_gc": _Entry(spsa_gc_estimator, ()),
  "es": _Entry(es_estimator, ("rank_shaping",)),
  "cma_es": _Entry(cma_es_estimator, ("covariance",)),
  "reinforce": _Entry(reinforce_estimator, ("baseline_decay",)),
  "guided": _Entry(
    guided_estimator,
    (
      "source",
      "subspace_dim",
      "alpha",
      "alpha_min",
      "agreement_decay",
      "history_decay",
      "switch_at",
    ),
  ),
}
# The estimators whose pairs θ ± sΔ_i all share one draw rule (the guided one mixes two, CMA-ES
# and REINFORCE draw 2q independent sets).
ANTITHETIC_ESTIMATORS: tuple[str, ...] = ("spsa", "spsa_gc", "es")
ZO_ESTIMATORS: tuple[str, ...] = tuple(_REGISTRY)


def zo_estimator(
  name: str, *, num_samples: int = 1, mask: Mask = None, **hyperparameters: Any
) -> ZOEstimator:
  """The zeroth-order estimator ``name`` (one of :data:`ZO_ESTIMATORS`), in ask/tell form.

    ask:  θ ↦ [θ + sΔ_1, …, θ + sΔ_q, θ − sΔ_1, …, θ − sΔ_q],  Δ_i = draw(split(key, q)[i], θ),
    tell: L [2q] ↦ ĝ = 1/|U| Σ_{i∈U} (L⁺_i − L⁻_i)/(2s) · D(Δ_i)

  with D(Δ) = Δ^{-1} for ``"spsa"`` (Δ Rademacher) and ``"spsa_gc"`` (Δ ±U[0.5, 1]) and
  D(ε) = ε for ``"es"`` (ε ~ N(0, I); centred-rank losses with ``rank_shaping=True``);
  U are the pairs with two finite losses. ``"guided"`` (:mod:`anonymax.optim.guided`) draws some
  pairs in a guiding subspace; ``"cma_es"`` (evosax's CMA-ES, :mod:`anonymax.optim.cma_es`) and
  ``"reinforce"`` (:mod:`anonymax.optim.reinforce`) draw 2q independent sets instead.

  Args:
    name: one of :data:`ZO_ESTIMATORS`: ``"spsa"``, ``"spsa_gc"``, ``"es"``, ``"cma_es"``,
      ``"reinforce"``, ``"guided"``.
    num_samples: q ≥ 1, the number of perturbation pairs (2q evaluations per step).
    mask: leaves to perturb (see :mod:`anonymax.optim.masks`); None perturbs every leaf.
    **hyperparameters: the method's own (``"es"``: ``rank_shaping=False``; ``"cma_es"``:
      ``covariance="diagonal"``; ``"reinforce"``: ``baseline_decay=0.9``; ``"guided"``: see
      :func:`anonymax.optim.guided.guided_estimator`).

  Returns:
    A :class:`ZOEstimator`.

  Raises:
    ValueError: naming an unknown estimator or hyperparameter, or one out of range.

  Example:
    >>> est = zo_estimator("spsa", num_samples=2, mask="^dec/")
    >>> params = {"dec": jnp.zeros(3), "enc": jnp.ones(2)}
    >>> sets, asked = est.ask(jax.random.key(0), params, est.init(params), scale=0.1)
    >>> sets["dec"].shape, bool(jnp.all(sets["enc"] == 1.0))  # enc is not perturbed
    ((4, 3), True)
    >>> losses = jnp.array([1.0, jnp.nan, 0.8, 0.5])  # the second pair is dropped
    >>> g_hat, _ = est.tell(est.init(params), losses, asked)
    >>> est.num_evaluations, g_hat["enc"].tolist()
    (4, [0.0, 0.0])

  References:
    Spall, 1992; Oh et al., CVPR 2023; Salimans et al., 2017.
  """
  if name not in _REGISTRY:
    raise ValueError(f"zo_estimator: unknown estimator {name!r}; known: {list(ZO_ESTIMATORS)}")
  entry = _REGISTRY[name]
  unknown = sorted(set(hyperparameters) - set(entry.hyperparameters))
  if unknown:
    known = sorted({"num_samples", "mask", *entry.hyperparameters})
    raise ValueError(f"zo_estimator({name!r}): unknown hyperparameter(s) {unknown}; known: {known}")
  return entry.build(num_samples, mask, **hyperparameters)
