"""Tests for the guided estimator (anonymax.optim.guided): its draws, its estimate, its α."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import optim

D = 6


def _draws(key, q, k, basis, alpha):
  """The documented draws: kinds from split(key, 3)[0], Δ Rademacher, √(D/k) U z in span(U)."""
  k_kind, k_full, k_sub = jax.random.split(key, 3)
  in_sub = np.asarray(jax.random.uniform(k_kind, (q,)) >= alpha)
  full = np.asarray(jax.random.rademacher(k_full, (q, D), jnp.float32))
  sub = np.sqrt(D / k) * np.asarray(jax.random.normal(k_sub, (q, basis.shape[1]))) @ basis.T
  return in_sub, np.where(in_sub[:, None], sub, full)


def test_without_a_subspace_it_is_spsa_with_rademacher_pairs():
  q, s, key = 3, 0.1, jax.random.key(3)
  theta = jnp.linspace(-1.0, 1.0, D)
  est = optim.zo_estimator("guided", num_samples=q)  # history: empty at the first step
  state = est.init(theta)
  sets, asked = est.ask(key, theta, state, scale=s)
  assert float(asked.alpha) == 1.0 and est.num_evaluations == 2 * q
  _, eps = _draws(key, q, 4, np.zeros((D, 4)), 1.0)
  np.testing.assert_allclose(sets[:q], theta + s * eps, rtol=1e-6)
  np.testing.assert_allclose(sets[q:], theta - s * eps, rtol=1e-6)
  losses = jnp.array([1.0, 2.0, 0.5, 0.0, jnp.nan, 1.5])  # pair 2 unusable
  g, state = est.tell(state, losses, asked)
  want = ((1.0 - 0.0) * eps[0] + 0.0 * eps[1] + (0.5 - 1.5) * eps[2]) / (2 * s * 2)
  assert np.abs(want).max() > 0  # the two usable pairs' directions differ
  np.testing.assert_allclose(g, want, rtol=1e-5)
  # History: row 0 is the mean of the full-space estimates (the first one itself), filled 1;
  # with no guiding vector before this step there was no unit to measure the agreement in.
  assert int(state.filled) == 1 and int(state.n_full) == 0 and int(state.n_sub) == 0
  np.testing.assert_allclose(state.basis[0], want, rtol=1e-5)
  _, asked = est.ask(jax.random.key(5), theta, state, scale=s)
  _, later = est.tell(state, jnp.array([1.0, 2.0, 0.5, 0.0, 0.5, 1.5]), asked)
  assert int(later.n_full) + int(later.n_sub) == q  # now every usable pair is measured


def test_guide_source_draws_in_the_guides_span_and_remembers_the_guide():
  q, s, key = 4, 0.01, jax.random.key(1)
  theta = jnp.zeros(D)
  guide = jnp.array([3.0, 0.0, 4.0, 0.0, 0.0, 0.0])
  est = optim.zo_estimator("guided", num_samples=q, source="guide", subspace_dim=1, alpha=1e-9)
  state = est.init(theta)
  sets, asked = est.ask(key, theta, state, scale=s, guide=guide)
  u = np.asarray(guide / jnp.linalg.norm(guide))
  np.testing.assert_allclose(np.abs(asked.basis[:, 0]), np.abs(u), atol=1e-6)
  in_sub, eps = _draws(key, q, 1, np.asarray(asked.basis), float(asked.alpha))
  assert in_sub.all()
  np.testing.assert_allclose(sets[:q], s * eps, rtol=1e-5, atol=1e-7)
  # Every set lies on the guide's line: ε = √D z u.
  np.testing.assert_allclose(np.abs(sets[:q] @ u), np.linalg.norm(sets[:q], axis=1), rtol=1e-5)
  loss = lambda t: jnp.sum(t * jnp.arange(1.0, D + 1))
  g, state = est.tell(state, jax.vmap(loss)(sets), asked)
  delta = (eps @ np.arange(1.0, D + 1)) * 1.0  # L linear: (L⁺ − L⁻)/(2s) = εᵀc exactly
  np.testing.assert_allclose(g, (1 / 3) * delta @ eps / q, rtol=1e-4)  # weight k/(k + 2), k = 1
  np.testing.assert_allclose(state.basis[0], guide)
  assert int(state.filled) == 1 and int(state.n_sub) == q


def test_mean_estimate_is_the_guided_es_covariance_times_the_gradient():
  # L linear with gradient c: E[ĝ] = α c + (1 − α) D/(k + 2) U Uᵀ c (the two kinds' mixture).
  c = jnp.array([1.0, -2.0, 0.5, 3.0, 0.0, 1.0])
  guide = jnp.array([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
  alpha, q = 0.4, 2
  est = optim.zo_estimator("guided", num_samples=q, source="guide", subspace_dim=1, alpha=alpha)
  theta = jnp.zeros(D)
  state = est.init(theta)

  @jax.jit
  @jax.vmap
  def estimate(key):
    sets, asked = est.ask(key, theta, state, scale=0.1, guide=guide)
    return est.tell(state, sets @ c, asked)[0]

  g = jnp.mean(estimate(jax.random.split(jax.random.key(0), 20000)), axis=0)
  u = guide / jnp.linalg.norm(guide)
  want = alpha * c + (1 - alpha) * D / 3 * u * jnp.vdot(u, c)
  np.testing.assert_allclose(g, want, atol=0.15)


def _alpha_after(guide_fn, steps=60, dim=200, field="alpha"):
  """α (or another field of the last ask) after ``steps`` steps on ½‖θ − t‖² with guides from
  ``guide_fn(key, grad)``."""
  target = jnp.linspace(-1.0, 1.0, dim)
  est = optim.zo_estimator("guided", num_samples=2, source="guide", subspace_dim=1)
  theta, state = jnp.zeros(dim), est.init(jnp.zeros(dim))
  loss = lambda t: 0.5 * jnp.sum((t - target) ** 2)

  @jax.jit
  def step(theta, state, key):
    k_guide, k_ask = jax.random.split(key)
    guide = guide_fn(k_guide, theta - target)
    sets, asked = est.ask(k_ask, theta, state, scale=1e-3, guide=guide)
    g, state = est.tell(state, jax.vmap(loss)(sets), asked)
    return theta - 1e-3 * g, state, getattr(asked, field)

  for key in jax.random.split(jax.random.key(3), steps):
    theta, state, alpha = step(theta, state, key)
  return float(alpha)


def test_alpha_follows_the_guides_agreement():
  alpha_min = 0.02  # the default
  good = _alpha_after(lambda key, grad: grad)  # the exact gradient: ρ = 1
  useless = _alpha_after(lambda key, grad: jax.random.normal(key, grad.shape))  # ρ ≈ 1/D
  assert good < 0.1 and useless > 0.9
  assert alpha_min <= good and useless <= 1 - alpha_min


def test_measured_agreement_is_k_over_d_times_the_ratio_of_the_kinds_running_means():
  est = optim.zo_estimator("guided", num_samples=2, source="guide", subspace_dim=2, alpha=0.5)
  theta = jnp.zeros(D)
  guide = jnp.arange(1.0, D + 1.0)
  state = est.init(theta)
  _, asked = est.ask(jax.random.key(0), theta, state, scale=0.1, guide=guide)
  assert np.isnan(float(asked.agreement))  # nothing measured yet
  # One guide in the subspace (rank k = 1): ρ̂ = (1/D) S_sub / S_full.
  state = state._replace(sq_full=jnp.float32(4.0), sq_sub=jnp.float32(3.0), n_full=1, n_sub=1)
  _, asked = est.ask(jax.random.key(0), theta, state, scale=0.1, guide=guide)
  assert float(asked.agreement) == pytest.approx(3.0 / (4.0 * D))
  state = state._replace(sq_sub=jnp.float32(1e3))  # clipped to 1: a share
  _, asked = est.ask(jax.random.key(0), theta, state, scale=0.1, guide=guide)
  assert float(asked.agreement) == 1.0
  state = state._replace(n_sub=0)  # one kind unmeasured
  _, asked = est.ask(jax.random.key(0), theta, state, scale=0.1, guide=guide)
  assert np.isnan(float(asked.agreement))


def test_measured_agreement_tells_an_exact_guide_from_a_random_one():
  good = _alpha_after(lambda key, grad: grad, field="agreement")
  useless = _alpha_after(lambda key, grad: jax.random.normal(key, grad.shape), field="agreement")
  # ρ = 1 for the exact gradient, ρ ≈ k/D = 1/200 for a random guide; the running means are
  # noisy (with α near α_min few full-space pairs are measured), the gap between them is not.
  assert good > 0.2
  assert useless < 0.02


def test_without_any_usable_pair_the_estimate_is_zero_and_history_waits():
  est = optim.zo_estimator("guided", num_samples=2)
  theta = jnp.ones(D)
  state = est.init(theta)
  _, asked = est.ask(jax.random.key(0), theta, state, scale=0.1)
  g, new = est.tell(state, jnp.array([jnp.nan, 1.0, 2.0, jnp.inf]), asked)
  np.testing.assert_array_equal(g, 0.0)
  assert int(new.filled) == 0 and int(new.n_full) == 0


def test_masked_leaves_are_theta_and_get_no_estimate():
  params = {"dec": jnp.zeros(4), "enc": jnp.ones(3)}
  est = optim.zo_estimator("guided", num_samples=1, mask="^dec")
  state = est.init(params)
  assert state.basis.shape == (4, 4)  # k = 4 rows over the 4 perturbed parameters
  sets, asked = est.ask(jax.random.key(2), params, state, scale=0.1)
  np.testing.assert_array_equal(sets["enc"], 1.0)
  g, _ = est.tell(state, jnp.array([1.0, 0.0]), asked)
  np.testing.assert_array_equal(g["enc"], 0.0)
  assert float(jnp.abs(g["dec"]).min()) > 0


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"source": "surrogate"}, "source must be one of"),
    ({"subspace_dim": 0}, "subspace_dim must be an integer"),
    ({"alpha": 0.0}, r"alpha must be in \(0, 1\]"),
    ({"alpha_min": 0.6}, r"alpha_min must be in \(0, 0.5\]"),
    ({"agreement_decay": 1.0}, "agreement_decay must be in"),
    ({"history_decay": -0.1}, "history_decay must be in"),
    ({"switch_at": 0.0}, "switch_at must be > 0"),
  ],
)
def test_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    optim.zo_estimator("guided", **kwargs)


def test_a_subspace_larger_than_the_parameters_is_refused():
  with pytest.raises(ValueError, match="subspace_dim 4 exceeds the 3 perturbed parameters"):
    optim.zo_estimator("guided").init(jnp.zeros(3))


def test_guide_source_needs_a_guide():
  est = optim.zo_estimator("guided", source="guide", subspace_dim=2)
  theta = jnp.zeros(3)
  with pytest.raises(ValueError, match="ask needs guide="):
    est.ask(jax.random.key(0), theta, est.init(theta), scale=0.1)


def test_factory_section_reaches_the_estimator():
  opt = optim.make_optimizer(
    {"zo_method": "guided", "guided": {"subspace_dim": 2, "source": "guide"}}
  )
  theta = jnp.zeros(5)
  assert opt.estimator.init(theta).basis.shape == (2, 5)
  with pytest.raises(ValueError, match="config.guided: subspace_dim"):
    optim.make_optimizer({"zo_method": "guided", "guided": {"subspace_dim": -1}})
