"""Orbax checkpoints of the whole training state, so a killed run resumes to the same result.

One checkpoint holds four items:
  * ``state``: the `TrainState` pytree — anonymizer params, the optimizer state (critical-history ring
    included), the estimator's state, the reviewer (params, batch stats, optimizer state), the step,
    the RNG key data and the counters. The data position is the step itself
    (`pipeline.batch_indices` is a function of it).
  * ``meta``: JSON — the step, oracle counters and the config with secrets removed.
  * ``anonymizer``: the anonymizer's parameters θ alone, and ``anonymizer_config``: JSON — its
    model fields and what it was trained on. Together they restore the anonymizer without the
    data, the reviewer or the optimizer (`anonymax.anonymizer`).

One writer per directory (the trainer); evaluators open it read-only. With several processes
(`anonymax.distributed`) all of them save together and orbax writes each array once; the
standalone anonymizer restores in one process whatever number of processes wrote it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.sharding import SingleDeviceSharding

from anonymax.run_config import scrub_secrets

ITEMS = ("state", "meta", "anonymizer", "anonymizer_config")


def _handlers() -> dict[str, ocp.CheckpointHandler]:
  """Each item's handler, named up front so that a read-only manager can read items' metadata."""
  arrays, json = ocp.StandardCheckpointHandler, ocp.JsonCheckpointHandler
  return {"state": arrays(), "meta": json(), "anonymizer": arrays(), "anonymizer_config": json()}


def manager(
  workdir: str, *, max_to_keep: int = 2, read_only: bool = False
) -> ocp.CheckpointManager:
  """The CheckpointManager of `workdir/checkpoints` (items ``state`` and ``meta``)."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if read_only and not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoints in {directory}: train first (launch/train.py)")
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep,
    create=not read_only,
    read_only=read_only,
    # Synchronous saves: the saved step must be on disk before the next step can be killed.
    enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(directory, options=options, item_handlers=_handlers())


def save(
  mgr: ocp.CheckpointManager,
  step: int,
  state: Any,
  meta: dict[str, Any],
  anonymizer_config: dict[str, Any],
) -> None:
  """Writes `state`, `meta` (secrets scrubbed) and the anonymizer alone as checkpoint `step`.

  Args:
    mgr: from `manager`.
    step: the checkpoint's number (the steps done).
    state: the `TrainState`; its ``params`` are also written as the ``anonymizer`` item.
    meta: JSON-able facts about the run.
    anonymizer_config: JSON-able model fields of the anonymizer (`anonymax.anonymizer`).
  """
  mgr.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      meta=ocp.args.JsonSave(scrub_secrets(meta)),
      anonymizer=ocp.args.StandardSave(state.params),
      anonymizer_config=ocp.args.JsonSave(anonymizer_config),
    ),
    force=True,
  )
  mgr.wait_until_finished()


def restore(
  mgr: ocp.CheckpointManager, abstract_state: Any, step: int | None = None
) -> tuple[Any, dict[str, Any]] | None:
  """Restores (state, meta) of `step` (default: the latest) or returns None when there is none.

  Args:
    mgr: from `manager`.
    abstract_state: the state's structure, e.g. `jax.eval_shape(create_state, ...)`.
    step: which checkpoint; None for the latest.

  Raises:
    ValueError: naming the checkpoint when its structure is not that of `abstract_state`.
  """
  step = mgr.latest_step() if step is None else step
  if step is None:
    return None
  # Concrete arrays restore into their own layout (e.g. replicated over a data-parallel mesh).
  abstract = jax.tree.map(
    lambda x: (
      jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
      if hasattr(x, "shape")
      else x
    ),
    abstract_state,
  )
  try:
    restored = mgr.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        meta=ocp.args.JsonRestore(),
      ),
    )
  except ValueError as e:  # orbax's structure and shape mismatches
    # E.g. a checkpoint of an earlier release, whose optimizer state was laid out per leaf.
    raise ValueError(
      f"checkpoint {mgr.directory}/{step} does not match this version's training state "
      f"({str(e).splitlines()[0]}): resume it with the version that wrote it, or train in a new "
      "--workdir"
    ) from e
  return restored["state"], dict(restored["meta"] or {})


def restore_anonymizer(
  mgr: ocp.CheckpointManager, step: int | None = None
) -> tuple[Any, dict[str, Any], int]:
  """(θ, the anonymizer's config, the step) of checkpoint `step` (default: the latest).

  Only the ``anonymizer`` items are read, without the training state. θ comes back on this
  process's first device, however many devices and processes saved it (orbax would otherwise
  restore the saved layout, which names devices that a single evaluator does not have).

  Raises:
    FileNotFoundError: there is no checkpoint.
    ValueError: naming the checkpoint when it has no anonymizer item (an earlier version's).
  """
  step = mgr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {mgr.directory}: run launch/train.py first")
  try:
    saved = mgr.item_metadata(step)["anonymizer"]
    if saved is None:
      raise KeyError("anonymizer")
    here = SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here), saved)
    restored = mgr.restore(
      step,
      args=ocp.args.Composite(
        anonymizer=ocp.args.StandardRestore(target), anonymizer_config=ocp.args.JsonRestore()
      ),
    )
  except (ValueError, KeyError, FileNotFoundError) as e:
    raise ValueError(
      f"checkpoint {mgr.directory}/{step} holds no standalone anonymizer (written by an earlier "
      f"version: {str(e).splitlines()[0] if str(e) else type(e).__name__}): train in a new --workdir"
    ) from e
  if restored.get("anonymizer") is None or restored.get("anonymizer_config") is None:
    raise ValueError(
      f"checkpoint {mgr.directory}/{step} holds no standalone anonymizer (written by an earlier "
      "version): train in a new --workdir"
    )
  return restored["anonymizer"], dict(restored["anonymizer_config"]), int(step)


def read_meta(mgr: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  """The JSON ``meta`` item of checkpoint `step` (the step, oracle counters, config) alone."""
  restored = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  return dict(restored["meta"] or {})
