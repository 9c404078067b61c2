"""The training loop: resume, step, log, checkpoint.

Everything a run needs comes from `anonymax.experiment.build`; one step is
`anonymax.step.pipelined` (the paper's Eqs. 7–12 as `anonymax.step.reference` writes them, with
the oracle's wait hidden). This module only runs steps:

  1. restore the latest checkpoint of the workdir, if any (the data position is the step);
  2. for each step: maybe restart the reviewer, run the step (handing it the next batch, whose
     perturbed anonymizations it prepares with the update), log every `log_every` steps;
  3. checkpoint every `checkpoint_every` steps, at the end, and when the oracle's budget is spent.

With several processes (`anonymax.distributed`) every process runs this loop on its rows of each
batch, with a black box of its own (`process_oracle`); they checkpoint together (orbax writes each
array once) and stop together when any one's budget is spent; only the primary writes
config.json, metrics.jsonl and TensorBoard events, and shows the progress bar.
"""

from __future__ import annotations

import logging
import os
import time

import jax
import numpy as np
from tqdm import tqdm

from anonymax import (
  anonymizer,
  black_boxes,
  checkpoint,
  distributed,
  experiment,
  metric_writers,
  reference_anonymizers,
  run_config,
)
from anonymax.oracles.base import Oracle
from anonymax.step.state import TrainState


def check_resumable(config, workdir: str) -> None:
  """A config that resumes a workdir must describe its run (`run_config.check_same_run`)."""
  path = os.path.join(workdir, run_config.CONFIG_FILE)
  if os.path.exists(path) and os.path.isdir(os.path.join(workdir, "checkpoints")):
    saved = run_config.load(workdir)
    run_config.check_same_run(config.copy_and_resolve_references(), saved, source=path)


def process_oracle(config, workdir: str) -> Oracle | None:
  """With several processes, this process's own black box (None with one: `experiment` builds
  it, and for an anonymizer trained without the black box, which asks no one).

  Each process scores its own rows of every step (`anonymax.step.process_shards`), so each has
  its black box: its cache and usage file in `distributed.process_workdir`, its share of every
  budget (`distributed.divide_budgets`). The primary builds first, so a reference black box is
  trained once and the others read its cache (give it a `config.oracle.reference.cache_dir` that
  every host sees).
  """
  if jax.process_count() == 1 or not experiment.needs_oracle(config):
    return None
  shared = config.copy_and_resolve_references()
  shared.oracle = distributed.divide_budgets(shared.oracle, jax.process_count())
  own_dir = distributed.process_workdir(workdir)
  return distributed.primary_first(lambda: black_boxes.make_oracle(shared, own_dir), "oracle")


