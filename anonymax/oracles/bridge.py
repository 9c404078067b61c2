"""The bridge from a jitted step to a black-box oracle: one host callback per step.

Inside `jax.jit` the anonymized visuals of a step (both perturbed anonymizations, 2B samples) leave the
device through a single `jax.experimental.io_callback`; on the host they are quantised to uint8 (what an
upload would carry), paired with their `Query` by example index, and scored by the oracle. The callback
body uses numpy only, returns arrays of exactly the declared shapes and never raises: whatever goes wrong
becomes a per-sample status, and the trainer skips (and counts) those samples.

Two ways to call it:

* `bridge(visuals, ids)` inside jit returns (losses, status) once the oracle has answered. Simple,
  but the device waits with it: a GPU runs a callback on its compute stream, and on several devices
  every other program's collectives wait for the one that holds the callback.
* `bridge.send(visuals, ids)` inside jit, then `bridge.receive()` on the host. The callback only
  copies the visuals and starts the oracle call on a worker thread, so the program ends at once and
  the devices are free for other work (the trainer's privacy gradient) while the oracle answers.

The visuals cross as uint8 (quantised on the device, as `to_uint8` does on the host), cut into
operands of at most `CHUNK_BYTES`. JAX hands a callback its operands as arrays copied onto the
CPU device, and copies above about 100 KiB run on the runtime's thread pool; the callback runs on
that pool too, so on a one-core machine reading a larger operand inside the callback deadlocks
(reproduced with JAX 0.10: an `io_callback` that reads a 200 KB operand hangs under
`taskset -c 0`). Operands below that size are copied at once, wherever the pool stands.

Only what the caller passes in crosses the callback. The trainer passes anonymizer outputs and nothing
else, so raw pixels never reach an oracle (tested with a spy oracle).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from anonymax.oracles.base import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  Oracle,
  OracleOutput,
  Query,
  to_uint8,
)

# Below the size that JAX's CPU runtime copies on its thread pool (see the module docstring).
CHUNK_BYTES = 64 * 1024


def quantize(visuals: jax.Array) -> jax.Array:
  """`to_uint8` on the device: float in [0, 1] → uint8 (round half to even), uint8 unchanged."""
  if visuals.dtype == jnp.uint8:
    return visuals
  x = jnp.nan_to_num(visuals.astype(jnp.float32))
  return jnp.clip(jnp.round(x * 255.0), 0, 255).astype(jnp.uint8)


def to_chunks(visuals: jax.Array) -> list[jax.Array]:
  """uint8 visuals as flat operands of at most `CHUNK_BYTES` (the last may be shorter)."""
  flat = visuals.reshape(-1)
  return [flat[i : i + CHUNK_BYTES] for i in range(0, max(flat.shape[0], 1), CHUNK_BYTES)]


def from_chunks(chunks: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
  """The inverse of `to_chunks`, as a numpy array of its own (copied out of the operands)."""
  return np.concatenate([np.asarray(c) for c in chunks]).reshape(shape)


class OracleBridge:
  """Calls an `Oracle` from jitted code.

  Example:
    >>> bridge = OracleBridge(oracle, split.queries)
    >>> losses, status = jax.jit(bridge)(anonymized, example_ids)

  Attributes:
    oracle: the black box.
    queries: the query of every example id the step may pass.
    last_answers: the answer texts of the most recent call (host side; for logging and samples).
    seconds: host seconds spent inside the oracle, summed over calls.
    samples: samples sent to the oracle, summed over calls.
  """

  def __init__(self, oracle: Oracle, queries: Sequence[Query], *, ordered: bool = True):
    """Wraps `oracle` for the example ids of `queries`.

    Raises:
      TypeError: if `oracle` is not an `Oracle` (a subclass of `anonymax.oracles.base.Oracle`).
    """
    # Checked here, not at the first call: inside a callback a wrong object would only show up as
    # every sample failing.
    if not isinstance(oracle, Oracle):
      raise TypeError(
        f"OracleBridge needs an anonymax.oracles.base.Oracle, got {type(oracle).__name__}: "
        "subclass Oracle and implement query()"
      )
    self.oracle = oracle
    self.queries = list(queries)
    self.ordered = ordered
    self.last_answers: list[str] = []
    self.seconds = 0.0
    self.samples = 0
    # Set when a call reaches the host; lets a caller start other work once the device is idle.
    self.call_started = threading.Event()
    self._pending: concurrent.futures.Future | None = None
    self._worker: concurrent.futures.ThreadPoolExecutor | None = None

  def host_fn(self, visuals: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The callback body: numpy in, (losses float32 [N], status int32 [N]) out; never raises."""
    self.call_started.set()
    n = int(np.shape(indices)[0])
    start = time.perf_counter()
    try:
      indices = np.asarray(indices).astype(np.int64).reshape(n)
      if np.any(indices < 0) or np.any(indices >= len(self.queries)):
        raise IndexError(f"example id out of range [0, {len(self.queries)})")
      queries = [self.queries[i] for i in indices]
      out = self.oracle.query(to_uint8(np.asarray(visuals)), queries)
      losses = np.asarray(out.losses, np.float32).reshape(n)
      status = np.asarray(out.status, np.int32).reshape(n)
      # A non-finite loss can never be used for a gradient: mark it, whatever the oracle said.
      bad = ~np.isfinite(losses)
      status = np.where(bad & (status == STATUS_OK), STATUS_INVALID, status).astype(np.int32)
      losses = np.where(status == STATUS_OK, losses, 0.0).astype(np.float32)
      answers = list(out.answers)[:n]
    except Exception as e:  # noqa: BLE001 — the contract is "never raise" inside a callback.
      logging.warning("oracle call failed for %d samples: %s: %s", n, type(e).__name__, e)
      failed = OracleOutput.failed(n, STATUS_FAILED)
      losses, status, answers = failed.losses, failed.status, failed.answers
    self.seconds += time.perf_counter() - start
    self.samples += n
    self.last_answers = answers
    return losses, status

  def __call__(self, visuals: jax.Array, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Scores `visuals` (float in [0, 1] or uint8, leading axis N) for example ids `indices` [N]."""
    n = indices.shape[0]
    if visuals.shape[0] != n:
      raise ValueError(f"visuals have {visuals.shape[0]} samples but indices {n}")
    shapes = (
      jax.ShapeDtypeStruct((n,), jnp.float32),
      jax.ShapeDtypeStruct((n,), jnp.int32),
    )
    shape = tuple(visuals.shape)

    def score(indices, *chunks):
      return self.host_fn(from_chunks(chunks, shape), np.array(indices))

    chunks = to_chunks(quantize(visuals))
    return io_callback(score, shapes, indices, *chunks, ordered=self.ordered)

  def send(self, visuals: jax.Array, indices: jax.Array) -> jax.Array:
    """Inside jit: starts scoring `visuals` for example ids `indices`; `receive()` collects it.

    One ordered `io_callback` whose body copies its inputs, starts `host_fn` on a worker thread
    and returns: the program does not wait for the oracle. One call is in flight at a time; a
    second `send` before `receive` replaces the first.

    Returns:
      int32 [], the number of samples handed over; once it is ready, `receive()` may be called.
    """
    n = indices.shape[0]
    if visuals.shape[0] != n:
      raise ValueError(f"visuals have {visuals.shape[0]} samples but indices {n}")
    shape = tuple(visuals.shape)

    def submit(indices, *chunks):
      # Copies: the callback's input buffers belong to the runtime once it returns.
      return self._submit(from_chunks(chunks, shape), np.array(indices))

    chunks = to_chunks(quantize(visuals))
    result = jax.ShapeDtypeStruct((), jnp.int32)
    return io_callback(submit, result, indices, *chunks, ordered=self.ordered)

  def _submit(self, visuals: np.ndarray, indices: np.ndarray) -> np.ndarray:
    if self._worker is None:
      self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="oracle")
    self._pending = self._worker.submit(self.host_fn, visuals, indices)
    self.call_started.set()
    return np.int32(len(indices))

  def receive(self, timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """On the host: (losses float32 [N], status int32 [N]) of the last `send`, once answered."""
    if self._pending is None:
      raise RuntimeError("OracleBridge.receive(): no send() is in flight")
    pending, self._pending = self._pending, None
    return pending.result(timeout)  # host_fn never raises
