"""Oracle calls to a fixed validation target with the real trainer (the paper's Table 6 measure).

The task, for any run config (`task_config`):

* the anonymizer starts painting most of every image (`Task.mask_init_logit`, m ≈ 0.73 at 1.0),
  so the black box's utility loss starts high, and is trained utility first (λ = (0.999, 0.001),
  z*_utility = 0): the zeroth-order estimate does the work, the exact privacy gradient barely
  weighs. From that start one step that shrinks the mask goes most of the way, a nearly
  one-dimensional problem; with `Task.start_noise` σ > 0 the perturbed parameters start at
  θ_0 + σ ε instead (`noisy_start`; with a mask logit that paints little), a distortion whose
  way back has as many directions as there are perturbed parameters;
* with `Task.start="privacy_only"` the anonymizer starts instead where a privacy-only run of
  `Task.start_steps` steps (exact privacy gradients, no oracle call; `privacy_only_start`) left
  it and its reviewer, and is trained with the run config's own trade-off (its λ and z*): the
  way back to utility is to uncover what the questions need while the privacy term keeps the
  private regions painted, so uncovering everything (the mask's bias, one coordinate) costs
  privacy instead of being free. Each record then also has the anonymizer's mean absolute
  change of the validation images at the start and at the end (`change_start`, `change_end`),
  which shows whether a method got there by uncovering everything;
* the target: the black box's mean NLL on the first `Task.validation` validation examples,
  anonymized, at most L_0 − p (L_0 − L_raw) (`Task.progress` p: p = ½ is half the way from the
  start L_0 to raw images), checked every `Task.eval_every` steps (those calls are not counted);
* a run (`run`) counts the training calls (images sent) until the first check at or below the
  target; one that misses it in `Task.steps` steps is counted at the most calls it could make,
  2 q B · steps;
* fair tuning (`tune`): the step size a of every method is chosen from one grid, extended ×3
  beyond an edge where the best a lies, by the same rule for every method, from its median
  calls over the tuning seeds; the reported seeds then run with that a (`measure`).

`benchmarks/zo_task.py` runs it for several methods on scenes v2; the experiment suites
(`anonymax.suite_runner`) run it for every Table 6 row.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence

import numpy as np

from anonymax.types import STATUS_OK

# Utility first: the Tchebycheff weights and ideal point of the task (see the module docstring).
TASK_WEIGHTS = (0.999, 0.001)


# Where a run starts: the painting mask of `Task.mask_init_logit` ("painted"), or a privacy-only
# anonymizer ("privacy_only", `privacy_only_start`).
STARTS = ("painted", "privacy_only")


@dataclasses.dataclass(frozen=True)
class Task:
  """The task's sizes (the module docstring)."""

  steps: int = 150
  eval_every: int = 5
  validation: int = 128
  batch_size: int = 8
  mask_init_logit: float = 1.0
  progress: float = 0.5
  start_noise: float = 0.0
  start: str = "painted"
  start_steps: int = 200
  start_a: float = 0.02

  def __post_init__(self):
    if self.start not in STARTS:
      raise ValueError(f"start must be one of {', '.join(STARTS)}, got {self.start!r}")
    if self.start_steps < 1 or not self.start_a > 0:
      raise ValueError(f"start_steps must be ≥ 1 and start_a > 0: {self}")
    if not 0.0 < self.progress <= 1.0:
      raise ValueError(f"progress must be in (0, 1], got {self.progress}")
    if min(self.steps, self.eval_every, self.validation, self.batch_size) < 1:
      raise ValueError(f"steps, eval_every, validation and batch_size must be ≥ 1: {self}")
    if not self.start_noise >= 0:
      raise ValueError(f"start_noise must be ≥ 0, got {self.start_noise}")


def task_config(config, task: Task, *, a: float, seed: int):
  """A copy of the run `config` set up for the task, with step size `a` and training `seed`."""
  c = config.copy_and_resolve_references()
  c.optim.gains.a = float(a)
  if task.start == "painted":
    c.optim.scalarization.weights = TASK_WEIGHTS
    c.optim.scalarization.ideal = (0.0, None)  # utility is always the objective Eq. 11 selects
    c.anonymizer.mask_init_logit = task.mask_init_logit
  c.batch_size = task.batch_size
  c.references = ()
  c.total_steps = task.steps
  c.seed = int(seed)
  return c


