"""Tests for the ask/tell zeroth-order estimators (anonymax.optim.estimators), per registry entry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anonymax import optim

NAMES = optim.ANTITHETIC_ESTIMATORS
# The documented draw of each estimator: Δ_i = DRAWS[name](split(key, q)[i], params, mask=mask).
DRAWS = {
  "spsa": optim.rademacher_like,
  "spsa_gc": optim.uniform_rademacher_like,
  "es": optim.normal_like,
}
# ĝ's per-pair direction: Δ^{-1} (Spall, element-wise) for SPSA and SPSA-GC, ε itself for ES.
DIRECTIONS = {"spsa": lambda d: 1.0 / d, "spsa_gc": lambda d: 1.0 / d, "es": lambda d: d}


def _params(dtype=jnp.float32):
  return {
    "dec": {"kernel": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3).astype(dtype)},
    "enc": {"bias": jnp.array([0.5, -0.25], jnp.float32)},
  }


def _np(x):
  return np.asarray(x, np.float32)


def test_registry_covers_the_documented_draws():
  assert set(NAMES) == {"spsa", "spsa_gc", "es"} == set(DRAWS)


@pytest.mark.parametrize("name", NAMES)
def test_ask_draws_split_key_then_draw_per_sample(name):
  q, key, mask = 3, jax.random.key(7), "^dec/"
  params = jax.tree.map(jnp.zeros_like, _params())
  est = optim.zo_estimator(name, num_samples=q, mask=mask)
  sets, asked = est.ask(key, params, est.init(params), scale=1.0)
  # θ = 0 and s = 1: the i-th set is exactly Δ_i and the (q+i)-th exactly −Δ_i.
  for i, k in enumerate(jax.random.split(key, q)):
    delta = DRAWS[name](k, params, mask=mask)
    for got_plus, got_minus, want in zip(
      jax.tree.leaves(jax.tree.map(lambda s, i=i: s[i], sets)),
      jax.tree.leaves(jax.tree.map(lambda s, i=i: s[q + i], sets)),
      jax.tree.leaves(delta),
    ):
      np.testing.assert_array_equal(got_plus, want)
      np.testing.assert_array_equal(got_minus, -want)
  assert float(jnp.abs(sets["dec"]["kernel"]).min()) > 0  # the covered leaf really moved
  assert asked.key is key


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_ask_sets_are_theta_plus_minus_s_delta(name, dtype):
  q, s, key = 2, 0.25, jax.random.key(1)
  params = _params(dtype)
  est = optim.zo_estimator(name, num_samples=q)
  sets, _ = est.ask(key, params, est.init(params), scale=s)
  keys = jax.random.split(key, q)
  for path_leaf, leaf in zip(jax.tree.leaves(sets), jax.tree.leaves(params)):
    assert path_leaf.shape == (2 * q, *leaf.shape) and path_leaf.dtype == leaf.dtype
  for i in range(q):
    delta = DRAWS[name](keys[i], params)
    for got_p, got_m, p, d in zip(
      jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], sets)),
      jax.tree.leaves(jax.tree.map(lambda x, i=i: x[q + i], sets)),
      jax.tree.leaves(params),
      jax.tree.leaves(delta),
    ):
      tol = 1e-2 if p.dtype == jnp.bfloat16 else 1e-6
      np.testing.assert_allclose(_np(got_p), _np(p) + s * _np(d), atol=tol)
      np.testing.assert_allclose(_np(got_m), _np(p) - s * _np(d), atol=tol)


def _spsa_draws(name, n=20_000):
  est = optim.zo_estimator(name, num_samples=2)
  params = jnp.zeros(n // 2)
  sets, _ = est.ask(jax.random.key(3), params, est.init(params), scale=1.0)
  return np.asarray(sets[:2]).ravel()  # Δ_1, Δ_2 (θ = 0, s = 1)


def test_spsa_delta_is_rademacher():
  d = _spsa_draws("spsa")
  assert set(np.unique(d).tolist()) == {-1.0, 1.0}
  assert abs(d.mean()) < 0.03  # 20k fair signs: std 0.007


def test_spsa_gc_delta_is_signed_uniform_half_to_one():
  d = _spsa_draws("spsa_gc")
  magnitudes = np.abs(d)
  assert magnitudes.min() >= 0.5 and magnitudes.max() <= 1.0
  # U[0.5, 1]: mean 0.75, std 0.144; balanced signs.
  assert abs(magnitudes.mean() - 0.75) < 0.01 and abs(magnitudes.std() - 0.144) < 0.01
  assert abs(np.sign(d).mean()) < 0.03


def test_es_delta_is_standard_normal():
  d = _spsa_draws("es")
  assert abs(d.mean()) < 0.03 and abs(d.std() - 1.0) < 0.03
  # A normal, not a sign: about 68% of the draws within one standard deviation.
  assert abs(np.mean(np.abs(d) < 1.0) - 0.6827) < 0.02


@pytest.mark.parametrize("name", NAMES)
def test_masked_leaves_are_exactly_theta_as_a_broadcast(name):
  q, params = 2, _params()
  est = optim.zo_estimator(name, num_samples=q, mask="^dec/")
  ask = lambda p: est.ask(jax.random.key(0), p, est.init(p), scale=0.1)[0]
  sets = ask(params)
  np.testing.assert_array_equal(sets["enc"]["bias"], np.broadcast_to(params["enc"]["bias"], (4, 2)))
  assert not np.array_equal(sets["dec"]["kernel"][0], params["dec"]["kernel"])
  # The unperturbed leaf is a broadcast of the input itself, with no arithmetic on it: every
  # set then holds the same value, which is what lets a compiler share the work below it.
  jaxpr = jax.make_jaxpr(ask)(params).jaxpr
  # Leaves in key order: dec/kernel (0), then enc/bias (1), for the inputs and the outputs.
  in_leaf, out_leaf = jaxpr.invars[1], jaxpr.outvars[1]
  assert jaxpr.outvars[1].aval.shape == (2 * q, 2)
  (producer,) = [eqn for eqn in jaxpr.eqns if out_leaf in eqn.outvars]
  assert producer.primitive.name == "broadcast_in_dim"
  assert producer.invars[0] is in_leaf


@pytest.mark.parametrize("name", NAMES)
def test_elementwise_mask_keeps_masked_entries(name):
  params = {"w": jnp.array([0.3, -0.7, 1.1])}
  mask = {"w": jnp.array([True, False, True])}
  est = optim.zo_estimator(name, num_samples=2, mask=mask)
  sets, asked = est.ask(jax.random.key(2), params, est.init(params), scale=0.5)
  np.testing.assert_array_equal(sets["w"][:, 1], params["w"][1])
  assert np.all(np.asarray(sets["w"][:, 0]) != params["w"][0])
  g, _ = est.tell(est.init(params), jnp.array([1.0, 2.0, 0.0, 0.5]), asked)
  assert float(g["w"][1]) == 0.0 and float(g["w"][0]) != 0.0


def _expected(name, params, key, q, s, losses, rank=False):
  """ĝ from the documented formula, in numpy (pairs with a non-finite loss left out)."""
  losses = np.asarray(losses, np.float64)
  plus, minus = losses[:q], losses[q:]
  usable = np.isfinite(plus) & np.isfinite(minus)
  keys = jax.random.split(key, q)
  out = jax.tree.map(lambda p: np.zeros(p.shape), params)
  for i in np.flatnonzero(usable):
    delta = DRAWS[name](keys[i], params)
    coef = (plus[i] - minus[i]) / (2 * s * usable.sum())
    out = jax.tree.map(lambda o, d, c=coef: o + c * DIRECTIONS[name](_np(d)), out, delta)
  return out


@pytest.mark.parametrize("name", NAMES)
def test_tell_by_hand_with_a_nan_pair_left_out(name):
  q, s, key = 2, 0.1, jax.random.key(5)
  params = _params()
  est = optim.zo_estimator(name, num_samples=q)
  _, asked = est.ask(key, params, est.init(params), scale=s)
  # [L⁺_1, L⁺_2, L⁻_1, L⁻_2]: pair 2 has no answer on its minus side.
  losses = jnp.array([3.0, 2.0, 1.0, jnp.nan])
  g, state = est.tell(est.init(params), losses, asked)
  assert state == optax.EmptyState()
  want = _expected(name, params, key, q, s, losses)
  # Pair 1 alone: (3 − 1)/(2·0.1) = 10 times Δ_1^{-1} (ε_1 for ES).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(_np(a), b, rtol=1e-5), g, want)
  assert float(optax.tree.norm(g)) > 0
  # Both pairs: the mean of the two.
  both = jnp.array([3.0, 2.0, 1.0, 1.5])
  g2, _ = est.tell(est.init(params), both, asked)
  want2 = _expected(name, params, key, q, s, both)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(_np(a), b, rtol=1e-5), g2, want2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_tell_without_a_usable_pair_is_zero(name, bad):
  params = _params(jnp.bfloat16)
  est = optim.zo_estimator(name, num_samples=2)
  _, asked = est.ask(jax.random.key(0), params, est.init(params), scale=0.1)
  g, _ = est.tell(est.init(params), jnp.array([bad, 1.0, 2.0, bad]), asked)
  for leaf, p in zip(jax.tree.leaves(g), jax.tree.leaves(params)):
    assert leaf.dtype == p.dtype and leaf.shape == p.shape
    np.testing.assert_array_equal(_np(leaf), 0.0)


def test_es_rank_shaping_ranks_only_the_usable_losses():
  q, s, key = 3, 0.2, jax.random.key(4)
  params = {"w": jnp.array([0.1, -0.2, 0.3])}
  est = optim.zo_estimator("es", num_samples=q, rank_shaping=True)
  _, asked = est.ask(key, params, est.init(params), scale=s)
  # Pairs 1 and 3 usable: losses 5, 1 (pair 1) and 7, 3 (pair 3) have ranks 2, 0, 3, 1 of 4,
  # centred (r/3 − ½): 1/6, −1/2, 1/2, −1/6.
  losses = jnp.array([5.0, jnp.nan, 7.0, 1.0, 2.0, 3.0])
  g, _ = est.tell(est.init(params), losses, asked)
  keys = jax.random.split(key, q)
  eps1, eps3 = (_np(optim.normal_like(keys[i], params)["w"]) for i in (0, 2))
  want = ((1 / 6 + 1 / 2) * eps1 + (1 / 2 + 1 / 6) * eps3) / (2 * s * 2)
  np.testing.assert_allclose(g["w"], want, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_jit_no_recompile_and_dtypes(name, dtype, count_compilations):
  q, params = 2, _params(dtype)
  est = optim.zo_estimator(name, num_samples=q, mask="^dec/")
  # As the trainer runs them: ask and tell in separate programs, `asked` crossing between.
  ask = jax.jit(lambda key, p, c: est.ask(key, p, est.init(p), scale=c))
  tell = jax.jit(lambda losses, asked: est.tell(optax.EmptyState(), losses, asked)[0])
  black_box = jax.jit(jax.vmap(lambda p: jnp.sum(p["dec"]["kernel"].astype(jnp.float32) ** 2)))

  def step(k):
    sets, asked = ask(jax.random.key(k), params, jnp.float32(0.1 / (k + 1)))
    return sets, asked, tell(black_box(sets), asked)

  with count_compilations() as first:
    sets, asked, g = step(0)
  with count_compilations() as later:
    for k in (1, 2):
      sets, asked, g = step(k)
  assert len(first) > 0 and later == []
  assert all(s.dtype == p.dtype for s, p in zip(jax.tree.leaves(sets), jax.tree.leaves(params)))
  assert all(x.dtype == p.dtype for x, p in zip(jax.tree.leaves(g), jax.tree.leaves(params)))
  assert float(jnp.abs(g["dec"]["kernel"].astype(jnp.float32)).sum()) > 0
  # `asked` is two scalars: the key and the scale (the perturbations are drawn again in tell).
  assert [jnp.shape(x) for x in jax.tree.leaves(asked)] == [(), ()]
  np.testing.assert_allclose(asked.scale, 0.1 / 3, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_descent_direction_on_average_on_a_quadratic(name):
  target = jnp.linspace(-1.0, 1.0, 8)
  theta = jnp.zeros(8)
  grad = theta - target  # ∇ ½‖θ − t‖²
  est = optim.zo_estimator(name, num_samples=2)
  loss = lambda p: 0.5 * jnp.sum((p - target) ** 2)

  @jax.jit
  @jax.vmap
  def estimate(key):
    sets, asked = est.ask(key, theta, est.init(theta), scale=0.01)
    return est.tell(est.init(theta), jax.vmap(loss)(sets), asked)[0]

  g = estimate(jax.random.split(jax.random.key(0), 500))
  inner = g @ grad
  assert float(jnp.mean(inner)) > 0 and float(jnp.mean(inner > 0)) > 0.6
  mean = jnp.mean(g, axis=0)
  assert float(mean @ grad / (jnp.linalg.norm(mean) * jnp.linalg.norm(grad))) > 0.9


@pytest.mark.parametrize("rank_shaping", [False, True])
def test_es_estimator_reproduces_es_gradient(rank_shaping):
  n, sigma, key = 5, 0.1, jax.random.key(11)
  params = {"a": jnp.array([0.3, -0.7, 1.1]), "b": jnp.array([[0.2, 0.4]])}
  loss = lambda p: jnp.sum(jnp.sin(p["a"])) + jnp.sum(p["b"] ** 3)
  est = optim.zo_estimator("es", num_samples=n, rank_shaping=rank_shaping)
  sets, asked = est.ask(key, params, est.init(params), scale=sigma)
  losses = jax.vmap(loss)(sets)
  g, _ = est.tell(est.init(params), losses, asked)
  want, loss_hat = optim.es_gradient(loss, params, key, sigma, n, rank_shaping=rank_shaping)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g, want)
  np.testing.assert_allclose(loss_hat, jnp.mean(losses), rtol=1e-6)
  # And both are the formula: 1/(2nσ) Σ_i (F⁺_i − F⁻_i) ε_i over split(key, n).
  f = np.asarray(losses).reshape(2, n)
  if rank_shaping:
    f = np.asarray(optim.centered_ranks(jnp.asarray(f.T))).T
  keys = jax.random.split(key, n)
  by_hand = sum(
    (f[0, i] - f[1, i]) * _np(optim.normal_like(keys[i], params)["a"]) for i in range(n)
  ) / (2 * n * sigma)
  np.testing.assert_allclose(g["a"], by_hand, rtol=1e-5, atol=1e-7)


def test_spsa_estimator_reproduces_spsa_gradient():
  q, c, key = 3, 0.05, jax.random.key(9)
  params = {"w": jnp.array([0.3, -0.2, 0.5, 1.0])}
  loss = lambda p: jnp.sum(jnp.sin(p["w"]) * jnp.arange(1.0, 5.0))
  for name, draw in (("spsa", optim.rademacher_like), ("spsa_gc", optim.uniform_rademacher_like)):
    est = optim.zo_estimator(name, num_samples=q)
    sets, asked = est.ask(key, params, est.init(params), scale=c)
    g, _ = est.tell(est.init(params), jax.vmap(loss)(sets), asked)
    want, _ = optim.spsa_gradient(loss, params, key, c, num_samples=q, perturbation=draw)
    np.testing.assert_allclose(g["w"], want["w"], rtol=1e-5, atol=1e-7)


def test_gradient_wrappers_drop_non_finite_pairs():
  # L = ∞ on the minus side of any direction with a negative first entry: those pairs are out.
  loss = lambda p: jnp.where(p[0] < 0, jnp.inf, jnp.sum(p))
  theta = jnp.array([0.0, 1.0])
  g, loss_hat = optim.spsa_gradient(loss, theta, jax.random.key(0), 0.1, num_samples=4)
  assert bool(jnp.all(jnp.isfinite(g))) and bool(jnp.isnan(loss_hat))  # no pair survives
  np.testing.assert_array_equal(g, 0.0)
  finite = lambda p: jnp.sum(p)
  g, loss_hat = optim.es_gradient(finite, theta, jax.random.key(0), 0.1, 4)
  np.testing.assert_allclose(loss_hat, 1.0, rtol=1e-6)  # linear: the pairs average to L(θ)


def test_num_evaluations_and_state():
  for name in NAMES:
    est = optim.zo_estimator(name, num_samples=3)
    assert isinstance(est, optim.ZOEstimator) and est.num_evaluations == 6
    assert est.init({"w": jnp.zeros(2)}) == optax.EmptyState()


def test_raw_uint32_keys_work():
  est = optim.zo_estimator("spsa", num_samples=2)
  params = jnp.zeros(4)
  losses = jnp.array([1.0, 2.0, 0.0, 0.0])
  typed, asked_typed = est.ask(jax.random.key(3), params, est.init(params), scale=1.0)
  raw, asked_raw = est.ask(jax.random.PRNGKey(3), params, est.init(params), scale=1.0)
  np.testing.assert_array_equal(typed, raw)
  g_typed, _ = est.tell(est.init(params), losses, asked_typed)
  g_raw, _ = est.tell(est.init(params), losses, asked_raw)
  np.testing.assert_array_equal(g_typed, g_raw)
  # ĝ = ½ (1/2 · Δ_1 + 2/2 · Δ_2): entries ±0.75 or ±0.25.
  assert set(np.round(np.abs(np.asarray(g_raw)), 6).tolist()) <= {0.75, 0.25}


@pytest.mark.parametrize(
  "build, match",
  [
    (lambda: optim.zo_estimator("adam"), r"unknown estimator 'adam'; known: \['spsa'"),
    (lambda: optim.zo_estimator("spsa", beta=0.9), r"unknown hyperparameter\(s\) \['beta'\]"),
    (lambda: optim.zo_estimator("es", sigma=0.1), r"known: \['mask', 'num_samples', 'rank_"),
    (lambda: optim.zo_estimator("spsa", num_samples=0), "num_samples must be an integer >= 1"),
    (lambda: optim.zo_estimator("es", num_samples=1.5), "num_samples must be an integer"),
    (lambda: optim.zo_estimator("spsa_gc", num_samples=True), "num_samples must be an integer"),
    (lambda: optim.zo_estimator("es", rank_shaping="yes"), "rank_shaping must be a bool"),
    (lambda: optim.zo_estimator("spsa", mask="dec("), "mask: invalid regular expression"),
  ],
)
def test_factory_validation(build, match):
  with pytest.raises(ValueError, match=match):
    build()


def test_ask_and_tell_validation():
  est = optim.zo_estimator("spsa", num_samples=2)
  params = jnp.zeros(3)
  with pytest.raises(ValueError, match="scale must be > 0"):
    est.ask(jax.random.key(0), params, est.init(params), scale=0.0)
  _, asked = est.ask(jax.random.key(0), params, est.init(params), scale=0.1)
  with pytest.raises(ValueError, match=r"losses must have shape \(4,\)"):
    est.tell(est.init(params), jnp.zeros(2), asked)
