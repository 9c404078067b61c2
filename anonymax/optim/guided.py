"""A guided zeroth-order estimator: perturbations partly in a guiding subspace, with adaptive mixing.

Guided ES (Maheswaranathan et al. 2019) samples ε ~ N(0, Σ), Σ = (α/D) I + ((1 − α)/k) U Uᵀ,
U ∈ R^{D×k} an orthonormal basis of a guiding subspace: the estimate is a descent direction of
the true loss for any α > 0, however wrong the guide, and has far less variance than plain search
when the gradient lies near the subspace. Here the two parts of Σ (scaled by D, so that α = 1 is
SPSA exactly) are sampled as a mixture, one kind per antithetic pair, so that each pair measures
either the whole gradient or its part in the subspace, and α can follow the guide's quality::

  pair i:  full space with probability α:  ε_i = Δ_i, Rademacher (±1) in R^D (SPSA's),
           subspace otherwise:              ε_i = √(D/k) U z_i,  z_i ~ N(0, I_k),
  δ_i    = (L(θ + sε_i) − L(θ − sε_i)) / (2s)          (≈ ε_iᵀ∇L),
  ĝ      = 1/|P| Σ_{i∈P} w_i δ_i ε_i,   w_i = 1 (full), k/(k + 2) (subspace),
  E[ĝ]   = α ∇L + (1 − α) D/(k + 2) U Uᵀ ∇L                  (P: the usable pairs).

The weight makes the two kinds' best step sizes equal (for L with curvature ℓ, a = 1/(ℓD) for
both), so that one step size a serves a mixture: unweighted, a subspace pair's estimate would
overshoot by (k + 2)/k at the full pairs' best step.

The guide's agreement is ρ = ‖Uᵀ∇L‖²/‖∇L‖², the fraction of the gradient inside the subspace.
E[δ²] is ‖∇L‖² for a full pair and (D/k) ρ ‖∇L‖² for a subspace pair (plus the same noise), so
running means S_full, S_sub of δ² by kind (each δ² divided by the newest guiding vector's ‖·‖²,
which shrinks with ‖∇L‖, since the kinds are measured at different steps) give ρ̂ = (k/D)
S_sub/S_full. At that common step a pair's expected progress is ∝ ρ/(k + 2) in the subspace and
1/D in the full space (Rademacher: E‖δΔ‖² = D‖∇L‖²), and over α ∈ [0, 1] one pair's is largest
at an end (with q > 1 pairs averaged the optimum can be inside), so α switches between the ends
around r̂ = ρ̂ D/(k + 2) = ``switch_at`` (r = 1 is where the subspace starts to pay; the
default 3 leaves a margin for the noise in r̂)::

  α = α_min + (1 − 2α_min) · sigmoid(−4 log(r̂ / switch_at))

(α = ½ until both kinds have been measured, α = 1 while there is no subspace). A useless guide
(ρ ≈ k/D) gives SPSA with a fraction α_min of pairs spent measuring the subspace; a good one
gives α ≈ α_min, which keeps measuring the full space and keeps ĝ a descent direction. Past
estimates alone make a weak guide: the mean of m estimates has ρ ≈ m/D while ∇L stays put, so
``source="history"`` rarely leaves SPSA (benchmarks/zo_calls.md measures it).

The subspace is spanned by k vectors of its source (orthonormalised by QR each step):

* ``source="history"``: the running mean of the estimator's own full-space estimates (its cosine
  with ∇L grows like √(estimates averaged) while ∇L stays put) and the latest k − 1 of them: the
  paper's history, used to choose directions instead of reweighting them;
* ``source="guide"``: the last k guides passed to ``ask(..., guide=g̃)``, e.g. the gradient of a
  surrogate of the black box (Guided ES's setting).

References:
  Maheswaranathan, Metz, Tucker, Choi & Sohl-Dickstein, "Guided evolutionary strategies:
  augmenting random search with surrogate gradients", ICML 2019.
  Salimans et al., "Evolution Strategies as a Scalable Alternative to Reinforcement Learning",
  arXiv:1703.03864, 2017 (the antithetic estimate δ ε).
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
SOURCES = ("history", "guide")
_SHARPNESS = 4.0  # of the switch: α goes from ~0.9 to ~0.1 as r̂ goes from 0.6 to 1.7 × switch_at


def _subspace_rank(basis: jax.Array) -> jax.Array:
  """k', the number of U's columns in use (the others are zero), at least 1, as float32."""
  return jnp.maximum(jnp.sum(jnp.any(basis != 0, axis=0)), 1).astype(jnp.float32)


class GuidedState(NamedTuple):
  """The guiding vectors and the running measurements of the agreement."""

  basis: jax.Array  # [k, D] float32: the source's latest vectors, newest first.
  filled: jax.Array  # [] int32: how many rows of ``basis`` hold a vector.
  sq_full: jax.Array  # [] float32: running mean of δ²/‖newest guiding vector‖², full pairs.
  sq_sub: jax.Array  # [] float32: the same over subspace pairs.
  n_full: jax.Array  # [] int32: full-space pairs measured so far.
  n_sub: jax.Array  # [] int32: subspace pairs measured so far.


class GuidedAsked(NamedTuple):
  """What ``ask`` hands to ``tell``: the key, s, α, the subspace and the guide to remember."""

  key: jax.Array  # [] PRNG key the kinds and directions are drawn from.
  scale: jax.Array  # [] float32: s.
  alpha: jax.Array  # [] float32: the probability of a full-space pair this step.
  basis: jax.Array  # [D, k] float32: U, orthonormal columns (unused ones zero).
  guide: jax.Array  # [D] float32: this step's guide (zeros for source="history").
  # [] float32: ρ̂ = (k/D) S_sub/S_full, the measured share of the gradient in the subspace
  # (NaN until both kinds of pair have been measured, or while there is no subspace).
  agreement: jax.Array
  params_spec: ParamsSpec  # static: θ's structure, shapes and dtypes.


def guided_estimator(
  num_samples: int = 1,
  mask: Mask = None,
  *,
  source: str = "history",
  subspace_dim: int = 4,
  alpha: float | None = None,
  alpha_min: float = 0.02,
  agreement_decay: float = 0.9,
  history_decay: float = 0.9,
  switch_at: float = 3.0,
) -> ZOEstimator:
  """Guided ES with mixture sampling and an adaptive α, as an ask/tell estimator.

    ĝ = 1/|P| Σ_{i∈P} (L(θ + sε_i) − L(θ − sε_i))/(2s) · ε_i,  ε_i full-space or in span(U)

  (the module docstring gives the mixing rule and how α follows the guide's agreement).

  Args:
    num_samples: q ≥ 1 antithetic pairs per step (2q evaluations).
    mask: the leaves to perturb (see :mod:`anonymax.optim.masks`), whole leaves only.
    source: ``"history"`` (past estimates) or ``"guide"`` (the ``guide=`` of each ``ask``).
    subspace_dim: k ≥ 1, the number of vectors spanning the subspace (at most D).
    alpha: a fixed α ∈ (0, 1]; None adapts it from the measured agreement.
    alpha_min: the adaptive α stays in [α_min, 1 − α_min], α_min ∈ (0, 0.5]: both kinds of pair
      keep being measured.
    agreement_decay: the running means' decay per measured pair, in [0, 1).
    history_decay: the decay of the running mean of estimates (``source="history"``), in [0, 1).
    switch_at: r̂ > 0 at which α is halfway between its ends.

  Returns:
    A :class:`~anonymax.optim.ask_tell.ZOEstimator` with a :class:`GuidedState`.

  Raises:
    ValueError: for an argument out of range, or (in ``ask``) ``source="guide"`` without a guide.

  Example:
    >>> est = guided_estimator(num_samples=2, source="guide", alpha=0.5)
    >>> params = jnp.array([1.0, -2.0, 0.5, 0.0])
    >>> state = est.init(params)
    >>> sets, asked = est.ask(jax.random.key(0), params, state, scale=0.01, guide=2 * params)
    >>> g, state = est.tell(state, jax.vmap(jnp.sum)(sets ** 2), asked)
    >>> sets.shape, int(state.filled), bool(jnp.vdot(g, 2 * params) > 0)
    ((4, 4), 1, True)
  """
  q = check_num_samples(num_samples)
  mask = check_mask(mask)
  if source not in SOURCES:
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
  if isinstance(subspace_dim, bool) or not isinstance(subspace_dim, int) or subspace_dim < 1:
    raise ValueError(f"subspace_dim must be an integer >= 1, got {subspace_dim!r}")
  if alpha is not None and not 0.0 < alpha <= 1.0:
    raise ValueError(f"alpha must be in (0, 1] or None (adaptive), got {alpha!r}")
  if not 0.0 < alpha_min <= 0.5:
    raise ValueError(f"alpha_min must be in (0, 0.5], got {alpha_min!r}")
  if not switch_at > 0:
    raise ValueError(f"switch_at must be > 0, got {switch_at!r}")
  if not 0.0 <= history_decay < 1.0:
    raise ValueError(f"history_decay must be in [0, 1), got {history_decay!r}")
  if not 0.0 <= agreement_decay < 1.0:
    raise ValueError(f"agreement_decay must be in [0, 1), got {agreement_decay!r}")
  k = subspace_dim

  def init(params):
    dims = flatten(params, covered_leaves(mask, params, "guided")).shape[0]
    if k > dims:
      raise ValueError(f"guided: subspace_dim {k} exceeds the {dims} perturbed parameters")
    # Separate zeros for each field: the trainer donates the state, and one buffer cannot be
    # donated twice.
    f32, i32 = (lambda: jnp.zeros((), jnp.float32)), (lambda: jnp.zeros((), jnp.int32))
    return GuidedState(jnp.zeros((k, dims), jnp.float32), i32(), f32(), f32(), i32(), i32())

  def agreement(state, rank, dims):
    """ρ̂ = (k/D) S_sub/S_full in [0, 1], NaN until both kinds are measured or without a
    subspace (the module docstring)."""
    rank_f = jnp.maximum(rank, 1).astype(jnp.float32)
    rho = jnp.clip(rank_f / dims * state.sq_sub / jnp.maximum(state.sq_full, 1e-30), 0.0, 1.0)
    measured = (state.n_full > 0) & (state.n_sub > 0) & (rank > 0)
    return jnp.where(measured, rho, jnp.nan).astype(jnp.float32)

  def mixing(state, rank, dims):
    """α for this step, from the agreement measured so far and the subspace's rank."""
    if alpha is not None:
      return jnp.where(rank > 0, jnp.float32(alpha), 1.0)
    rank_f = jnp.maximum(rank, 1).astype(jnp.float32)
    rho = jnp.nan_to_num(agreement(state, rank, dims))
    ratio = rho * dims / (rank_f + 2)
    # The progress is largest at an end of [0, 1] (see the module docstring): switch smoothly
    # between the two ends, never quite reaching them, so both running means stay current.
    switch = jax.nn.sigmoid(-_SHARPNESS * jnp.log(jnp.maximum(ratio / switch_at, 1e-30)))
    adaptive = alpha_min + (1.0 - 2.0 * alpha_min) * switch
    measured = (state.n_full > 0) & (state.n_sub > 0)
    return jnp.where(rank > 0, jnp.where(measured, adaptive, 0.5), 1.0).astype(jnp.float32)

  def directions(key, alpha_k, basis):
    """The q kinds (True: subspace) and directions ε_i [q, D] of one step."""
    dims = basis.shape[0]
    k_kind, k_full, k_sub = jax.random.split(key, 3)
    in_subspace = jax.random.uniform(k_kind, (q,)) >= alpha_k
    full = jax.random.rademacher(k_full, (q, dims), jnp.float32)
    # √(D/k) U z: the norm of a full-space Δ, and E[εεᵀ] = (D/k) U Uᵀ (Guided ES's scaling).
    sub = (
      jnp.sqrt(dims / _subspace_rank(basis))
      * jax.random.normal(k_sub, (q, k), jnp.float32)
      @ basis.T
    )
    return in_subspace, jnp.where(in_subspace[:, None], sub, full)

  def ask(key, params, state, *, scale, guide=None, **extra):
    del extra
    check_scale(scale)
    flags = covered_leaves(mask, params, "guided")
    theta = flatten(params, flags)
    dims = theta.shape[0]
    if source == "guide":
      if guide is None:
        raise ValueError(
          "guided estimator with source='guide': ask needs guide=<a tree like θ> (the trainer"
          " passes its online surrogate's gradient: anonymax.online_surrogate)"
        )
      newest = flatten(guide, flags)
      rows = jnp.concatenate([newest[None], state.basis[: k - 1]])
      filled = jnp.minimum(state.filled + 1, k)
    else:
      newest, rows, filled = jnp.zeros(dims, jnp.float32), state.basis, state.filled
    # QR of the valid rows: columns for empty or dependent rows are dropped (set to zero).
    valid = jnp.arange(k) < filled
    u, r = jnp.linalg.qr(jnp.where(valid[:, None], rows, 0.0).T)
    diag = jnp.abs(jnp.diagonal(r))
    valid = valid & (diag > 1e-6 * jnp.maximum(jnp.max(diag), 1e-30))
    basis = jnp.where(valid[None, :], u, 0.0)
    s = jnp.asarray(scale, jnp.float32)
    rank = jnp.sum(valid)
    alpha_k = mixing(state, rank, dims)
    _, eps = directions(key, alpha_k, basis)
    probes = jnp.concatenate([theta + s * eps, theta - s * eps])
    rho_hat = agreement(state, rank, dims)
    asked = GuidedAsked(key, s, alpha_k, basis, newest, rho_hat, ParamsSpec.of(params))
    return sets_from_rows(probes, params, flags), asked

  def tell(state, losses, asked):
    losses = jnp.asarray(losses, jnp.float32)
    if losses.shape != (2 * q,):
      raise ValueError(
        f"losses must have shape ({2 * q},), one per parameter set of ask, got {losses.shape}"
      )
    spec = asked.params_spec
    flags = covered_leaves(mask, spec.zeros(), "guided")
    plus, minus = losses[:q], losses[q:]
    usable = jnp.isfinite(plus) & jnp.isfinite(minus)
    delta = jnp.where(usable, (plus - minus) / (2 * asked.scale), 0.0)
    in_subspace, eps = directions(asked.key, asked.alpha, asked.basis)
    n_usable = jnp.sum(usable)
    # A subspace pair's δε has the optimal step k/(D(k + 2)) where a full pair's has 1/D (the
    # module docstring): the weight k/(k + 2) gives both kinds the same best step size.
    rank = _subspace_rank(asked.basis)
    weight = jnp.where(in_subspace, rank / (rank + 2), 1.0)
    g_flat = ((weight * delta) @ eps) / jnp.maximum(n_usable, 1).astype(jnp.float32)

    # δ² in units of the newest guiding vector's squared norm, which shrinks with ∇L: the two
    # kinds are measured at different steps, and ‖∇L‖ changes in between.
    newest = asked.guide if source == "guide" else state.basis[0]
    unit = jnp.sum(newest**2)
    measurable = unit > 0  # no guiding vector yet (history's first step): nothing to measure in
    unit = jnp.where(measurable, unit, 1.0)

    def running(mean, count, kind):
      """The running mean of δ²/unit over this kind's usable pairs (the first one starts it)."""
      pick = usable & kind & measurable
      n = jnp.sum(pick)
      value = jnp.sum(jnp.where(pick, delta**2 / unit, 0.0)) / jnp.maximum(n, 1).astype(jnp.float32)
      decay = jnp.float32(agreement_decay) ** n.astype(jnp.float32)
      new = jnp.where(count > 0, decay * mean + (1 - decay) * value, value)
      return jnp.where(n > 0, new, mean), count + n.astype(jnp.int32)

    sq_full, n_full = running(state.sq_full, state.n_full, ~in_subspace)
    sq_sub, n_sub = running(state.sq_sub, state.n_sub, in_subspace)
    if source == "guide":
      basis = jnp.concatenate([asked.guide[None], state.basis[:-1]])
      filled = jnp.minimum(state.filled + 1, k)
    else:
      # Row 0: the running mean of the full-space estimates (its cosine with ∇L grows like
      # √(estimates averaged) while ∇L stays put); rows 1..k−1: the latest of them. Subspace
      # pairs stay out: their estimates lie in span(U) and would keep U from turning.
      full = usable & ~in_subspace
      push = jnp.any(full)
      g_full = (jnp.where(full, delta, 0.0) @ eps) / jnp.maximum(jnp.sum(full), 1).astype(
        jnp.float32
      )
      mean = jnp.where(
        state.filled > 0, history_decay * state.basis[0] + (1 - history_decay) * g_full, g_full
      )
      shifted = jnp.concatenate([mean[None], g_full[None], state.basis[1:-1]])[:k]
      basis = jnp.where(push, shifted, state.basis)
      filled = jnp.where(push, jnp.minimum(state.filled + 1, k), state.filled)
    new_state = GuidedState(basis, filled.astype(jnp.int32), sq_full, sq_sub, n_full, n_sub)
    return tree_from_vector(g_flat, spec, flags), new_state

  return ZOEstimator(init, ask, tell, 2 * q)