def train_and_evaluate(config, workdir: str, *, oracle: Oracle | None = None) -> TrainState:
  """Trains (resuming from the latest checkpoint in `workdir`) and returns the final state.

  Args:
    config: an ml_collections config (see configs/synthetic.py).
    workdir: where checkpoints, metrics.jsonl and config.json go.
    oracle: the black box (this process's, with several); built from `config.oracle` when None
      (tests pass spies here).

  Raises:
    ValueError: one line naming a config field that is wrong, or that differs from the run
      being resumed in `workdir`.
    FloatingPointError: a loss became non-finite (the message names the field to change).
  """
  os.makedirs(workdir, exist_ok=True)
  check_resumable(config, workdir)
  if oracle is None:  # with several processes, each builds its own here
    oracle = process_oracle(config, workdir)
  exp = experiment.build(config, workdir=workdir, oracle=oracle)
  config = exp.config
  oracle = exp.oracle if exp.needs_oracle else None  # a privacy-only anonymizer asks no one
  primary = distributed.is_primary()
  if exp.mesh is not None:
    logging.info(
      "data parallel over %d devices of %d processes", exp.mesh.devices.size, jax.process_count()
    )

  # Restore into the state's own layout (replicated over the mesh, if any).
  mgr = checkpoint.manager(workdir)
  state = exp.init_state()
  restored = checkpoint.restore(mgr, state)
  if restored is not None:
    state, _ = restored
    logging.info("resumed from step %d", int(state.step))
  if primary:
    run_config.save(config, workdir)
  description = anonymizer.model_config(config)

  train_step = exp.train_step()
  restart = exp.reviewer_restart()
  # metrics.jsonl, and TensorBoard event files in workdir/tensorboard when tensorboardX is there.
  # Written by the primary alone; the other processes' writer writes nothing.
  writer = metric_writers.make_writer(
    workdir, tensorboard=config.get("tensorboard", "auto") if primary else False, jsonl=primary
  )

  def meta(state):
    # Every process calls this (checkpoints are collective); the counters are summed over them.
    return {
      "step": int(state.step),
      "oracle_samples": int(state.oracle_samples),
      "skipped": int(state.skipped),
      "oracle": oracle.name if oracle else None,
      "oracle_loss": oracle.loss if oracle else None,
      "oracle_stats": distributed.sum_over_processes(oracle.stats.as_dict()) if oracle else {},
      "processes": jax.process_count(),
      "config": config.to_dict(),
    }

  total, first = int(config.total_steps), int(state.step)
  num_train = len(exp.utility)
  bar = tqdm(
    total=total, initial=first, desc="train", dynamic_ncols=True, disable=None if primary else True
  )
  t_start = time.perf_counter()
  try:
    batch = exp.batch(first) if first < total else None
    for step in range(first, total):
      if config.reviewer.restart_every and step > 0 and step % config.reviewer.restart_every == 0:
        state = restart(state)
      # The next batch goes in too: the step computes its perturbed anonymizations along with
      # the update, and the next call uses them.
      next_batch = exp.batch(step + 1) if step + 1 < total else None
      state, metrics = train_step(
        state, *batch, next_visuals=None if next_batch is None else next_batch[0]
      )
      batch = next_batch
      done = step + 1
      bar.update(1)
      if done % config.log_every == 0 or done == total:
        oracle_s = exp.bridge.seconds if oracle else 0.0
        scalars = log_scalars(metrics, state, done, num_train, oracle_s, t_start)
        writer.write(done, scalars)
        bar.set_postfix(
          util=f"{scalars.get('l_mllm', float('nan')):.3f}",
          priv=f"{scalars['l_privacy']:.3f}",
          calls=scalars["oracle_samples"],
          per_sample=f"{scalars['calls_per_sample']:.1f}",
        )
      # Agreed by every process (each spends its own share), so that all of them stop here.
      exhausted = oracle is not None and distributed.any_process(oracle.exhausted)
      if done % config.checkpoint_every == 0 or done == total or exhausted:
        checkpoint.save(mgr, done, state, meta(state), description)
      if exhausted:
        logging.warning("oracle budget reached at step %d: checkpoint written, stopping", done)
        break
  finally:
    # Event files are flushed and their writer thread ended even when a step raises.
    bar.close()
    writer.close()
  return state


def log_scalars(metrics, state: TrainState, done: int, num_train: int, oracle_s, t_start) -> dict:
  """The step's metrics as floats, with the oracle counters; non-finite losses stop the run."""
  scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
  for k in ("l_mllm", "l_surrogate", "l_privacy"):
    if k in scalars and not np.isfinite(scalars[k]):
      raise FloatingPointError(f"{k} is {scalars[k]} at step {done}: lower config.optim.gains.a")
  samples = int(state.oracle_samples)
  scalars.update(
    oracle_samples=samples,
    calls_per_sample=samples / num_train,
    skipped=int(state.skipped),
    oracle_seconds=oracle_s,
    wall_seconds=time.perf_counter() - t_start,
  )
  return scalars


def train_with_references(config, workdir: str, *, oracle: Oracle | None = None) -> TrainState:
  """Trains the run of `config` in `workdir`, then each of its `config.references` in
  `<workdir>/references/<name>` (`anonymax.reference_anonymizers`); returns the run's state.

  Each one resumes on its own, so rerunning the command after a kill continues where it stopped.
  `oracle` (tests) replaces `config.oracle`'s black box for all of them.
  """
  names = reference_anonymizers.references_of(config)
  state = train_and_evaluate(config, workdir, oracle=oracle)
  for name in names:
    logging.warning("training the reference anonymizer %r", name)
    reference = reference_anonymizers.reference_config(config, name)
    reference_dir = reference_anonymizers.reference_workdir(workdir, name)
    if reference.get("surrogate") is not None and not reference.surrogate.get("cache_dir"):
      # The surrogate-model rows share one fitted utility model (fitted once, by the first).
      with reference.unlocked():
        reference.surrogate.cache_dir = os.path.dirname(reference_dir)
    train_and_evaluate(reference, reference_dir, oracle=oracle)
  return state
