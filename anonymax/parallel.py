"""Data parallelism: one mesh axis, "data", over the devices.

The training state is replicated and every batch is split along its first axis; `jax.jit` then
partitions the step (GSPMD): each device anonymizes and backpropagates its share, gradients and
BatchNorm statistics are reduced across devices, so a step computes what it computes on one device
(up to the order of floating-point sums). With one process the oracle call stays one call: the
anonymized visuals are gathered before the host callback. With several processes
(`anonymax.distributed`) the mesh spans the devices of all of them, each process holds the
contiguous block of rows `process_rows` names and builds its part of every batch from those rows
alone (`global_batch`), and each asks the black box about its own rows
(`anonymax.step.process_shards`).

  >>> mesh = make_mesh(0)                      # every device; None when there is only one
  >>> state = jax.device_put(state, replicated(mesh))
  >>> rows = process_rows(mesh, batch_size)    # this process's rows of the global batch
  >>> batch = global_batch(mesh, (visuals[idx[rows]],), (batch_size,))

Tests simulate devices on a CPU with XLA_FLAGS=--xla_force_host_platform_device_count=N, and
processes with several interpreters on 127.0.0.1.
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
  # Each process's devices side by side (stable: one process keeps JAX's order), so that each
  # process holds one contiguous block of every batch.
  devices = sorted(jax.devices(), key=lambda d: d.process_index)
  n = len(devices) if num_devices == 0 else int(num_devices)
  if n > len(devices):
    raise ValueError(
      f"config.num_devices={num_devices} but only {len(devices)} {devices[0].platform} "
      f"device(s) are available"
    )
  if jax.process_count() > 1 and n != len(devices):
    raise ValueError(
      f"config.num_devices={num_devices}: with {jax.process_count()} processes use 0 (every "
      f"device of every process, {len(devices)})"
    )
  if n == 1:
    return None
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer states)."""
  return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
  """`tree` (the same values in every process) replicated on every device of `mesh`.

  `jax.device_put` does this within one process; across processes each process places its own
  copy on its own devices (`jax.make_array_from_callback`), since what `device_put` builds there
  from a process-local array has unusable shards (JAX 0.10: `addressable_shards` raises).
  """
  if not spans_processes(mesh):
    return jax.device_put(tree, replicated(mesh))

  def place(x):
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, replicated(mesh), lambda index: host[index])

  return jax.tree.map(place, tree)


def batch_sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Axis `axis` is split across the "data" axis (batches: the first)."""
  return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def spans_processes(mesh: Mesh | None) -> bool:
  """Whether `mesh` has devices of several processes."""
  return mesh is not None and len({d.process_index for d in mesh.devices.flat}) > 1


def process_rows(mesh: Mesh | None, size: int) -> slice:
  """The rows [start, stop) of a batch of `size` rows that this process's devices hold.

  Device i of the mesh holds rows [i·size/n, (i+1)·size/n); a process holds the union over its
  devices, one block since `make_mesh` puts each process's devices side by side. Without a mesh:
  every row.
  """
  if mesh is None:
    return slice(0, size)
  spans = sorted(
    (index[0].start or 0, size if index[0].stop is None else index[0].stop)
    for index in batch_sharded(mesh).addressable_devices_indices_map((size,)).values()
  )
  start, stop = spans[0][0], spans[0][1]
  for a, b in spans[1:]:
    if a > stop:
      raise ValueError(f"this process's rows of a batch of {size} are not one block: {spans}")
    stop = max(stop, b)
  return slice(start, stop)


def global_batch(mesh: Mesh, local: tuple, sizes: tuple[int, ...], axis: int = 0) -> tuple:
  """Global arrays split over the mesh along `axis`, from this process's rows of each.

  `local[i]` holds rows `process_rows(mesh, sizes[i])` of a global array with `sizes[i]` rows
  along `axis`; no process sends or receives another's rows.
  """
  out = []
  for x, size in zip(local, sizes):
    x = np.asarray(x)
    shape = (*x.shape[:axis], size, *x.shape[axis + 1 :])
    out.append(jax.make_array_from_process_local_data(batch_sharded(mesh, axis), x, shape))
  return tuple(out)


def local_rows(array: jax.Array, axis: int = 0) -> np.ndarray:
  """This process's rows of `array` (split along `axis` over the mesh) as one numpy array, in
  order; the inverse of `global_batch` for one array."""
  pieces = {}
  for shard in array.addressable_shards:
    start = shard.index[axis].start or 0
    pieces.setdefault(start, shard)  # replicas of a block (other mesh axes) hold the same rows
  return np.concatenate([np.asarray(pieces[k].data) for k in sorted(pieces)], axis=axis)


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
