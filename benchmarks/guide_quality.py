r"""How well does the online surrogate's guide agree with the black box's true utility gradient?

The reference black box is a JAX network in this process, so its utility loss has a true
gradient that a real black box would never show: g*_k = ∇_θ mean_b L(f_A(x_b; θ_k)) over the
perturbed parameters (`ReferenceOracle.differentiable_nll`). This trains the surrogate-guided
estimator on `benchmarks/zo_task.py`'s task (scenes v2, the painted start, utility first; one
seed and step size) and prints at every step, over the perturbed subset,

  cos(g̃_k, g*_k)   the online surrogate's guide (anonymax.online_surrogate), what Guided ES
                   spans its subspace with;
  cos(ĝ_k, g*_k)   one SPSA estimate at the same θ_k from the exact loss (a fresh Rademacher Δ,
                   two extra evaluations not sent to the oracle): its expected |cos| is about
                   1/√D, the baseline a guide has to beat;
  ρ_k              the share ‖Uᵀg*_k‖²/‖g*_k‖² of the true gradient in the subspace the
                   estimator samples this step (this guide and the k − 1 before it), against
                   k/D for a random subspace of the same rank: what Guided ES needs (the sign
                   of a guide does not matter to a span).

`benchmarks/zo_calls.py --guide` shows what a guide of cosine 0.58 buys on a synthetic problem
(40× fewer calls than SPSA); this measures what the trainer's own guide reaches. The last line is
`guide_abs_cosine_median=<x> spsa_abs_cosine_median=<y> subspace_share_median=<ρ>
random_share=<k/D> alpha_median=<α> agreement_median=<ρ̂> dims=<D>` (medians over the steps
after the first `--warmup`; α is the share of full-space pairs the estimator chose from its
measured agreement ρ̂, the estimator's own reading of subspace_share from its pairs). The surrogate's
settings can be changed with --width, --learning_rate, --diff_weight, --level_weight, --replay
(past steps refitted) and --fit_steps (Adam steps per training step).

  python benchmarks/guide_quality.py              # 2 to 3 min on 2 cores
  python benchmarks/guide_quality.py --smoke      # tiny sizes (the tests)
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    prog="python benchmarks/guide_quality.py",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
  p.add_argument("--steps", type=int, default=60, help="training steps")
  p.add_argument("--warmup", type=int, default=10, help="steps left out of the medians")
  p.add_argument("--a", type=float, default=0.45, help="step size (zo_task's tuned a for guided)")
  p.add_argument("--seed", type=int, default=2, help="training seed")
  p.add_argument("--batch_size", type=int, default=8, help="utility samples per step")
  p.add_argument("--width", type=int, default=None, help="config.online_surrogate.width")
  p.add_argument("--learning_rate", type=float, default=None, help="... .learning_rate")
  p.add_argument("--diff_weight", type=float, default=None, help="... .diff_weight")
  p.add_argument("--level_weight", type=float, default=None, help="... .level_weight")
  p.add_argument("--replay", type=int, default=None, help="... .replay (past steps refitted)")
  p.add_argument("--fit_steps", type=int, default=None, help="... .fit_steps (Adam steps a step)")
  p.add_argument("--data_dir", default=None, help="TFDS data folder (default: TFDS's)")
  p.add_argument("--cache_dir", default=None, help="the reference black box's cache folder")
  args = p.parse_args(argv)
  if args.steps < 1 or args.batch_size < 1 or args.warmup < 0:
    p.error("--steps and --batch_size must be at least 1, --warmup at least 0")
  if not args.a > 0:
    p.error(f"--a must be > 0, got {args.a}")
  if args.warmup >= args.steps:
    p.error(f"--warmup ({args.warmup}) must be below --steps ({args.steps})")
  return args


def _cosine(a, b) -> float:
  import numpy as np  # noqa: PLC0415

  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  denom = np.linalg.norm(a) * np.linalg.norm(b)
  return float(a @ b / denom) if denom > 0 else float("nan")


def _subspace_share(rows, g) -> tuple[float, int]:
  """(ρ = ‖Uᵀg‖²/‖g‖², k'): the share of g in the span of `rows` [k, D], U its orthonormal
  basis (rows that are zero or dependent dropped, as the estimator's QR does)."""
  import numpy as np  # noqa: PLC0415

  rows = np.asarray(rows, np.float64)
  rows = rows[np.linalg.norm(rows, axis=1) > 0]
  if rows.size == 0:
    return 0.0, 0
  u, r = np.linalg.qr(rows.T)
  diag = np.abs(np.diag(r))
  u = u[:, diag > 1e-6 * diag.max()]
  g = np.asarray(g, np.float64)
  return float(np.sum((u.T @ g) ** 2) / np.sum(g**2)), int(u.shape[1])


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from anonymax import black_boxes, calls_to_target, experiment  # noqa: PLC0415
  from anonymax.configs import synthetic  # noqa: PLC0415
  from anonymax.optim.flat_subset import covered_leaves, flatten  # noqa: PLC0415
  from anonymax.step import parts  # noqa: PLC0415
  from anonymax.step.state import step_key  # noqa: PLC0415

  base = synthetic.get_config("scenes=v2,zo=guided_surrogate" + (",smoke" if args.smoke else ""))
  if args.data_dir:
    base.data.data_dir = args.data_dir
  if args.cache_dir:
    base.oracle.reference.cache_dir = args.cache_dir
  for field in ("width", "learning_rate", "diff_weight", "level_weight", "replay", "fit_steps"):
    if getattr(args, field) is not None:
      base.online_surrogate[field] = getattr(args, field)
  task = calls_to_target.Task(steps=args.steps, batch_size=args.batch_size)
  config = calls_to_target.task_config(base, task, a=args.a, seed=args.seed)
  oracle = black_boxes.make_oracle(config)
  exp = experiment.build(config, oracle=oracle)
  surrogate, anonymizer = exp.online_surrogate, exp.anonymizer
  state = exp.init_state()
  flags = covered_leaves(config.optim.perturb or None, state.params, "guide_quality")

  nll = oracle.differentiable_nll(exp.utility.queries)
  leaves, treedef = jax.tree.flatten(state.params)

  def with_subset(params, vector):
    """θ with its perturbed leaves replaced by `vector`'s entries."""
    out, at = [], 0
    for leaf, f in zip(jax.tree.leaves(params), flags):
      if f:
        out.append(vector[at : at + leaf.size].reshape(leaf.shape).astype(leaf.dtype))
        at += leaf.size
      else:
        out.append(leaf)
    return jax.tree.unflatten(treedef, out)

  def true_loss(params, x, rows):
    return jnp.mean(nll(anonymizer.apply({"params": params}, x), rows))

  @jax.jit
  def measure(params, zo_state, opt_state, rng, step, u_visuals, rows):
    """(g*, g̃, one exact-loss SPSA estimate, L) over the perturbed subset at θ_k."""
    x = parts.to_unit(u_visuals)
    loss, g_true = jax.value_and_grad(true_loss)(params, x, rows)
    g_true = flatten(g_true, flags)
    guide = flatten(surrogate.guide(anonymizer, params, zo_state, x), flags)
    c_k = exp.optimizer.perturbation_scale(opt_state)
    key = jax.random.fold_in(step_key(rng, step), 17)
    theta = flatten(params, flags)
    delta = jax.random.rademacher(key, theta.shape, jnp.float32)
    plus = true_loss(with_subset(params, theta + c_k * delta), x, rows)
    minus = true_loss(with_subset(params, theta - c_k * delta), x, rows)
    return g_true, guide, (plus - minus) / (2 * c_k) * delta, loss

  step_fn = exp.train_step()
  records = []
  for k in range(args.steps):
    u_visuals, u_ids, *rest = exp.batch(k)
    g_true, guide, g_spsa, loss = measure(
      state.params, state.zo_state, state.opt_state, state.rng, state.step, u_visuals, u_ids
    )
    # The subspace this step's ask spans: the new guide and the latest k − 1 before it.
    est_state = state.zo_state.estimator
    previous = jax.device_get(est_state.basis)[: max(0, int(est_state.filled))]
    rows = np.concatenate([np.asarray(guide)[None], previous])[: est_state.basis.shape[0]]
    share, rank = _subspace_share(rows, g_true)
    record = {
      "step": k,
      "guide_cosine": _cosine(guide, g_true),
      "spsa_cosine": _cosine(g_spsa, g_true),
      "subspace_share": share,
      "random_share": rank / int(g_true.shape[0]),
      "true_loss": float(loss),
    }
    state, metrics = step_fn(state, u_visuals, u_ids, *rest)
    record["surrogate_fit"] = float(metrics["surrogate_fit"])
    record["alpha"] = float(metrics["guided_alpha"])  # the share of full-space pairs it chose
    # ρ̂: the estimator's own measure of subspace_share, from its pairs (None until measured).
    rho_hat = float(metrics["guided_agreement"])
    record["agreement"] = rho_hat if np.isfinite(rho_hat) else None
    records.append(record)
    print(json.dumps(record), flush=True)
  kept = records[args.warmup :]
  medians = {
    key: statistics.median(f(r) for r in kept)
    for key, f in (
      ("guide_abs_cosine_median", lambda r: abs(r["guide_cosine"])),
      ("spsa_abs_cosine_median", lambda r: abs(r["spsa_cosine"])),
      ("subspace_share_median", lambda r: r["subspace_share"]),
      ("random_share", lambda r: r["random_share"]),
      ("alpha_median", lambda r: r["alpha"]),
    )
  }
  measured = [r["agreement"] for r in kept if r["agreement"] is not None]
  medians["agreement_median"] = statistics.median(measured) if measured else float("nan")
  line = " ".join(f"{k}={v:.4f}" for k, v in medians.items()) + f" dims={int(g_true.shape[0])}"
  print(line)
  return {"records": records, "medians": medians, "dims": int(g_true.shape[0]), "line": line}


if __name__ == "__main__":
  main()