class Validation:
  """The black box's mean NLL on the first `size` examples of the validation split, anonymized."""

  def __init__(self, config, oracle, size: int):
    from anonymax import experiment  # noqa: PLC0415

    split = experiment.load_split(config, "validation")
    n = min(size, len(split))
    self.visuals, self.queries, self.oracle = split.visuals[:n], split.queries[:n], oracle

  def loss(self, visuals) -> float:
    """The mean over the samples the black box scored (NaN when it scored none): a failed
    sample's loss is 0 by the oracle's contract and must not pull the mean down."""
    out = self.oracle.query(np.asarray(visuals), self.queries)
    ok = np.asarray(out.status) == STATUS_OK
    losses = np.asarray(out.losses, np.float64)
    return float(np.mean(losses[ok])) if ok.any() else float("nan")


def noisy_start(config, params, sigma: float):
  """θ_0 + σ ε on the perturbed parameters (config.optim.perturb), ε ~ N(0, I) from the run's
  seed: a start whose way back has as many directions as there are perturbed parameters."""
  import jax  # noqa: PLC0415

  from anonymax.optim.flat_subset import covered_leaves  # noqa: PLC0415

  flags = covered_leaves(config.optim.perturb or None, params, "start_noise")
  leaves, treedef = jax.tree.flatten(params)
  key = jax.random.fold_in(jax.random.key(int(config.seed)), 0x57A7)
  keys = jax.random.split(key, len(leaves))
  out = [
    leaf + sigma * jax.random.normal(k, leaf.shape, leaf.dtype) if f else leaf
    for leaf, f, k in zip(leaves, flags, keys)
  ]
  return jax.tree.unflatten(treedef, out)


# Privacy-only starts already trained in this process, by their config (each costs start_steps
# steps; every method and step size of a seed starts from the same one).
_PRIVACY_STARTS: dict[str, object] = {}


def privacy_only_start(config, task: Task, state, oracle):
  """`state` with the anonymizer and reviewer of a privacy-only run of `config`'s seed after
  `task.start_steps` steps at step size `task.start_a` (`config.objective = "privacy_only"`:
  θ_{k+1} = θ_k − a precondition(ρ h_k), no oracle call). The method's own optimizer and
  estimator states stay fresh. Cached per config in the process."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from anonymax import experiment  # noqa: PLC0415

  c = config.copy_and_resolve_references()
  c.objective = "privacy_only"
  c.optim.gains.a = float(task.start_a)
  c.total_steps = task.start_steps
  # What the privacy-only step does not read, so that every method shares one start.
  c.optim.zo_method = "spsa"
  if "guided" in c.optim:
    c.optim.guided.source = "history"
  key = json.dumps(c.to_dict(), sort_keys=True, default=str)
  if key not in _PRIVACY_STARTS:
    exp = experiment.build(c, oracle=oracle)
    start, step_fn = exp.init_state(), exp.train_step()
    for k in range(task.start_steps):
      start, _ = step_fn(start, *exp.batch(k))
    # Host copies: the training step donates its state's buffers.
    _PRIVACY_STARTS[key] = jax.device_get(
      (start.params, start.reviewer_vars, start.reviewer_opt_state)
    )
  params, reviewer_vars, reviewer_opt_state = jax.tree.map(jnp.array, _PRIVACY_STARTS[key])
  return state.replace(
    params=params, reviewer_vars=reviewer_vars, reviewer_opt_state=reviewer_opt_state
  )


def run(config, task: Task, oracle, validation: Validation, *, label: str | None = None) -> dict:
  """One training run of `config` (from `task_config`) until the target or `task.steps`.

  Returns {method (`label`, default config.optim.zo_method), a, seed, calls_to_target (None on
  a miss), calls_counted, start_nll, raw_nll, target_nll, change_start, change_end (the mean
  absolute change of the validation images), curve: [(step, calls, validation NLL), ...]}.
  """
  import jax  # noqa: PLC0415

  from anonymax import experiment  # noqa: PLC0415
  from anonymax.types import to_uint8  # noqa: PLC0415

  exp = experiment.build(config, oracle=oracle)
  apply = jax.jit(lambda p, x: exp.anonymizer.apply({"params": p}, x))

  x = validation.visuals.astype(np.float32) / 255.0

  def val_loss(params) -> float:
    return validation.loss(to_uint8(np.asarray(apply(params, x))))

  def change(params) -> float:
    """The anonymizer's mean absolute change of the validation images (in [0, 1])."""
    return float(np.mean(np.abs(np.asarray(apply(params, x)) - x)))

  state = exp.init_state()
  if task.start == "privacy_only":
    state = privacy_only_start(config, task, state, oracle)
  if task.start_noise > 0:
    state = state.replace(params=noisy_start(config, state.params, task.start_noise))
  change_start = change(state.params)
  start, raw = val_loss(state.params), validation.loss(validation.visuals)
  target = start - task.progress * (start - raw)
  step_fn = exp.train_step()
  curve = [(0, 0, start)]
  # A start already at raw images' loss (a noisy start can be) is at its target with no call.
  reached = 0 if start <= target else None
  batch = exp.batch(0)
  for step in range(task.steps if reached is None else 0):
    nxt = exp.batch(step + 1) if step + 1 < task.steps else None
    state, _ = step_fn(state, *batch, next_visuals=None if nxt is None else nxt[0])
    batch = nxt
    if (step + 1) % task.eval_every == 0 or step + 1 == task.steps:
      loss = val_loss(state.params)
      calls = int(state.oracle_samples)
      curve.append((step + 1, calls, loss))
      if not np.isfinite(loss):
        break
      if loss <= target:
        reached = calls
        break
  max_calls = 2 * config.optim.num_samples * config.batch_size * task.steps
  return {
    "method": label or config.optim.zo_method,
    "a": float(config.optim.gains.a),
    "seed": int(config.seed),
    "calls_to_target": reached,
    "calls_counted": reached if reached is not None else max_calls,
    "start_nll": start,
    "raw_nll": raw,
    "target_nll": target,
    "change_start": change_start,
    "change_end": change(state.params),
    "curve": curve,
  }


