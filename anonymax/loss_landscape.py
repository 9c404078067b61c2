"""The paper's Fig. 3: SPSA and SPSA + critical history on a 2-D loss landscape.

An illustration, not a benchmark: both methods start from the same top-left point θ_0 and run the
project's own optimizer (:func:`anonymax.optim.make_optimizer`, zo_method ``"spsa"`` and
``"ours"``) with the same gains, the same seed and hence the same perturbations Δ_k and the same
oracle noise at every step, on a toy loss chosen so that SPSA's steps visibly zig-zag.

The loss is a rotated, ill-conditioned quadratic valley (floor at angle φ, curvature ratio κ):

  u = R(φ)ᵀ(θ − θ*),   L(θ) = ½(u₁² + κ u₂²),   φ = 30°, κ = 10, θ* = (1, −0.5), θ_0 = (−2, 2),

seen only through a noisy black box, as the MLLM of the real problem is: every evaluation returns

  L̃(θ) = L(θ) + σ ε,   ε ~ N(0, 1), drawn afresh for each of the 2q evaluations of a step.

Step k (k = 0, 1, …; the trainer's order, :mod:`anonymax.step.reference`, without the second
objective, which this toy does not have):

  key_k = fold_in(key(seed), k);  (k_Δ, k_ε) = split(key_k)
  ĝ_k = (L̃(θ_k + c_k Δ_k) − L̃(θ_k − c_k Δ_k)) / (2c_k) · Δ_k^{-1}    Eq. 7, Δ_k from k_Δ
  G_k = ĝ_k                       (SPSA)    or   (1 + I_k)·g̃_k   (ours, Eqs. 8-10)
  θ_{k+1} = θ_k − a_k G_k,   a_k = a / (A + k + 1)^α,   c_k = c / (k + 1)^γ

with A, α, γ, q and the history's m, d, γ, b at :data:`anonymax.optim.DEFAULT_CONFIG`'s values.
In 2-D a Rademacher Δ_k is one of the four diagonals (±1, ±1), so every SPSA step is diagonal:
on a valley that is not diagonal the path zig-zags across the floor. Which method gets within r
first depends on the gains and the seed (with the defaults, a = 0.1, ours does in seeds 0-4; at
a = 0.3 it varies from seed to seed); (1 + I_k) ∈ (0.5, 1.5) also rescales ours' steps.

  python -m anonymax.loss_landscape --out=landscape.png [--steps=300 --seed=0 --a=0.1 ...]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from anonymax import optim

TARGET = (1.0, -0.5)  # θ*, the minimiser (L(θ*) = 0)
START = (-2.0, 2.0)  # θ_0, top-left of the plotted window
ANGLE_DEG = 30.0  # φ: the direction of the valley floor
CONDITION = 10.0  # κ: curvature across the floor / along it
METHODS = {"spsa": "SPSA (Eq. 7)", "ours": "ours: SPSA + critical history (Eqs. 8-10)"}
COLORS = {"spsa": "orange", "ours": "red"}


def loss(theta: jax.typing.ArrayLike) -> jax.Array:
  """The noise-free L(θ) = ½(u₁² + κ u₂²), u = R(φ)ᵀ(θ − θ*), for θ of shape [..., 2]."""
  phi = math.radians(ANGLE_DEG)
  d = jnp.asarray(theta, jnp.float32) - jnp.asarray(TARGET, jnp.float32)
  # Rᵀd: coordinates along the floor (u₁) and across it (u₂).
  u1 = math.cos(phi) * d[..., 0] + math.sin(phi) * d[..., 1]
  u2 = -math.sin(phi) * d[..., 0] + math.cos(phi) * d[..., 1]
  return 0.5 * (u1**2 + CONDITION * u2**2)


def _run(method: str, *, steps: int, seed: int, a: float, c: float, noise: float) -> np.ndarray:
  """θ_0, …, θ_steps of one method ([steps + 1, 2]), through the trainer's optimizer stages."""
  opt = optim.make_optimizer({"zo_method": method, "gains": {"a": a, "c": c}})
  est = opt.estimator
  start = jnp.asarray(START, jnp.float32)

  def step(carry, k):
    theta, state, zo_state = carry
    # The same key_k for both methods: same Δ_k and same noise draws, only the update differs.
    key_delta, key_noise = jax.random.split(jax.random.fold_in(jax.random.key(seed), k))
    sets, asked = est.ask(key_delta, theta, zo_state, scale=opt.perturbation_scale(state))
    # The black box: one noisy answer per parameter set (2q of them), zero-mean noise.
    answers = loss(sets) + noise * jax.random.normal(key_noise, (est.num_evaluations,))
    g_hat, zo_state = est.tell(zo_state, answers, asked)
    # opt.utility is the identity for "spsa" and the critical history for "ours"; with a single
    # objective there is nothing to scalarize, so the step is θ − a_k·G_k (Eq. 12 with d_k = G_k).
    g_utility, utility_state = opt.utility.update(g_hat, state.utility, theta)
    theta = theta - opt.learning_rate(state) * g_utility
    state = opt.next_state(state, utility_state, state.scalarization, state.precondition)
    return (theta, state, zo_state), theta

  @jax.jit
  def run():
    carry = (start, opt.init(start), est.init(start))
    _, thetas = jax.lax.scan(step, carry, jnp.arange(steps))
    return jnp.concatenate([start[None], thetas])

  return np.asarray(run())


