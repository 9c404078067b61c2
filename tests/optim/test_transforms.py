"""Properties every transform shares: jit, no recompilation, dtypes kept, optax.chain."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anonymax import optim

SINGLE_TREE = {
  "critical": lambda: optim.critical_history(3, 0.9, 0.5, 1.0),
  "latest": lambda: optim.critical_history(3, 0.9, 0.5, 1.0, selection="latest"),
  "none": lambda: optim.critical_history(3, 0.9, 0.5, 1.0, selection="none"),
  "spsa_gc": lambda: optim.spsa_gc(0.9),
}


def _params(dtype):
  return {"conv": {"kernel": jnp.zeros((2, 3), dtype)}, "bias": jnp.zeros((3,), dtype)}


def _grad(params, seed):
  return jax.tree.map(
    lambda p: jax.random.normal(jax.random.key(seed), p.shape).astype(p.dtype), params
  )


def _avals(tree):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", sorted(SINGLE_TREE))
def test_jit_no_recompile_and_dtypes(name, dtype):
  tx = SINGLE_TREE[name]()
  traces = []

  def update(g, state, params):
    traces.append(1)  # Runs only while tracing.
    return tx.update(g, state, params)

  update = jax.jit(update)
  params = _params(dtype)
  state0 = tx.init(params)
  out1, state1 = update(_grad(params, 1), state0, params)
  out2, state2 = update(_grad(params, 2), state1, params)
  _, state3 = update(_grad(params, 3), state2, params)
  assert len(traces) == 1  # traced (and so compiled) once
  for leaf in jax.tree.leaves((out1, out2)):
    assert leaf.dtype == dtype
  # The state keeps its shapes and dtypes, so it can be carried through lax loops.
  assert _avals(state0) == _avals(state3)
  assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(out2))


@pytest.mark.parametrize("name", sorted(SINGLE_TREE))
def test_inside_chain_with_schedule(name):
  lr = optim.spall_learning_rate(0.1, A=2.0)
  chained = optax.chain(SINGLE_TREE[name](), optax.scale_by_schedule(lr), optax.scale(-1.0))
  alone = SINGLE_TREE[name]()
  params = _params(jnp.float32)
  s_chain, s_alone = chained.init(params), alone.init(params)
  traces = []
  step = jax.jit(lambda *args: traces.append(1) or chained.update(*args))
  for k in range(3):
    g = _grad(params, k)
    u_chain, s_chain = step(g, s_chain, params)
    u_alone, s_alone = alone.update(g, s_alone, params)
    jax.tree.map(
      lambda a, b, k=k: np.testing.assert_allclose(a, -lr(k) * b, rtol=1e-5, atol=1e-7),
      u_chain,
      u_alone,
    )
    params = optax.apply_updates(params, u_chain)
  assert len(traces) == 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize(
  "kind", ["augmented_tchebycheff", "tchebycheff", "weighted_sum", "smooth_tchebycheff"]
)
def test_factory_update_jit_no_recompile(kind, dtype):
  opt = optim.make_optimizer({"scalarization": {"kind": kind}})
  traces = []

  def step(params, state, g, h, losses):
    traces.append(1)
    updates, state = opt.update(g, h, state, params, losses=losses)
    return optax.apply_updates(params, updates), state, opt.perturbation_scale(state)

  step = jax.jit(step, donate_argnums=(1,))
  params = _params(dtype)
  state = opt.init(params)
  init_avals = _avals(state)
  for k in range(3):
    losses = (jnp.float32(1.0 + k), jnp.float32(2.0 - k))
    params, state, c_k = step(params, state, _grad(params, k), _grad(params, 10 + k), losses)
  assert len(traces) == 1
  assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(params))
  assert _avals(state) == init_avals
  assert int(state.count) == 3
  np.testing.assert_allclose(c_k, 0.01 / 4**0.101, rtol=1e-6)


def test_spsa_gradient_and_es_jit_no_recompile():
  loss_fn = lambda p: jnp.sum(p["bias"] ** 2) + jnp.sum(p["conv"]["kernel"])
  traces = []

  def estimate(params, key, c):
    traces.append(1)
    g, loss = optim.spsa_gradient(loss_fn, params, key, c, num_samples=2)
    e, _ = optim.es_gradient(loss_fn, params, key, c, 2)
    return g, e, loss

  estimate = jax.jit(estimate)
  params = _params(jnp.bfloat16)
  for k in range(3):
    g, e, _ = estimate(params, jax.random.key(k), jnp.float32(0.1 / (k + 1)))
  assert len(traces) == 1
  assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves((g, e)))
