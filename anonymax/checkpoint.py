"""Orbax checkpoints of the whole training state, so a killed run resumes to the same result.

One checkpoint holds two items:
  * ``state``: the `TrainState` pytree — anonymizer params, the optimizer state (critical-history ring
    included), the reviewer (params, batch stats, optimizer state), the step, the RNG key data and the
    counters. The data position is the step itself (`pipeline.batch_indices` is a function of it).
  * ``meta``: JSON — the step, oracle counters and the config with secrets removed.

One writer per directory (the trainer); evaluators open it read-only.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

# Config fields that may hold secrets; they are never written to disk.
_SECRET_KEYS = ("api_key", "apikey", "token", "secret", "password", "authorization")


def scrub_secrets(tree: Any) -> Any:
  """Returns a JSON-able copy of a config dict with every secret-looking value replaced.

  A field is secret when its name contains one of `_SECRET_KEYS` — except names ending in `_env`,
  which hold the *name* of an environment variable (e.g. ``api_key_env="OPENAI_API_KEY"``), and
  `*_tokens` budget counts.
  """
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      name = str(k).lower()
      secret = any(s in name for s in _SECRET_KEYS) and not name.endswith(("_env", "_tokens"))
      out[k] = "<redacted>" if secret and v not in (None, "") else scrub_secrets(v)
    return out
  if isinstance(tree, (list, tuple)):
    return [scrub_secrets(v) for v in tree]
  if isinstance(tree, (str, int, float, bool)) or tree is None:
    return tree
  return str(tree)


def default_workdir(config_path: str) -> str:
  """`workdirs/<config name>` for `path/to/<config name>.py[:variants]` (the launchers' default)."""
  name = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
  return os.path.join("workdirs", name)


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
  return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


def save(mgr: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
  """Writes `state` and `meta` (secrets scrubbed) as checkpoint `step`."""
  mgr.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      meta=ocp.args.JsonSave(scrub_secrets(meta)),
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
