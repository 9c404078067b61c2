r"""Oracle calls to a validation target with the real trainer: SPSA, SPSA-GC and ours (Table 6).

`benchmarks/zo_calls.py` compares the zeroth-order methods on synthetic problems; this runs the
real training step (`anonymax.experiment`, the pipelined step, the reference black box) on scenes
v2 and counts the black box's training calls until the anonymizer reaches a fixed target on the
*validation* split:

* the task: the anonymizer starts painting most of every image (`mask_init_logit`, m ≈ 0.73),
  so the black box's utility loss is high, and is trained utility-first (λ = (0.999, 0.001)):
  the zeroth-order estimate does the work, the exact privacy gradient barely weighs;
* the target: the black box's mean NLL on the first `--validation` validation examples,
  anonymized, at most L_0 − p (L_0 − L_raw) (`--progress` p = ½: half the way from the start L_0
  to raw images),
  checked every `--eval_every` steps (those calls are not counted);
* fair tuning: each method's step size a is chosen from one grid (`--grid`) on seed 0 by its
  calls to the target; the other seeds (1, 2, ...) are run with that a and reported, median.

  python benchmarks/zo_task.py                 # ~30 min on 2 cores
  python benchmarks/zo_task.py --smoke         # tiny sizes (the tests)

One JSON line per run; the last line is `spsa_over_ours=<x> spsagc_over_ours=<y>` (median calls
of each ÷ median calls of ours; a run that misses the target in `--steps` counts as the calls of
`--steps` steps, and the line then names the methods that missed).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence

METHODS = ("spsa", "spsa_gc", "ours")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    prog="python benchmarks/zo_task.py",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
  p.add_argument("--methods", default=",".join(METHODS), help="comma-separated zo_method names")
  p.add_argument("--grid", default="0.005,0.01,0.02", help="step sizes a, comma-separated")
  p.add_argument("--seeds", type=int, default=3, help="reported seeds (1..N); seed 0 tunes")
  p.add_argument("--steps", type=int, default=200, help="most steps per run")
  p.add_argument("--eval_every", type=int, default=10, help="steps between validation checks")
  p.add_argument("--validation", type=int, default=128, help="validation examples checked")
  p.add_argument("--batch_size", type=int, default=8, help="utility samples per step")
  p.add_argument("--mask_init_logit", type=float, default=1.0, help="the starting mask's logit")
  p.add_argument(
    "--progress", type=float, default=0.5,
    help="the target: this fraction of the way from the starting validation NLL to raw images'",
  )  # fmt: skip
  p.add_argument("--data_dir", default=None, help="TFDS data folder (default: TFDS's)")
  p.add_argument("--cache_dir", default=None, help="the reference black box's cache folder")
  args = p.parse_args(argv)
  args.methods = [m for m in args.methods.split(",") if m]
  args.grid = [float(a) for a in args.grid.split(",") if a]
  if not args.grid or any(a <= 0 for a in args.grid):
    p.error(f"--grid: step sizes must be > 0, got {args.grid}")
  if not 0.0 < args.progress <= 1.0:
    p.error(f"--progress must be in (0, 1], got {args.progress}")
  if args.eval_every < 1 or args.steps < 1 or args.seeds < 1:
    p.error("--steps, --eval_every and --seeds must be at least 1")
  return args


def task_config(args, method: str, a: float, seed: int):
  """scenes v2, utility first, a mask painting most of the image at the start."""
  from anonymax.configs import synthetic  # noqa: PLC0415

  c = synthetic.get_config("scenes=v2" + (",smoke" if args.smoke else ""))
  c.optim.zo_method = method
  c.optim.gains.a = a
  c.optim.scalarization.weights = (0.999, 0.001)
  c.optim.scalarization.ideal = (0.0, None)  # utility is always the objective Eq. 11 selects
  c.anonymizer.mask_init_logit = args.mask_init_logit
  c.batch_size = args.batch_size
  c.references = ()
  c.total_steps = args.steps
  c.seed = seed
  if args.data_dir:
    c.data.data_dir = args.data_dir
  if args.cache_dir:
    c.oracle.reference.cache_dir = args.cache_dir
  return c


class Validation:
  """The black box's mean NLL on the first examples of the validation split, anonymized."""

  def __init__(self, config, oracle, size: int):
    from anonymax import experiment  # noqa: PLC0415

    split = experiment.load_split(config, "validation")
    n = min(size, len(split))
    self.visuals, self.queries, self.oracle = split.visuals[:n], split.queries[:n], oracle

  def loss(self, visuals) -> float:
    import numpy as np  # noqa: PLC0415

    out = self.oracle.query(np.asarray(visuals), self.queries)
    return float(np.mean(np.asarray(out.losses, np.float64)))


