"""Black-box evaluations needed to reach a target loss: ours vs SPSA vs SPSA-GC vs ES.

Two black boxes with a known optimum, both in ``--dim`` ≈ 10⁴ dimensions:

* ``regression`` (default): the noisy quadratic model of a linear regression (Zhang et al.,
  NeurIPS 2019). Hessian Λ = diag(j^-p), optimum θ* ∈ {±1}^D, and each call returns the loss
  of one minibatch, E(θ) + s·zᵀ√Λ(θ − θ*), z ~ N(0, I) fresh per step (gradient noise s²Λ).
  Progress is the excess risk E(θ) = ½ (θ − θ*)ᵀΛ(θ − θ*), known in closed form.
* ``mlp``: a tanh MLP student fitted to a teacher of the same shape through the minibatch
  squared error only (the teacher's weights are a global optimum, loss 0). Progress is the
  error on a fixed held-out input set.

Both probes of a step see the same minibatch (as the trainer's two perturbed anonymizers see
the same utility batch). The progress measure is monitoring only and costs no oracle call. A run
reaches the target at the first checked step k with loss(θ_k) ≤ target·loss(θ_0); its cost is
k × (evaluations per step): 2 for SPSA, SPSA-GC and ours (one perturbation pair), 2n for
antithetic ES with n directions. A run that never gets there is censored at the budget.

Fair tuning: every method's step size a is chosen on the same log₂ grid (extended by the same
rule when a method's best lies on an edge) by the median calls over *tuning* seeds; the tables
report fresh *evaluation* seeds at the chosen a. All methods share α = 0.602, γ = 0.101,
A = o = ``--stability`` × (budget steps) and c (ES: σ = c). Ours and SPSA use Spall's gains,
SPSA-GC BlackVIP's (the same formula with o for A).

The guided estimator (``anonymax.optim.guided``) has two rows: ``guided (history)`` spans its
subspace with its own last estimates (no information beyond the calls) and, with ``--guide``,
``guided (surrogate)`` with the surrogate gradients g̃_k handed to every method's ``ask``
(benchmarks/zo_problems.py: the true gradient plus a fixed bias and fresh noise, as in the
Guided ES paper's experiments; the other methods ignore it).

Run (the last printed line is ``spsa_over_ours=<ratio> spsagc_over_ours=<ratio>
spsa_over_guided_history=<ratio>``, and with ``--guide`` also ``spsa_over_guided=<ratio>
spsagc_over_guided=<ratio>``)::

  python benchmarks/zo_calls.py --quick                   # < 1 min on 2 CPU cores
  python benchmarks/zo_calls.py                           # full, with the (m, d, γ, b) table
  python benchmarks/zo_calls.py --guide --no-sensitivity  # with the surrogate-guided row
  python benchmarks/zo_calls.py --problem mlp --no-sensitivity

Findings and the exact commands behind them are in ``benchmarks/zo_calls.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from zo_problems import (  # benchmarks/zo_problems.py, beside this script
  Setup,
  hessian_trace,
  make_problem,
  surrogate_gradient,
)

from anonymax import optim

METHODS = ("spsa", "spsa_gc", "es", "ours", "guided_history")
GUIDED = "guided"  # the surrogate-guided row, with --guide
LABELS = {
  "spsa": "SPSA", "spsa_gc": "SPSA-GC", "es": "ES", "ours": "ours",
  "guided_history": "guided (history)", GUIDED: "guided (surrogate)",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class History:
  """Critical-history settings of ours (Eqs. 8–10); the paper's defaults."""

  memory_size: int = 5
  decay: float = 0.9
  gamma: float = 0.5
  b: float = 1.0
  selection: str = "critical"
  adjust_direction: bool = True
  adjust_step: bool = True


def _cos(u: jax.Array, v: jax.Array) -> jax.Array:
  nu, nv = jnp.linalg.norm(u), jnp.linalg.norm(v)
  return jnp.where((nu > 0) & (nv > 0), jnp.vdot(u, v) / (nu * nv + 1e-30), 0.0)


