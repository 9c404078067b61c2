"""Counts XLA compilations through `jax.monitoring` (public API), e.g. to show that a training
step compiles once and never again.

  >>> counter = CompileCounter().start()
  >>> f(x); f(x)                      # a jitted function, twice with the same shapes
  >>> counter.stop()                  # 1: the first call compiled, the second did not
"""

from __future__ import annotations

import threading

from jax import monitoring

# Recorded by JAX once per backend compilation (cache hits of the jit cache record nothing).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
  """Counts backend compilations between `start` and `stop` (of every thread)."""

  def __init__(self):
    self.count = 0
    self._lock = threading.Lock()
    self._running = False

  def _listener(self, event: str, duration: float, **kwargs) -> None:
    del duration, kwargs
    if self._running and event == BACKEND_COMPILE_EVENT:
      with self._lock:
        self.count += 1

  def start(self) -> CompileCounter:
    """Starts counting from zero; returns self."""
    self.count, self._running = 0, True
    monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def stop(self) -> int:
    """Stops counting; returns the number of compilations since `start`."""
    self._running = False
    monitoring.unregister_event_duration_listener(self._listener)
    return self.count

  def __enter__(self) -> CompileCounter:
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()