def _check(steps: int, a: float, c: float, noise: float, radius: float) -> None:
  if isinstance(steps, bool) or int(steps) != steps or steps < 1:
    raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
  for name, value in (("a", a), ("c", c), ("radius", radius)):
    if not (math.isfinite(value) and value > 0):
      raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
  if not (math.isfinite(noise) and noise >= 0):
    raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")


def trajectories(
  *,
  steps: int = 300,
  seed: int = 0,
  a: float = 0.1,
  c: float = 0.1,
  noise: float = 0.05,
  radius: float = 0.25,
) -> dict[str, Any]:
  """Runs plain SPSA and ours from θ_0 with the same gains, seed and oracle noise.

  Args:
    steps: the number of steps K ≥ 1 of each method.
    seed: the PRNG seed of Δ_k and the oracle noise (shared by both methods).
    a, c: the gains a_k = a/(A + k)^α and c_k = c/k^γ (k = 1, 2, …), the same for both.
    noise: σ ≥ 0, the standard deviation of the oracle's additive noise on each loss value.
    radius: r > 0; a method reaches the target at the first k with ‖θ_k − θ*‖ ≤ r.

  Returns:
    A dict: ``paths`` (method → float array [K + 1, 2], θ_0 first), ``losses`` (method → the
    noise-free L(θ_k), [K + 1]), ``steps_to_target`` (method → the first such k, or None),
    ``start`` and ``target`` ([2]), ``radius``, ``labels`` (method → legend name) and
    ``settings`` (the arguments). Methods are ``"spsa"`` and ``"ours"``.

  Raises:
    ValueError: for an argument out of range.
  """
  _check(steps, a, c, noise, radius)
  settings = dict(steps=int(steps), seed=int(seed), a=a, c=c, noise=noise, radius=radius)
  target = np.asarray(TARGET, np.float32)
  paths, losses, reached = {}, {}, {}
  for method in METHODS:
    path = _run(method, steps=int(steps), seed=int(seed), a=a, c=c, noise=noise)
    paths[method] = path
    losses[method] = np.asarray(loss(path))
    inside = np.flatnonzero(np.linalg.norm(path - target, axis=1) <= radius)
    reached[method] = int(inside[0]) if inside.size else None
  return {
    "paths": paths,
    "losses": losses,
    "steps_to_target": reached,
    "start": np.asarray(START, np.float32),
    "target": target,
    "radius": float(radius),
    "labels": dict(METHODS),
    "settings": settings,
  }


def describe(result: dict[str, Any], method: str) -> str:
  """One line: when ``method`` came within r of θ*, and its final noise-free loss."""
  r, k = result["radius"], result["steps_to_target"][method]
  if k is None:
    where = f"not within r={r:g} of the target in {result['settings']['steps']} steps"
  else:
    where = f"within r={r:g} of the target at step {k}"
  final = result["losses"][method][-1]
  return f"{result['labels'][method]}: {where} (final true loss {final:.4f})"


