r"""Oracle calls to a validation target with the real trainer: SPSA, SPSA-GC, ours and guided.

`benchmarks/zo_calls.py` compares the zeroth-order methods on synthetic problems; this runs the
real training step (`anonymax.experiment`, the pipelined step, the reference black box) on scenes
v2 and counts the black box's training calls until the anonymizer reaches a fixed target on the
*validation* split:

* the task: the anonymizer starts painting most of every image (`mask_init_logit`, m ≈ 0.73),
  so the black box's utility loss is high, and is trained utility-first (λ = (0.999, 0.001)):
  the zeroth-order estimate does the work, the exact privacy gradient barely weighs. From there
  one coordinate (the mask's bias) goes most of the way to the target, whatever the method;
  `--start=privacy_only` starts instead from a privacy-only anonymizer (`--start_steps` exact
  privacy steps, no oracle call) trained with the run's own trade-off (`--weights`,
  `--utility_ideal`, `--privacy_loss`): the way back to utility is to uncover what the questions
  need while the privacy term keeps the private regions painted;
* the target: the black box's mean NLL on the first `--validation` validation examples,
  anonymized, at most L_0 − p (L_0 − L_raw) (`--progress` p = ½: half the way from the start L_0
  to raw images),
  checked every `--eval_every` steps (those calls are not counted);
* fair tuning: each method's step size a is chosen from one grid (`--grid`, extended ×3 beyond
  an edge where the best a lies, by the same rule for every method) by its median calls to the
  target over the tuning seeds (0..T−1); the next `--seeds` seeds are run with that a and
  reported, median.

The task, the run and the tuning rule are `anonymax.calls_to_target`'s, which the experiment
suites also run for every Table 6 row (`launch/experiments.py`).

* `guided` is `zo_method="guided"` (anonymax.optim.guided) with its subspace spanned by the
  gradients of the trainer's online surrogate of the black box (`source="guide"`,
  anonymax.online_surrogate: a small CNN fitted on the answers already paid for; the config
  variant zo=guided_surrogate, not zo=guided);
  `guided_history` spans it with its own past estimates instead (`source="history"`); any other
  `zo_method` (`es`, `cma_es`, `reinforce`) can be added with `--methods`.

  python benchmarks/zo_task.py --plot=calls.png > log   # ~30 min on 2 cores
  python benchmarks/zo_task.py --smoke                   # tiny sizes (the tests)
  python benchmarks/zo_task.py --from_log=log --plot=calls.png   # again from a run's output

One JSON line per run; the last line is `spsa_over_ours=<x> spsagc_over_ours=<y>
spsa_over_guided=<u> spsagc_over_guided=<v>` (median calls of each ÷ median calls of ours or
guided; a run that misses the target in `--steps` counts as the calls of `--steps` steps, and the
line then names the methods that missed).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence

METHODS = ("spsa", "spsa_gc", "ours", "guided")
# Method names that are not a zo_method alone: the guided estimator with its two guide sources.
GUIDED = {"guided": "guide", "guided_history": "history"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    prog="python benchmarks/zo_task.py",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
  p.add_argument("--methods", default=",".join(METHODS), help="comma-separated zo_method names")
  p.add_argument("--grid", default="0.05,0.15,0.45,1.35", help="step sizes a, comma-separated")
  p.add_argument("--tune_seeds", type=int, default=2, help="tuning seeds (0..T-1)")
  p.add_argument("--seeds", type=int, default=4, help="reported seeds (T..T+N-1)")
  p.add_argument(
    "--extensions", type=int, default=2,
    help="times the grid may be extended (×3) beyond an edge where the best a lies",
  )  # fmt: skip
  p.add_argument("--steps", type=int, default=150, help="most steps per run")
  p.add_argument("--eval_every", type=int, default=5, help="steps between validation checks")
  p.add_argument("--validation", type=int, default=128, help="validation examples checked")
  p.add_argument("--batch_size", type=int, default=8, help="utility samples per step")
  p.add_argument("--mask_init_logit", type=float, default=1.0, help="the starting mask's logit")
  p.add_argument(
    "--progress", type=float, default=0.5,
    help="the target: this fraction of the way from the starting validation NLL to raw images'",
  )  # fmt: skip
  p.add_argument(
    "--start_noise", type=float, default=0.0,
    help="start from θ_0 + σ ε on the perturbed parameters (σ; use with --mask_init_logit=-3): "
    "a way back with many directions (anonymax/calls_to_target.py)",
  )  # fmt: skip
  p.add_argument(
    "--start", choices=("painted", "privacy_only"), default="painted",
    help="painted: the mask of --mask_init_logit, trained utility-first; privacy_only: where "
    "--start_steps privacy-only steps left the anonymizer, trained with the run's own trade-off "
    "(--weights, --utility_ideal, --privacy_loss), so uncovering everything costs privacy",
  )  # fmt: skip
  p.add_argument("--start_steps", type=int, default=200, help="privacy-only steps (--start)")
  p.add_argument(
    "--weights", default=None,
    help="λ (utility,privacy) of the run, e.g. 0.9,0.1 (default: the config's; --start=privacy_only)",
  )  # fmt: skip
  p.add_argument(
    "--utility_ideal", type=float, default=None, help="z*_utility of the run (default: the config's)"
  )  # fmt: skip
  p.add_argument(
    "--privacy_loss", default=None, choices=("neg_entropy", "bce_to_half", "neg_bce"),
    help="the run's privacy loss (default: the config's)",
  )  # fmt: skip
  p.add_argument(
    "--plain", action="store_true",
    help="plain steps θ − a_k d_k (optim.precondition.kind=none) instead of Adam's: a step "
    "size that cannot jump to the target in a few steps, so the direction's quality counts",
  )  # fmt: skip
  p.add_argument(
    "--replay", type=int, default=None,
    help="the online surrogate's replay memory, in past steps (guided; default: the config's)",
  )  # fmt: skip
  p.add_argument(
    "--fit_steps", type=int, default=None,
    help="the online surrogate's Adam steps per training step (guided; default: the config's)",
  )  # fmt: skip
  p.add_argument("--plot", default=None, help="write validation NLL against calls here (PNG)")
  p.add_argument(
    "--from_log", default=None,
    help="summarise (and --plot) the JSON lines a previous run printed instead of training",
  )  # fmt: skip
  p.add_argument("--data_dir", default=None, help="TFDS data folder (default: TFDS's)")
  p.add_argument("--cache_dir", default=None, help="the reference black box's cache folder")
  args = p.parse_args(argv)
  args.methods = [m for m in args.methods.split(",") if m]
  args.grid = [float(a) for a in args.grid.split(",") if a]
  if not args.grid or any(a <= 0 for a in args.grid):
    p.error(f"--grid: step sizes must be > 0, got {args.grid}")
  if not args.start_noise >= 0:
    p.error(f"--start_noise must be ≥ 0, got {args.start_noise}")
  if not 0.0 < args.progress <= 1.0:
    p.error(f"--progress must be in (0, 1], got {args.progress}")
  if args.weights is not None:
    try:
      args.weights = tuple(float(w) for w in args.weights.split(","))
    except ValueError:
      p.error(f"--weights: two numbers (utility,privacy), got {args.weights!r}")
    if len(args.weights) != 2 or min(args.weights) < 0 or sum(args.weights) <= 0:
      p.error(f"--weights: two non-negative numbers (utility,privacy), got {args.weights}")
  if args.start_steps < 1:
    p.error(f"--start_steps must be ≥ 1, got {args.start_steps}")
  if args.replay is not None and args.replay < 0:
    p.error(f"--replay must be ≥ 0, got {args.replay}")
  if args.fit_steps is not None and args.fit_steps < 1:
    p.error(f"--fit_steps must be ≥ 1, got {args.fit_steps}")
  if min(args.eval_every, args.steps, args.seeds, args.tune_seeds) < 1 or args.extensions < 0:
    p.error("--steps, --eval_every, --seeds and --tune_seeds must be at least 1, --extensions 0")
  return args


def base_config(args, method: str):
  """scenes v2 with `method`; the task's settings are `calls_to_target.task_config`'s."""
  from anonymax.configs import synthetic  # noqa: PLC0415

  c = synthetic.get_config("scenes=v2" + (",smoke" if args.smoke else ""))
  c.optim.zo_method = "guided" if method in GUIDED else method
  if method in GUIDED:
    c.optim.guided.source = GUIDED[method]
  if args.plain:
    c.optim.precondition.kind = "none"
  for field in ("replay", "fit_steps"):
    if getattr(args, field) is not None:
      c.online_surrogate[field] = getattr(args, field)
  if args.weights is not None:
    c.optim.scalarization.weights = args.weights
  if args.utility_ideal is not None:
    c.optim.scalarization.ideal = (args.utility_ideal, c.optim.scalarization.ideal[1])
  if args.privacy_loss is not None:
    c.privacy_loss = args.privacy_loss
  if args.data_dir:
    c.data.data_dir = args.data_dir
  if args.cache_dir:
    c.oracle.reference.cache_dir = args.cache_dir
  return c


def task(args):
  """The task's sizes from the flags."""
  from anonymax.calls_to_target import Task  # noqa: PLC0415

  return Task(
    steps=args.steps, eval_every=args.eval_every, validation=args.validation,
    batch_size=args.batch_size, mask_init_logit=args.mask_init_logit, progress=args.progress,
    start_noise=args.start_noise, start=args.start, start_steps=args.start_steps,
  )  # fmt: skip


