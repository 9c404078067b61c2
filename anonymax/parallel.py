"""Data parallelism: one mesh axis, "data", over the devices.

The training state is replicated and every batch is split along its first axis; `jax.jit` then
partitions the step (GSPMD): each device anonymizes and backpropagates its share, gradients and
BatchNorm statistics are reduced across devices, so a step computes what it computes on one device
(up to the order of floating-point sums). The oracle call stays one call: the anonymized visuals
are gathered before the host callback.

  >>> mesh = make_mesh(0)                      # every device; None when there is only one
  >>> state = jax.device_put(state, replicated(mesh))
  >>> batch = jax.device_put(batch, batch_sharded(mesh))

One host: batches are placed from its memory (several hosts would need
`jax.distributed.initialize()` and `jax.make_array_from_process_local_data`). Tests simulate
devices on a CPU with XLA_FLAGS=--xla_force_host_platform_device_count=N.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh | None:
  """A ("data",) mesh over the first `num_devices` devices (0: all of them); None for one device.

  Raises:
    ValueError: naming config.num_devices when more devices are asked for than there are.
  """
  if int(num_devices) != num_devices or num_devices < 0:
    raise ValueError(f"config.num_devices={num_devices!r}: must be 0 (all) or a positive count")
  devices = jax.devices()
  n = len(devices) if num_devices == 0 else int(num_devices)
  if n > len(devices):
    raise ValueError(
      f"config.num_devices={num_devices} but only {len(devices)} {devices[0].platform} "
      f"device(s) are available"
    )
  if n == 1:
    return None
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer states)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """The first axis is split across the "data" axis (batches)."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_sizes(mesh: Mesh | None, **batch_sizes: int) -> None:
  """Each batch must split evenly over the devices; the error names the config field."""
  if mesh is None:
    return
  n = mesh.devices.size
  for field, size in batch_sizes.items():
    if size % n:
      raise ValueError(
        f"config.{field}={size} does not split over {n} devices: use a multiple of {n}"
      )
