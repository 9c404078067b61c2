"""Several processes (one or more per host) training one run: who they are, and who writes.

Every process runs the same program on its own devices (JAX's multi-controller model): the mesh
of `anonymax.parallel` spans the devices of all processes, each process loads its own rows of
every batch, and the jitted step's collectives (gradients, BatchNorm statistics) cross processes.
Only the primary process (index 0) writes what a run writes once: ``config.json``,
``metrics.jsonl``, TensorBoard events. Checkpoints are written by all processes together (orbax
writes every array once, the JSON items from the primary).

A process learns its place from, in this order:

  * the flags of ``launch/train.py``: ``--coordinator_address=HOST:PORT --num_processes=N
    --process_id=I``;
  * the environment: ``JAX_COORDINATOR_ADDRESS`` (read by JAX itself), ``ANONYMAX_NUM_PROCESSES``,
    ``ANONYMAX_PROCESS_ID``;
  * with ``--distributed`` and nothing else, JAX's cluster detection (Slurm, Open MPI, Cloud TPU,
    Kubernetes jobs), which supplies whatever is missing.

Nothing given: one process, and `jax.distributed.initialize` is not called.

  >>> distributed.initialize(distributed.settings("10.0.0.1:8476", 2, 1))  # before any JAX work
  True
  >>> distributed.is_primary()
  False

On CPUs the processes' collectives run over TCP with gloo (tests: two processes on 127.0.0.1).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # JAX's own name; jax.distributed reads it too
ENV_NUM_PROCESSES = "ANONYMAX_NUM_PROCESSES"
ENV_PROCESS_ID = "ANONYMAX_PROCESS_ID"

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What `jax.distributed.initialize` is given; None fields are left to cluster detection."""

  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  auto: bool = False  # --distributed: let JAX detect the cluster

  @property
  def several(self) -> bool:
    """Whether the run has (or may have, with `auto`) several processes."""
    return self.auto or (self.num_processes or 1) > 1 or self.coordinator_address is not None


def _integer(value, name: str) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name}={value!r} is not an integer") from None


def settings(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  auto: bool = False,
  environ: Mapping[str, str] | None = None,
) -> Settings:
  """The process settings from flag values, each falling back to its environment variable.

  Rules: a process id needs a process count and 0 ≤ id < count; a count above 1 needs an id and a
  coordinator ``HOST:PORT`` unless `auto` leaves them to JAX's cluster detection.

  Raises:
    ValueError: one line naming the flag (and its environment variable) that is wrong.
  """
  env = os.environ if environ is None else environ
  address = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = _integer(num_processes, "--num_processes")
  if count is None:
    count = _integer(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES)
  index = _integer(process_id, "--process_id")
  if index is None:
    index = _integer(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID)
  if count is not None and count < 1:
    raise ValueError(f"--num_processes={count} (or ${ENV_NUM_PROCESSES}): must be at least 1")
  if index is not None:
    if count is None and not auto:
      raise ValueError(
        f"--process_id={index} needs --num_processes (or ${ENV_NUM_PROCESSES}), the process count"
      )
    if index < 0 or (count is not None and index >= count):
      raise ValueError(
        f"--process_id={index} (or ${ENV_PROCESS_ID}) must be in [0, {count}), "
        f"--num_processes={count}"
      )
  if address is not None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
      raise ValueError(
        f"--coordinator_address={address!r} (or ${ENV_COORDINATOR}): must be HOST:PORT, "
        "the address of process 0 and a free port on it"
      )
  if not auto and (count or 1) > 1:
    missing = [
      f"--{flag} (or ${var})"
      for flag, var, value in (
        ("coordinator_address", ENV_COORDINATOR, address),
        ("process_id", ENV_PROCESS_ID, index),
      )
      if value is None
    ]
    if missing:
      raise ValueError(
        f"--num_processes={count} also needs {' and '.join(missing)}, or --distributed to "
        "detect them from the cluster (Slurm, Open MPI, Cloud TPU)"
      )
  return Settings(address, count, index, auto)


def initialize(settings_: Settings) -> bool:
  """Calls `jax.distributed.initialize` when `settings_` describe several processes.

  Must run before any JAX computation. On CPUs, cross-process collectives need an
  implementation: gloo (JAX's default from 0.5) is chosen when none is configured.

  Returns:
    Whether this process is one of several.

  Raises:
    ValueError: one line when JAX cannot complete the settings (no cluster detected).
  """
  if not settings_.several:
    return False
  if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
      coordinator_address=settings_.coordinator_address,
      num_processes=settings_.num_processes,
      process_id=settings_.process_id,
    )
  except ValueError as e:  # JAX's "... should be defined": no cluster supplied the rest
    raise ValueError(
      f"jax.distributed.initialize: {e} Give --coordinator_address, --num_processes and "
      "--process_id (or their environment variables)"
    ) from None
  return jax.process_count() > 1


def is_primary() -> bool:
  """Whether this process writes what a run writes once (process 0; true with one process)."""
  return jax.process_index() == 0


def any_process(flag: bool) -> bool:
  """Whether `flag` holds on at least one process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))


def sum_over_processes(values: Mapping[str, float]) -> dict[str, float]:
  """Σ over processes of each number in `values` (a collective; same keys on every process)."""
  if jax.process_count() == 1:
    return dict(values)
  keys = sorted(values)
  gathered = multihost_utils.process_allgather(np.asarray([values[k] for k in keys], np.float64))
  totals = np.asarray(gathered).reshape(jax.process_count(), len(keys)).sum(axis=0)
  return {k: type(values[k])(t) for k, t in zip(keys, totals)}


def primary_first(build: Callable[[], T], name: str = "primary_first") -> T:
  """`build()` on the primary process, then on the others once it is done.

  For what the first caller writes and the rest read back (the reference black box, trained once
  and cached): the others find the cache instead of training their own.
  """
  if jax.process_count() == 1:
    return build()
  result = build() if is_primary() else None
  multihost_utils.sync_global_devices(name)
  return result if is_primary() else build()


def divide_budgets(oracle_config, num_processes: int):
  """A copy of `oracle_config` whose spending limits (``budget_*`` fields of its sections) are
  each divided among `num_processes` processes (integers rounded down), so that the processes,
  each paying for its own rows, together spend at most what the config allows."""
  out = oracle_config.copy_and_resolve_references()
  for section in out.values():
    if not hasattr(section, "items"):
      continue
    for field, value in list(section.items()):
      if field.startswith("budget_") and value is not None:
        share = value / num_processes
        section[field] = int(share) if isinstance(value, int) else share
  return out


def process_workdir(workdir: str) -> str:
  """Where this process keeps files of its own (its black box's cache and usage file):
  `workdir` itself with one process, ``workdir/processes/<index>`` with several."""
  if jax.process_count() == 1:
    return workdir
  return os.path.join(workdir, "processes", str(jax.process_index()))
