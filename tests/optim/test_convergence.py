"""Every zeroth-order optimizer converges on a noisy quadratic (seeded, modest dimension)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anonymax import optim

DIM = 8
STEPS = 200
NOISE = 1e-3
TARGET = jnp.linspace(-1.0, 1.0, DIM)


def _noisy_loss(key, target):
  """½‖θ − target‖² plus Gaussian noise that differs for every evaluation point."""

  def loss_fn(theta):
    bits = jax.lax.bitcast_convert_type(jnp.sum(theta * jnp.arange(1.0, DIM + 1)), jnp.uint32)
    noise = NOISE * jax.random.normal(jax.random.fold_in(key, bits))
    return 0.5 * jnp.sum((theta - target) ** 2) + noise

  return loss_fn


def _true_loss(theta, target=TARGET):
  return float(0.5 * jnp.sum((theta - target) ** 2))


def _spsa_estimate(loss_fn, theta, key, c):
  return optim.spsa_gradient(loss_fn, theta, key, c)[0]


def _uniform_spsa_estimate(loss_fn, theta, key, c):
  return optim.spsa_gradient(loss_fn, theta, key, c, perturbation=optim.uniform_rademacher_like)[0]


def _es_estimate(loss_fn, theta, key, c):
  return optim.es_gradient(loss_fn, theta, key, c, 1)[0]


# name: (estimator, transform on the estimate, a, A); every method spends 2 evaluations a step.
METHODS = {
  "spsa": (_spsa_estimate, optax.identity(), 0.5, 10.0),
  "spsa_gc": (_uniform_spsa_estimate, optim.spsa_gc(0.5), 0.3, 10.0),
  "es": (_es_estimate, optax.identity(), 0.5, 10.0),
  "ours": (_spsa_estimate, optim.critical_history(5, 0.9, 0.5, 1.0), 0.5, 10.0),
}


def _optimize(name, seed):
  estimate, transform, a, big_a = METHODS[name]
  lr = optim.spall_learning_rate(a, big_a)
  c_schedule = optim.spall_perturbation(0.05)

  @jax.jit
  def run(key):
    theta = jnp.zeros(DIM)

    def step(carry, k):
      theta, state = carry
      key_k = jax.random.fold_in(key, k)
      loss_fn = _noisy_loss(jax.random.fold_in(key_k, 1), TARGET)
      g = estimate(loss_fn, theta, jax.random.fold_in(key_k, 0), c_schedule(k))
      u, state = transform.update(g, state, theta)
      return (theta - lr(k) * u, state), None

    (theta, _), _ = jax.lax.scan(step, (theta, transform.init(theta)), jnp.arange(STEPS))
    return theta

  return run(jax.random.key(seed))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_converges_on_noisy_quadratic(name):
  initial = _true_loss(jnp.zeros(DIM))
  final = _true_loss(_optimize(name, seed=0))
  assert np.isfinite(final)
  assert final < 0.01 * initial, (name, initial, final)


def test_full_pipeline_reaches_the_tchebycheff_optimum():
  # L_1 = ½‖θ − u‖² (black box, SPSA), L_2 = ½‖θ − v‖² (exact gradient). With λ = (½, ½) and
  # z* = 0 the augmented Tchebycheff optimum is where L_1 = L_2 on the segment: the midpoint.
  u = jnp.full((DIM,), 1.0)
  v = jnp.full((DIM,), -0.5)
  opt = optim.make_optimizer({"gains": {"a": 0.3, "c": 0.05}})

  @jax.jit
  def run(key):
    # Start far from the segment: ‖θ_0 − midpoint‖ ≈ 0.65·‖u − v‖.
    theta = jnp.full((DIM,), 3.0)

    def step(carry, k):
      theta, state = carry
      key_k = jax.random.fold_in(key, k)
      loss_u = _noisy_loss(jax.random.fold_in(key_k, 1), u)
      g_hat, l_u = optim.spsa_gradient(
        loss_u, theta, jax.random.fold_in(key_k, 0), opt.perturbation_scale(state)
      )
      l_v, h = jax.value_and_grad(lambda t: 0.5 * jnp.sum((t - v) ** 2))(theta)
      updates, state = opt.update(g_hat, h, state, theta, losses=(l_u, l_v))
      return (optax.apply_updates(theta, updates), state), state.selected

    (theta, state), selected = jax.lax.scan(step, (theta, opt.init(theta)), jnp.arange(STEPS))
    return theta, selected

  theta, selected = run(jax.random.key(0))
  midpoint = (u + v) / 2
  assert float(jnp.linalg.norm(theta - midpoint)) < 0.1 * float(jnp.linalg.norm(u - v))
  # Both objectives were selected along the way.
  assert set(np.unique(np.asarray(selected)).tolist()) == {0, 1}