def plot_curves(reported: dict[str, list[dict]], path: str) -> None:
  """Validation NLL against oracle calls, one panel line per reported run (the paper's Fig. 4)."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, (method, runs) in enumerate(reported.items()):
    for j, r in enumerate(runs):
      calls = [c for _, c, _ in r["curve"]]
      losses = [loss for _, _, loss in r["curve"]]
      label = f"{method} (a={r['a']:g})" if j == 0 else None
      ax.plot(calls, losses, color=colours[i % len(colours)], alpha=0.8, lw=1.2, label=label)
  first = next(iter(reported.values()))[0]
  ax.axhline(first["raw_nll"], color="grey", ls=":", lw=1, label="raw images")
  ax.axhline(first["target_nll"], color="black", ls="--", lw=1, label="target")
  ax.set_xlabel("oracle calls (training)")
  ax.set_ylabel("black box's validation NLL, anonymized")
  ax.set_title("Zeroth-order methods on the trainer (each to its target)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def read_log(path: str) -> tuple[dict, dict, dict]:
  """(chosen a, reported runs, tuning runs) per method from a previous run's JSON lines."""
  reported: dict[str, list[dict]] = {}
  tuned: dict[str, list[dict]] = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line.startswith("{"):
        continue
      record = json.loads(line)
      phase = record.pop("phase", None)
      if phase in ("tune", "report"):
        (reported if phase == "report" else tuned).setdefault(record["method"], []).append(record)
  if not reported:
    raise SystemExit(f"--from_log: {path} has no reported runs")
  return {m: runs[0]["a"] for m, runs in reported.items()}, reported, tuned


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  if args.from_log:
    chosen, reported, tuned = read_log(args.from_log)
    return summarise(args, chosen, reported, tuned)
  from anonymax import black_boxes, calls_to_target  # noqa: PLC0415

  first = base_config(args, args.methods[0])
  oracle = black_boxes.make_oracle(first)
  validation = calls_to_target.Validation(first, oracle, args.validation)
  chosen, reported, tuned = {}, {}, {}

  def show(phase, record):
    print(json.dumps({"phase": phase} | record), flush=True)

  for method in args.methods:
    out = calls_to_target.measure(
      base_config(args, method), task(args), oracle, validation, grid=args.grid,
      tune_seeds=range(args.tune_seeds),
      report_seeds=range(args.tune_seeds, args.tune_seeds + args.seeds),
      extensions=args.extensions, on_run=show, label=method,
    )  # fmt: skip
    chosen[method], reported[method], tuned[method] = out["chosen_a"], out["runs"], out["tuning"]
  return summarise(args, chosen, reported, tuned)


def summarise(args, chosen: dict, reported: dict, tuned: dict) -> dict:
  """Prints the medians and the ratio line (and writes --plot); returns everything."""
  medians = {m: statistics.median(r["calls_counted"] for r in runs) for m, runs in reported.items()}
  missed = {m for m, runs in reported.items() if any(r["calls_to_target"] is None for r in runs)}
  print(json.dumps({"chosen_a": chosen, "median_calls": medians, "missed_target": sorted(missed)}))
  ratios = {}
  for ref in ("ours", "guided"):
    if ref not in medians:
      continue
    for m, key in (("spsa", f"spsa_over_{ref}"), ("spsa_gc", f"spsagc_over_{ref}")):
      if m in medians:
        ratios[key] = medians[m] / medians[ref]
  line = " ".join(f"{k}={v:.2f}" for k, v in ratios.items())
  if missed:
    line += f" (missed the target, counted at --steps: {','.join(sorted(missed))})"
  if args.plot:
    plot_curves(reported, args.plot)
    print(f"# wrote {args.plot}")
  print(line)
  return {
    "chosen_a": chosen, "median_calls": medians, "ratios": ratios, "runs": reported,
    "tuning": tuned, "line": line,
  }  # fmt: skip


if __name__ == "__main__":
  main()
