"""The black boxes of `benchmarks/zo_calls.py`: a noisy quadratic and a teacher–student MLP.

Both have a known optimum and a free progress measure (see zo_calls.py's docstring). With
``Setup.guide`` each step also gets a surrogate gradient as in the Guided ES paper's experiments:
the true gradient of the progress loss plus a bias fixed per run and fresh noise, both scaled to
the gradient's norm,

  g̃_k = ∇E(θ_k) + ‖∇E(θ_k)‖ (b·u + n·v_k),   u, v_k uniform on the unit sphere,

so cos(g̃_k, ∇E) ≈ 1/√(1 + b² + n²) in high dimension (0.58 for b = n = 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from anonymax import optim

MLP_IN, MLP_OUT, MLP_EVAL = 32, 8, 256


@dataclasses.dataclass(frozen=True)
class Setup:
  """Static settings of one benchmark run (the same for every method)."""

  problem: str  # "regression" | "mlp"
  dim: int  # regression: D; mlp: about the number of weights
  spectrum: float  # regression: p in λ_j = j^-p
  noise: float  # regression: s (gradient noise s²Λ); mlp: label noise σ
  batch: int  # mlp: inputs per oracle call
  target: float  # fraction of the initial loss
  budget: int  # oracle calls per run
  stability: float  # A (and BlackVIP's o) as a fraction of the budget in steps
  c: float
  beta: float  # SPSA-GC momentum
  es_directions: int
  guide: bool = False  # hand every method's ask a surrogate gradient g̃_k
  guide_bias: float = 1.0  # b: the fixed bias's norm ÷ ‖∇E‖
  guide_noise: float = 1.0  # n: the fresh noise's norm ÷ ‖∇E‖


class Problem(NamedTuple):
  """A black box: ``init(key) -> (instance, θ_0)``, ``oracle(instance, key) -> (θ ↦ loss)``,
  ``loss(instance, θ)`` (progress, free) and ``check_every`` (steps between progress checks)."""

  dim: int
  init: Callable[[jax.Array], tuple[Any, jax.Array]]
  oracle: Callable[[Any, jax.Array], Callable[[jax.Array], jax.Array]]
  loss: Callable[[Any, jax.Array], jax.Array]
  check_every: int


def regression_problem(setup: Setup) -> Problem:
  """The noisy quadratic model: E(θ) = ½ Σ_j λ_j (θ_j − θ*_j)², λ_j = j^-p, θ* = ±1, θ_0 = 0."""
  sqrt_lam = jnp.arange(1, setup.dim + 1, dtype=jnp.float32) ** (-setup.spectrum / 2)

  def init(key):
    # θ* = ±1: every instance has the same initial loss ½ tr Λ and the same error spectrum,
    # so seeds differ only by the optimisation noise (not by how hard θ* happens to be).
    return jax.random.rademacher(key, (setup.dim,), jnp.float32), jnp.zeros(setup.dim)

  def loss(theta_star, theta):
    return 0.5 * jnp.sum((sqrt_lam * (theta - theta_star)) ** 2)

  def oracle(theta_star, key):
    # One minibatch: gradient ∇E(θ) + s√λ ⊙ z, unbiased, noise covariance s²Λ ∝ the Hessian.
    noise = setup.noise * sqrt_lam * jax.random.normal(key, (setup.dim,))
    return lambda theta: loss(theta_star, theta) + jnp.vdot(noise, theta - theta_star)

  return Problem(setup.dim, init, oracle, loss, 1)


def mlp_problem(setup: Setup) -> Problem:
  """Teacher–student fit of a 32–h–8 tanh MLP (h chosen so that it has about ``dim`` weights)."""
  hidden = max(1, round((setup.dim - MLP_OUT) / (MLP_IN + 1 + MLP_OUT)))
  shapes = [(MLP_IN, hidden), (hidden,), (hidden, MLP_OUT), (MLP_OUT,)]
  sizes = [int(np.prod(s)) for s in shapes]

  def forward(theta, x):
    w1, b1, w2, b2 = (p.reshape(s) for p, s in zip(jnp.split(theta, np.cumsum(sizes)[:-1]), shapes))
    return jnp.tanh(x @ w1 + b1) @ w2 + b2

  def draw(key):
    k1, k2, k3 = jax.random.split(key, 3)
    w1 = jax.random.normal(k1, shapes[0]) / np.sqrt(MLP_IN)
    b1 = 0.1 * jax.random.normal(k2, shapes[1])
    w2 = jax.random.normal(k3, shapes[2]) / np.sqrt(hidden)
    return jnp.concatenate([w1.ravel(), b1, w2.ravel(), jnp.zeros(MLP_OUT)])

  def init(key):
    kt, ks, kx = jax.random.split(key, 3)
    teacher = draw(kt)
    x_eval = jax.random.normal(kx, (MLP_EVAL, MLP_IN))
    return (teacher, x_eval, forward(teacher, x_eval)), draw(ks)

  def loss(instance, theta):
    _, x_eval, y_eval = instance
    return 0.5 * jnp.mean(jnp.sum((forward(theta, x_eval) - y_eval) ** 2, axis=-1))

  def oracle(instance, key):
    teacher = instance[0]
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (setup.batch, MLP_IN))
    y = forward(teacher, x) + setup.noise * jax.random.normal(ke, (setup.batch, MLP_OUT))
    return lambda theta: 0.5 * jnp.mean(jnp.sum((forward(theta, x) - y) ** 2, axis=-1))

  return Problem(sum(sizes), init, oracle, loss, 10)


def make_problem(setup: Setup) -> Problem:
  """The black box named by ``setup.problem``."""
  problems = {"regression": regression_problem, "mlp": mlp_problem}
  if setup.problem not in problems:
    raise ValueError(f"--problem must be 'regression' or 'mlp', got {setup.problem!r}")
  return problems[setup.problem](setup)


def hessian_trace(problem: Problem, setup: Setup, probes: int = 8) -> float:
  """Hutchinson estimate of tr ∇²loss(θ_0) on seed 0: E[vᵀHv], v Rademacher."""
  instance, theta0 = problem.init(jax.random.key(0))
  grad = jax.grad(lambda t: problem.loss(instance, t))

  def one(key):
    v = optim.rademacher_like(key, theta0)
    return jnp.vdot(v, jax.jvp(grad, (theta0,), (v,))[1])

  return float(jnp.mean(jax.lax.map(one, jax.random.split(jax.random.key(1), probes))))


def _unit(key: jax.Array, dim: int) -> jax.Array:
  v = jax.random.normal(key, (dim,))
  return v / jnp.linalg.norm(v)


def surrogate_gradient(problem: Problem, setup: Setup, instance, theta, guide_key, k) -> jax.Array:
  """g̃_k = ∇E(θ_k) + ‖∇E(θ_k)‖ (b·u + n·v_k): u fixed by ``guide_key``, v_k fresh at step k."""
  grad = jax.grad(lambda t: problem.loss(instance, t))(theta)
  bias = _unit(jax.random.fold_in(guide_key, 0), problem.dim)
  noise = _unit(jax.random.fold_in(jax.random.fold_in(guide_key, 1), k), problem.dim)
  return grad + jnp.linalg.norm(grad) * (setup.guide_bias * bias + setup.guide_noise * noise)