def _pearson(mx, my, mxx, myy, mxy) -> jax.Array:
  """Pearson correlation from the running means of x, y, x², y², xy (0 if a variance is 0)."""
  vx, vy = mxx - mx**2, myy - my**2
  ok = (vx > 1e-12) & (vy > 1e-12)
  return jnp.where(ok, (mxy - mx * my) / jnp.sqrt(jnp.where(ok, vx * vy, 1.0)), 0.0)


def estimator_for(method: str, setup: Setup) -> optim.ZOEstimator:
  """``method``'s ask/tell estimator, chosen by the optimizer factory as for the trainer."""
  pairs = setup.es_directions if method == "es" else 1
  config = {"zo_method": method, "num_samples": pairs}
  if method in ("guided_history", GUIDED):
    source = "history" if method == "guided_history" else "guide"
    config.update(zo_method="guided", guided={"source": source})
  return optim.make_optimizer(config).estimator


def make_runner(method: str, setup: Setup, history: History = History()):
  """Builds a jitted ``run(a, seeds [S], max_calls) -> dict of [S] arrays``.

  Each seed is one independent optimisation (vmapped) with its own problem instance; the loop is
  a ``lax.while_loop`` over chunks of ``check_every`` steps that stops once every run has hit the
  target, diverged or spent ``max_calls`` (≤ the budget; a smaller cap prunes hopeless grid
  points). A run that misses the target counts as ``setup.budget`` calls whatever its cap. At
  each check it also records cos(ĝ_k, ∇L), cos(update_k, ∇L), I_k, and for ours cos(mean C_g,
  ∇L) and the age of the entries of C_g (averages over the checks).
  """
  if method not in (*METHODS, GUIDED):
    raise ValueError(f"method must be one of {(*METHODS, GUIDED)}, got {method!r}")
  if method == GUIDED and not setup.guide:
    raise ValueError("the surrogate-guided method needs Setup.guide (--guide)")
  problem = make_problem(setup)
  estimator = estimator_for(method, setup)
  per_step, every = estimator.num_evaluations, problem.check_every
  big_a = setup.stability * (setup.budget // per_step)
  # Unit gains multiplied by the (traced) grid value a: the schedules validate a > 0 eagerly.
  gc = method == "spsa_gc"
  lr_unit = (optim.blackvip_learning_rate if gc else optim.spall_learning_rate)(1.0, big_a, 0.602)
  c_sched = (optim.blackvip_perturbation if gc else optim.spall_perturbation)(setup.c, 0.101)
  if method == "ours":
    transform = optim.critical_history(**dataclasses.asdict(history))
  else:
    transform = optim.spsa_gc(setup.beta) if method == "spsa_gc" else optax.identity()

  def run_one(a, seed, max_calls):
    key = jax.random.key(seed)
    instance, theta0 = problem.init(jax.random.fold_in(key, 0))
    run_key, guide_key = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    loss0 = problem.loss(instance, theta0)
    max_chunks = max_calls // (per_step * every)

    def step(k, inner):
      theta, (est_state, opt_state), _ = inner
      kb, kd = jax.random.split(jax.random.fold_in(run_key, k))
      loss_fn = problem.oracle(instance, kb)
      extra = {}
      if setup.guide:  # every method is handed g̃_k; only the guided one reads it
        extra["guide"] = surrogate_gradient(problem, setup, instance, theta, guide_key, k)
      probes, asked = estimator.ask(kd, theta, est_state, scale=c_sched(k), **extra)
      g_hat, est_state = estimator.tell(est_state, jax.vmap(loss_fn)(probes), asked)
      hist_mean, hist_age = jnp.zeros_like(theta), jnp.zeros(())
      if method == "ours":
        # C_g as Eq. 9 reads it (before ĝ_k may enter) and how long ago its entries were made.
        hist_mean = optim.history_mean(opt_state)
        present = jnp.arange(history.memory_size) < opt_state.count
        ages = jnp.where(present, (k + 1 - opt_state.steps).astype(jnp.float32), 0.0)
        hist_age = jnp.sum(ages) / jnp.maximum(opt_state.count, 1)
      update, new_state = transform.update(g_hat, opt_state, theta)
      indicator = new_state.indicator if method == "ours" else jnp.zeros(())
      last = (theta, g_hat, update, hist_mean, hist_age, indicator)
      return theta - a * lr_unit(k) * update, (est_state, new_state), last

    def chunk(carry):
      j, theta, opt_state, _, _, stats = carry
      zeros = (theta, theta, theta, theta, jnp.zeros(()), jnp.zeros(()))
      theta, opt_state, last = jax.lax.fori_loop(
        j * every, (j + 1) * every, step, (theta, opt_state, zeros)
      )
      theta_prev, g_hat, update, hist_mean, hist_age, indicator = last
      grad = jax.grad(lambda t: problem.loss(instance, t))(theta_prev)
      value = problem.loss(instance, theta)
      hit = value <= setup.target * loss0
      bad = ~jnp.isfinite(value) | (value > 100 * loss0)  # hopeless: stop early
      # ‖ĝ_k‖ relative to its typical size √D‖∇L‖: the information Eq. 8 selects on.
      cos_hat = _cos(g_hat, grad)
      rel_norm = jnp.linalg.norm(g_hat) / (jnp.sqrt(problem.dim) * jnp.linalg.norm(grad) + 1e-30)
      stats = stats + jnp.stack(
        [cos_hat, _cos(update, grad), indicator, indicator**2, _cos(hist_mean, grad), cos_hat**2]
        + [indicator * cos_hat, rel_norm, rel_norm**2, rel_norm * cos_hat, hist_age]
      )
      return j + 1, theta, opt_state, hit, bad, stats

    def cond(carry):
      j, _, _, hit, bad, _ = carry
      return (j < max_chunks) & ~hit & ~bad

    opt_state = (estimator.init(theta0), transform.init(theta0))
    init = (jnp.zeros((), jnp.int32), theta0, opt_state, False, False, jnp.zeros(11))
    j, theta, _, hit, bad, stats = jax.lax.while_loop(cond, chunk, init)
    mean = stats / jnp.maximum(j, 1)
    return {
      "calls": jnp.where(hit, j * every * per_step, setup.budget),
      "hit": hit,
      "diverged": bad,
      "final": jnp.where(bad, jnp.inf, problem.loss(instance, theta) / loss0),
      "cos_hat": mean[0],
      "cos_update": mean[1],
      "i_mean": mean[2],
      "i_std": jnp.sqrt(jnp.maximum(mean[3] - mean[2] ** 2, 0.0)),
      "cos_hist": mean[4],
      # Within-run correlations with cos(ĝ_k, ∇L): does I_k, or ‖ĝ_k‖, tell a good estimate
      # from a bad one?
      "corr_i_cos": _pearson(mean[2], mean[0], mean[3], mean[5], mean[6]),
      "corr_norm_cos": _pearson(mean[7], mean[0], mean[8], mean[5], mean[9]),
      "hist_age": mean[10],
    }

  return jax.jit(jax.vmap(run_one, (None, 0, None)))


def _score(out: dict) -> tuple[float, float]:
  # Median calls (ties broken by the mean), then the median final loss: when every point is
  # censored the final loss still shows which side of the grid to extend.
  calls, final = np.asarray(out["calls"]), np.asarray(out["final"])
  return float(np.median(calls) + 1e-3 * np.mean(calls)), float(np.median(final))


def tune(run, a_grid: np.ndarray, seeds: np.ndarray, budget: int, max_extensions: int = 3):
  """Picks a on the log₂ grid by median calls over ``seeds``; extends the grid at an edge.

  The same rule applies to every method. Grid points run from the centre outwards, each with a
  cap of 1.25 × the best median so far (a point whose runs miss the target by then has a larger
  median and cannot win: the choice is the same as without the cap). If the best a is the
  smallest or largest grid point (or every point diverged), two more points (×2 apart) are
  added beyond that edge (below the grid if diverged), at most ``max_extensions`` times.

  Returns:
    ``(best_a, {a: (median calls, median final loss ratio)})`` for each grid point tried
    (calls ≥ budget: censored or pruned).
  """
  scores: dict[float, tuple[float, float]] = {}

  def try_points(points):
    for a in points:
      best = min(scores.values(), default=(budget, 0.0))[0]
      cap = min(budget, int(1.25 * best) + 2)
      scores[float(a)] = _score(run(np.float32(a), seeds, np.int32(cap)))

  grid = [float(a) for a in a_grid]
  centre = np.log2(np.sqrt(grid[0] * grid[-1]))
  try_points(sorted(grid, key=lambda a: abs(np.log2(a) - centre)))
  for _ in range(max_extensions):
    tried = sorted(scores)
    best = min(scores, key=scores.get)
    diverged = not np.isfinite(scores[best][1])  # every point tried blew up
    if tried[0] < best < tried[-1] and not diverged:
      break
    if best == tried[0] or diverged:
      try_points([tried[0] / 2, tried[0] / 4])
    else:
      try_points([tried[-1] * 2, tried[-1] * 4])
  return min(scores, key=scores.get), scores


class Row(NamedTuple):
  """One table row: a method (or variant) at one a on the evaluation seeds."""

  name: str
  a: float
  calls: np.ndarray
  hit: np.ndarray
  diag: dict


def evaluate(name: str, run, a: float, seeds: np.ndarray, budget: int) -> Row:
  """Runs one a on the evaluation seeds with the full budget."""
  out = jax.tree.map(np.asarray, run(np.float32(a), seeds, np.int32(budget)))
  return Row(name, a, out["calls"], out["hit"], out)


def median_calls(row: Row) -> tuple[float, bool]:
  """Median calls over seeds and whether that median is censored (≥ budget)."""
  censored = np.sum(~row.hit) >= (len(row.hit) + 1) // 2
  return float(np.median(row.calls)), bool(censored)


def format_table(rows: list[Row], budget: int) -> str:
  """Markdown table: median calls (IQR), reached/seeds and the estimator diagnostics."""
  lines = [
    "| method | a | median calls | IQR | reached | cos(ĝ,∇L) | cos(step,∇L) | cos(C̄_g,∇L)"
    " | age of C_g | I_k mean±sd | corr(I_k, cos ĝ) | corr(‖ĝ‖, cos ĝ) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    med, cens = median_calls(r)
    q1, q3 = np.percentile(r.calls, [25, 75])
    d = {k: float(np.mean(v)) for k, v in r.diag.items()}
    lines.append(
      f"| {r.name} | {r.a:.3g} | {f'≥ {budget}' if cens else f'{med:.0f}'} | {q1:.0f}–{q3:.0f}"
      f" | {int(r.hit.sum())}/{len(r.hit)} | {d['cos_hat']:.4f} | {d['cos_update']:.4f}"
      f" | {d['cos_hist']:.4f} | {d['hist_age']:.1f} | {d['i_mean']:.3f}±{d['i_std']:.3f}"
      f" | {d['corr_i_cos']:+.2f} | {d['corr_norm_cos']:+.2f} |"
    )
  return "\n".join(lines)


def ratio(base: Row, ours: Row) -> tuple[float, str]:
  """median calls(base) ÷ median calls(ours), with '≥'/'≤'/'?' when a median is censored."""
  mb, cb = median_calls(base)
  mo, co = median_calls(ours)
  tag = "≥" if cb and not co else ("≤" if co and not cb else ("?" if cb and co else ""))
  return mb / mo, tag


def sensitivity_variants(quick: bool) -> list[tuple[str, History]]:
  """One-at-a-time variations of (m, d, γ, b) around the paper's values, plus Table 7."""
  base = History()
  latest = ("latest m (no selection)", dataclasses.replace(base, selection="latest"))
  if quick:
    return [latest]
  out = [(f"m={m}", dataclasses.replace(base, memory_size=m)) for m in (1, 20)]
  out += [(f"d={d}", dataclasses.replace(base, decay=d)) for d in (0.5, 1.0)]
  out += [(f"γ={g}", dataclasses.replace(base, gamma=g)) for g in (0.2, 0.8)]
  out += [(f"b={b}", dataclasses.replace(base, b=b)) for b in (0.5, 1.5)]
  # selection="none" ("w/o history gradient") is plain SPSA, already in the main table.
  return out + [
    latest,
    ("no direction adj.", dataclasses.replace(base, adjust_direction=False)),
    ("no step adj. (1+I_k→1)", dataclasses.replace(base, adjust_step=False)),
  ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  """Command-line flags; sizes default by --quick."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="small problem, grid and budget (< 1 min)")
  p.add_argument("--problem", default="regression", choices=("regression", "mlp"))
  p.add_argument("--dim", type=int, help="parameters (default 10000; 1000 with --quick)")
  p.add_argument("--seeds", type=int, help="seeds for tuning and, separately, for evaluation")
  p.add_argument("--spectrum", type=float, default=1.0, help="regression: p in λ_j = j^-p")
  p.add_argument("--noise", type=float, default=0.1, help="regression: s; mlp: label noise σ")
  p.add_argument("--batch", type=int, default=16, help="mlp: inputs per oracle call")
  p.add_argument("--target", type=float, default=0.5, help="target loss ÷ initial loss")
  p.add_argument("--budget", type=int, help="oracle calls per run (censoring)")
  p.add_argument("--stability", type=float, default=0.1, help="A = o = this × budget steps")
  p.add_argument("--c", type=float, default=0.005, help="perturbation c (SPSA), σ (ES)")
  p.add_argument("--beta", type=float, default=0.9, help="SPSA-GC momentum β")
  p.add_argument("--es-directions", type=int, default=4, help="antithetic ES directions n")
  p.add_argument("--no-sensitivity", action="store_true", help="skip the (m, d, γ, b) table")
  p.add_argument(
    "--guide",
    action="store_true",
    help="hand each method a biased, noisy surrogate gradient; adds the surrogate-guided row",
  )
  p.add_argument("--guide-bias", type=float, default=1.0, help="the guide's fixed bias ÷ ‖∇E‖")
  p.add_argument("--guide-noise", type=float, default=1.0, help="the guide's fresh noise ÷ ‖∇E‖")
  args = p.parse_args(argv)
  args.dim = args.dim or (1000 if args.quick else 10000)
  args.seeds = args.seeds or (3 if args.quick else 5)
  args.budget = args.budget or (6000 if args.quick else 30000)
  for name in ("dim", "seeds", "budget", "batch", "es_directions"):
    if getattr(args, name) < 1:
      raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
  for name in ("c", "stability"):
    if not getattr(args, name) > 0:
      raise ValueError(f"--{name} must be > 0, got {getattr(args, name)}")
  if not 0 < args.target < 1:
    raise ValueError(f"--target must be in (0, 1), got {args.target}")
  return args


def main(argv: list[str] | None = None) -> dict:
  """Tunes and compares the four methods, prints the tables and the ratio line."""
  args = parse_args(argv)
  setup = Setup(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Setup)})
  problem = make_problem(setup)
  tune_seeds = np.arange(args.seeds, dtype=np.uint32)
  eval_seeds = np.arange(1000, 1000 + args.seeds, dtype=np.uint32)
  # SPSA's largest stable first step on a quadratic is a_1 ≈ 1/tr H, i.e. a ≈ (A + 1)^α / tr H;
  # the grid spans that point widely (×2 apart) and is the same for every method.
  tr = hessian_trace(problem, setup)
  centre = 2.0 ** np.round(np.log2((args.stability * args.budget / 2 + 1) ** 0.602 / tr))
  a_grid = centre * 2.0 ** (np.arange(-3, 2) if args.quick else np.arange(-4, 3))
  print(
    f"# {args.problem}: {problem.dim} parameters, tr H(θ0)≈{tr:.3g}, noise={args.noise},"
    f" target={args.target}·L(θ0), budget={args.budget} calls, {args.seeds} tuning +"
    f" {args.seeds} evaluation seeds, a grid {a_grid[0]:.3g}..{a_grid[-1]:.3g} (×2)"
  )
  start = time.time()
  rows, tuned, runners = {}, {}, {}
  methods = (*METHODS, GUIDED) if args.guide else METHODS
  for method in methods:
    run = runners[method] = make_runner(method, setup)
    a, scores = tune(run, a_grid, tune_seeds, args.budget)
    tuned[method] = scores
    rows[method] = evaluate(LABELS[method], run, a, eval_seeds, args.budget)
    shown = " ".join(
      f"{g:.3g}:{'-' if scores[g][0] >= args.budget else f'{scores[g][0]:.0f}'}"
      for g in sorted(scores)
    )
    print(f"# tuned {LABELS[method]:8s} a*={a:.3g}; median calls per a ('-': pruned): {shown}")
  print("\n## Calls to reach the target (evaluation seeds, each method at its own tuned a)\n")
  print(format_table([rows[m] for m in methods], args.budget))
  # The paper gives every method standard SPSA gains; this is what that protocol measures, at
  # SPSA's tuned a and at an under-tuned a (a*/8) where a larger effective step pays off.
  for factor, what in ((1, "SPSA's tuned a*"), (1 / 8, "SPSA's a*/8, under-tuned")):
    a_same = rows["spsa"].a * factor
    same = [evaluate(LABELS[m], runners[m], a_same, eval_seeds, args.budget) for m in METHODS]
    print(f"\n## Same gains for every method (a = {a_same:.3g} = {what}; not re-tuned)\n")
    print(format_table(same, args.budget))
  if not args.no_sensitivity:
    # Fewer seeds and a narrower grid (a*_ours/4 .. 4a*_ours, extended by the same rule) keep
    # the full run within minutes; the reference row is re-run on these seeds.
    n = min(args.seeds, 3)
    s_tune, s_eval = tune_seeds[:n], eval_seeds[:n]
    s_grid = rows["ours"].a * 2.0 ** np.arange(-2, 3)
    print(
      f"\n## Ours, one change at a time from m=5, d=0.9, γ=0.5, b=1 (a re-tuned each on"
      f" {s_grid[0]:.3g}..{s_grid[-1]:.3g}; {n} tuning + {n} evaluation seeds)\n"
    )
    sens, variants = [], sensitivity_variants(args.quick)
    for name, hist in [("ours (m=5, d=0.9, γ=0.5, b=1)", History())] + variants:
      run = make_runner("ours", setup, hist)
      a, _ = tune(run, s_grid, s_tune, args.budget)
      sens.append(evaluate(name, run, a, s_eval, args.budget))
    print(format_table(sens, args.budget))
  (r_spsa, t_spsa), (r_gc, t_gc), (r_es, t_es) = (
    ratio(rows[m], rows["ours"]) for m in ("spsa", "spsa_gc", "es")
  )
  print(
    f"\n# median calls, baseline ÷ ours: SPSA {t_spsa}{r_spsa:.2f}, SPSA-GC {t_gc}{r_gc:.2f},"
    f" ES {t_es}{r_es:.2f} (paper: 136/24≈5.7, 80/24≈3.3, 161/24≈6.7);"
    f" {time.time() - start:.0f} s"
  )
  ratios = {"spsa_over_ours": r_spsa, "spsagc_over_ours": r_gc}
  ratios["spsa_over_guided_history"] = ratio(rows["spsa"], rows["guided_history"])[0]
  if args.guide:
    ratios["spsa_over_guided"] = ratio(rows["spsa"], rows[GUIDED])[0]
    ratios["spsagc_over_guided"] = ratio(rows["spsa_gc"], rows[GUIDED])[0]
  print(" ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
  return {"rows": rows, "tuned": tuned, **ratios}


if __name__ == "__main__":
  main(sys.argv[1:])