def figure(path: str, result: dict[str, Any]) -> None:
  """Writes the contour plot of L with both paths, θ_0 and θ* (a green star), as a PNG."""
  import matplotlib  # noqa: PLC0415 — only the figure needs it

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  points = np.concatenate([*result["paths"].values(), result["target"][None]])
  lo, hi = points.min(axis=0), points.max(axis=0)
  pad = 0.1 * (hi - lo).max() + 0.2
  xs = np.linspace(lo[0] - pad, hi[0] + pad, 200)
  ys = np.linspace(lo[1] - pad, hi[1] + pad, 200)
  grid = np.asarray(loss(np.stack(np.meshgrid(xs, ys), axis=-1)))
  # Log-spaced levels: the floor of the valley and the steep walls both get contours.
  levels = np.geomspace(1e-3, grid.max(), 16)

  fig, ax = plt.subplots(figsize=(7.5, 7.5))
  filled = ax.contourf(xs, ys, grid, levels=levels, cmap="Blues_r", norm="log", alpha=0.8)
  ax.contour(xs, ys, grid, levels=levels, colors="k", linewidths=0.3, alpha=0.4)
  fig.colorbar(filled, ax=ax, label="noise-free loss L(θ)", format="%.3g")
  for method, p in result["paths"].items():
    k = result["steps_to_target"][method]
    reach = f"within r at step {k}" if k is not None else f"not within r in {len(p) - 1} steps"
    ax.plot(p[:, 0], p[:, 1], "-", color=COLORS[method], lw=1.2, marker=".", ms=2.5,
            label=f"{result['labels'][method]}: {reach}")  # fmt: skip
    ax.plot(*p[-1], "o", color=COLORS[method], mec="black", ms=6)  # where it ended
  circle = plt.Circle(result["target"], result["radius"], fill=False, ls="--", color="green")
  ax.add_patch(circle)
  ax.plot(*result["start"], "s", color="black", ms=8, label="start θ₀ (both)")
  ax.plot(*result["target"], "*", color="limegreen", mec="darkgreen", ms=18, label="target θ*")
  s = result["settings"]
  ax.set_title(
    "Illustration on a 2-D toy loss (not a tuned comparison)\n"
    f"same gains a={s['a']:g}, c={s['c']:g}, seed {s['seed']} and oracle noise σ={s['noise']:g} "
    f"for both; {s['steps']} steps",
    fontsize=10,
  )
  ax.set_xlabel("θ₁")
  ax.set_ylabel("θ₂")
  ax.set_aspect("equal")
  handles, _ = ax.get_legend_handles_labels()
  circle.set_label(f"r = {result['radius']:g} around θ* ('reached')")
  # Below the axes, so that it never hides a path.
  ax.legend(handles=[*handles, circle], loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
  """CLI: runs both methods, prints one line per method, writes the PNG."""
  p = argparse.ArgumentParser(
    prog="python -m anonymax.loss_landscape",
    description="The paper's Fig. 3: SPSA and SPSA + critical history (anonymax.optim) from the "
    "same start, with the same gains and seed, on a noisy 2-D rotated quadratic valley.",
    epilog="An illustration, not a tuned comparison: which method gets there first depends on "
    "--a and --seed (e.g. at --a=0.3 it varies from seed to seed).",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument("--out", required=True, default=argparse.SUPPRESS, help="the PNG to write")
  p.add_argument("--steps", type=int, default=300, help="steps of each method (>= 1)")
  p.add_argument("--seed", type=int, default=0, help="seed of the perturbations and the noise")
  p.add_argument("--a", type=float, default=0.1, help="step-size gain a of a_k = a/(A+k)^α")
  p.add_argument("--c", type=float, default=0.1, help="perturbation gain c of c_k = c/k^γ")
  p.add_argument("--noise", type=float, default=0.05, help="σ of the oracle's noise (>= 0)")
  p.add_argument("--radius", type=float, default=0.25, help="'reached' radius around θ*")
  args = p.parse_args(argv)
  try:
    _check(args.steps, args.a, args.c, args.noise, args.radius)
  except ValueError as e:
    p.error(f"--{e}")  # each message of _check starts with the argument's name
  result = trajectories(
    steps=args.steps, seed=args.seed, a=args.a, c=args.c, noise=args.noise, radius=args.radius
  )
  for method in METHODS:
    print(describe(result, method))
  figure(args.out, result)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
