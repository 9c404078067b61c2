"""The black box with several processes: each process asks it about its own rows of the batch.

With one process the step's 2qB anonymized visuals leave the devices through one host callback
(`OracleBridge.send`). With several, a callback in a jitted program runs on one device of one
process only, so either every visual travels to process 0 and every answer back, or each process
scores what its own devices anonymized. We do the latter:

  * `layout` (inside `perturb`): the anonymizations kept as uint8 [S, B, ...] (S = 2q parameter sets,
    set-major as the reference step orders them), split along B like the batch, so each process's
    devices hold exactly its rows and nothing is gathered;
  * `send` (on the host): this process's rows [S, B_p, ...] and example ids go to its own
    `OracleBridge.host_fn` on a worker thread, while the devices compute the privacy gradient;
  * `receive` (on the host): its (losses, status) [S, B_p] become rows of global [S, B] arrays
    (`parallel.global_batch`), which `combine` reads like the single-process answers.

Why per process: the black box is what a step waits for, and this way P processes query it P
ways at once: P local models (the `hf` oracle on each host's accelerator) answer P shares, or P
clients of one served model keep P times the requests in flight. A call for the global batch from
process 0 would leave the other hosts' models idle and move every image across hosts twice.
Each process's black box keeps its cache and usage files in its own directory and spends its
share of a budget (`anonymax.distributed`). Losses depend only on each sample, so the step
computes what one process computes with the same global batch (tested with two processes).
"""

from __future__ import annotations

import concurrent.futures

import jax
import numpy as np

from anonymax import parallel
from anonymax.oracles.bridge import OracleBridge, quantize


class ProcessShards:
  """Sends each process's rows of the anonymizations to its own black box (see the module doc).

  Attributes:
    bridge: this process's black box, for the utility split's queries.
    mesh: the data mesh over the devices of every process.
    num_sets: S, the parameter sets whose anonymizations a step scores.
  """

  def __init__(self, bridge: OracleBridge, mesh, num_sets: int):
    self.bridge, self.mesh, self.num_sets = bridge, mesh, int(num_sets)
    self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="oracle")
    self._pending: concurrent.futures.Future | None = None
    self._size = 0  # B, the global batch of the call in flight

  def layout(self, anonymized: jax.Array) -> jax.Array:
    """Inside jit: anonymizations [S, B, ...] (`parts.anonymize_all(..., stacked=True)`) →
    uint8, B split over the mesh as the batch is (no collective: each device keeps its rows)."""
    x = quantize(anonymized)
    return jax.lax.with_sharding_constraint(x, parallel.batch_sharded(self.mesh, axis=1))

  def send(self, anonymized: jax.Array, u_ids: jax.Array) -> None:
    """Starts scoring this process's rows of `layout`'s output for its rows of `u_ids` [B]."""
    visuals = parallel.local_rows(anonymized, axis=1)  # [S, B_p, ...]: only what is here
    ids = parallel.local_rows(u_ids).astype(np.int64)
    flat = visuals.reshape((-1, *visuals.shape[2:]))  # set-major, like the single-process call
    self._pending = self._worker.submit(self.bridge.host_fn, flat, np.tile(ids, self.num_sets))
    self._size = int(u_ids.shape[0])

  def receive(self, timeout: float | None = None) -> tuple[jax.Array, jax.Array]:
    """(losses float32 [S, B], status int32 [S, B]) of every process, once this one's answered."""
    if self._pending is None:
      raise RuntimeError("ProcessShards.receive(): no send() is in flight")
    pending, self._pending = self._pending, None
    losses, status = pending.result(timeout)  # host_fn never raises
    rows = (losses.reshape(self.num_sets, -1), status.reshape(self.num_sets, -1))
    return parallel.global_batch(self.mesh, rows, (self._size, self._size), axis=1)