def run(args, method: str, a: float, seed: int, oracle, validation) -> dict:
  """One training run until the target or `--steps`; returns calls to the target and the curve."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from anonymax import experiment  # noqa: PLC0415
  from anonymax.types import to_uint8  # noqa: PLC0415

  config = task_config(args, method, a, seed)
  exp = experiment.build(config, oracle=oracle)
  apply = jax.jit(lambda p, x: exp.anonymizer.apply({"params": p}, x))

  def val_loss(params) -> float:
    x = validation.visuals.astype(np.float32) / 255.0
    return validation.loss(to_uint8(np.asarray(apply(params, x))))

  state = exp.init_state()
  start, raw = val_loss(state.params), validation.loss(validation.visuals)
  target = start - args.progress * (start - raw)
  step_fn = exp.train_step()
  curve, reached = [(0, 0, start)], None
  batch = exp.batch(0)
  for step in range(args.steps):
    nxt = exp.batch(step + 1) if step + 1 < args.steps else None
    state, _ = step_fn(state, *batch, next_visuals=None if nxt is None else nxt[0])
    batch = nxt
    if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
      loss = val_loss(state.params)
      calls = int(state.oracle_samples)
      curve.append((step + 1, calls, loss))
      if not np.isfinite(loss):
        break
      if loss <= target:
        reached = calls
        break
  max_calls = 2 * config.optim.num_samples * config.batch_size * args.steps
  return {
    "method": method,
    "a": a,
    "seed": seed,
    "calls_to_target": reached,
    "calls_counted": reached if reached is not None else max_calls,
    "start_nll": start,
    "raw_nll": raw,
    "target_nll": target,
    "curve": curve,
  }


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  from anonymax import black_boxes  # noqa: PLC0415

  first = task_config(args, args.methods[0], args.grid[0], 0)
  oracle = black_boxes.make_oracle(first)
  validation = Validation(first, oracle, args.validation)
  chosen, reported, tuned = {}, {}, {}
  for method in args.methods:
    tuning = [run(args, method, a, 0, oracle, validation) for a in args.grid]
    for r in tuning:
      print(json.dumps({"phase": "tune"} | r), flush=True)
    tuned[method] = tuning
    best = min(tuning, key=lambda r: (r["calls_counted"], r["a"]))
    chosen[method] = best["a"]
    runs = [run(args, method, best["a"], s, oracle, validation) for s in range(1, args.seeds + 1)]
    for r in runs:
      print(json.dumps({"phase": "report"} | r), flush=True)
    reported[method] = runs
  medians = {m: statistics.median(r["calls_counted"] for r in runs) for m, runs in reported.items()}
  missed = {m for m, runs in reported.items() if any(r["calls_to_target"] is None for r in runs)}
  print(json.dumps({"chosen_a": chosen, "median_calls": medians, "missed_target": sorted(missed)}))
  ratios = {}
  if "ours" in medians:
    for m, key in (("spsa", "spsa_over_ours"), ("spsa_gc", "spsagc_over_ours")):
      if m in medians:
        ratios[key] = medians[m] / medians["ours"]
  line = " ".join(f"{k}={v:.2f}" for k, v in ratios.items())
  if missed:
    line += f" (missed the target, counted at --steps: {','.join(sorted(missed))})"
  print(line)
  return {
    "chosen_a": chosen, "median_calls": medians, "ratios": ratios, "runs": reported,
    "tuning": tuned, "line": line,
  }  # fmt: skip


if __name__ == "__main__":
  main()
