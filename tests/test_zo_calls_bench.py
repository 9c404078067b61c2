"""Tests for benchmarks/zo_calls.py: the black boxes, the tuning rule, the counting, a smoke run."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import optim
from tests import benchmark_scripts

zo = benchmark_scripts.load("zo_calls")
import zo_problems  # noqa: E402  (benchmarks/zo_problems.py, importable once zo_calls is loaded)


def _setup(**kw):
  base = dict(
    problem="regression", dim=4, spectrum=1.0, noise=0.0, batch=4, target=0.5, budget=400,
    stability=0.1, c=0.01, beta=0.9, es_directions=3,
  )  # fmt: skip
  base.update(kw)
  return zo.Setup(**base)


def test_regression_excess_risk_by_hand():
  problem = zo_problems.regression_problem(_setup(dim=3))
  theta_star = jnp.array([1.0, 2.0, 3.0])
  # ½ (1·1² + ½·2² + ⅓·3²) = ½ (1 + 2 + 3) = 3.
  np.testing.assert_allclose(problem.loss(theta_star, jnp.zeros(3)), 3.0, rtol=1e-6)
  np.testing.assert_allclose(problem.loss(theta_star, theta_star), 0.0, atol=1e-7)


def test_regression_oracle_noise_is_linear_and_shared_by_both_probes():
  problem = zo_problems.regression_problem(_setup(dim=3, noise=0.5))
  theta_star = jnp.array([1.0, 2.0, 3.0])
  f = problem.oracle(theta_star, jax.random.key(3))
  # At the optimum the noise term s·zᵀ√Λ(θ − θ*) vanishes; it is linear in θ, so the
  # central difference of the one minibatch is exact: (f(θ+u) − f(θ−u))/2 = ⟨∇E(θ) + ξ, u⟩.
  assert float(f(theta_star)) == pytest.approx(0.0, abs=1e-7)
  theta, u = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.1, 0.2, -0.3])
  xi = f(theta_star + jnp.array([1.0, 0, 0])) - 0.5  # ξ_1 = f(θ* + e_1) − ½λ_1
  grad_e = jnp.array([1.0, 1 / 2, 1 / 3]) * (theta - theta_star)
  diff = (f(theta + u) - f(theta - u)) / 2
  noise_part = diff - jnp.vdot(grad_e, u)
  assert abs(float(noise_part)) > 0  # the noise is really there
  g = jax.grad(f)(theta)
  np.testing.assert_allclose(g[0] - grad_e[0], xi, rtol=1e-5)
  np.testing.assert_allclose(diff, jnp.vdot(g, u), rtol=1e-5)


def test_hessian_trace_exact_for_diagonal_quadratic():
  problem = zo_problems.regression_problem(_setup(dim=4))
  # Rademacher probes give vᵀΛv = tr Λ exactly: 1 + 1/2 + 1/3 + 1/4.
  assert zo.hessian_trace(problem, _setup(dim=4)) == pytest.approx(25 / 12, rel=1e-5)


def test_mlp_size_and_teacher_is_optimal():
  problem = zo_problems.mlp_problem(_setup(problem="mlp", dim=1000))
  # hidden = round((1000 − 8) / 41) = 24; 32·24 + 24 + 24·8 + 8 = 992.
  assert problem.dim == 992
  instance, theta0 = problem.init(jax.random.key(0))
  teacher = instance[0]
  assert theta0.shape == (992,)
  assert float(problem.loss(instance, teacher)) == pytest.approx(0.0, abs=1e-10)
  assert float(problem.loss(instance, theta0)) > 0.1


def test_evals_per_step():
  setup = _setup(es_directions=3)
  assert [zo.estimator_for(m, setup).num_evaluations for m in zo.METHODS] == [2, 2, 6, 2, 2]


@pytest.mark.parametrize(
  "method, name, pairs",
  [("spsa", "spsa", 1), ("ours", "spsa", 1), ("spsa_gc", "spsa_gc", 1), ("es", "es", 3)],
)
def test_estimator_is_the_optimizers(method, name, pairs):
  # The benchmark asks the factory for the estimator, so it probes as the trainer does.
  setup = _setup(es_directions=3)
  est = zo.estimator_for(method, setup)
  want = optim.zo_estimator(name, num_samples=pairs)
  theta, key = jnp.linspace(-1.0, 1.0, 6), jax.random.key(4)
  got_sets, got_asked = est.ask(key, theta, est.init(theta), scale=0.1)
  want_sets, want_asked = want.ask(key, theta, want.init(theta), scale=0.1)
  np.testing.assert_array_equal(got_sets, want_sets)
  assert got_sets.shape == (2 * pairs, 6)
  losses = jnp.arange(2.0 * pairs)
  np.testing.assert_array_equal(
    est.tell(est.init(theta), losses, got_asked)[0],
    want.tell(want.init(theta), losses, want_asked)[0],
  )


def _fake_run(best_log2: float, budget: int = 10_000):
  """Calls grow by 100 per factor of 2 away from a = 2^best_log2; above 2^(best+3) it diverges."""

  def run(a, seeds, cap):
    log_a = np.log2(float(a))
    diverged = log_a > best_log2 + 3
    calls = np.full(len(seeds), budget if diverged else 100 + 100 * abs(log_a - best_log2))
    hit = ~diverged & (calls <= cap)
    final = np.full(len(seeds), np.inf if diverged else 0.4)
    return {"calls": np.where(hit, calls, budget), "final": final, "hit": hit}

  return run


def test_tune_picks_interior_best_and_extends_at_an_edge():
  seeds = np.arange(3)
  grid = 2.0 ** np.arange(-3, 2)
  a, scores = zo.tune(_fake_run(-1.0), grid, seeds, budget=10_000)
  assert a == 0.5 and scores[0.5][0] == pytest.approx(100.1)
  # Best beyond the upper edge (2^3): two extensions of ×2, ×4 reach 8.
  a, scores = zo.tune(_fake_run(3.0), grid, seeds, budget=10_000)
  assert a == 8.0 and max(scores) == 32.0
  # Everything diverges (best far below the grid): the grid grows downwards only.
  a, scores = zo.tune(_fake_run(-12.0), grid, seeds, budget=10_000, max_extensions=2)
  assert min(scores) == 2.0**-7 and max(scores) == 2.0


def test_median_calls_and_ratio_with_censoring():
  def row(calls, hit):
    return zo.Row("x", 1.0, np.array(calls), np.array(hit), {})

  ours = row([100, 300, 200], [True, True, True])
  spsa = row([500, 900, 700], [True, True, True])
  assert zo.median_calls(ours) == (200.0, False)
  assert zo.ratio(spsa, ours) == (3.5, "")
  censored = row([1000, 1000, 400], [False, False, True])
  assert zo.median_calls(censored) == (1000.0, True)
  assert zo.ratio(censored, ours) == (5.0, "≥")
  assert zo.ratio(ours, censored) == (0.2, "≤")


def test_bad_flags_raise():
  with pytest.raises(ValueError, match="--target"):
    zo.parse_args(["--target", "1.5"])
  with pytest.raises(ValueError, match="--dim"):
    zo.parse_args(["--dim", "-3"])
  with pytest.raises(ValueError, match="--problem"):
    zo.make_problem(_setup(problem="ridge"))
  with pytest.raises(ValueError, match="method"):
    zo.make_runner("adam", _setup())


def test_runner_reaches_target_and_counts_calls():
  setup = _setup(dim=8, budget=2000)
  seeds = np.arange(2, dtype=np.uint32)
  for method, per_step in (("spsa", 2), ("es", 6)):
    out = zo.make_runner(method, setup)(np.float32(1.0), seeds, np.int32(2000))
    assert bool(np.all(out["hit"])), method
    calls = np.asarray(out["calls"])
    assert np.all(calls % per_step == 0) and np.all(calls < 2000), (method, calls)
    assert np.all(np.asarray(out["final"]) <= 0.5)
  # A step size of 0 never moves: censored at the budget.
  out = zo.make_runner("ours", setup)(np.float32(0.0), seeds, np.int32(200))
  assert not np.any(out["hit"]) and np.all(np.asarray(out["calls"]) == 2000)


def test_quick_smoke_last_line_parses(capsys):
  result = zo.main(["--quick", "--dim", "64", "--budget", "600", "--seeds", "2"])
  lines = capsys.readouterr().out.strip().splitlines()
  match = re.fullmatch(
    r"spsa_over_ours=(\S+) spsagc_over_ours=(\S+) spsa_over_guided_history=(\S+)", lines[-1]
  )
  assert match, lines[-1]
  spsa, gc, hist = (float(match.group(i)) for i in (1, 2, 3))
  rows = result["rows"]
  # Recompute the ratios from the per-seed calls.
  ours = np.median(rows["ours"].calls)
  assert spsa == pytest.approx(np.median(rows["spsa"].calls) / ours, abs=1e-3)
  assert gc == pytest.approx(np.median(rows["spsa_gc"].calls) / ours, abs=1e-3)
  guided = np.median(rows["guided_history"].calls)
  assert hist == pytest.approx(np.median(rows["spsa"].calls) / guided, abs=1e-3)
  assert "guided" not in rows  # the surrogate-guided row needs --guide
  assert any("Ours, one change at a time" in line for line in lines)
  assert all(np.all(r.calls % 2 == 0) for r in rows.values())


def test_ours_without_history_is_exactly_spsa():
  # Same seeds give the same Δ and minibatches to every method (common random numbers), so
  # selection="none" (ĝ_k passed through, I_k = 0) must reproduce SPSA's calls exactly.
  setup = _setup(dim=8, budget=2000, noise=0.1)
  seeds = np.arange(3, dtype=np.uint32)
  spsa = zo.make_runner("spsa", setup)(np.float32(1.0), seeds, np.int32(2000))
  none = zo.make_runner("ours", setup, zo.History(selection="none"))(
    np.float32(1.0), seeds, np.int32(2000)
  )
  np.testing.assert_array_equal(spsa["calls"], none["calls"])
  np.testing.assert_allclose(spsa["final"], none["final"], rtol=1e-6)
  ours = zo.make_runner("ours", setup)(np.float32(1.0), seeds, np.int32(2000))
  assert not np.array_equal(ours["final"], spsa["final"])


def test_surrogate_gradient_is_the_gradient_plus_scaled_bias_and_noise():
  setup = _setup(dim=4000, guide=True, guide_bias=1.0, guide_noise=1.0)
  problem = zo_problems.regression_problem(setup)
  instance, theta = problem.init(jax.random.key(0))
  key = jax.random.key(5)
  grad = jax.grad(lambda t: problem.loss(instance, t))(theta)
  g1, g2 = (zo_problems.surrogate_gradient(problem, setup, instance, theta, key, k) for k in (0, 1))
  # g̃ − ∇E = ‖∇E‖ (u + v_k): norm ≈ √2 ‖∇E‖ (u ⊥ v_k in 4000 dimensions), the bias u shared.
  for g in (g1, g2):
    extra = np.asarray(g - grad) / float(jnp.linalg.norm(grad))
    assert np.linalg.norm(extra) == pytest.approx(np.sqrt(2), abs=0.1)
    cos = float(jnp.vdot(g, grad) / (jnp.linalg.norm(g) * jnp.linalg.norm(grad)))
    assert cos == pytest.approx(1 / np.sqrt(3), abs=0.05)
  shared = np.asarray(g1 - g2)  # the bias cancels: two independent unit noises remain
  assert np.linalg.norm(shared) / float(jnp.linalg.norm(grad)) == pytest.approx(np.sqrt(2), abs=0.1)


def test_guide_flag_adds_the_surrogate_guided_row(capsys):
  result = zo.main(
    ["--quick", "--dim", "64", "--budget", "600", "--seeds", "2", "--guide", "--no-sensitivity"]
  )
  last = capsys.readouterr().out.strip().splitlines()[-1]
  match = re.search(r"spsa_over_guided=(\S+) spsagc_over_guided=(\S+)$", last)
  assert match, last
  rows = result["rows"]
  assert "guided" in rows and all(np.all(r.calls % 2 == 0) for r in rows.values())
  spsa = float(match.group(1))
  assert spsa == pytest.approx(
    np.median(rows["spsa"].calls) / np.median(rows["guided"].calls), abs=1e-3
  )
  with pytest.raises(ValueError, match="needs Setup.guide"):
    zo.make_runner("guided", _setup())