def tune(
  try_a: Callable[[float], list[dict]], grid: Sequence[float], extensions: int
) -> tuple[float, list[dict]]:
  """The a with the fewest median calls over the tuning seeds (ties: the smaller a).

  The same rule for every method: when the best a is the grid's largest (smallest) point, the
  grid is extended by ×3 (÷3) beyond it, at most ``extensions`` times.
  """
  scores, runs = {}, []

  def score(a):
    out = try_a(a)
    runs.extend(out)
    scores[a] = statistics.median(r["calls_counted"] for r in out)

  for a in grid:
    score(a)
  for _ in range(extensions):
    best = min(scores, key=lambda a: (scores[a], a))
    if best == max(scores):
      score(best * 3)
    elif best == min(scores):
      score(best / 3)
    else:
      break
  return min(scores, key=lambda a: (scores[a], a)), runs


def measure(
  config,
  task: Task,
  oracle,
  validation: Validation,
  *,
  grid: Sequence[float],
  tune_seeds: Sequence[int],
  report_seeds: Sequence[int],
  extensions: int,
  on_run: Callable[[str, dict], None] | None = None,
  label: str | None = None,
) -> dict:
  """Tunes a for `config`'s method on `tune_seeds`, then runs `report_seeds` with it.

  `on_run(phase, record)` ("tune" or "report") sees each run as it finishes; `label` names the
  method in the records. Returns {chosen_a, tuning: [runs], runs: [reported runs], median_calls}.
  """

  def one(a: float, seed: int, phase: str) -> dict:
    c = task_config(config, task, a=a, seed=seed)
    record = run(c, task, oracle, validation, label=label)
    if on_run is not None:
      on_run(phase, record)
    return record

  best, tuning = tune(lambda a: [one(a, s, "tune") for s in tune_seeds], grid, extensions)
  runs = [one(best, s, "report") for s in report_seeds]
  return {
    "chosen_a": best,
    "tuning": tuning,
    "runs": runs,
    "median_calls": statistics.median(r["calls_counted"] for r in runs),
  }
